"""The extension's icons: a dandelion seed head, drawn in pure Python and written as PNG.

``python -m dandelion.bundle.icons [DIR]`` (re)writes ``icon-16.png`` … ``icon-128.png`` into
``browser_worker/extension/icons/`` (or ``DIR``). The PNGs are committed; a test checks that
they hold exactly the pixels this module draws, so the script stays the source of the picture.

Rules of this file: standard library only (no Pillow); every pixel comes from arithmetic that
IEEE 754 defines exactly (``+ - * /`` and ``sqrt``; the rays' directions are multiples of 30°
or 45°, taken from exact square roots instead of ``sin``/``cos``), so any machine draws the same
pixels. Edges are anti-aliased from the signed distance to each shape at the pixel's centre.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ICON_SIZES", "draw", "encode_png", "icon_name", "write_icons"]

#: The sizes Chrome asks for: toolbar (16, 32 on high-density screens), the extensions page
#: (48) and the install dialog and the Web Store (128).
ICON_SIZES = (16, 32, 48, 128)
#: Transparent margin per size, in pixels: the Web Store wants 96x96 of art in a 128 icon;
#: the toolbar sizes use the whole square.
_MARGIN = {16: 0.0, 32: 1.0, 48: 3.0, 128: 16.0}
_DISK = (44, 110, 73)  # the options page's green (options.css)
_SEED = (255, 255, 255)
_S2 = math.sqrt(0.5)
_S3 = math.sqrt(3.0) / 2
_FIRST_QUADRANT = {0: (1.0, 0.0), 30: (_S3, 0.5), 45: (_S2, _S2), 60: (0.5, _S3)}

Shape = tuple[str, tuple[float, ...]]  # ("circle", (cx, cy, r)) | ("segment", (ax, ay, bx, by, w))


def icon_name(size: int) -> str:
    return f"icon-{size}.png"


def _direction(degrees: int) -> tuple[float, float]:
    """The unit vector at ``degrees`` (screen coordinates, y down), for multiples of 30 or 45."""
    x, y = _FIRST_QUADRANT[degrees % 90]
    for _ in range(degrees // 90 % 4):
        x, y = -y, x
    return x, y


def _glyph(size: int) -> tuple[tuple[float, float, float], list[Shape]]:
    """The disk (centre and radius, in pixels) and the seed head's shapes on it."""
    centre = size / 2
    radius = centre - _MARGIN[size]
    hx = centre - 0.5  # the stem runs down the middle of a pixel column: crisp, not grey
    if size <= 16:
        # Few pixels: one-pixel strokes and seven rays with dots.
        half_width, tuft, boss = 0.5, 1.1, 1.5
        hy = centre - 1.5
        angles = [a for a in range(0, 360, 45) if a != 90]
    else:
        half_width = max(0.035 * radius, 0.7)
        tuft, boss = 0.075 * radius, 0.13 * radius
        hy = centre - 0.12 * radius  # the head sits above the disk's centre
        angles = [a for a in range(0, 360, 30) if a != 90]  # straight down is the stem
    shapes: list[Shape] = [("circle", (hx, hy, boss))]
    inner, outer = 0.2 * radius, (0.62 if size <= 16 else 0.56) * radius
    for degrees in angles:
        dx, dy = _direction(degrees)
        tip = (hx + dx * outer, hy + dy * outer)
        shapes.append(("segment", (hx + dx * inner, hy + dy * inner, *tip, half_width)))
        shapes.append(("circle", (*tip, tuft)))
    stem_width = half_width if size <= 16 else 1.3 * half_width
    shapes.append(("segment", (hx, hy + 0.15 * radius, hx, centre + 0.8 * radius, stem_width)))
    return (centre, centre, radius), shapes


def _length(dx: float, dy: float) -> float:
    return math.sqrt(dx * dx + dy * dy)  # not math.hypot or **: those are not exact in IEEE 754


def _distance(shape: Shape, x: float, y: float) -> float:
    """Signed distance in pixels from (x, y) to the shape's edge (negative inside)."""
    kind, p = shape
    if kind == "circle":
        cx, cy, r = p
        return _length(x - cx, y - cy) - r
    ax, ay, bx, by, w = p
    vx, vy = bx - ax, by - ay
    t = ((x - ax) * vx + (y - ay) * vy) / (vx * vx + vy * vy)
    t = min(1.0, max(0.0, t))
    return _length(x - ax - t * vx, y - ay - t * vy) - w


def _coverage(distance: float) -> float:
    return min(1.0, max(0.0, 0.5 - distance))


def _byte(value: float) -> int:
    """0.0 to 255.0 to the nearest byte (halves up: no banker's rounding)."""
    return int(value + 0.5)


def draw(size: int) -> bytes:
    """The icon's pixels: ``size`` rows of ``size`` RGBA pixels, 8 bits per channel."""
    (cx, cy, radius), shapes = _glyph(size)
    out = bytearray()
    for row in range(size):
        y = row + 0.5
        for col in range(size):
            x = col + 0.5
            disk = _coverage(_length(x - cx, y - cy) - radius)
            seed = _coverage(min(_distance(s, x, y) for s in shapes))
            rgb = (d + (s - d) * seed for d, s in zip(_DISK, _SEED, strict=True))
            out += bytes([*(_byte(c) for c in rgb), _byte(255 * disk)])
    return bytes(out)


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def encode_png(width: int, height: int, rgba: bytes) -> bytes:
    """A PNG (8-bit RGBA, no filtering, one IDAT) of ``rgba`` rows."""
    stride = width * 4
    if len(rgba) != stride * height:
        raise ValueError(f"expected {stride * height} bytes of RGBA, got {len(rgba)}")
    raw = b"".join(b"\x00" + rgba[r * stride : (r + 1) * stride] for r in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(raw, 9)),
            _chunk(b"IEND", b""),
        ]
    )


def write_icons(folder: Path) -> Iterator[Path]:
    """Write every size into ``folder``; yields each file written."""
    folder.mkdir(parents=True, exist_ok=True)
    for size in ICON_SIZES:
        path = folder / icon_name(size)
        path.write_bytes(encode_png(size, size, draw(size)))
        yield path


def _main(argv: list[str]) -> int:
    from .wheel import _source_root

    folder = Path(argv[0]) if argv else _source_root() / "browser_worker" / "extension" / "icons"
    for path in write_icons(folder):
        print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
