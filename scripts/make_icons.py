#!/usr/bin/env python3
"""Draw the page's app icons (PNG) from the same shapes as ``static/icon.svg``.

A rounded square in the accent colour, a faint ring and the breathing light in the
middle. Pure Python (zlib + struct), 4x4 samples a pixel, so the files are the same on
every machine: ``--check`` says whether the committed ones match (the tests run it).
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "device" / "addons" / "web" / "static"
SIZES = (192, 512)
BG = (0x1F, 0x6F, 0x8B)
# The shapes on a 64-unit square, as in icon.svg.
CORNER, RING_R, RING_W, RING_ALPHA, LIGHT_R = 14.0, 20.0, 3.0, 0.55, 11.0
SAMPLES = 4


def _sample(x: float, y: float) -> tuple[float, float, float, float]:
    """RGBA (0..255, alpha 0..1) at a point of the 64-unit square."""
    cx, cy = min(max(x, CORNER), 64 - CORNER), min(max(y, CORNER), 64 - CORNER)
    if math.hypot(x - cx, y - cy) > CORNER:
        return (0.0, 0.0, 0.0, 0.0)
    r, g, b = (float(c) for c in BG)
    d = math.hypot(x - 32, y - 32)
    if d <= LIGHT_R:
        return (255.0, 255.0, 255.0, 1.0)
    if abs(d - RING_R) <= RING_W / 2:
        a = RING_ALPHA
        return (r + (255 - r) * a, g + (255 - g) * a, b + (255 - b) * a, 1.0)
    return (r, g, b, 1.0)


def pixels(size: int) -> bytes:
    """Rows of RGBA bytes, each led by PNG's filter byte 0."""
    out = bytearray()
    unit = 64 / size
    for py in range(size):
        out.append(0)
        for px in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]
            for sy in range(SAMPLES):
                for sx in range(SAMPLES):
                    r, g, b, a = _sample((px + (sx + 0.5) / SAMPLES) * unit,
                                         (py + (sy + 0.5) / SAMPLES) * unit)
                    acc[0] += r * a
                    acc[1] += g * a
                    acc[2] += b * a
                    acc[3] += a
            n = SAMPLES * SAMPLES
            alpha = acc[3] / n
            if alpha > 0:
                out += bytes(round(acc[i] / acc[3]) for i in range(3))
            else:
                out += b"\0\0\0"
            out.append(round(alpha * 255))
    return bytes(out)


def png(size: int) -> bytes:
    """A ``size`` x ``size`` RGBA PNG of the icon."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(pixels(size), 9)) + chunk(b"IEND", b""))


def main(argv: list[str]) -> int:
    """Write the icons, or with ``--check`` compare them with the files (exit 1 if not)."""
    check = "--check" in argv
    stale = []
    for size in SIZES:
        path = STATIC / f"icon-{size}.png"
        data = png(size)
        if check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(path.name)
        else:
            path.write_bytes(data)
            print(f"wrote {path} ({len(data)} bytes)")
    if stale:
        print(f"icons out of date: {', '.join(stale)}; run scripts/make_icons.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
