"""What an input file is, from its bytes, before a job that needs it is queued: an image is
decoded with Pillow (a page of HTML, a truncated PNG or a decompression bomb is refused);
a video or an audio file must start like a container ComfyUI's loaders read. The result
names the file's extension and content type as it is stored."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# ComfyUI takes images up to 16384 a side; this bounds the decode (and refuses bombs).
MAX_IMAGE_PIXELS = 64 * 2**20
IMAGE_FORMATS = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "MPO": ("jpg", "image/jpeg"),  # a phone's JPEG with a second frame
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tiff", "image/tiff"),
}


class MediaError(ValueError):
    """The bytes are not a file of the kind asked for; the message says what they are not."""


@dataclass(frozen=True)
class Media:
    kind: str  # image | video | audio
    extension: str
    content_type: str
    detail: str  # e.g. "PNG 512x512", for logs and messages


def identify(kind: str, data: bytes) -> Media:
    """What ``data`` is, as a file of ``kind``; raises MediaError."""
    if not data:
        raise MediaError("the file is empty")
    if kind == "image":
        return _image(data)
    if kind == "video":
        return _video(data)
    if kind == "audio":
        return _audio(data)
    raise MediaError(f"no check for {kind} files")


def _decode(data: bytes, *, verify: bool) -> tuple[str, int, int]:
    """Format and size; every pixel decoded, or (``verify``) the structure and checksums
    checked without decoding. Raises MediaError."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
            if verify:
                image.verify()
            elif size[0] * size[1] <= MAX_IMAGE_PIXELS:
                image.load()  # a truncated file fails here
            return image.format or "", size[0], size[1]
    except Image.DecompressionBombError as exc:
        raise MediaError(f"the image has too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise MediaError("the file is not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # Pillow's decode errors
        raise MediaError(f"the image does not decode: {exc}") from exc


def _image(data: bytes) -> Media:
    image_format, width, height = _decode(data, verify=True)
    if image_format not in IMAGE_FORMATS:
        raise MediaError(f"{image_format or 'this'} images are not taken")
    if width * height > MAX_IMAGE_PIXELS:
        raise MediaError(f"the image is {width}x{height}, over {MAX_IMAGE_PIXELS} pixels")
    _decode(data, verify=False)
    extension, content_type = IMAGE_FORMATS[image_format]
    return Media("image", extension, content_type, f"{image_format} {width}x{height}")


def _video(data: bytes) -> Media:
    head = data[:64]
    box = head[4:8]
    if box == b"ftyp":
        if head[8:12] == b"qt  ":
            return Media("video", "mov", "video/quicktime", "QuickTime")
        return Media("video", "mp4", "video/mp4", f"MP4 ({head[8:12].decode('latin-1')})")
    if box in (b"moov", b"mdat", b"wide", b"free"):  # an old QuickTime file has no ftyp
        return Media("video", "mov", "video/quicktime", "QuickTime")
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML
        if b"webm" in head:
            return Media("video", "webm", "video/webm", "WebM")
        return Media("video", "mkv", "video/x-matroska", "Matroska")
    if head.startswith((b"GIF87a", b"GIF89a")):
        # An animated GIF as a video input; stored without an image/* type, which the
        # worker would take for the wrong kind.
        return Media("video", "gif", "application/octet-stream", "GIF")
    raise MediaError("the file is not a video (MP4, MOV, WebM, Matroska or GIF)")


def _audio(data: bytes) -> Media:
    head = data[:64]
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return Media("audio", "wav", "audio/wav", "WAV")
    if head.startswith(b"fLaC"):
        return Media("audio", "flac", "audio/flac", "FLAC")
    if head.startswith(b"OggS"):
        return Media("audio", "ogg", "audio/ogg", "Ogg")
    if head.startswith(b"ID3"):
        return Media("audio", "mp3", "audio/mpeg", "MP3 (ID3)")
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return Media("audio", "aiff", "audio/aiff", "AIFF")
    if head[4:8] == b"ftyp":
        return Media("audio", "m4a", "audio/mp4", "MP4 audio")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return Media("audio", "webm", "audio/webm", "WebM audio")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        if head[1] & 0x06 == 0:  # layer bits 00: an ADTS (AAC) header, not MPEG audio
            return Media("audio", "aac", "audio/aac", "AAC (ADTS)")
        return Media("audio", "mp3", "audio/mpeg", "MPEG audio")
    raise MediaError("the file is not audio (WAV, FLAC, Ogg, MP3, AAC, M4A, WebM or AIFF)")
