"""Segmentation losses in ``keras.ops`` (every backend), registered for ``keras.saving``:
binary cross-entropy, soft Dice, their sum, pixel-weighted BCE, and categorical cross-entropy +
soft Dice for the three-class output. ``y_true`` and ``y_pred`` are ``(B, H, W, 1)`` or
``(B, H, W)``; they are cast to float32 and probabilities clipped to ``[EPSILON, 1 - EPSILON]``
first, so a float16 output of exactly 0 or 1 gives a finite loss. Per image::

    BCE       = mean( -t log p - (1 - t) log(1 - p) )
    soft Dice = 1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)       (s = smooth)
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["binary_crossentropy", "soft_dice", "SoftDiceLoss", "BCEDiceLoss", "WeightedBCELoss",
           "ClassesDiceLoss"]

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


def _pixel_bce(t, y, from_logits: bool):
    """Per-pixel binary cross-entropy of float32 tensors, same shape as the inputs."""
    if not from_logits:  # our clip, also so TensorFlow never swaps in a sigmoid's logits
        y = ops.clip(y, EPSILON, 1.0 - EPSILON)
    return ops.binary_crossentropy(t, y, from_logits=from_logits)


def _soft_dice(t, p, axes, smooth: float):
    inter = ops.sum(p * t, axis=axes)
    total = ops.sum(p, axis=axes) + ops.sum(t, axis=axes)
    return 1.0 - (2.0 * inter + smooth) / (total + smooth)


def binary_crossentropy(y_true, y_pred, from_logits: bool = False):
    """Mean binary cross-entropy of each image, in float32: ``(B,)``."""
    t, y = float32_pair(y_true, y_pred)
    return ops.mean(_pixel_bce(t, y, from_logits), axis=tuple(range(1, len(t.shape))))


def soft_dice(y_true, y_pred, smooth: float = 1.0, from_logits: bool = False):
    """Soft Dice loss of each image, in float32: ``(B,)``; empty against empty costs 0."""
    t, y = float32_pair(y_true, y_pred)
    p = ops.sigmoid(y) if from_logits else ops.clip(y, 0.0, 1.0)
    return _soft_dice(t, p, tuple(range(1, len(t.shape))), smooth)


def _check_nonnegative(**values) -> None:
    for key, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"{key} must be a number, got {value!r}")
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value}")


class _Loss(keras.losses.Loss):
    """A loss whose ``get_config`` adds the attributes named in ``_config``."""

    _config: tuple[str, ...] = ()

    def get_config(self):
        return {**super().get_config(), **{key: getattr(self, key) for key in self._config}}


@keras.saving.register_keras_serializable(package="unet_course")
class SoftDiceLoss(_Loss):
    """Soft Dice loss per image, averaged over the batch; ``sample_weight`` (B,) weights
    images. TypeError / ValueError for a ``smooth`` that is not a number >= 0."""

    _config = ("smooth", "from_logits")

    def __init__(self, smooth=1.0, from_logits=False, name="soft_dice", **kwargs):
        _check_nonnegative(smooth=smooth)
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        return soft_dice(y_true, y_pred, self.smooth, self.from_logits)


@keras.saving.register_keras_serializable(package="unet_course")
class BCEDiceLoss(_Loss):
    """``bce_weight * BCE + dice_weight * soft Dice`` per image, averaged over the batch;
    ``sample_weight`` (B,) weights images. TypeError / ValueError for weights or ``smooth``
    that are not numbers >= 0."""

    _config = ("bce_weight", "dice_weight", "smooth", "from_logits")

    def __init__(self, bce_weight=1.0, dice_weight=1.0, smooth=1.0, from_logits=False,
                 name="bce_dice", **kwargs):
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


@keras.saving.register_keras_serializable(package="unet_course")
class WeightedBCELoss(_Loss):
    """Binary cross-entropy with a per-pixel weight map (the U-Net paper's eq. 1): the
    per-pixel loss ``(B, H, W)``, which Keras weights by a ``(B, H, W)`` ``sample_weight``."""

    _config = ("from_logits",)

    def __init__(self, from_logits=False, name="weighted_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        t, y = float32_pair(y_true, y_pred)
        loss = _pixel_bce(t, y, self.from_logits)
        if len(loss.shape) == 4 and loss.shape[-1] == 1:
            loss = ops.squeeze(loss, -1)
        return loss


@keras.saving.register_keras_serializable(package="unet_course")
class ClassesDiceLoss(_Loss):
    """Per image, ``mean_pixels(-sum_k t_k log p_k) + mean_{k >= 1} softDice(t_k, p_k)`` of
    one-hot ``y_true`` and softmax ``y_pred``, both ``(B, H, W, K)``."""

    _config = ("smooth",)

    def __init__(self, smooth=1.0, name="classes_dice", **kwargs):
        _check_nonnegative(smooth=smooth)
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        t, p = float32_pair(y_true, y_pred)
        p = ops.clip(p, EPSILON, 1.0 - EPSILON)
        ce = ops.mean(ops.categorical_crossentropy(t, p, axis=-1), axis=(1, 2))
        dice = _soft_dice(t, p, (1, 2), self.smooth)  # (B, K)
        return ce + ops.mean(dice[:, 1:], axis=-1)
