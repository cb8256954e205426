"""One normalisation for every image the course's default model sees: percentiles to [0, 1].

What belongs here: ``percentile_normalize`` (NumPy, the reference) and the Keras layer
``PercentileNormalization`` that does the same inside a model, so that a saved model takes
8-bit, 12/16-bit or float microscope images as they come: each image is mapped so that its
``low``-th percentile becomes 0 and its ``high``-th percentile becomes 1 (values outside stay
outside; nothing is clipped). This is the normalisation StarDist and CSBDeep use
(Weigert et al. 2018, ``normalize(x, 1, 99.8)``): it removes the image's exposure, gain and bit
depth, so a dim 12-bit slide and a bright 8-bit one look alike to the network, while bright
outliers (a few mitotic nuclei) cannot squash the rest as a min-max stretch would.

Also here, for images that look like no training slide (``recipe.predict_classes`` uses them):
``one_colour_as_grey`` gives the network a fluorescence image saved in its dye's colour (DAPI
in blue) as the grey image it is, and ``polarity_in_doubt`` says when a grey image may hold
dark nuclei on a light field (grey bright-field), so that the network is asked both ways;
``appearance_note`` is the line ``predict`` prints about either, or about an image that looks
like a composite of several dyes.
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


#: How far an image's colours may stray from one colour, as a fraction of its brightness span,
#: for ``one_colour_as_grey`` to call it one colour.
ONE_COLOUR_TOLERANCE = 0.01
#: A channel whose range is under this fraction of the widest channel's holds no picture, only
#: a camera's noise, offset or a little bleed-through (``one_colour_as_grey``).
EMPTY_CHANNEL = 0.1


def one_colour_as_grey(image: Any, tolerance: float = ONE_COLOUR_TOLERANCE) -> np.ndarray:
    """A colour image that is one colour times a brightness, as grey; any other image as it is.

    A fluorescence image is often saved in the colour of its dye: DAPI or Hoechst in blue, GFP
    in green. Each pixel is then ``b * c``: one colour ``c`` for the whole image times the
    pixel's brightness ``b``. The course's networks learn from grey slides and from tinted ones
    whose weakest channel is at least a fifth of the strongest (``rendering``), so an image with
    one or two empty channels is new to them: the real slide shown in blue or in green scored
    0.01 and 0.03 with the recipe's model, against 0.51 in grey
    (``benchmarks/results/appearance_cpu.md``). Given as grey, it scores as the grey slide does.

    The test, on every 7th pixel:

    1. a channel whose range (1st to 99.8th percentile) is under ``EMPTY_CHANNEL`` (a tenth)
       of the widest channel's is empty: camera noise, an offset, a little bleed-through;
    2. the other channels are one colour when what lies off their principal direction ``u``
       (the root of the smaller eigenvalues of their uncentred second moments) is at most
       ``tolerance`` times the brightness span (1st to 99.8th percentile of the pixels'
       projections onto ``u``).

    Then the result is the brightness, the other channels' ``pixel . u`` (the one channel
    itself when only one is left), three times, float32 ``(H, W, 3)``. Images whose three
    channels are equal already, images with another channel count, bright-field slides (their
    nuclei and background differ in hue: 2 to 9 % of the span on the synthetic ones, and no
    channel is empty) and composites of dyes of similar strength are returned as they are (the
    same object). A composite whose other dyes are more than ten times weaker than one of them
    is taken for that one dye alone: save the nuclear channel by itself.
    """
    image = np.asarray(image)
    colour = _colour_spread(image)
    if colour is None or colour[2] > tolerance:
        return image
    kept, u, _ = colour
    brightness = image[..., kept].astype(np.float32) @ u.astype(np.float32)
    return np.repeat(brightness[..., None], 3, axis=-1)


def _is_grey(image: np.ndarray) -> bool:
    return bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())


def _colour_spread(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """For a colour ``(H, W, 3)`` image: the channels that are not empty, their principal
    colour ``u`` and what lies off it as a fraction of the brightness span (steps 1 and 2 of
    ``one_colour_as_grey``, on every 7th pixel); None for a grey image, another shape, a flat
    image or one with non-finite values."""
    if image.ndim != 3 or image.shape[-1] != 3 or image.size == 0 or _is_grey(image):
        return None
    sample = image.reshape(-1, 3)[::7].astype(np.float64)
    if not np.isfinite(sample).all():
        return None
    low, high = np.percentile(sample, [LOW, HIGH], axis=0)
    ranges = high - low
    if not ranges.max() > 0:
        return None
    kept = np.flatnonzero(ranges >= EMPTY_CHANNEL * ranges.max())
    sample = sample[:, kept]
    eigenvalues, vectors = np.linalg.eigh(sample.T @ sample / len(sample))  # ascending
    u = vectors[:, -1] * (1.0 if vectors[:, -1].sum() >= 0 else -1.0)
    low, high = np.percentile(sample @ u, [LOW, HIGH])
    if not high > low:
        return None
    off = np.sqrt(max(float(eigenvalues[:-1].sum()), 0.0))
    return kept, u, off / (high - low)


#: An image whose colours stray further than this from one colour, on a dark field, looks like
#: a composite of several dyes (``appearance_note``).
COMPOSITE = 0.1


def appearance_note(image: Any, polarity: bool = True) -> str:
    """One line for ``predict``'s log on how ``recipe.predict_classes`` takes ``image``: ""
    for a picture like the training slides; else what is done, or, for what looks like a
    composite of several dyes (colours that stray more than ``COMPOSITE`` from one colour, on
    a mostly dark field, where bright-field slides are mostly light), the advice to give the
    nuclear channel alone, which the network cannot pick out by itself. ``polarity=False``
    for models without the polarity step (the older 0-255 ones)."""
    image = np.asarray(image)
    colour = _colour_spread(image)
    doubt = "grey on a light field: predicted as it is and negated, the surer kept"
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


#: A grey image whose median lies above this fraction of its range (1st to 99.8th percentile)
#: is not clearly fluorescence (bright nuclei on a dark field): ``polarity_in_doubt``.
POLARITY_DOUBT = 0.3


def polarity_in_doubt(image: Any) -> bool:
    """True for a grey ``(H, W, 3)`` image (three equal channels) that is not clearly bright
    nuclei on a dark field: its median lies above ``POLARITY_DOUBT`` (0.3) of the way from its
    1st to its 99.8th percentile.

    Fluorescence slides are mostly dark background (median at 0.15 of the range or less on the
    recipe's synthetic slides); grey bright-field slides mostly light background (0.47 to 0.83
    on 64 synthetic ones); crowded fluorescence, nuclei over most of the field, lies between
    (0.35 to 0.60), so no rule on the brightness alone tells the two apart there (the classical
    baseline's rule, median in the upper half, would negate 5 of the 16 crowded slides of
    ``benchmarks/results/appearance_cpu.md``). ``recipe.predict_classes`` therefore asks the
    network: it predicts an image in doubt both as it is and negated, and keeps the maps it is
    more confident of. Colour images are never in doubt: the networks learnt bright-field
    slides in their stains' colours.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.size == 0:
        return False
    if not _is_grey(image):
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
    """Per image, map the ``low``-th percentile of all its pixels to 0 and the ``high``-th to 1.

    Input ``(B, H, W, C)`` of any real dtype; output float32 of the same shape. Equal to
    ``percentile_normalize`` image by image (``keras.ops.quantile`` with linear
    interpolation, NumPy's default); a flat image (all one value) gives zeros, eagerly and
    compiled. It has no weights and works on every Keras backend.

    It always computes in float32, whatever the global dtype policy and whatever ``dtype`` a
    caller or a saved config gives: under ``mixed_float16`` Keras would otherwise cast its
    input to float16 before ``call`` (65535 becomes inf, and the whole output NaN) and under
    ``mixed_bfloat16`` to 8 bits of mantissa (16-bit values 30,000 to 31,000 fall on 9
    levels). The next layer casts the normalised output to its own compute dtype.
    """

    def __init__(self, low: float = LOW, high: float = HIGH, **kwargs):
        kwargs["dtype"] = "float32"  # see above; also overrides a mixed policy in old files
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
