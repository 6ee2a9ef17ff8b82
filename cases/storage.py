"""Writing files to storage and naming their content: one way for every job.

A stored file's path is built by its model field's `upload_to` callable (cases.models), never by
hand; `file_store` writes through it without saving the row, so the heavy I/O can happen before
the database transaction that creates the row.
"""

import io
import logging
import posixpath

from django.core.files import File
from django.core.files.base import ContentFile
from django.db import models

from classifier.hashing import sha256_of

logger = logging.getLogger(__name__)


class StorageUnavailable(RuntimeError):
    """Storage refused a write (read-only, full, unreachable); the message names no path."""


def storage_error_text(exc: OSError) -> str:
    """A storage error as users may read it: the reason, never the server's paths."""
    return f"storage error: {exc.strerror or type(exc).__name__}"


def file_store(instance: models.Model, field_name: str, filename: str, data: bytes) -> str:
    """Store `data` at the path `instance`'s `field_name` builds for `filename`; the stored name.

    `instance` need not be saved: only the attributes its upload_to reads must be set.
    """
    field = instance._meta.get_field(field_name)
    name = field.generate_filename(instance, filename)
    return field.storage.save(name, ContentFile(data), max_length=field.max_length)


def stream_store(instance: models.Model, field_name: str, filename: str, content) -> str:
    """Stream an open file to the path `instance`'s `field_name` builds; the stored name.

    A storage fault raises StorageUnavailable (its text names no path) after deleting whatever
    part of the file was written (a full disk leaves half a file behind)."""
    field = instance._meta.get_field(field_name)
    name = field.generate_filename(instance, filename)
    try:
        return field.storage.save(name, File(content), max_length=field.max_length)
    except OSError as exc:
        logger.warning("Storage refused %s", name, exc_info=True)
        file_delete(field.storage, name)
        raise StorageUnavailable(storage_error_text(exc)) from None


def file_delete(storage, name: str) -> bool:
    """Delete a stored file if it is there; a storage fault is logged, not raised."""
    try:
        storage.delete(name)
    except OSError:
        logger.warning("Could not delete %s", name, exc_info=True)
        return False
    return True


def file_folder(instance: models.Model, field_name: str) -> str:
    """The folder `instance`'s `field_name` stores its files in (nothing is written)."""
    field = instance._meta.get_field(field_name)
    return posixpath.dirname(field.generate_filename(instance, "probe.png"))


def content_sha256(data: bytes) -> str:
    """Hex SHA-256 of a file's bytes (the same digest the model registry records)."""
    return sha256_of(io.BytesIO(data))
