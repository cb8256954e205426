"""Overlap scores for binary masks: Dice (F1) and IoU (Jaccard).

What belongs here: the Keras metrics used during training, per-image scores, and plain NumPy
reference versions used by the tests and the notebooks' self-checks.

Definitions, from the pixel counts of a thresholded prediction against the truth
(TP = true positives, FP = false positives, FN = false negatives)::

    Dice = 2 TP / (2 TP + FP + FN)        IoU = TP / (TP + FP + FN)        IoU = Dice / (2 - Dice)

A pixel is predicted foreground when ``y_pred >= threshold`` (the convention of
``keras.metrics.BinaryIoU``) and is true foreground when ``y_true >= 0.5``.

Empty masks: when the truth and the prediction are both empty, TP + FP + FN = 0 and the ratio
is 0/0. We return ``empty_value`` (1.0 by default: predicting "nothing here" where there is
nothing is a perfect answer). When only one of them is empty the score is 0.0, as the formula
gives. scikit-learn's ``f1_score``/``jaccard_score`` return 0.0 for the both-empty case (with
a warning) unless you pass ``zero_division=1.0``.

The Keras metrics ``Dice`` and ``IoU`` add up TP, FP and FN over the whole epoch and divide
once at the end. That is not the same as averaging the per-batch ratios (the bug of the widely
copied ``mean_iou`` snippet): a batch with one foreground pixel would weigh as much as a batch
with a million. They are registered as Keras serializables (package ``unet_course``), so a
model compiled with them can be saved to ``.keras`` and reloaded with
``keras.saving.load_model(path)`` in safe mode, without ``custom_objects``, once
``unet_course.metrics`` has been imported. The counts are float32 variables: exact up to
2**24 (16.7 million) pixels; beyond that each batch's addition rounds by at most 6e-8
relative, so even thousands of batches move the score by far less than 1e-3.

The metric code uses ``keras.ops`` only (TensorFlow, JAX and PyTorch backends).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from unet_course.losses import float32_pair

__all__ = [
    "Dice",
    "IoU",
    "dice_per_image",
    "iou_per_image",
    "confusion_counts_np",
    "dice_np",
    "iou_np",
]


def _check_threshold(threshold: float, empty_value: float) -> None:
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1] (probabilities), got {threshold}")
    if not isinstance(empty_value, (int, float)) or isinstance(empty_value, bool):
        raise TypeError(f"empty_value must be a number, got {empty_value!r}")


def _binary_pair(y_true, y_pred, threshold: float):
    """Float32 0/1 tensors of the same rank: truth ``>= 0.5``, prediction ``>= threshold``."""
    y_true, y_pred = float32_pair(y_true, y_pred)
    t = ops.cast(y_true >= 0.5, "float32")
    p = ops.cast(y_pred >= threshold, "float32")
    return t, p


def _counts(t, p, axis=None, weight=None):
    """TP, FP, FN summed over ``axis`` (all axes when None), optionally weighted."""
    tp, fp, fn = t * p, (1.0 - t) * p, t * (1.0 - p)
    if weight is not None:
        tp, fp, fn = tp * weight, fp * weight, fn * weight
    return ops.sum(tp, axis=axis), ops.sum(fp, axis=axis), ops.sum(fn, axis=axis)


def _dice_from_counts(tp, fp, fn, empty_value: float):
    denom = 2.0 * tp + fp + fn
    return ops.where(denom > 0, 2.0 * tp / ops.maximum(denom, 1e-12), empty_value)


def _iou_from_counts(tp, fp, fn, empty_value: float):
    denom = tp + fp + fn
    return ops.where(denom > 0, tp / ops.maximum(denom, 1e-12), empty_value)


class _OverlapMetric(keras.metrics.Metric):
    """Accumulates TP, FP and FN over an epoch; subclasses say how to turn them into a score."""

    def __init__(self, threshold=0.5, name=None, empty_value=1.0, dtype=None):
        _check_threshold(threshold, empty_value)
        super().__init__(name=name, dtype=dtype or "float32")
        self.threshold = float(threshold)
        self.empty_value = float(empty_value)
        self.tp = self.add_variable(shape=(), initializer="zeros", name="tp", dtype="float32")
        self.fp = self.add_variable(shape=(), initializer="zeros", name="fp", dtype="float32")
        self.fn = self.add_variable(shape=(), initializer="zeros", name="fn", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add this batch's counts. Shapes: ``(B, H, W, 1)`` or ``(B, H, W)``, any float/int.

        ``sample_weight`` (optional) must broadcast to the mask shape, e.g. ``(B, 1, 1, 1)``
        per image or ``(B, H, W, 1)`` per pixel; it weights each pixel's count.
        """
        t, p = _binary_pair(y_true, y_pred, self.threshold)
        weight = None
        if sample_weight is not None:
            weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
            while len(weight.shape) < len(t.shape):
                weight = ops.expand_dims(weight, -1)
        tp, fp, fn = _counts(t, p, weight=weight)
        self.tp.assign_add(tp)
        self.fp.assign_add(fp)
        self.fn.assign_add(fn)

    def get_config(self):
        config = super().get_config()
        config.update({"threshold": self.threshold, "empty_value": self.empty_value})
        return config


@keras.saving.register_keras_serializable(package="unet_course")
class Dice(_OverlapMetric):
    """Dice coefficient ``2 TP / (2 TP + FP + FN)`` over all pixels seen since the last reset.

    Args:
        threshold: a predicted probability ``>= threshold`` counts as foreground.
        name: the metric's name in the history (``"dice"``, ``"val_dice"``).
        empty_value: the score when truth and prediction are both empty (TP + FP + FN = 0).

    ``result()`` is a float32 scalar.
    """

    def __init__(self, threshold=0.5, name="dice", empty_value=1.0, dtype=None):
        super().__init__(threshold=threshold, name=name, empty_value=empty_value, dtype=dtype)

    def result(self):
        return _dice_from_counts(self.tp, self.fp, self.fn, self.empty_value)


@keras.saving.register_keras_serializable(package="unet_course")
class IoU(_OverlapMetric):
    """IoU (Jaccard index) ``TP / (TP + FP + FN)`` over all pixels seen since the last reset.

    Same arguments as :class:`Dice`. For the foreground class it equals
    ``keras.metrics.BinaryIoU(target_class_ids=[1], threshold=threshold)``.
    """

    def __init__(self, threshold=0.5, name="iou", empty_value=1.0, dtype=None):
        super().__init__(threshold=threshold, name=name, empty_value=empty_value, dtype=dtype)

    def result(self):
        return _iou_from_counts(self.tp, self.fp, self.fn, self.empty_value)


def _per_image_counts(y_true, y_pred, threshold):
    t, p = _binary_pair(y_true, y_pred, threshold)
    axes = tuple(range(1, len(t.shape)))
    return _counts(t, p, axis=axes)


def dice_per_image(y_true, y_pred, threshold: float = 0.5, empty_value: float = 1.0):
    """Dice of each image of a batch.

    Args:
        y_true: ``(B, H, W, 1)`` or ``(B, H, W)`` truth, foreground where ``>= 0.5``.
        y_pred: same shape, probabilities; foreground where ``>= threshold``.
        empty_value: the score of an image whose truth and prediction are both empty.

    Returns:
        ``(B,)`` float32 tensor.
    """
    _check_threshold(threshold, empty_value)
    return _dice_from_counts(*_per_image_counts(y_true, y_pred, threshold), float(empty_value))


def iou_per_image(y_true, y_pred, threshold: float = 0.5, empty_value: float = 1.0):
    """IoU of each image of a batch; same arguments as :func:`dice_per_image`. ``(B,)``."""
    _check_threshold(threshold, empty_value)
    return _iou_from_counts(*_per_image_counts(y_true, y_pred, threshold), float(empty_value))


def confusion_counts_np(true, pred) -> tuple[int, int, int, int]:
    """Pixel counts ``(tp, fp, fn, tn)`` of two binary masks of the same shape (NumPy).

    Any nonzero value (or ``True``) is foreground; threshold probabilities yourself first.
    """
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(f"true has shape {true.shape} but pred has {pred.shape}; expected equal")
    t, p = true != 0, pred != 0
    tp = int(np.count_nonzero(t & p))
    fp = int(np.count_nonzero(~t & p))
    fn = int(np.count_nonzero(t & ~p))
    return tp, fp, fn, int(t.size - tp - fp - fn)


def dice_np(true, pred, empty_value: float = 1.0) -> float:
    """Dice ``2 TP / (2 TP + FP + FN)`` of two binary masks (NumPy reference)."""
    tp, fp, fn, _ = confusion_counts_np(true, pred)
    denom = 2 * tp + fp + fn
    return float(empty_value) if denom == 0 else 2 * tp / denom


def iou_np(true, pred, empty_value: float = 1.0) -> float:
    """IoU ``TP / (TP + FP + FN)`` of two binary masks (NumPy reference)."""
    tp, fp, fn, _ = confusion_counts_np(true, pred)
    denom = tp + fp + fn
    return float(empty_value) if denom == 0 else tp / denom
