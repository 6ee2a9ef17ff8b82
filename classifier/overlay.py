"""PNG renderings of a Grad-CAM map: a JET overlay on the original image, and the raw map.

Encoding uses PNG compression level 1: several times faster than the default and only slightly
larger, which matters when every cell of a field gets one. No Django or TensorFlow imports.
"""

import cv2
import numpy as np

PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]


def _encode(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", image, PNG_PARAMS)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()


def _to_size(heatmap01: np.ndarray, height: int, width: int) -> np.ndarray:
    heat = np.clip(np.nan_to_num(np.asarray(heatmap01, dtype=np.float32)), 0.0, 1.0)
    if heat.shape != (height, width):
        heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
    return heat


def overlay_image(rgb_uint8: np.ndarray, heatmap01: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8 at the original size: (1 - alpha) * image + alpha * JET(heatmap)."""
    height, width = rgb_uint8.shape[:2]
    heat8 = (_to_size(heatmap01, height, width) * 255.0 + 0.5).astype(np.uint8)
    jet_bgr = cv2.applyColorMap(heat8, cv2.COLORMAP_JET)
    image_bgr = cv2.cvtColor(np.ascontiguousarray(rgb_uint8, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    blended = cv2.addWeighted(image_bgr, 1.0 - alpha, jet_bgr, alpha, 0.0)
    return cv2.cvtColor(blended, cv2.COLOR_BGR2RGB)


def overlay_png(rgb_uint8: np.ndarray, heatmap01: np.ndarray, alpha: float = 0.4) -> bytes:
    """PNG bytes of the JET overlay, the original image's size."""
    return _encode(cv2.cvtColor(overlay_image(rgb_uint8, heatmap01, alpha), cv2.COLOR_RGB2BGR))


def heatmap_png(heatmap01: np.ndarray) -> bytes:
    """PNG bytes of the raw map as 8-bit grayscale (0 = no evidence, 255 = the map's peak)."""
    heat = np.clip(np.nan_to_num(np.asarray(heatmap01, dtype=np.float32)), 0.0, 1.0)
    return _encode((heat * 255.0 + 0.5).astype(np.uint8))
