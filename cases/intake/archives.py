"""Zip archives of uploads: every entry gets an outcome, and unpacking is bounded.

An entry is either checked as an upload (its content streamed into a spooled temporary file, at
most its declared size plus one byte, so a lying header cannot inflate us), refused with a reason
(a path that leaves the archive such as `../x.png` or `..\\..\\win.png`, an absolute path, an
archive inside the archive, over the per-file limit, compressed suspiciously well), or skipped
with a reason (folders, macOS `__MACOSX/` metadata and hidden files such as `.DS_Store`: never
images). Archive-wide limits (entry count, total unpacked size) refuse the whole archive before
anything is unpacked. Nothing here touches the database or storage.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from django.conf import settings

MB = 1024 * 1024
# Entries smaller than this are never refused for their compression ratio (tiny files compress
# well for no sinister reason, and cannot amplify much).
RATIO_MIN_BYTES = MB
# An unpacked entry stays in memory up to this size, then goes to a temporary file on disk.
SPOOL_BYTES = 256 * 1024
_COPY_CHUNK = MB
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass
class ArchiveEntry:
    """One entry of an archive: refused (`reason`), skipped (`skipped`) or to be checked."""

    name: str  # "<archive name>/<entry path>"
    info: zipfile.ZipInfo | None = None
    archive: zipfile.ZipFile | None = None
    reason: str = ""
    skipped: str = ""


def _mb(size: int) -> str:
    return f"{size / MB:.1f} MB"


def _leaves_archive(filename: str) -> bool:
    parts = re.split(r"[\\/]", filename)
    return filename.startswith(("/", "\\")) or bool(_DRIVE.match(filename)) or ".." in parts


def _skip_reason(info: zipfile.ZipInfo) -> str:
    if info.is_dir():
        return "a folder"
    parts = re.split(r"[\\/]", info.filename)
    if "__MACOSX" in parts:
        return "macOS metadata"
    if parts[-1].startswith("."):
        return "a hidden or system file"
    return ""


def _entry_refusal(info: zipfile.ZipInfo) -> str:
    """Why one entry is refused before unpacking it ('' when it may be unpacked)."""
    if info.flag_bits & 0x1:
        return "the entry is encrypted"
    if info.filename.lower().endswith(".zip"):
        return "archives inside archives are not accepted"
    if info.file_size > settings.UPLOAD_MAX_FILE_MB * MB:
        return f"the file is {_mb(info.file_size)}; the limit is {settings.UPLOAD_MAX_FILE_MB} MB"
    ratio = info.file_size / max(info.compress_size, 1)
    if ratio > settings.UPLOAD_ZIP_MAX_RATIO and info.file_size > RATIO_MIN_BYTES:
        return f"compressed {ratio:.0f}:1, refused as a possible zip bomb"
    return ""


def _classify(archive_name: str, archive: zipfile.ZipFile) -> list[ArchiveEntry]:
    entries = []
    for info in archive.infolist():
        entry = ArchiveEntry(f"{archive_name}/{info.filename}", info, archive)
        # Checked first: such a path is reported even where it looks like a hidden file.
        if _leaves_archive(info.filename):
            entry.reason = "its path leaves the archive ('..' or an absolute path); refused"
        else:
            entry.skipped = _skip_reason(info)
            entry.reason = "" if entry.skipped else _entry_refusal(info)
        entries.append(entry)
    return entries


def _archive_refusal(entries: list[ArchiveEntry]) -> str:
    """Why the whole archive is refused before anything is unpacked ('' when it is not)."""
    files = [e for e in entries if not e.skipped]
    if len(files) > settings.UPLOAD_ZIP_MAX_ENTRIES:
        return (
            f"the archive holds {len(files)} files; the limit is {settings.UPLOAD_ZIP_MAX_ENTRIES}"
        )
    total = sum(e.info.file_size for e in files)
    if total > settings.UPLOAD_ZIP_MAX_TOTAL_MB * MB:
        return (
            f"the archive unpacks to {total / MB:.0f} MB; "
            f"the limit is {settings.UPLOAD_ZIP_MAX_TOTAL_MB} MB (zip bomb?)"
        )
    return ""


def archive_entries(name: str, stream: IO[bytes]) -> Iterator[ArchiveEntry]:
    """Every entry of the zip archive in `stream` with its outcome, or one refusal for the
    archive itself (damaged, too many files, unpacks too large)."""
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError):
        yield ArchiveEntry(name, reason="the zip archive is damaged and cannot be opened")
        return
    entries = _classify(name, archive)
    refusal = _archive_refusal(entries)
    if refusal:
        yield ArchiveEntry(name, reason=refusal)
        return
    yield from entries


class EntryError(ValueError):
    """An entry could not be unpacked; the message says why."""


def unpack(entry: ArchiveEntry) -> IO[bytes]:
    """The entry's content in a spooled temporary file (rewound), read in bounded chunks and
    never more than one byte past its declared size. The caller closes it."""
    info = entry.info
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    try:
        with entry.archive.open(info) as source:
            budget = info.file_size + 1
            while budget > 0:
                chunk = source.read(min(_COPY_CHUNK, budget))
                if not chunk:
                    break
                out.write(chunk)
                budget -= len(chunk)
    except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, ValueError) as exc:
        out.close()
        raise EntryError(f"cannot be extracted from the archive ({exc})") from None
    if out.tell() > info.file_size:
        out.close()
        raise EntryError("the archive's size header is wrong (zip bomb?)")
    out.seek(0)
    return out
