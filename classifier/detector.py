"""The learned cell detector: a small fully convolutional network that finds every red cell in a
whole-field photograph, touching and clumped ones included.

How it sees a field (CenterNet-style, at reduced resolution so it runs on a CPU):
1. the field is rescaled so a typical red cell is about CELL_PX pixels across. The cell size is
   estimated from the photograph itself (classical foreground + inscribed radius, robust to
   clumping), so a lab's own magnification and camera are handled without configuration;
2. the network predicts, on a grid STRIDE times coarser, a heat map of cell centres (one peak
   per cell, so two touching cells are two peaks), each cell's width and height, and the
   sub-grid offset of its centre;
3. peaks above the version's threshold (a 3x3 local maximum) become boxes; overlapping
   duplicates are suppressed; at most MAX_CELLS boxes per field (a noise image cannot make
   thousands). Boxes that reach the image's edge are kept but flagged on_border: they are shown
   and never counted.
White cells, platelets, stain debris and scale bars are not red cells in the annotations the
detector learns from, so it learns not to report them.

Keras is imported lazily; the web process imports this module only for its constants.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from classifier.cells import CellBox, clip_box, touches_border
from classifier.hashing import sha256_of
from classifier.preprocess import check_shape

CELL_PX = 40.0  # typical red cell diameter, in pixels of the rescaled ("work") field
STRIDE = 4  # the output grid is this much coarser than the work field
MULTIPLE = 16  # the network's input sides must be multiples of this
SIZE_UNIT = 40.0  # size head predicts log(side / SIZE_UNIT), sides in work pixels
MAX_CELLS = 1500  # per field: a thin smear field at this magnification holds a few hundred
MIN_SCALE, MAX_SCALE = 0.1, 2.0
DEFAULT_THRESHOLD = 0.35
# A cell's box is about 1.28x the diameter inscribed in its foreground blob (measured on the
# IML-Malaria annotations: the ratio is 0.78 +- 0.04 over fields), so the estimate is a box size.
INSCRIBED_TO_BOX = 1.28
NMS_IOU = 0.5
OUTPUT_CHANNELS = 5  # centre heat, log w, log h, offset x, offset y
OUTPUT_LAYER = "detections"


class DetectorIntegrityError(RuntimeError):
    """The detector file's SHA-256 does not match the registry: it is refused, never loaded."""


# --- scale --------------------------------------------------------------------------------------


def estimate_cell_diameter(rgb_uint8: np.ndarray) -> float | None:
    """Typical red-cell diameter in the photograph's pixels, or None where no cells stand out.

    Uses the classical foreground (cells darker than the slide in green) and the median over blobs
    of the largest inscribed radius, which a clump of cells shares with a single cell.
    """
    from classifier.segment import foreground_mask, typical_radius

    height, width = rgb_uint8.shape[:2]
    scale = min(1.0, 640.0 / max(height, width))
    small = cv2.resize(rgb_uint8, (max(1, round(width * scale)), max(1, round(height * scale))))
    mask = foreground_mask(small)
    distance = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    radius = typical_radius(mask, distance)
    if radius < 3.0:
        return None
    return INSCRIBED_TO_BOX * 2.0 * radius / scale


def work_scale(rgb_uint8: np.ndarray) -> float:
    """The factor that brings a typical cell of this field to CELL_PX pixels across."""
    diameter = estimate_cell_diameter(rgb_uint8)
    if diameter is None:
        return float(np.clip(640.0 / max(rgb_uint8.shape[:2]), MIN_SCALE, MAX_SCALE))
    return float(np.clip(CELL_PX / diameter, MIN_SCALE, MAX_SCALE))


def to_work(rgb_uint8: np.ndarray, scale: float) -> np.ndarray:
    """The field rescaled by scale and padded (slide colour) to sides that are multiples of 16."""
    height, width = rgb_uint8.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(rgb_uint8, size, interpolation=interpolation)
    return pad_to_multiple(small)


def pad_to_multiple(rgb: np.ndarray, multiple: int = MULTIPLE) -> np.ndarray:
    """Pad bottom and right with the slide's colour (the median pixel) to multiples of `multiple`."""
    height, width = rgb.shape[:2]
    ph, pw = (-height) % multiple, (-width) % multiple
    if not ph and not pw:
        return rgb
    fill = np.median(rgb.reshape(-1, 3)[:: max(1, rgb.size // 30000)], axis=0).astype(np.uint8)
    out = np.empty((height + ph, width + pw, 3), np.uint8)
    out[:] = fill
    out[:height, :width] = rgb
    return out


# --- the network --------------------------------------------------------------------------------


def build_detector(learning_rate: float = 2e-3, seed: int | None = None):
    """A small encoder-decoder: stride-16 context, stride-4 output of OUTPUT_CHANNELS channels."""
    import keras
    from keras import layers

    if seed is not None:
        keras.utils.set_random_seed(seed)

    def conv(x, filters, name, strides=1, dilation=1):
        x = layers.Conv2D(
            filters, 3, strides=strides, dilation_rate=dilation, padding="same", use_bias=False,
            name=f"{name}_conv",
        )(x)  # fmt: skip
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    inputs = keras.Input(shape=(None, None, 3), name="field")
    x = conv(inputs, 16, "stem", strides=2)
    s4 = conv(conv(x, 32, "down4", strides=2), 32, "block4")
    s8 = conv(conv(s4, 64, "down8", strides=2), 64, "block8")
    x = conv(conv(s8, 96, "down16", strides=2), 96, "block16")
    x = conv(x, 96, "context16", dilation=2)
    x = layers.UpSampling2D(2, name="up8")(x)
    x = conv(layers.Concatenate(name="merge8")([x, s8]), 64, "fuse8")
    x = layers.UpSampling2D(2, name="up4")(x)
    x = conv(layers.Concatenate(name="merge4")([x, s4]), 32, "fuse4")
    x = conv(x, 32, "head")
    # Centre heat starts near 0.1 everywhere so the focal loss is stable from the first step.
    heat = layers.Conv2D(
        1, 1, activation="sigmoid", bias_initializer=keras.initializers.Constant(-2.19),
        name="centre",
    )(x)  # fmt: skip
    size = layers.Conv2D(2, 1, name="size")(x)
    offset = layers.Conv2D(2, 1, activation="sigmoid", name="offset")(x)
    outputs = layers.Concatenate(name=OUTPUT_LAYER)([heat, size, offset])
    model = keras.Model(inputs, outputs, name="cell_detector")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=detection_loss)
    return model


def detection_loss(y_true, y_pred):
    """Penalty-reduced focal loss on the centre heat + L1 on size and offset at the centres.

    y_true channels: target heat (Gaussian bumps, 1 at centres), log w, log h, offset x, offset y,
    centre indicator.
    """
    from keras import ops

    heat_true, centre = y_true[..., 0], y_true[..., 5]
    heat = ops.clip(y_pred[..., 0], 1e-4, 1.0 - 1e-4)
    positive = -ops.log(heat) * ops.square(1.0 - heat) * centre
    negative = -ops.log(1.0 - heat) * ops.square(heat) * ops.power(1.0 - heat_true, 4.0)
    negative = negative * (1.0 - centre)
    n_centres = ops.maximum(ops.sum(centre), 1.0)
    focal = (ops.sum(positive) + ops.sum(negative)) / n_centres
    regression = ops.abs(y_pred[..., 1:5] - y_true[..., 1:5]) * centre[..., None]
    size_loss = ops.sum(regression[..., :2]) / n_centres
    offset_loss = ops.sum(regression[..., 2:]) / n_centres
    return focal + size_loss + offset_loss


# --- targets (training) and decoding (serving) --------------------------------------------------


def encode_targets(boxes_work: np.ndarray, height: int, width: int) -> np.ndarray:
    """Training target (H/STRIDE, W/STRIDE, 6) for boxes (n, 4: x, y, w, h) in work pixels."""
    gh, gw = height // STRIDE, width // STRIDE
    target = np.zeros((gh, gw, 6), np.float32)
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    for x, y, w, h in boxes_work:
        cx, cy = (x + w / 2.0) / STRIDE, (y + h / 2.0) / STRIDE
        ix, iy = int(cx), int(cy)
        if not (0 <= ix < gw and 0 <= iy < gh) or w < 2 or h < 2:
            continue
        sigma = max(0.5, min(w, h) / STRIDE / 6.0)
        r = int(3 * sigma) + 1
        y0, y1, x0, x1 = max(0, iy - r), min(gh, iy + r + 1), max(0, ix - r), min(gw, ix + r + 1)
        bump = np.exp(
            -((yy[y0:y1, x0:x1] - iy) ** 2 + (xx[y0:y1, x0:x1] - ix) ** 2) / (2 * sigma**2)
        )
        np.maximum(target[y0:y1, x0:x1, 0], bump, out=target[y0:y1, x0:x1, 0])
        target[iy, ix, 1:6] = (
            np.log(w / SIZE_UNIT), np.log(h / SIZE_UNIT), cx - ix, cy - iy, 1.0,
        )  # fmt: skip
    return target


def decode(
    output: np.ndarray, threshold: float, scale: float, width: int, height: int
) -> list[CellBox]:
    """Boxes in the original field's pixels from one network output (H/4, W/4, 5)."""
    heat = output[..., 0]
    peaks = (heat >= threshold) & (heat >= cv2.dilate(heat, np.ones((3, 3), np.uint8)))
    iy, ix = np.nonzero(peaks)
    if not len(iy):
        return []
    scores = heat[iy, ix]
    order = np.argsort(-scores)[: MAX_CELLS * 2]
    iy, ix, scores = iy[order], ix[order], scores[order]
    cx = (ix + output[iy, ix, 3]) * STRIDE / scale
    cy = (iy + output[iy, ix, 4]) * STRIDE / scale
    w = np.exp(np.clip(output[iy, ix, 1], -4, 4)) * SIZE_UNIT / scale
    h = np.exp(np.clip(output[iy, ix, 2], -4, 4)) * SIZE_UNIT / scale
    inside = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
    boxes = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)[inside]
    scores = scores[inside]
    keep = suppress_duplicates(boxes, NMS_IOU)[:MAX_CELLS]
    cells = []
    for k in keep:
        x, y, bw, bh = clip_box(*boxes[k], width, height)
        border = bool(touches_border(*boxes[k], width, height))
        cells.append(CellBox(x, y, bw, bh, score=float(scores[k]), on_border=border))
    return sorted(cells, key=lambda b: (b.y // 32, b.x))


def suppress_duplicates(boxes: np.ndarray, iou_limit: float) -> list[int]:
    """Greedy non-maximum suppression over boxes sorted by falling score; kept indices."""
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    area = boxes[:, 2] * boxes[:, 3]
    alive = np.ones(len(boxes), bool)
    keep = []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        keep.append(i)
        iw = np.clip(np.minimum(x1[i], x1) - np.maximum(x0[i], x0), 0, None)
        ih = np.clip(np.minimum(y1[i], y1) - np.maximum(y0[i], y0), 0, None)
        inter = iw * ih
        iou = inter / np.maximum(area[i] + area - inter, 1e-9)
        alive &= iou <= iou_limit
    return keep


# --- the loaded detector ------------------------------------------------------------------------


@dataclass
class Detector:
    """A loaded detector model and its operating threshold."""

    model: object
    threshold: float = DEFAULT_THRESHOLD

    @classmethod
    def load(
        cls, path: str, expected_sha256: str | None = None, threshold: float = DEFAULT_THRESHOLD
    ):
        """Load a .keras detector; with expected_sha256, refuse a file whose hash differs."""
        import keras

        if expected_sha256 is not None:
            actual = sha256_of(path)
            if actual != expected_sha256:
                raise DetectorIntegrityError(
                    f"detector file {path} has sha256 {actual}, the registry expects {expected_sha256}"
                )
        model = keras.saving.load_model(path, compile=False)
        return cls(model=model, threshold=threshold)

    def raw_output(self, work: np.ndarray) -> np.ndarray:
        batch = work[None].astype(np.float32) / 255.0
        return np.asarray(self._forward(batch))[0]

    def _forward(self, batch: np.ndarray):
        fn = getattr(self, "_compiled", None)
        if fn is None:
            import tensorflow as tf

            # One trace for every field size (the work size follows each field's cell size).
            spec = tf.TensorSpec((None, None, None, 3), tf.float32)
            fn = tf.function(lambda x: self.model(x, training=False), input_signature=[spec])
            self._compiled = fn
        return fn(batch)

    def detect(self, rgb_uint8: np.ndarray, threshold: float | None = None) -> list[CellBox]:
        """Every red cell of a field, in the field's pixels (border cells flagged).

        Raises classifier.preprocess.ImageShapeError for an image that cannot be a field.
        """
        check_shape(rgb_uint8, "field")
        height, width = rgb_uint8.shape[:2]
        scale = work_scale(rgb_uint8)
        output = self.raw_output(to_work(rgb_uint8, scale))
        limit = self.threshold if threshold is None else threshold
        return decode(output, limit, scale, width, height)
