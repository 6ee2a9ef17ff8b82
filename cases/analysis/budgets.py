"""The worker's memory budget: what an image may cost before it is decoded, and what a field may
yield after detection. Both refuse with a reason the field's failure shows.

A decoded image costs width x height x 3 bytes and the detector several times that, so the pixel
count is read from the header and checked against ANALYSIS_MAX_PIXELS before decoding (uploads
are held to UPLOAD_MAX_PIXELS already; this guards images that reach the worker another way or a
limit lowered since). A thin-smear field holds a few hundred red cells (at most 165 in the IML
annotations); a detector that reports more than FIELD_MAX_CELLS is looking at noise or at a
field of another magnification, and the field is refused rather than cut into thousands of crops.
"""

from __future__ import annotations

import io
from collections.abc import Sized

from django.conf import settings
from PIL import Image as PILImage


def check_pixel_budget(data: bytes) -> None:
    """Raise ValueError if the encoded image has more pixels than a worker may decode."""
    try:
        width, height = PILImage.open(io.BytesIO(data)).size  # the header only
    except Exception:
        return  # not readable: decoding says why
    if width * height > settings.ANALYSIS_MAX_PIXELS:
        raise ValueError(
            f"the image has {width}x{height} pixels; a worker decodes at most "
            f"{settings.ANALYSIS_MAX_PIXELS:,} (ANALYSIS_MAX_PIXELS)"
        )


def check_cell_count(boxes: Sized) -> None:
    """Raise ValueError if a field yielded more cells than any real smear field holds."""
    if len(boxes) > settings.FIELD_MAX_CELLS:
        raise ValueError(
            f"the detector found {len(boxes)} cells, more than a field may yield "
            f"({settings.FIELD_MAX_CELLS}, FIELD_MAX_CELLS): not a thin-smear field at the "
            "expected magnification?"
        )
