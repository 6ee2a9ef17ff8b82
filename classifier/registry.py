"""The model registry's small API: register a trained model file, find the active version, and
check a version's file against its recorded SHA-256 before anyone loads it (fail closed).

Django-aware (it uses ModelVersion and the default storage) but imports nothing from cases/ or
training/, and no TensorFlow. Activation writes audit events and therefore lives in cases/.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.core.files import File
from django.db import transaction

from classifier.hashing import sha256_of
from classifier.models import ModelVersion

_CHUNK = 1 << 20


class ModelFileError(Exception):
    """A version's model file is missing or does not match its recorded SHA-256."""


@transaction.atomic
def register_version(
    *,
    name: str,
    model_path: str | Path,
    threshold: float,
    temperature: float = 1.0,
    metrics: dict | None = None,
    card: dict | None = None,
    quality_reference: dict | None = None,
    notes: str = "",
    kind: str = ModelVersion.Kind.CLASSIFIER,
) -> ModelVersion:
    """Copy a model file into storage as models/<name>.keras and record a new INACTIVE version.

    The SHA-256 is computed from the local file before it is copied and checked again on the
    stored copy, so a version is never registered for a file that changed on its way in.
    """
    if ModelVersion.objects.filter(name=name).exists():
        raise ValueError(f"a model version named {name!r} already exists")
    path = Path(model_path)
    expected = sha256_of(path)
    version = ModelVersion(
        name=name,
        kind=kind,
        sha256=expected,
        is_active=False,
        threshold=float(threshold),
        temperature=float(temperature),
        metrics=metrics or {},
        card=card or {},
        quality_reference=quality_reference or {},
        notes=notes,
    )
    version.full_clean(exclude=["file"])
    with path.open("rb") as handle:
        version.file.save(f"{name}{path.suffix or '.keras'}", File(handle), save=False)
    version.save()
    _check_stored(version)  # any storage: S3 has no local path to return
    return version


def active_version(kind: str = ModelVersion.Kind.CLASSIFIER) -> ModelVersion | None:
    """The version of that kind that serves now, or None when none is active."""
    return ModelVersion.objects.filter(kind=kind, is_active=True).first()


def verify_file(version: ModelVersion) -> str:
    """Check the stored file's SHA-256 (raise ModelFileError) and return a local path to it.

    The error names the recorded and the actual hash, so a tampered or corrupted file is
    refused with a message that says exactly what did not match. Local storage only; with
    remote storage (S3) use local_model_file().
    """
    _check_stored(version)
    return version.file.path


@contextmanager
def local_model_file(version: ModelVersion) -> Iterator[str]:
    """A verified local path to the version's file, from any storage (a temp copy if remote).

    The hash is checked on the local bytes that the caller will load, so nothing can change
    between the check and the load.
    """
    storage = version.file.storage
    try:
        path = storage.path(version.file.name)
    except NotImplementedError:
        path = None
    if path is not None:
        yield verify_file(version)
        return
    with tempfile.NamedTemporaryFile(suffix=".keras") as handle:
        with storage.open(version.file.name, "rb") as remote:
            for chunk in iter(lambda: remote.read(_CHUNK), b""):
                handle.write(chunk)
        handle.flush()
        actual = sha256_of(handle.name)
        if actual != version.sha256:
            raise _mismatch(version, actual)
        yield handle.name


def _check_stored(version: ModelVersion) -> None:
    if not version.file or not version.file.storage.exists(version.file.name):
        raise ModelFileError(f"model file of version {version.name!r} is missing")
    with version.file.storage.open(version.file.name, "rb") as handle:
        actual = sha256_of(handle)
    if actual != version.sha256:
        raise _mismatch(version, actual)


def _mismatch(version: ModelVersion, actual: str) -> ModelFileError:
    return ModelFileError(
        f"model file {version.file.name} of version {version.name!r} does not match its "
        f"registry entry: expected sha256 {version.sha256}, found {actual}"
    )
