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

__all__ = ["Dice", "IoU", "dice_np"]


class _OverlapMetric(keras.metrics.BinaryIoU):
    """``BinaryIoU``'s confusion matrix with the course's truth rule, broadcast sample weights
    and ``empty_value``; ``_k`` is 2 for Dice, 1 for IoU."""

    _k = 1.0

    def __init__(self, threshold=0.5, name=None, empty_value=1.0, dtype=None):
        for key, value in (("threshold", threshold), ("empty_value", empty_value)):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"{key} must be a number, got {value!r}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1] (probabilities), got {threshold}")
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
        denom = self._k * cm[1, 1] + cm[0, 1] + cm[1, 0]  # 0/0 gives empty_value
        return ops.where(denom > 0, self._k * cm[1, 1] / ops.maximum(denom, 1e-12),
                         self.empty_value)

    def get_config(self):
        return {**keras.metrics.Metric.get_config(self), "threshold": self.threshold,
                "empty_value": self.empty_value}


@keras.saving.register_keras_serializable(package="unet_course")
class Dice(_OverlapMetric):
    """Dice over all pixels seen since the last reset; ``result()`` is a float32 scalar.
    ``threshold``: a number in [0, 1] (else TypeError / ValueError)."""

    _k = 2.0

    def __init__(self, threshold=0.5, name="dice", empty_value=1.0, dtype=None):
        super().__init__(threshold=threshold, name=name, empty_value=empty_value, dtype=dtype)


@keras.saving.register_keras_serializable(package="unet_course")
class IoU(_OverlapMetric):
    """IoU over all pixels seen since the last reset; same arguments as :class:`Dice`."""

    def __init__(self, threshold=0.5, name="iou", empty_value=1.0, dtype=None):
        super().__init__(threshold=threshold, name=name, empty_value=empty_value, dtype=dtype)


def dice_np(true, pred, empty_value: float = 1.0) -> float:
    """Dice ``2 TP / (2 TP + FP + FN)`` of two masks of one shape (NumPy; any nonzero value is
    foreground), ``empty_value`` when both are empty. ValueError for different shapes."""
    t, p = np.asarray(true) != 0, np.asarray(pred) != 0
    if t.shape != p.shape:
        raise ValueError(f"true has shape {t.shape} but pred has {p.shape}; expected equal")
    total = np.count_nonzero(t) + np.count_nonzero(p)  # 2 TP + FP + FN
    return float(empty_value) if total == 0 else 2 * np.count_nonzero(t & p) / total
