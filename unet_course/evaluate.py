"""Scoring a trained model's predictions: ``choose_threshold``, ``scores`` (pixel scores and the
Data Science Bowl 2018 score) and ``evaluate_model`` (the work of ``unet-course evaluate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unet_course.postprocess import label_instances
from unet_course.predict import foreground, predict_native
from unet_course.scoring import dsb_score_dataset, pixel_scores


def choose_threshold(masks, probs, thresholds: Sequence[float] | None = None) -> tuple[float, np.ndarray]:
    """``(best_threshold, dice)``: the threshold (default 0.05, 0.10, ..., 0.95) with the
    highest pixel Dice on these (validation) images, ties to the one closest to 0.5, and the
    Dice at each threshold. ValueError for thresholds outside (0, 1)."""
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2) if thresholds is None else np.asarray(thresholds)
    if grid.ndim != 1 or grid.size == 0 or np.any((grid <= 0) | (grid >= 1)):
        raise ValueError(f"thresholds must be a non-empty 1-D list of numbers in (0, 1), got {thresholds!r}")
    dice = np.array([pixel_scores(masks, probs, t)["dice"] for t in grid])
    best = np.flatnonzero(dice == dice.max())
    return float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]]), dice


def _instances(labels, probs, method: str, **settings) -> dict:
    """The DSB 2018 score and object count of ``label_instances(p, method=method, **settings)``."""
    found = [label_instances(p, method=method, **settings) for p in probs]
    return {"dsb_map": dsb_score_dataset([np.asarray(t) for t in labels], found),
            "objects": int(sum(f.max() for f in found))}


def scores(labels, probs, settings: dict, method: str = "watershed") -> dict[str, float]:
    """``{"dice", "iou", "dsb_map", "objects"}`` of the model's ``(H, W, K)`` maps ``probs``
    against the true label maps: pixel scores of the foreground at ``settings["threshold"]``
    and the instance score of ``label_instances(..., **settings)``."""
    pixel = pixel_scores([np.asarray(t) > 0 for t in labels], [foreground(p) for p in probs],
                         settings["threshold"])
    return {"dice": pixel["dice"], "iou": pixel["iou"],
            **_instances(labels, probs, method, **settings)}


def evaluate_model(model_path: str | Path, settings: dict, split: str = "test",
                   method: str = "watershed", threshold: float | None = None):
    """A saved ``.keras`` model on one ``split`` of its training run's data, beside the
    classical baselines: ``(split, probs, result dict)``.

    ``settings``: ``data``, ``img_size``, ``seed``, ``quick``, ``threshold``,
    ``postprocessing``, ``record`` (the run's ``metrics.json``) and ``scale`` (None:
    ``rescale.pipeline``'s default); ``threshold`` replaces the chosen one. Raises ValueError,
    before any data are loaded, for a model with neither 1 nor 3 output channels.
    """
    import keras

    from unet_course import datasets, rescale

    model = keras.saving.load_model(model_path)
    classes = model.output_shape[-1]
    if classes not in (1, 3):
        raise ValueError(f"--model {str(model_path)!r} outputs shape {tuple(model.output_shape)}: "
                         "evaluate scores one foreground probability (1 channel) or the "
                         "recipe's background / interior / boundary classes (3 channels)")
    if classes == 1 and settings.get("scale") not in (None, 1):
        raise ValueError(f"--scale {settings['scale']}: only the recipe's three-class models "
                         "are predicted at another scale; this model has one output channel")
    where = dict(img_size=settings["img_size"], quick=settings["quick"], seed=settings["seed"])
    images = datasets.load_split(settings["data"], split, **where)  # this split's images only
    result = {"model": str(model_path), "data": str(settings["data"]), "split": split,
              "source": datasets.source(settings["data"], **where), "images": len(images),
              "seed": settings["seed"]}
    if classes == 3:  # background / interior / boundary: the recipe's model
        record = settings.get("record") or {"postprocessing": settings.get("postprocessing")}
        plan = rescale.pipeline(record, settings.get("scale"))
        probs, _ = rescale.predict_pipeline(model, images.images, plan)
        post = dict(plan.settings)
        if threshold:
            post["threshold"] = threshold
        found = scores(images.labels, probs, post, method=method)
        result.update(found, threshold=post["threshold"], postprocessing=post, instances=method,
                      scale=plan.scale)
    else:
        probs = predict_native(model, images.images)
        pixel = pixel_scores(images.masks, probs, settings["threshold"])
        result.update(dice=pixel["dice"], iou=pixel["iou"], threshold=pixel["threshold"])
        result.update(_instances(images.labels, probs, method, threshold=settings["threshold"]),
                      instances=method)
    tuned = (settings.get("record") or {}).get("val_classical", {}).get("settings")
    result["baseline"] = _baseline_beside(images, result, tuned)
    return images, probs, result


def _baseline_beside(split, result: dict, classical_settings: dict | None = None) -> dict:
    """The two Otsu pipelines and ``classical_instances`` (with the settings ``train`` tuned,
    else ``CLASSICAL_DEFAULT``) on the same images, and whether the model beats the best."""
    from unet_course.baseline import CLASSICAL_DEFAULT, baseline_scores, classical_scores

    classical = baseline_scores(split.images, split.labels)
    tuned = dict(classical_settings or CLASSICAL_DEFAULT)
    classical["classical"] = {**classical_scores(split.images, split.labels, tuned),
                              "settings": tuned}
    best = max(classical, key=lambda name: classical[name]["dsb_map"])
    return {**classical, "best_baseline": best, "model_beats_baseline": bool(
        result["dice"] > classical[best]["dice"] and result["dsb_map"] > classical[best]["dsb_map"])}
