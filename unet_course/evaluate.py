"""Scoring a trained model's predictions: ``choose_threshold`` (the best pixel Dice on
validation images), ``instance_score`` and ``scores`` (probabilities -> nuclei -> the Data
Science Bowl 2018 score, beside the pixel scores of ``scoring.pixel_scores``) and
``evaluate_model`` (the work of ``unet-course evaluate``: a saved model on the held-out split
of its training run, beside the classical pipelines).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unet_course.postprocess import label_instances
from unet_course.predict import foreground, predict_native
from unet_course.scoring import dsb_score_dataset, pixel_scores


def choose_threshold(masks, probs, thresholds: Sequence[float] | None = None) -> tuple[float, np.ndarray]:
    """The threshold with the highest pixel Dice on these (validation) images.

    Returns:
        ``(best_threshold, dice)`` where ``dice[i]`` is the pixel Dice at ``thresholds[i]``
        (default thresholds: 0.05, 0.10, ..., 0.95). Ties go to the threshold closest to 0.5.
    """
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2) if thresholds is None else np.asarray(thresholds)
    if grid.ndim != 1 or grid.size == 0 or np.any((grid <= 0) | (grid >= 1)):
        raise ValueError(f"thresholds must be a non-empty 1-D list of numbers in (0, 1), got {thresholds!r}")
    dice = np.array([pixel_scores(masks, probs, t)["dice"] for t in grid])
    best = np.flatnonzero(dice == dice.max())
    return float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]]), dice


def instance_score(labels, probs, threshold: float, method: str) -> dict:
    """``{"dsb_map", "instances", "objects"}``: probabilities -> nuclei -> DSB 2018 score.

    Args:
        labels: true (H_i, W_i) instance label maps; probs: foreground probabilities of the
            same shapes; threshold, method: as in ``postprocess.label_instances``.
    """
    found = [label_instances(p, threshold, method) for p in probs]
    return {"dsb_map": dsb_score_dataset(labels, found), "instances": method,
            "objects": int(sum(f.max() for f in found))}


def scores(labels, probs, settings: dict, method: str = "watershed") -> dict[str, float]:
    """Pixel Dice and IoU of the foreground (at ``settings["threshold"]``) and the instance
    score of ``label_instances(..., **settings)``.

    Args:
        labels: true instance label maps; probs: the model's ``(H, W, K)`` maps of them.

    Returns ``{"dice", "iou", "dsb_map", "objects"}``.
    """
    pixel = pixel_scores([np.asarray(t) > 0 for t in labels], [foreground(p) for p in probs],
                         settings["threshold"])
    found = [label_instances(p, method=method, **settings) for p in probs]
    return {"dice": pixel["dice"], "iou": pixel["iou"],
            "dsb_map": dsb_score_dataset([np.asarray(t) for t in labels], found),
            "objects": int(sum(f.max() for f in found))}


def evaluate_model(model_path: str | Path, settings: dict, split: str = "test",
                   method: str = "watershed", threshold: float | None = None):
    """A saved model on one split of its training run's data, beside the Otsu baselines.

    Args:
        model_path: a ``.keras`` file (read in Keras's safe mode).
        settings: ``data``, ``img_size``, ``seed``, ``quick``, ``threshold``,
            ``postprocessing`` and ``record`` (the training run's ``metrics.json``), and
            ``scale`` (the user's ``--scale``; None: ``rescale.pipeline``'s default).
        split: ``"test"`` or ``"val"``.
        method: ``"components"`` or ``"watershed"`` (``postprocess.METHODS``).
        threshold: the user's threshold, replacing the recipe's chosen one (None: keep it).

    Returns:
        ``(split, probs, result dict)``; raises ValueError for a model whose output is
        neither 1 channel nor the recipe's 3 classes, before any data are loaded.
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
        result.update(instance_score(images.labels, probs, settings["threshold"], method))
    tuned = (settings.get("record") or {}).get("val_classical", {}).get("settings")
    result["baseline"] = _baseline_beside(images, result, tuned)
    return images, probs, result


def _baseline_beside(split, result: dict, classical_settings: dict | None = None) -> dict:
    """The classical pipelines on the same images, and whether the model beats the best of
    them: the two Otsu pipelines, and ``baseline.classical_instances`` with the settings
    ``train`` tuned on the validation slides (``CLASSICAL_DEFAULT`` without a record)."""
    from unet_course.baseline import CLASSICAL_DEFAULT, baseline_scores, classical_scores

    classical = baseline_scores(split.images, split.labels)
    tuned = dict(classical_settings or CLASSICAL_DEFAULT)
    classical["classical"] = {**classical_scores(split.images, split.labels, tuned),
                              "settings": tuned}
    best = max(classical, key=lambda name: classical[name]["dsb_map"])
    return {**classical, "best_baseline": best, "model_beats_baseline": bool(
        result["dice"] > classical[best]["dice"] and result["dsb_map"] > classical[best]["dsb_map"])}
