"""What an input file is, from its bytes: images decoded with Pillow, videos and audio by
their container's signature (genstack.gateway.media)."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from genstack.gateway.media import MAX_IMAGE_PIXELS, MediaError, identify
from genstack.testing.job_worker import png_bytes, wav_bytes


def encoded(image_format: str, size: tuple[int, int] = (20, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(out, format=image_format)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` and holds one empty row (a bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("image_format", "extension", "content_type"),
    [
        ("PNG", "png", "image/png"),
        ("JPEG", "jpg", "image/jpeg"),
        ("WEBP", "webp", "image/webp"),
        ("GIF", "gif", "image/gif"),
        ("BMP", "bmp", "image/bmp"),
        ("TIFF", "tiff", "image/tiff"),
    ],
)
def test_images_that_decode_are_named_by_their_format(
    image_format: str, extension: str, content_type: str
) -> None:
    media = identify("image", encoded(image_format))
    assert (media.kind, media.extension, media.content_type) == ("image", extension, content_type)
    assert media.detail == f"{image_format} 20x10"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"<!doctype html><p>hello</p>", "not an image"),
        (png_bytes(64, 64)[:60], "does not decode"),  # cut inside its pixel data
        (encoded("JPEG", (64, 64))[:200], "does not decode"),
        (png_header_only(9000, 9000), f"over {MAX_IMAGE_PIXELS} pixels"),
        (png_header_only(60000, 60000), "too many pixels"),
        (encoded("ICO", (16, 16)), "ICO images are not taken"),
    ],
)
def test_what_is_no_usable_image_is_refused_saying_why(data: bytes, fragment: str) -> None:
    with pytest.raises(MediaError, match=fragment):
        identify("image", data)


def test_a_png_with_a_bad_checksum_is_refused() -> None:
    data = bytearray(png_bytes(8, 8))
    data[-20] ^= 0xFF  # inside IDAT: its CRC no longer matches
    with pytest.raises(MediaError):
        identify("image", bytes(data))


@pytest.mark.parametrize(
    ("data", "extension", "content_type"),
    [
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "mp4", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ", "mov", "video/quicktime"),
        (b"\x00\x00\x00\x08wide\x00\x00\x00\x00mdat", "mov", "video/quicktime"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "webm", "video/webm"),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", "mkv", "video/x-matroska"),
        (encoded("GIF"), "gif", "application/octet-stream"),
    ],
)
def test_videos_by_their_container(data: bytes, extension: str, content_type: str) -> None:
    media = identify("video", data + bytes(32))
    assert (media.extension, media.content_type) == (extension, content_type)


@pytest.mark.parametrize(
    ("data", "extension", "content_type"),
    [
        (wav_bytes(0.05), "wav", "audio/wav"),
        (b"fLaC\x00\x00\x00\x22", "flac", "audio/flac"),
        (b"OggS\x00\x02", "ogg", "audio/ogg"),
        (b"ID3\x04\x00\x00", "mp3", "audio/mpeg"),
        (b"\xff\xfb\x90\x64", "mp3", "audio/mpeg"),  # an MPEG-1 layer III frame header
        (b"\xff\xf1\x50\x80", "aac", "audio/aac"),  # ADTS
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "m4a", "audio/mp4"),
        (b"FORM\x00\x00\x10\x00AIFF", "aiff", "audio/aiff"),
    ],
)
def test_audio_by_its_container(data: bytes, extension: str, content_type: str) -> None:
    media = identify("audio", data + bytes(32))
    assert (media.extension, media.content_type) == (extension, content_type)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("video", png_bytes()),
        ("video", b"RIFF\x00\x00\x00\x00AVI LIST"),  # AVI: not a container taken
        ("audio", png_bytes()),
        ("audio", b"<html></html>"),
        ("audio", b"\x00\x00\x00\x18ftyp"[:5]),  # too short to be anything
    ],
)
def test_what_is_not_of_the_kind_is_refused(kind: str, data: bytes) -> None:
    with pytest.raises(MediaError, match="not a video" if kind == "video" else "not audio"):
        identify(kind, data)
