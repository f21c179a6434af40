"""Image files for the upload tests, made in memory: a digit drawn off-centre, and every kind of bad file."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def drawn_seven(size=(240, 160), offset=(20, 15), ink="black", paper="white", mode="RGB") -> Image.Image:
    """A thick '7' in the top-left part of a landscape page: off-centre, on a light background by default."""
    image = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(image)
    x, y = offset
    draw.line([(x, y), (x + 60, y)], fill=ink, width=10)
    draw.line([(x + 60, y), (x + 25, y + 100)], fill=ink, width=10)
    return image


def png_seven() -> bytes:
    return _save(drawn_seven(), "PNG")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def decompression_bomb() -> bytes:
    """A PNG whose header claims 30000×30000 pixels (900 MP) in a few hundred bytes: never to be decoded."""
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = zlib.compress(b"\x00" * (30000 + 1) * 4)  # a few rows; the rest is missing, which must not matter
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def sixteen_bit_png() -> bytes:
    grey = np.asarray(drawn_seven(mode="L"), dtype=np.uint16) * 257  # 0..65535
    return _save(Image.fromarray(grey), "PNG")  # mode I;16


def cmyk_jpeg() -> bytes:
    return _save(drawn_seven(ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="CMYK"), "JPEG", quality=95)


def rgba_transparent_png(ink=(0, 0, 0, 255)) -> bytes:
    """A digit on a fully transparent background (as drawing apps export it)."""
    return _save(drawn_seven(ink=ink, paper=(0, 0, 0, 0), mode="RGBA"), "PNG")


def animated_gif() -> bytes:
    """Frame 0 shows the digit; frame 1 is blank (only the first frame may be used)."""
    first = drawn_seven(mode="L").convert("P")
    blank = Image.new("L", first.size, 255).convert("P")
    return _save(first, "GIF", save_all=True, append_images=[blank], duration=200, loop=0)


def webp_seven() -> bytes:
    return _save(drawn_seven(), "WEBP", quality=90)


def bmp_seven() -> bytes:
    return _save(drawn_seven(), "BMP")


def truncated_png() -> bytes:
    data = png_seven()
    return data[: len(data) // 2]


def corrupt_jpeg() -> bytes:
    data = bytearray(_save(drawn_seven(), "JPEG"))
    data[200:600] = bytes(range(256)) + bytes(144)  # garbage in the entropy-coded data and tables
    return bytes(data[:900])


def blank_png() -> bytes:
    return _save(Image.new("RGB", (100, 100), "white"), "PNG")


def over_cap() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(10 * 1024 * 1024 + 1)


# name → (bytes, whether it must work); rejected files must get one sentence
UPLOADS = {
    "png": (png_seven, True),
    "16-bit png": (sixteen_bit_png, True),
    "cmyk jpeg": (cmyk_jpeg, True),
    "rgba with transparency": (rgba_transparent_png, True),
    "light ink on transparency": (lambda: rgba_transparent_png(ink=(255, 255, 255, 255)), True),
    "animated gif": (animated_gif, True),
    "webp": (webp_seven, True),
    "bmp": (bmp_seven, True),
    "not an image": (lambda: b"%PDF-1.4 this is not a picture\n" * 20, False),
    "truncated png": (truncated_png, False),
    "corrupt jpeg": (corrupt_jpeg, False),
    "decompression bomb": (decompression_bomb, False),
    "empty file": (lambda: b"", False),
    "over the upload cap": (over_cap, False),
    "blank image": (blank_png, False),
}
