"""One normalisation for every image the course's default model sees: percentiles to [0, 1].

What belongs here: ``percentile_normalize`` (NumPy, the reference) and the Keras layer
``PercentileNormalization`` that does the same inside a model, so that a saved model takes
8-bit, 12/16-bit or float microscope images as they come: each image is mapped so that its
``low``-th percentile becomes 0 and its ``high``-th percentile becomes 1 (values outside stay
outside; nothing is clipped). This is the normalisation StarDist and CSBDeep use
(Weigert et al. 2018, ``normalize(x, 1, 99.8)``): it removes the image's exposure, gain and bit
depth, so a dim 12-bit slide and a bright 8-bit one look alike to the network, while bright
outliers (a few mitotic nuclei) cannot squash the rest as a min-max stretch would.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

LOW, HIGH = 1.0, 99.8
EPSILON = 1e-6


def percentile_normalize(image: Any, low: float = LOW, high: float = HIGH) -> np.ndarray:
    """``(image - p_low) / (p_high - p_low)`` over all pixels and channels, float32.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array of real numbers, any dtype.
        low, high: percentiles, ``0 <= low < high <= 100``.

    Returns:
        float32 array of the same shape; a flat image gives zeros.
    """
    image = np.asarray(image)
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise TypeError(f"image must hold real numbers, got dtype {image.dtype}")
    _check_percentiles(low, high)
    lo, hi = np.percentile(image.astype(np.float64), [low, high])
    return ((image - lo) / (hi - lo + EPSILON)).astype(np.float32)


def _check_percentiles(low: float, high: float) -> None:
    if not (0 <= low < high <= 100):
        raise ValueError(f"expected percentiles 0 <= low < high <= 100, got low={low}, high={high}")


@keras.saving.register_keras_serializable(package="unet_course")
class PercentileNormalization(keras.layers.Layer):
    """Per image, map the ``low``-th percentile of all its pixels to 0 and the ``high``-th to 1.

    Input ``(B, H, W, C)`` of any real dtype; output float32 of the same shape. Equal to
    ``percentile_normalize`` image by image (``keras.ops.quantile`` with linear
    interpolation, NumPy's default). It has no weights and works on every Keras backend.
    """

    def __init__(self, low: float = LOW, high: float = HIGH, **kwargs):
        super().__init__(**kwargs)
        _check_percentiles(low, high)
        self.low, self.high = float(low), float(high)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        flat = ops.reshape(x, (ops.shape(x)[0], -1))
        bounds = ops.quantile(flat, ops.convert_to_tensor([self.low / 100, self.high / 100]),
                              axis=1)  # (2, B)
        lo = ops.reshape(bounds[0], (-1, 1, 1, 1))
        hi = ops.reshape(bounds[1], (-1, 1, 1, 1))
        return (x - lo) / (hi - lo + EPSILON)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"low": self.low, "high": self.high})
        return config
