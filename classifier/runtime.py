"""The worker's model: loaded lazily once per process, reloaded when the active version changes.

Django-aware (reads the registry) but independent of cases/ and training/. TensorFlow is imported
only when a model is actually loaded, so importing this module is safe anywhere.
"""

import logging
import threading

from django.conf import settings

from classifier.models import ModelVersion
from classifier.registry import ModelFileError, active_version, local_model_file

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_loaded: dict = {"key": None, "engine": None}
_detector: dict = {"key": None, "detector": None}


class NoActiveModelError(RuntimeError):
    """No ModelVersion is active: analysis cannot run until an admin activates one."""


def _version_key(version: ModelVersion) -> tuple:
    return (version.pk, version.sha256, version.threshold, version.temperature)


def _load_engine(version: ModelVersion):
    from classifier.engine import Engine, ModelIntegrityError

    options = {
        "expected_sha256": version.sha256,
        "threshold": version.threshold,
        "temperature": version.temperature,
        "quality_reference": version.quality_reference or None,
        "batch_size": settings.ANALYSIS_BATCH_SIZE,
    }
    # Engine.load checks the hash again on exactly the bytes it loads (fail closed).
    try:
        with local_model_file(version) as path:
            return Engine.load(path, **options)
    except ModelFileError as exc:
        raise ModelIntegrityError(f"SHA-256 check failed, model refused: {exc}") from exc


def active_engine() -> tuple[ModelVersion, object]:
    """The active ModelVersion and its Engine; reloads when another version has been activated.

    Raises NoActiveModelError, or classifier.engine.ModelIntegrityError when the stored file's
    SHA-256 differs from the registry row (the model is then refused, never used).
    """
    version = active_version(ModelVersion.Kind.CLASSIFIER)
    if version is None:
        raise NoActiveModelError(
            "No model version is active. Activate one with `python manage.py activate_model NAME`."
        )
    key = _version_key(version)
    with _lock:
        if _loaded["key"] != key:
            logger.info("Loading model version %s (sha256 %s)", version.name, version.sha256[:12])
            _loaded["engine"] = None
            _loaded["key"] = None
            _loaded["engine"] = _load_engine(version)
            _loaded["key"] = key
        return version, _loaded["engine"]


def active_detector() -> tuple[ModelVersion, object]:
    """The active detector version and its loaded Detector; reloads after another is activated.

    Raises NoActiveModelError when no detector is active, DetectorIntegrityError when its file's
    SHA-256 differs from the registry row.
    """
    from classifier.detector import Detector, DetectorIntegrityError

    version = active_version(ModelVersion.Kind.DETECTOR)
    if version is None:
        raise NoActiveModelError(
            "No cell detector is active: field photographs cannot be analysed. Run "
            "`python manage.py install_default_model` or activate one with `activate_model NAME`."
        )
    key = _version_key(version)
    with _lock:
        if _detector["key"] != key:
            logger.info("Loading detector %s (sha256 %s)", version.name, version.sha256[:12])
            _detector["key"], _detector["detector"] = None, None
            try:
                with local_model_file(version) as path:
                    loaded = Detector.load(
                        path, expected_sha256=version.sha256, threshold=version.threshold
                    )
            except ModelFileError as exc:
                raise DetectorIntegrityError(
                    f"SHA-256 check failed, detector refused: {exc}"
                ) from exc
            _detector["detector"], _detector["key"] = loaded, key
        return version, _detector["detector"]


def forget_loaded_model() -> None:
    """Drop the cached engine and detector (tests; or to force a re-check of the file's hash)."""
    with _lock:
        _loaded["key"] = None
        _loaded["engine"] = None
        _detector["key"] = None
        _detector["detector"] = None
