"""Size normalisation: predict an image at the scale where its nuclei look like the training ones
(as Cellpose rescales images to its models' cell diameter).

1. ``most_confident_rungs``: predict each image at its own size and shrunk by each factor of
   ``LADDER``, and keep the scale whose class maps are most confident (``predict.confidence``).
2. ``choose_scale``: separate the nuclei found there; resize the image by
   ``sqrt(target_area / their median area)`` (within ``LIMITS`` times the rung) and predict
   again (``predict_at_scale``), the maps resized back to the image's own size.

``predict_size_normalised`` does both for a list of images; ``pipeline`` reads from a training
record how ``predict`` and ``evaluate`` run a model, and ``predict_pipeline`` predicts that way.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from unet_course.postprocess import DEFAULT_POSTPROCESSING, label_instances
from unet_course.predict import confidence, predict_classes

LIMITS = (0.5, 2.0)  # the factor stays within these times the rung it is estimated at
_SAME = 0.1  # a scale within 10 % of one already predicted keeps that prediction
MIN_SIDE = 16  # the shortest side a resized image is given
MAX_PIXELS = 4096 * 4096  # the most an image is enlarged to (16 Mi pixels; memory)
LADDER = (1.0, 2**-0.5, 0.5, 2**-1.5, 0.25)  # the scales of step 1
LADDER_MIN_SIDE = 64  # no rung shrinks an image's shorter side below this


def median_area(labels) -> float:
    """The median area in pixels of the objects of one ``(H, W)`` label map or a sequence of
    them (NaN when there is none)."""
    maps = [labels] if isinstance(labels, np.ndarray) and labels.ndim == 2 else labels
    counts = [np.bincount(np.asarray(m).ravel())[1:] for m in maps]
    areas = np.concatenate([c[c > 0] for c in counts]) if counts else np.zeros(0)
    return float(np.median(areas)) if areas.size else float("nan")


def choose_scale(found, target_area: float, limits: tuple[float, float] = LIMITS,
                 around: float = 1.0) -> float:
    """``sqrt(target_area / median area of found)``, clipped to ``around * limits``, where
    ``found`` is a label map predicted at scale ``around``; ``around`` when it is empty."""
    if not (np.isfinite(target_area) and target_area > 0):
        raise ValueError(f"target_area must be a positive number of pixels, got {target_area!r}")
    low, high = limits
    if not 0 < low <= 1 <= high:
        raise ValueError(f"limits must be (low, high) with 0 < low <= 1 <= high, got {limits!r}")
    area = median_area(found)
    if not np.isfinite(area):
        return float(around)
    return float(np.clip(np.sqrt(target_area / area), around * low, around * high))


def _resize(array, size: tuple[int, int], anti_aliasing: bool | None = None) -> np.ndarray:
    """Bilinear ``skimage.transform.resize`` of ``array`` as float32 to ``size``."""
    from skimage.transform import resize

    return resize(np.asarray(array).astype(np.float32), size, order=1,
                  anti_aliasing=anti_aliasing, preserve_range=True).astype(np.float32)


def _shrunk(image: np.ndarray, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    return _resize(image, (round(h * scale), round(w * scale)), anti_aliasing=scale < 1)


def most_confident_rungs(model, images, first=None, ladder: tuple[float, ...] = LADDER
                         ) -> tuple[list[float], list[np.ndarray]]:
    """Step 1: for each image, the rung of ``ladder`` whose class maps, resized back to the
    image's own size, are most confident, and those maps: ``(rungs, maps)``. Rungs that make
    an image's shorter side less than ``LADDER_MIN_SIDE`` are skipped; ``first`` (the maps at
    rung 1) is predicted when not given."""
    images = [np.asarray(image) for image in images]
    first = predict_classes(model, images) if first is None else first
    best = [1.0] * len(images)
    maps = list(first)
    scores = [confidence(p) for p in first]
    for scale in ladder:
        if scale == 1:
            continue
        ids = [i for i, image in enumerate(images) if min(image.shape[:2]) * scale
               >= LADDER_MIN_SIDE]
        probs = predict_classes(model, [_shrunk(images[i], scale) for i in ids])
        for i, p in zip(ids, probs, strict=True):  # compared on the image's own pixels
            p = _resize(p, images[i].shape[:2])
            c = confidence(p)
            if c is not None and (scores[i] is None or c > scores[i]):
                best[i], scores[i], maps[i] = scale, c, p
    return best, maps


def predict_at_scale(model, image, scale: float) -> np.ndarray:
    """``predict.predict_classes`` of ``image`` resized by ``scale`` (raised until the shorter
    side is at least ``MIN_SIDE``), the class maps resized back to the image's ``(H, W)``.
    ValueError for an enlargement beyond ``MAX_PIXELS``."""
    image = np.asarray(image)
    if scale == 1:
        return predict_classes(model, [image])[0]
    h, w = image.shape[:2]
    scale = max(scale, MIN_SIDE / min(h, w))
    size = (round(h * scale), round(w * scale))
    if size[0] * size[1] > max(h * w, MAX_PIXELS):
        raise ValueError(f"scale {scale:g} would enlarge a {w}x{h} image to {size[1]}x{size[0]} "
                         f"pixels, more than {MAX_PIXELS // 2**20} megapixels to predict at once; "
                         "use a smaller factor")
    return _resize(predict_classes(model, [_shrunk(image, scale)])[0], (h, w))


def predict_size_normalised(model, images, settings: dict, target_area: float,
                            first=None, ladder: tuple[float, ...] = LADDER):
    """Both steps for each image: ``(class maps at each image's own size, scales used)``.

    ``settings``: ``label_instances`` keywords that find the nuclei of step 2; ``target_area``:
    the training nuclei's median area; ``first``: the maps at the image's own size, if at hand;
    ``ladder=(1.0,)`` skips step 1.
    """
    images = [np.asarray(image) for image in images]
    first = predict_classes(model, images) if first is None else list(first)
    rungs, maps = most_confident_rungs(model, images, first, ladder)
    probs, scales = [], []
    for image, rung, p in zip(images, rungs, maps, strict=True):
        scale = choose_scale(label_instances(p, method="watershed", **settings), target_area,
                             around=rung)
        keep = abs(scale / rung - 1) < _SAME  # close to the scale already predicted
        scales.append(rung if keep else scale)
        probs.append(p if keep else predict_at_scale(model, image, scale))
    return probs, scales


FACTORS = (0.1, 10.0)  # the factors a user may give (--scale)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a recipe model's images are predicted (``pipeline``).

    Attributes:
        scale: ``"auto"`` (size normalisation) or the factor every image is resized by.
        first: the ``postprocess.label_instances`` settings of the first pass, at each image's
            own size (the nuclei whose size ``"auto"`` measures).
        settings: the settings that split the final maps into nuclei.
        target_area: the training nuclei's median area in pixels (None when not recorded).
    """

    scale: float | str
    first: dict
    settings: dict
    target_area: float | None


def pipeline(record: dict | None, scale: float | str | None = None) -> Plan:
    """How ``predict`` and ``evaluate`` run a recipe model, from its training record (the
    run's ``metrics.json``, or None), every value checked before any image is predicted.

    ``scale``: the user's ``"auto"`` or factor; None keeps the training run's (1.0 without one).
    The final settings are ``postprocessing`` when both are ``"auto"``, else
    ``postprocessing_native`` (also the first pass of ``"auto"``). Raises ValueError for a
    record value that ``train`` does not write (naming its key), ``"auto"`` without
    ``train_median_area``, or a factor other than 1 for a seed or unet model.
    """
    record = record or {}
    if record.get("model") in ("seed", "unet") and scale not in (None, 1):
        raise ValueError(f"only the recipe's models are predicted at another scale; this is a "
                         f"{record['model']} model, predicted at its own size (scale {scale!r})")
    trained = record.get("scale", 1.0)
    _check_scale(trained, "metrics.json: scale")
    chosen = _settings(record, "postprocessing", None)
    native = _settings(record, "postprocessing_native", chosen)
    scale = trained if scale is None else scale
    _check_scale(scale, "scale")
    target = record.get("train_median_area")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int | float)
                               or not np.isfinite(target) or target <= 0):
        raise ValueError(f"metrics.json: train_median_area must be a positive number of "
                         f"pixels, got {target!r}")
    if scale == "auto" and target is None:
        raise ValueError("scale 'auto' needs the training nuclei's median area, which train "
                         "writes into metrics.json beside the model; this model's record has no "
                         "train_median_area (trained before it was recorded, or no record): "
                         "give a factor instead (1 = the images as they are)")
    settings = chosen if scale == "auto" and trained == "auto" else native
    return Plan(scale=scale, first=dict(native), settings=dict(settings), target_area=target)


def _check_scale(value, what: str) -> None:
    low, high = FACTORS
    if value == "auto" or (not isinstance(value, bool) and isinstance(value, int | float)
                           and low <= value <= high):
        return
    raise ValueError(f"{what} must be 'auto' or a number from {low:g} to {high:g}, "
                     f"got {value!r}")


def _settings(record: dict, key: str, default: dict | None) -> dict:
    value = record.get(key)
    if value is None:
        return dict(DEFAULT_POSTPROCESSING if default is None else default)
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"metrics.json: {key} must be the watershed settings train writes "
                         f"(a JSON object), got {value!r}")
    return dict(value)


def predict_pipeline(model, images, plan: Plan, first=None):
    """``(class maps at each image's own size, the factor used for each)``, predicted as
    ``plan`` says: size-normalised (``"auto"``) or resized by its factor."""
    images = [np.asarray(image) for image in images]
    if plan.scale == "auto":
        return predict_size_normalised(model, images, plan.first, plan.target_area,
                                       first=first)
    factors = [float(plan.scale)] * len(images)
    if plan.scale == 1:
        return (predict_classes(model, images) if first is None else list(first)), factors
    return [predict_at_scale(model, image, plan.scale) for image in images], factors
