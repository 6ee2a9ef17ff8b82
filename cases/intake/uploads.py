"""Validation of uploaded files, one at a time, before anything is stored.

Each check says in plain words why a file was refused. Files are read as streams, never whole:
an upload arrives as a temporary file on disk (FILE_UPLOAD_MAX_MEMORY_SIZE) or a small in-memory
one, its size is known before it is read, its SHA-256 is computed in chunks, and the image is
judged from its header (format, pixel count: decompression bombs are refused before decoding)
plus a decode check whose memory is bounded (a small image is decoded; a large JPEG is decoded
at 1/8 scale; a large PNG has every chunk's checksum verified without inflating it). A zip
archive is opened entry by entry (cases.intake.archives): every entry is checked like a single
upload, refused with a reason, or skipped with a reason. Nothing here touches the database or
storage.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from django.conf import settings
from PIL import Image as PILImage

from cases.intake.archives import EntryError, archive_entries, unpack
from classifier.hashing import sha256_of

ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "TIFF": "tif", "BMP": "bmp"}
# Above this size (longest side, pixels) an image is taken to be a whole field, not a cell crop.
FIELD_MIN_SIDE = 600
# Images up to this many pixels are decoded in full at upload (at most about 16 MB); larger ones
# get the bounded check of their format, and the worker decodes them under its own pixel budget.
FULL_DECODE_PIXELS = 4_000_000
MB = 1024 * 1024

# The content of one uploaded file: bytes, or a readable, seekable binary file (an UploadedFile).
UploadSource = bytes | IO[bytes]


@dataclass
class ValidFile:
    name: str
    sha256: str
    extension: str
    width: int
    height: int
    kind: str  # "cell" or "field"
    size: int
    # The content, rewound. Open only while the batch that produced it is being iterated
    # (checked_uploads): store it before asking for the next file.
    content: IO[bytes] | None = field(default=None, repr=False)


@dataclass
class Rejected:
    name: str
    reason: str


@dataclass
class Skipped:
    """An archive entry that is not an image to check (a folder, macOS metadata)."""

    name: str
    reason: str


@dataclass
class ValidationResult:
    valid: list[ValidFile] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class UploadError(ValueError):
    pass


def _as_stream(source: UploadSource) -> IO[bytes]:
    return io.BytesIO(source) if isinstance(source, bytes | bytearray) else source


def stream_size(stream: IO[bytes]) -> int:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


def _check_size(size: int) -> None:
    if not size:
        raise UploadError("the file is empty")
    if size > settings.UPLOAD_MAX_FILE_MB * MB:
        raise UploadError(
            f"the file is {size / MB:.1f} MB; the limit is {settings.UPLOAD_MAX_FILE_MB} MB"
        )


def _open_header(stream: IO[bytes]) -> PILImage.Image:
    """The image with only its header read; refuses what is not an allowed, sane image."""
    try:
        img = PILImage.open(stream)
    except PILImage.DecompressionBombError:
        raise UploadError("the image has far too many pixels (decompression bomb)") from None
    except Exception:
        raise UploadError("not an image (allowed: PNG, JPEG, TIFF, BMP)") from None
    if img.format not in ALLOWED_FORMATS:
        raise UploadError(
            f"{img.format or 'unknown'} images are not accepted (PNG, JPEG, TIFF, BMP)"
        )
    width, height = img.size
    # The pixel count comes from the header: refuse a decompression bomb before decoding it.
    if width * height > settings.UPLOAD_MAX_PIXELS:
        raise UploadError(
            f"the image has {width}x{height} pixels; the limit is {settings.UPLOAD_MAX_PIXELS:,}"
        )
    if width < 8 or height < 8:
        raise UploadError(f"the image is only {width}x{height} pixels")
    return img


def _check_decodes(img: PILImage.Image) -> None:
    """Is the image data intact? With memory bounded by FULL_DECODE_PIXELS, whatever its size."""
    width, height = img.size
    try:
        if width * height <= FULL_DECODE_PIXELS:
            img.load()
        elif img.format == "JPEG":
            # DCT scaling: every byte of the stream is decoded, 1/64 of the pixels are kept.
            img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
            img.load()
        elif img.format == "PNG":
            img.verify()  # each chunk's CRC, IEND present: catches truncation and bit rot
        # A large TIFF or BMP is judged by its header here; the worker decodes it in budget.
    except Exception as exc:
        raise UploadError(f"the image is damaged and cannot be decoded ({exc})") from None


def check_image(name: str, stream: IO[bytes], kind: str = "auto") -> ValidFile:
    """Check one file; raise UploadError with a readable reason if it cannot be accepted."""
    size = stream_size(stream)
    _check_size(size)
    img = _open_header(stream)
    width, height, extension = img.width, img.height, ALLOWED_FORMATS[img.format]
    _check_decodes(img)
    if kind == "auto":
        kind = "field" if max(width, height) >= FIELD_MIN_SIDE else "cell"
    return ValidFile(
        name=name,
        sha256=sha256_of(stream),  # in chunks; leaves the stream rewound
        extension=extension,
        width=width,
        height=height,
        kind=kind,
        size=size,
        content=stream,
    )


def _checked(name: str, stream: IO[bytes], kind: str) -> ValidFile | Rejected:
    try:
        return check_image(name, stream, kind)
    except UploadError as exc:
        return Rejected(name, str(exc))


def is_zip(name: str, stream: IO[bytes]) -> bool:
    magic = stream.read(4)
    stream.seek(0)
    return name.lower().endswith(".zip") or magic == b"PK\x03\x04"


def _checked_archive(
    name: str, stream: IO[bytes], kind: str
) -> Iterator[ValidFile | Rejected | Skipped]:
    for entry in archive_entries(name, stream):
        if entry.skipped:
            yield Skipped(entry.name, entry.skipped)
        elif entry.reason:
            yield Rejected(entry.name, entry.reason)
        else:
            try:
                content = unpack(entry)
            except EntryError as exc:
                yield Rejected(entry.name, str(exc))
                continue
            with content:
                yield _checked(entry.name, content, kind)


def checked_uploads(
    files: Iterable[tuple[str, UploadSource]], kind: str = "auto"
) -> Iterator[ValidFile | Rejected | Skipped]:
    """An outcome for every uploaded file and every archive entry, one at a time.

    A ValidFile's content is open only until the next outcome is asked for: the caller stores it
    (or drops it) first, so at most one file's content is held at any time.
    """
    for name, source in files:
        stream = _as_stream(source)
        if is_zip(name, stream):
            yield from _checked_archive(name, stream, kind)
        else:
            yield _checked(name, stream, kind)


def validate_files(
    files: Iterable[tuple[str, UploadSource]], kind: str = "auto"
) -> ValidationResult:
    """Validate a batch of uploads (zip archives expanded): each file's outcome, contents not kept."""
    result = ValidationResult()
    for outcome in checked_uploads(files, kind):
        if isinstance(outcome, ValidFile):
            result.valid.append(outcome)
        elif isinstance(outcome, Rejected):
            result.rejected.append(outcome)
        else:
            result.skipped.append(outcome)
    return result
