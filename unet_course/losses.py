"""Training losses for binary segmentation: cross-entropy, soft Dice, their sum, weighted BCE.

What belongs here: differentiable losses written with ``keras.ops`` (TensorFlow, JAX and
PyTorch backends), registered as Keras serializables (package ``unet_course``) so a compiled
model saved to ``.keras`` reloads in safe mode once this module is imported.

Shapes: ``y_true`` and ``y_pred`` are ``(B, H, W, 1)`` (or ``(B, H, W)``); ``y_true`` holds
0/1 values, ``y_pred`` probabilities from a sigmoid (or logits with ``from_logits=True``).

Mixed precision: every loss casts ``y_pred`` to float32 before any arithmetic and clips
probabilities to ``[eps, 1 - eps]`` with ``eps = 1e-7``, so a float16 output of exactly 0 or 1
gives a large but finite loss, never ``inf`` or ``NaN``, and sums over 256 x 256 pixels do not
overflow float16 (whose largest value is 65504).

Formulas (per image, sums over its pixels, ``p`` = predicted probability, ``t`` = truth)::

    BCE       = mean( -t log p - (1 - t) log(1 - p) )
    soft Dice = 1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)       (s = smooth)
    BCE+Dice  = bce_weight * BCE + dice_weight * soft Dice

``binary_crossentropy`` here is a plain function ``(y_true, y_pred) -> (B,)`` that follows
these float32 rules; ``keras.losses.BinaryCrossentropy`` is the Keras built-in equivalent.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = [
    "binary_crossentropy", "soft_dice", "SoftDiceLoss", "BCEDiceLoss", "WeightedBCELoss",
    "ClassesDiceLoss",
]

EPSILON = 1e-7


def float32_pair(y_true, y_pred):
    """Both as float32 tensors of the same rank (a missing channel axis is added)."""
    y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    if len(y_true.shape) == len(y_pred.shape) - 1:
        y_true = ops.expand_dims(y_true, -1)
    elif len(y_pred.shape) == len(y_true.shape) - 1:
        y_pred = ops.expand_dims(y_pred, -1)
    return y_true, y_pred


def _pixel_bce(t, y_pred, from_logits: bool):
    """Per-pixel binary cross-entropy in float32, same shape as the inputs."""
    if from_logits:
        # log(1 + exp(-|x|)) + max(x, 0) - x t : the stable form, no probabilities needed.
        x = y_pred
        return ops.maximum(x, 0.0) - x * t + ops.log1p(ops.exp(-ops.abs(x)))
    p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
    return -(t * ops.log(p) + (1.0 - t) * ops.log(1.0 - p))


def _image_axes(x) -> tuple[int, ...]:
    return tuple(range(1, len(x.shape)))


def binary_crossentropy(y_true, y_pred, from_logits: bool = False):
    """Mean binary cross-entropy of each image, computed in float32. Returns ``(B,)``."""
    t, y = float32_pair(y_true, y_pred)
    return ops.mean(_pixel_bce(t, y, from_logits), axis=_image_axes(t))


def soft_dice(y_true, y_pred, smooth: float = 1.0, from_logits: bool = False):
    """Soft Dice loss ``1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)`` per image: ``(B,)``.

    "Soft" because ``p`` are probabilities, not thresholded masks, so the loss has a gradient.
    The smoothing ``s`` makes an empty truth with an empty prediction cost 0 instead of 0/0.
    """
    t, y = float32_pair(y_true, y_pred)
    p = ops.sigmoid(y) if from_logits else ops.clip(y, 0.0, 1.0)
    axes = _image_axes(t)
    inter = ops.sum(p * t, axis=axes)
    total = ops.sum(p, axis=axes) + ops.sum(t, axis=axes)
    return 1.0 - (2.0 * inter + smooth) / (total + smooth)


def _check_nonnegative(**values) -> None:
    for key, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"{key} must be a number, got {value!r}")
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value}")


@keras.saving.register_keras_serializable(package="unet_course")
class SoftDiceLoss(keras.losses.Loss):
    """Soft Dice loss, one value per image, averaged over the batch.

    Args:
        smooth: the ``s`` added to numerator and denominator (1.0 is the common choice).
        from_logits: ``y_pred`` are logits rather than probabilities.

    ``sample_weight`` (optional) weights images: shape ``(B,)``.
    """

    def __init__(self, smooth=1.0, from_logits=False, name="soft_dice", **kwargs):
        _check_nonnegative(smooth=smooth)
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        return soft_dice(y_true, y_pred, self.smooth, self.from_logits)

    def get_config(self):
        config = super().get_config()
        config.update({"smooth": self.smooth, "from_logits": self.from_logits})
        return config


@keras.saving.register_keras_serializable(package="unet_course")
class BCEDiceLoss(keras.losses.Loss):
    """``bce_weight * BCE + dice_weight * soft Dice``, one value per image, batch-averaged.

    Cross-entropy gives every pixel a useful gradient from the first step; the Dice term
    balances foreground against background when nuclei cover a small part of the image.
    ``sample_weight`` (optional) weights images: shape ``(B,)``. For a per-pixel weight map
    use :class:`WeightedBCELoss`.
    """

    def __init__(
        self, bce_weight=1.0, dice_weight=1.0, smooth=1.0, from_logits=False,
        name="bce_dice", **kwargs,
    ):
        _check_nonnegative(bce_weight=bce_weight, dice_weight=dice_weight, smooth=smooth)
        super().__init__(name=name, **kwargs)
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        bce = binary_crossentropy(y_true, y_pred, self.from_logits)
        dice = soft_dice(y_true, y_pred, self.smooth, self.from_logits)
        return self.bce_weight * bce + self.dice_weight * dice

    def get_config(self):
        config = super().get_config()
        config.update({
            "bce_weight": self.bce_weight, "dice_weight": self.dice_weight,
            "smooth": self.smooth, "from_logits": self.from_logits,
        })
        return config


@keras.saving.register_keras_serializable(package="unet_course")
class WeightedBCELoss(keras.losses.Loss):
    """Binary cross-entropy with a per-pixel weight map (the U-Net paper's eq. 1).

    ``call`` returns the per-pixel loss with the channel axis dropped, ``(B, H, W)``, so Keras
    multiplies it by a ``sample_weight`` of shape ``(B, H, W)`` pixel by pixel and then takes
    the mean over all ``B * H * W`` pixels::

        loss = mean( w * BCE_pixel )

    How to pass the weight map: yield ``(images, masks, weights)`` from a dataset, or call
    ``model.fit(x, y, sample_weight=w)`` with ``w`` of shape ``(B, H, W)`` float32 (the
    ``SegmentationSequence`` in ``unet_course.augment`` does this when given ``weights=``).
    Without a weight map it is plain BCE.
    """

    def __init__(self, from_logits=False, name="weighted_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        t, y = float32_pair(y_true, y_pred)
        loss = _pixel_bce(t, y, self.from_logits)
        if len(loss.shape) == 4 and loss.shape[-1] == 1:
            loss = ops.squeeze(loss, -1)
        return loss

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits})
        return config


@keras.saving.register_keras_serializable(package="unet_course")
class ClassesDiceLoss(keras.losses.Loss):
    """Categorical cross-entropy + soft Dice of the non-background classes, for a softmax output.

    For the course's default model, whose three channels are background, interior and
    boundary (``targets.three_class_targets``). ``y_true`` is one-hot ``(B, H, W, K)``;
    ``y_pred`` the softmax ``(B, H, W, K)``. Per image::

        loss = mean_pixels( -sum_k t_k log p_k ) + mean_{k >= 1} softDice(t_k, p_k)

    The Dice terms give the thin boundary class (a few per cent of the pixels) as much say as
    the background, which the cross-entropy alone would let dominate.
    """

    def __init__(self, smooth=1.0, name="classes_dice", **kwargs):
        _check_nonnegative(smooth=smooth)
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        t, p = float32_pair(y_true, y_pred)
        p = ops.clip(p, EPSILON, 1.0 - EPSILON)
        ce = ops.mean(-ops.sum(t * ops.log(p), axis=-1), axis=(1, 2))
        axes = (1, 2)
        inter = ops.sum(t * p, axis=axes)
        total = ops.sum(t, axis=axes) + ops.sum(p, axis=axes)
        dice = 1.0 - (2.0 * inter + self.smooth) / (total + self.smooth)  # (B, K)
        return ce + ops.mean(dice[:, 1:], axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update({"smooth": self.smooth})
        return config
