"""Validation of uploaded files, one at a time, before anything is stored.

Each check says in plain words why a file was refused. A zip archive is opened entry by entry
with limits on entry count, total uncompressed size and compression ratio (zip bombs), and each
entry is validated like a single upload. Nothing here touches the database or storage.
"""

import hashlib
import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from PIL import Image as PILImage

ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "TIFF": "tif", "BMP": "bmp"}
# Above this size (longest side, pixels) an image is taken to be a whole field, not a cell crop.
FIELD_MIN_SIDE = 600


@dataclass
class ValidFile:
    name: str
    data: bytes
    sha256: str
    extension: str
    width: int
    height: int
    kind: str  # "cell" or "field"


@dataclass
class Rejected:
    name: str
    reason: str


@dataclass
class ValidationResult:
    valid: list[ValidFile] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


class UploadError(ValueError):
    pass


def _mb(limit: int) -> str:
    return f"{limit} MB"


def validate_image_bytes(name: str, data: bytes, kind: str = "auto") -> ValidFile:
    """Check one file; raise UploadError with a readable reason if it cannot be accepted."""
    max_bytes = settings.UPLOAD_MAX_FILE_MB * 1024 * 1024
    if not data:
        raise UploadError("the file is empty")
    if len(data) > max_bytes:
        raise UploadError(
            f"the file is {len(data) / 1048576:.1f} MB; the limit is {_mb(settings.UPLOAD_MAX_FILE_MB)}"
        )
    try:
        img = PILImage.open(io.BytesIO(data))
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
    try:
        img.load()
    except Exception as exc:
        raise UploadError(f"the image is damaged and cannot be decoded ({exc})") from None
    if kind == "auto":
        kind = "field" if max(width, height) >= FIELD_MIN_SIDE else "cell"
    return ValidFile(
        name=name,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        extension=ALLOWED_FORMATS[img.format],
        width=width,
        height=height,
        kind=kind,
    )


def _zip_entries(name: str, data: bytes) -> Iterator[tuple[str, bytes | None, str | None]]:
    """Yield (entry name, bytes, error) for each file in a zip archive, enforcing bomb limits."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        yield name, None, "the zip archive is damaged and cannot be opened"
        return
    infos = [info for info in archive.infolist() if not info.is_dir()]
    infos = [i for i in infos if not i.filename.split("/")[-1].startswith(".")]
    infos = [i for i in infos if "__MACOSX/" not in i.filename]
    if len(infos) > settings.UPLOAD_ZIP_MAX_ENTRIES:
        yield (
            name,
            None,
            (
                f"the archive holds {len(infos)} files; the limit is {settings.UPLOAD_ZIP_MAX_ENTRIES}"
            ),
        )
        return
    total = sum(info.file_size for info in infos)
    if total > settings.UPLOAD_ZIP_MAX_TOTAL_MB * 1024 * 1024:
        yield (
            name,
            None,
            (
                f"the archive unpacks to {total / 1048576:.0f} MB; "
                f"the limit is {_mb(settings.UPLOAD_ZIP_MAX_TOTAL_MB)} (zip bomb?)"
            ),
        )
        return
    max_entry = settings.UPLOAD_MAX_FILE_MB * 1024 * 1024
    for info in infos:
        entry = f"{name}/{info.filename}"
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > settings.UPLOAD_ZIP_MAX_RATIO and info.file_size > 1024 * 1024:
            yield entry, None, f"compressed {ratio:.0f}:1, refused as a possible zip bomb"
            continue
        if info.file_size > max_entry:
            yield (
                entry,
                None,
                (
                    f"the file is {info.file_size / 1048576:.1f} MB; "
                    f"the limit is {_mb(settings.UPLOAD_MAX_FILE_MB)}"
                ),
            )
            continue
        if info.filename.lower().endswith(".zip"):
            yield entry, None, "archives inside archives are not accepted"
            continue
        try:
            with archive.open(info) as handle:
                # Read at most one byte past the declared size: a lying header cannot inflate us.
                content = handle.read(info.file_size + 1)
        except Exception as exc:
            yield entry, None, f"cannot be extracted from the archive ({exc})"
            continue
        if len(content) > info.file_size:
            yield entry, None, "the archive's size header is wrong (zip bomb?)"
            continue
        yield entry, content, None


def is_zip(name: str, data: bytes) -> bool:
    return name.lower().endswith(".zip") or data[:4] == b"PK\x03\x04"


def validate_files(files: Iterable[tuple[str, bytes]], kind: str = "auto") -> ValidationResult:
    """Validate a batch of (name, bytes); zip archives are expanded. Each file stands alone."""
    result = ValidationResult()
    for name, data in files:
        entries = _zip_entries(name, data) if is_zip(name, data) else [(name, data, None)]
        for entry_name, content, error in entries:
            if error is not None:
                result.rejected.append(Rejected(entry_name, error))
                continue
            try:
                result.valid.append(validate_image_bytes(entry_name, content, kind))
            except UploadError as exc:
                result.rejected.append(Rejected(entry_name, str(exc)))
    return result
