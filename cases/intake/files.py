"""Private files (images, heatmaps) are streamed through permission-checking views only."""

from __future__ import annotations

import mimetypes

from django.core.files.storage import default_storage
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404
from django.utils.cache import patch_cache_control

from cases.models import Image
from cases.summary import prediction_of


def _original(image: Image) -> FieldFile | None:
    return image.file


def _heatmap(image: Image) -> FieldFile | None:
    prediction = prediction_of(image)
    return prediction.heatmap if prediction else None


def _heatmap_raw(image: Image) -> FieldFile | None:
    prediction = prediction_of(image)
    return prediction.heatmap_raw if prediction else None


# The files of an image by the name used in URLs: the upload, the Grad-CAM overlay and the
# bare heatmap.
IMAGE_FILES = {"file": _original, "heatmap": _heatmap, "heatmap-raw": _heatmap_raw}


def stream_private_file(field_file: FieldFile | None) -> FileResponse:
    """Stream a private file; never a public URL (ARCHITECTURE.md, rule 6)."""
    if not field_file:
        raise Http404("No such file.")
    try:
        handle = default_storage.open(field_file.name)
    except FileNotFoundError:
        raise Http404("The file is missing from storage.") from None
    content_type = mimetypes.guess_type(field_file.name)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type)
    # Patient images may sit in the browser's cache, but never in a shared proxy's.
    patch_cache_control(response, private=True, max_age=3600)
    return response
