"""One normalisation for every image the course's default model sees: ``percentile_normalize``
(NumPy) and the layer ``PercentileNormalization`` map each image's ``low``-th percentile to 0
and its ``high``-th to 1, unclipped, as StarDist does. For images that look like no training
slide (``predict.predict_classes``): ``stain_as_fluorescence``, ``polarity_in_doubt`` and
``appearance_note``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops
from skimage.color import rgb2gray

from unet_course.files import (
    HIGH,
    LOW,
    ONE_COLOUR_TOLERANCE,
    colour_spread,
    is_grey,
    one_colour_as_grey,
)

EPSILON = 1e-6


def percentile_normalize(image: Any, low: float = LOW, high: float = HIGH) -> np.ndarray:
    """``(image - p_low) / (p_high - p_low)`` over all pixels and channels, float32 (zeros
    for a flat image). TypeError for a non-real dtype, ValueError for bad percentiles."""
    image = np.asarray(image)
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise TypeError(f"image must hold real numbers, got dtype {image.dtype}")
    _check_percentiles(low, high)
    lo, hi = np.percentile(image.astype(np.float64), [low, high])
    return ((image - lo) / (hi - lo + EPSILON)).astype(np.float32)


COMPOSITE = 0.1  # colours straying further from one colour look like a composite of dyes


def appearance_note(image: Any, polarity: bool = True) -> str:
    """One line for ``predict``'s log on how ``predict.predict_classes`` takes ``image``
    ("" for a picture like the training slides); ``polarity=False`` for models without the
    polarity step."""
    image = np.asarray(image)
    colour = colour_spread(image)
    doubt = "grey on a light field: predicted as it is and negated, the surer kept"
    if stain_as_fluorescence(image) is not image:
        return "a stained slide in colour: predicted as its grey brightness, negated"
    if colour is not None and colour[2] <= ONE_COLOUR_TOLERANCE:
        in_doubt = polarity and polarity_in_doubt(one_colour_as_grey(image))
        return "one colour: predicted as grey" + (f"; {doubt}" if in_doubt else "")
    if polarity and polarity_in_doubt(image):
        return doubt
    if colour is not None and colour[2] > COMPOSITE:
        plane = image.max(axis=-1)[::3, ::3].astype(np.float64)
        low, median, high = np.percentile(plane, [LOW, 50, HIGH])
        if high > low and median < low + POLARITY_DOUBT * (high - low):
            return ("several colours on a dark field, like a composite of dyes: the network "
                    "learnt one nuclear channel; give that channel alone")
    return ""


def stain_as_fluorescence(image: Any) -> np.ndarray:
    """A stained slide seen in transmitted light (a colour ``(H, W, 3)`` image, neither grey
    nor one colour, whose grey brightness is light over most of the field: ``polarity_in_doubt``)
    as its grey brightness negated, three equal float32 channels (integer images:
    ``dtype max - grey``, unrounded; floats: ``-grey``), so its nuclei are bright on a dark field
    as in fluorescence. Any other image is returned as it is (the same object)."""
    image = np.asarray(image)
    colour = colour_spread(image)  # None for a grey, flat or non-finite image, or another shape
    if colour is None or colour[2] <= ONE_COLOUR_TOLERANCE:
        return image
    grey = rgb2gray(image)  # integer images scaled to [0, 1]
    if not polarity_in_doubt(np.repeat(grey[..., None], 3, axis=-1)):
        return image  # a dark field: a composite of dyes, not a stain
    top = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else 0
    return np.repeat((top - grey * max(top, 1))[..., None], 3, axis=-1).astype(np.float32)


POLARITY_DOUBT = 0.3  # a grey median above this fraction of the range: polarity in doubt


def polarity_in_doubt(image: Any) -> bool:
    """True for a finite grey ``(H, W, 3)`` image whose median, on every 3rd row and column,
    lies above ``POLARITY_DOUBT`` of the way from its ``LOW``-th to its ``HIGH``-th
    percentile: it may be bright nuclei on a dark field or the reverse."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.size == 0 or not is_grey(image):
        return False
    plane = image[..., 0][::3, ::3].astype(np.float64)
    if not np.isfinite(plane).all():
        return False
    low, median, high = np.percentile(plane, [LOW, 50, HIGH])
    return bool(high > low and median > low + POLARITY_DOUBT * (high - low))


def _check_percentiles(low: float, high: float) -> None:
    if not (0 <= low < high <= 100):
        raise ValueError(f"expected percentiles 0 <= low < high <= 100, got low={low}, high={high}")


@keras.saving.register_keras_serializable(package="unet_course")
class PercentileNormalization(keras.layers.Layer):
    """``percentile_normalize`` of each image of a ``(B, H, W, C)`` batch, always in float32
    (under ``mixed_float16`` a 16-bit image would overflow)."""

    def __init__(self, low: float = LOW, high: float = HIGH, **kwargs):
        kwargs["dtype"] = "float32"  # whatever the policy or a saved config says
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
        spread = hi - lo  # a flat image gives zeros (compiled, the division alone gave NaN)
        return ops.where(spread > 0, (x - lo) / (spread + EPSILON), ops.zeros_like(x))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"low": self.low, "high": self.high})
        return config
