"""The extension's icons are the pixels ``dandelion.bundle.icons`` draws, in valid PNGs."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from dandelion.bundle.icons import ICON_SIZES, draw, encode_png, icon_name, write_icons

ICONS = Path(__file__).resolve().parent.parent / "browser_worker" / "extension" / "icons"


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def read_png(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and RGBA rows of an 8-bit RGBA PNG, whatever filters its encoder chose
    (so a re-compressed icon with the same pixels still passes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, interlace) == (8, 6, 0), "8-bit RGBA, not interlaced"
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride, out, previous = width * 4, bytearray(), bytes(width * 4)
    for row in range(height):
        kind, line = raw[row * (stride + 1)], bytearray(raw[row * (stride + 1) + 1 :][:stride])
        for i in range(stride):
            left = line[i - 4] if i >= 4 else 0
            up, corner = previous[i], previous[i - 4] if i >= 4 else 0
            predictor = [0, left, up, (left + up) // 2, _paeth(left, up, corner)][kind]
            line[i] = (line[i] + predictor) & 0xFF
        out += line
        previous = bytes(line)
    return width, height, bytes(out)


@pytest.mark.parametrize("size", ICON_SIZES)
def test_committed_icon_is_what_the_script_draws(size: int) -> None:
    width, height, pixels = read_png((ICONS / icon_name(size)).read_bytes())
    assert (width, height) == (size, size)
    # If this fails, the drawing changed: run `python -m dandelion.bundle.icons` and commit.
    assert pixels == draw(size)


@pytest.mark.parametrize("size", ICON_SIZES)
def test_icon_is_a_white_seed_head_on_a_green_disk(size: int) -> None:
    pixels = draw(size)

    def pixel(x: int, y: int) -> tuple[int, ...]:
        return tuple(pixels[(y * size + x) * 4 : (y * size + x) * 4 + 4])

    assert pixel(0, 0)[3] == 0  # outside the disk: transparent
    assert pixel(size // 2 - 1, size // 2 - 1)[:3] == (255, 255, 255)  # the seed head
    assert pixel(size // 2 - 1, size * 3 // 4)[:3] == (255, 255, 255)  # the stem
    assert pixel(size * 3 // 10, size * 3 // 4) == (44, 110, 73, 255)  # the disk, beside it


def test_png_writer_round_trips_and_refuses_short_data(tmp_path: Path) -> None:
    pixels = bytes(range(256)) * 4  # 16 x 16 RGBA
    assert read_png(encode_png(16, 16, pixels)) == (16, 16, pixels)
    with pytest.raises(ValueError, match="RGBA"):
        encode_png(16, 16, pixels[:-1])
    written = list(write_icons(tmp_path))
    assert [p.name for p in written] == [icon_name(s) for s in ICON_SIZES]
    # Not compared byte for byte: another zlib may compress the same pixels differently.
    assert [read_png(p.read_bytes())[:2] for p in written] == [(s, s) for s in ICON_SIZES]
