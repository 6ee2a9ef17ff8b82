"""Writing files to storage and naming their content: one way for every job.

A stored file's path is built by its model field's `upload_to` callable (cases.models), never by
hand; `file_store` writes through it without saving the row, so the heavy I/O can happen before
the database transaction that creates the row.
"""

import io
import posixpath

from django.core.files.base import ContentFile
from django.db import models

from classifier.hashing import sha256_of


def file_store(instance: models.Model, field_name: str, filename: str, data: bytes) -> str:
    """Store `data` at the path `instance`'s `field_name` builds for `filename`; the stored name.

    `instance` need not be saved: only the attributes its upload_to reads must be set.
    """
    field = instance._meta.get_field(field_name)
    name = field.generate_filename(instance, filename)
    return field.storage.save(name, ContentFile(data), max_length=field.max_length)


def file_folder(instance: models.Model, field_name: str) -> str:
    """The folder `instance`'s `field_name` stores its files in (nothing is written)."""
    field = instance._meta.get_field(field_name)
    return posixpath.dirname(field.generate_filename(instance, "probe.png"))


def content_sha256(data: bytes) -> str:
    """Hex SHA-256 of a file's bytes (the same digest the model registry records)."""
    return sha256_of(io.BytesIO(data))
