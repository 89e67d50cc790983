"""Read a PNG's size and pixels without an imaging library (genstack's environments have
none), enough to tell a real picture from an empty or one-colour one: 8-bit grey, RGB or
RGBA, not interlaced, as ComfyUI's SaveImage writes (through Pillow)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = ["Png", "PngError", "read_png"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel


class PngError(ValueError):
    """Not a PNG this reader can decode."""


@dataclass(frozen=True)
class Png:
    width: int
    height: int
    channels: int
    pixels: bytes  # rows top to bottom, ``channels`` bytes per pixel, unfiltered

    def distinct_values(self) -> int:
        """How many different byte values the samples take (1: a flat picture)."""
        return len(set(self.pixels))

    def mean(self) -> float:
        return sum(self.pixels) / len(self.pixels)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(data: bytes, width: int, height: int, bpp: int) -> bytes:
    stride = width * bpp
    out = bytearray()
    prior = bytearray(stride)
    at = 0
    for _ in range(height):
        kind, row = data[at], bytearray(data[at + 1 : at + 1 + stride])
        at += 1 + stride
        for i in range(stride):
            left = row[i - bpp] if i >= bpp else 0
            up = prior[i]
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                corner = prior[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + _paeth(left, up, corner)) & 0xFF
            elif kind != 0:
                raise PngError(f"unknown filter type {kind}")
        out += row
        prior = row
    return bytes(out)


def read_png(data: bytes) -> Png:
    if not data.startswith(SIGNATURE):
        raise PngError("no PNG signature")
    at, header, compressed = len(SIGNATURE), b"", bytearray()
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        if (
            zlib.crc32(kind + body)
            != struct.unpack(">I", data[at + 8 + length : at + 12 + length])[0]
        ):
            raise PngError(f"bad CRC in chunk {kind!r}")
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            compressed += body
        elif kind == b"IEND":
            break
        at += 12 + length
    if len(header) != 13:
        raise PngError("no IHDR chunk")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in CHANNELS or interlace:
        raise PngError(f"unsupported: depth {depth}, colour type {colour}, interlace {interlace}")
    channels = CHANNELS[colour]
    raw = zlib.decompress(bytes(compressed))
    if len(raw) != height * (1 + width * channels):
        raise PngError(f"{len(raw)} bytes of image data for {width}x{height}x{channels}")
    return Png(width, height, channels, _unfilter(raw, width, height, channels))
