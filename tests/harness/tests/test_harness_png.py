"""genstack.testing.png against PNGs written here, row by row with each of PNG's five filters
(the encoder below is PNG's definition of them), and against Pillow where it is installed."""

from __future__ import annotations

import io
import random
import struct
import zlib

import pytest

from genstack.testing.png import PngError, read_png


def _predict(kind: int, left: int, up: int, corner: int) -> int:
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    if kind == 4:
        p = left + up - corner
        pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
        return left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
    return 0


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode(width: int, height: int, channels: int, pixels: bytes) -> bytes:
    """A PNG whose row r uses filter r % 5."""
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    stride = width * channels
    raw = bytearray()
    prior = bytes(stride)
    for r in range(height):
        row = pixels[r * stride : (r + 1) * stride]
        kind = r % 5
        raw.append(kind)
        for i in range(stride):
            left = row[i - channels] if i >= channels else 0
            corner = prior[i - channels] if i >= channels else 0
            raw.append((row[i] - _predict(kind, left, prior[i], corner)) & 0xFF)
        prior = row
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(raw)))
        + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_every_filter_decodes_to_the_pixels_written(channels: int) -> None:
    rng = random.Random(channels)
    width, height = 7, 11
    pixels = bytes(rng.randrange(256) for _ in range(width * height * channels))
    png = read_png(encode(width, height, channels, pixels))
    assert (png.width, png.height, png.channels) == (width, height, channels)
    assert png.pixels == pixels
    assert png.distinct_values() == len(set(pixels))


def test_a_flat_picture_has_one_value() -> None:
    png = read_png(encode(4, 4, 3, bytes([9]) * 48))
    assert (png.distinct_values(), png.mean()) == (1, 9.0)


def test_what_pillow_writes_reads_the_same() -> None:
    image_module = pytest.importorskip("PIL.Image")
    rng = random.Random(0)
    pixels = bytes(rng.randrange(256) for _ in range(32 * 24 * 3))
    out = io.BytesIO()
    image_module.frombytes("RGB", (32, 24), pixels).save(out, format="PNG")
    assert read_png(out.getvalue()).pixels == pixels


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"GIF89a", "signature"),
        (encode(2, 2, 3, bytes(12))[:-5] + b"\x00" * 5, "CRC"),
        (b"\x89PNG\r\n\x1a\n" + _chunk(b"IEND", b""), "IHDR"),
    ],
)
def test_what_is_not_a_readable_png_is_refused(data: bytes, text: str) -> None:
    with pytest.raises(PngError, match=text):
        read_png(data)
