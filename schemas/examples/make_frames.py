"""Write the binary frame examples in ``frames/``: valid and broken ones. Standard library only,
deterministic. Run: ``python schemas/examples/make_frames.py``."""

from __future__ import annotations

import json
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent / "frames"


def frame(header: dict[str, object], payload: bytes, *, hlen: int | None = None) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-(4 + len(text))) % 8)  # values start on an 8-byte boundary
    return struct.pack("<I", len(text) if hlen is None else hlen) + text + payload


def header(ftype: str, dtype: str, n: int, nonce: str) -> dict[str, object]:
    return {
        "v": 1,
        "type": ftype,
        "task": "revisit-7d",
        "round": 12,
        "nonce": nonce,
        "dtype": dtype,
        "shape": [n],
    }


def main() -> None:
    HERE.mkdir(exist_ok=True)
    values = [0.5, -1.25, 3.0, 0.0, 2.5]
    f32 = struct.pack("<5f", *values)
    f16 = struct.pack("<5e", *values)
    files = {
        "model.valid.bin": frame(header("model", "float32", 5, "m11r12"), f32),
        "update.valid.bin": frame(header("update", "float32", 5, "Zx8Kq2mN4pR7sT1v"), f32),
        "update.float16.valid.bin": frame(header("update", "float16", 5, "Zx8Kq2mN4pR7sT1v"), f16),
        "truncated.bin": frame(header("update", "float32", 5, "Zx8Kq2mN4pR7sT1v"), f32)[:-3],
        "lying_length.bin": frame(
            header("update", "float32", 5, "Zx8Kq2mN4pR7sT1v"), f32, hlen=4000
        ),
        "header_not_json.bin": struct.pack("<I", 12) + b"{type:update" + f32,
        "header_extra_field.bin": frame(
            {**header("update", "float32", 5, "Zx8Kq2mN4pR7sT1v"), "scale": 2}, f32
        ),
    }
    for name, data in files.items():
        (HERE / name).write_bytes(data)


if __name__ == "__main__":
    main()
