"""Overlap scores of binary masks: Dice = 2 TP / (2 TP + FP + FN), IoU = TP / (TP + FP + FN).

A pixel is predicted foreground when ``y_pred >= threshold`` (as in ``keras.metrics.BinaryIoU``)
and true foreground when ``y_true >= 0.5``. When truth and prediction are both empty (0/0) the
score is ``empty_value`` (1.0 by default; scikit-learn's ``zero_division``). The Keras metrics
``Dice`` and ``IoU`` are ``keras.metrics.BinaryIoU`` underneath: a float32 confusion matrix
summed over the epoch, divided once at the end. They are registered for ``keras.saving``
(package ``unet_course``); the Keras code uses ``keras.ops`` only.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from unet_course.losses import float32_pair

__all__ = ["Dice", "IoU", "dice_per_image", "iou_per_image", "confusion_counts_np", "dice_np",
           "iou_np"]


def _check_threshold(threshold: float, empty_value: float) -> None:
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1] (probabilities), got {threshold}")
    if not isinstance(empty_value, (int, float)) or isinstance(empty_value, bool):
        raise TypeError(f"empty_value must be a number, got {empty_value!r}")


def _score(k: float, tp, fp, fn, empty_value: float):
    """``k TP / (k TP + FP + FN)`` (k = 2: Dice, k = 1: IoU), ``empty_value`` where 0/0."""
    denom = k * tp + fp + fn
    return ops.where(denom > 0, k * tp / ops.maximum(denom, 1e-12), empty_value)


class _OverlapMetric(keras.metrics.BinaryIoU):
    """``BinaryIoU``'s confusion matrix with the course's truth rule, broadcast sample weights
    and ``empty_value``; ``_k`` is 2 for Dice, 1 for IoU."""

    _k = 1.0

    def __init__(self, threshold=0.5, name=None, empty_value=1.0, dtype=None):
        _check_threshold(threshold, empty_value)
        super().__init__(target_class_ids=[1], threshold=float(threshold), name=name,
                         dtype=dtype or "float32")
        self.empty_value = float(empty_value)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add a batch: ``(B, H, W, 1)`` or ``(B, H, W)``, any numeric dtype.

        ``sample_weight`` (optional) broadcasts to the masks from the left: ``(B,)`` weights
        images, ``(B, H, W)`` pixels.
        """
        y_true, y_pred = float32_pair(y_true, y_pred)
        y_true = ops.cast(y_true >= 0.5, "float32")
        if sample_weight is not None:
            weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
            while len(weight.shape) < len(y_true.shape):
                weight = ops.expand_dims(weight, -1)
            sample_weight = ops.broadcast_to(weight, ops.shape(y_true))
        return super().update_state(y_true, y_pred, sample_weight)

    def result(self):
        cm = ops.cast(self.total_cm, "float32")  # rows: truth, columns: prediction
        return _score(self._k, cm[1, 1], cm[0, 1], cm[1, 0], self.empty_value)

    def get_config(self):
        return {**keras.metrics.Metric.get_config(self), "threshold": self.threshold,
                "empty_value": self.empty_value}


@keras.saving.register_keras_serializable(package="unet_course")
class Dice(_OverlapMetric):
    """Dice over all pixels seen since the last reset; ``result()`` is a float32 scalar.

    Args:
        threshold: a predicted probability ``>= threshold`` counts as foreground; a number in
            [0, 1] (else TypeError / ValueError).
        name: the metric's name in the history (``"dice"``, ``"val_dice"``).
        empty_value: the score when truth and prediction are both empty.
    """

    _k = 2.0

    def __init__(self, threshold=0.5, name="dice", empty_value=1.0, dtype=None):
        super().__init__(threshold=threshold, name=name, empty_value=empty_value, dtype=dtype)


@keras.saving.register_keras_serializable(package="unet_course")
class IoU(_OverlapMetric):
    """IoU ``TP / (TP + FP + FN)`` over all pixels seen since the last reset: a
    ``keras.metrics.BinaryIoU(target_class_ids=[1])`` that returns ``empty_value`` (not 0)
    when nothing was seen, thresholds soft truths at 0.5 (``BinaryIoU`` truncates them to
    integers) and takes per-image weights. Same arguments as :class:`Dice`."""

    def __init__(self, threshold=0.5, name="iou", empty_value=1.0, dtype=None):
        super().__init__(threshold=threshold, name=name, empty_value=empty_value, dtype=dtype)


def _per_image_counts(y_true, y_pred, threshold):
    y_true, y_pred = float32_pair(y_true, y_pred)
    t = ops.cast(y_true >= 0.5, "float32")
    p = ops.cast(y_pred >= threshold, "float32")
    axes = tuple(range(1, len(t.shape)))
    return ops.sum(t * p, axes), ops.sum((1.0 - t) * p, axes), ops.sum(t * (1.0 - p), axes)


def dice_per_image(y_true, y_pred, threshold: float = 0.5, empty_value: float = 1.0):
    """Dice of each image of a batch, a ``(B,)`` float32 tensor, from ``(B, H, W, 1)`` or
    ``(B, H, W)`` truths and probabilities."""
    _check_threshold(threshold, empty_value)
    return _score(2.0, *_per_image_counts(y_true, y_pred, threshold), float(empty_value))


def iou_per_image(y_true, y_pred, threshold: float = 0.5, empty_value: float = 1.0):
    """IoU of each image of a batch; same arguments as :func:`dice_per_image`. ``(B,)``."""
    _check_threshold(threshold, empty_value)
    return _score(1.0, *_per_image_counts(y_true, y_pred, threshold), float(empty_value))


def confusion_counts_np(true, pred) -> tuple[int, int, int, int]:
    """Pixel counts ``(tp, fp, fn, tn)`` of two masks of one shape (else ValueError), NumPy;
    any nonzero value is foreground."""
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(f"true has shape {true.shape} but pred has {pred.shape}; expected equal")
    t, p = true != 0, pred != 0
    tp = int(np.count_nonzero(t & p))
    fp = int(np.count_nonzero(~t & p))
    fn = int(np.count_nonzero(t & ~p))
    return tp, fp, fn, int(t.size - tp - fp - fn)


def dice_np(true, pred, empty_value: float = 1.0) -> float:
    """Dice ``2 TP / (2 TP + FP + FN)`` of two binary masks (NumPy)."""
    tp, fp, fn, _ = confusion_counts_np(true, pred)
    denom = 2 * tp + fp + fn
    return float(empty_value) if denom == 0 else 2 * tp / denom


def iou_np(true, pred, empty_value: float = 1.0) -> float:
    """IoU ``TP / (TP + FP + FN)`` of two binary masks (NumPy)."""
    tp, fp, fn, _ = confusion_counts_np(true, pred)
    denom = tp + fp + fn
    return float(empty_value) if denom == 0 else tp / denom
