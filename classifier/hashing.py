"""The SHA-256 of a model file: the registry records it, the engine, the detector and a warm
start check it before loading. Plain Python (no Django, no TensorFlow)."""

from __future__ import annotations

import hashlib
import os
from typing import IO

_CHUNK = 1 << 20


def sha256_of(source: str | os.PathLike | IO[bytes]) -> str:
    """Hex SHA-256 of a file path or an open binary file (read in chunks, rewound after)."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            return sha256_of(handle)
    digest = hashlib.sha256()
    source.seek(0)
    for chunk in iter(lambda: source.read(_CHUNK), b""):
        digest.update(chunk)
    source.seek(0)
    return digest.hexdigest()
