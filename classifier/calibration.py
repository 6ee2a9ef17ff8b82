"""The one rule that turns a logit into the probability a user sees: p = sigmoid(logit / T).

The engine applies it at serving time; training fits T and the threshold, and evaluation
measures, with this same function, so that the probabilities a model was calibrated and judged
on are exactly the ones it serves. numpy only.
"""

from __future__ import annotations

import numpy as np


def calibrate(logit: np.ndarray | float, temperature: float) -> np.ndarray:
    """Temperature-scaled probability sigmoid(logit / T), computed stably."""
    z = np.asarray(logit, dtype=np.float64) / float(temperature)
    return np.where(
        z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), 1.0 - 1.0 / (1.0 + np.exp(-np.abs(z)))
    )
