"""The one preprocessing function shared by serving, training and evaluation (no train/serve skew).

decode_image() turns the bytes of any accepted format (PNG, JPEG, TIFF, BMP; 8- or 16-bit;
grayscale, RGBA, palette, CMYK; EXIF-rotated) into an RGB uint8 array; preprocess() turns that
into the network's input: 150x150, float32 in [0, 1]. No Django or TensorFlow imports here.
"""

import io
from typing import Literal

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps

from classifier.architecture import INPUT_SIZE

# A field photograph is at most about 2:1 and a cell crop, even one cut by the field's edge, about
# 3:1: an image far thinner than either is neither (and crashes OpenCV's resizing further on).
MAX_ASPECT_RATIO = 10.0
MIN_FIELD_SIDE = 32  # pixels: the detector and the segmentation need a few cells' worth
# pixels: a detected cell cut by the field's edge can be a sliver; only a single pixel is refused
MIN_CELL_SIDE = 2


class ImageDecodeError(ValueError):
    """The bytes are not an image this platform can read; the message says why."""


class ImageShapeError(ValueError):
    """The image decodes, but its size cannot be a microscope field or a cell (a strip thousands
    of pixels long and a few wide, a single pixel): refused before any OpenCV or network call,
    with a message for the user (e.g. "image is 20000×8 pixels: too narrow to be a microscope
    field or a cell")."""


def check_shape(rgb: np.ndarray, kind: Literal["field", "cell"]) -> None:
    """Raise ImageShapeError unless an (H, W[, 3]) image can be a microscope field or a cell."""
    height, width = rgb.shape[:2]
    short, long = min(height, width), max(height, width)
    if short == 0 or long / short > MAX_ASPECT_RATIO:
        raise ImageShapeError(
            f"image is {width}×{height} pixels: too narrow to be a microscope field or a cell"
        )
    minimum, name = (
        (MIN_FIELD_SIDE, "microscope field") if kind == "field" else (MIN_CELL_SIDE, "cell")
    )
    if short < minimum:
        raise ImageShapeError(f"image is {width}×{height} pixels: too small to be a {name}")


def _to_rgb(img: PILImage.Image) -> PILImage.Image:
    if img.mode.startswith("I"):
        # 16-bit (or 32-bit integer) grayscale: map the full 16-bit range onto 8 bits.
        arr = np.asarray(img, dtype=np.float64)
        if arr.size and arr.max() > 255:
            arr = arr / 257.0
        arr8 = np.clip(arr.round(), 0, 255).astype(np.uint8)
        return PILImage.fromarray(arr8).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr8 = ((arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)).astype(np.uint8)
        return PILImage.fromarray(arr8).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparency onto white, as a slide background, rather than black.
        rgba = img.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def decode_image(data: bytes) -> np.ndarray:
    """Decode image bytes to an RGB uint8 array of shape (H, W, 3), EXIF orientation applied."""
    try:
        img = PILImage.open(io.BytesIO(data))
        img.load()
    except PILImage.DecompressionBombError as exc:
        raise ImageDecodeError(f"image has too many pixels ({exc})") from exc
    except Exception as exc:  # Pillow raises many types for broken files
        raise ImageDecodeError(f"not a readable image: {exc}") from exc
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not reject an otherwise good image
        pass
    rgb = _to_rgb(img)
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageDecodeError(f"unexpected image shape {arr.shape}")
    return arr


def resize_rgb(rgb: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Resize an RGB uint8 array to size x size (area averaging when shrinking, cubic when growing)."""
    import cv2

    h, w = rgb.shape[:2]
    if (h, w) == (size, size):
        return rgb
    interpolation = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_CUBIC
    return cv2.resize(rgb, (size, size), interpolation=interpolation)


def to_input(rgb_150: np.ndarray) -> np.ndarray:
    """uint8 150x150x3 -> float32 in [0, 1]."""
    return rgb_150.astype(np.float32) / 255.0


def preprocess(data: bytes) -> np.ndarray:
    """Image bytes -> the network input: float32 array (150, 150, 3) in [0, 1]."""
    return to_input(resize_rgb(decode_image(data)))
