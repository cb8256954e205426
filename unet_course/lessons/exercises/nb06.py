"""Checks for notebook 06's exercises (from masks to instances).

Each ``check_exercise_N`` takes the learner's function and returns a ``Result``. The expected
values come from hand-worked examples and from independent computations written here with
SciPy and scikit-image (``skimage.metrics.contingency_table`` for the overlaps, a
distance-transform watershed built from ``peak_local_max`` and ``watershed``, one Euclidean
distance transform per nucleus for the weight map), never from ``unet_course.scoring``,
``postprocess`` or ``targets``, nor from the reference solutions. The data are drawn by the course's generator with fixed seeds, so the
checks do not depend on the notebook's variables.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from unet_course.lessons.exercises import Result, run_check

THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def _iou(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every true object (rows) with every predicted object (columns)."""
    from skimage.metrics import contingency_table

    table = contingency_table(true, pred).toarray()  # rows: true ids 0..max, cols: pred ids
    true_ids = np.unique(true[true > 0])
    pred_ids = np.unique(pred[pred > 0])
    inter = table[np.ix_(true_ids, pred_ids)].astype(float)
    area_t = np.bincount(true.ravel())[true_ids]
    area_p = np.bincount(pred.ravel())[pred_ids]
    return inter / (area_t[:, None] + area_p[None, :] - inter)


def _ratio(true: np.ndarray, pred: np.ndarray, t: float) -> float:
    """TP / (TP + FP + FN) at IoU threshold ``t`` >= 0.5 (matches are unique there)."""
    iou = _iou(true, pred)
    tp = int(np.sum(iou > t))
    total = iou.shape[0] + iou.shape[1] - tp
    return tp / total if total else 1.0


def _hand_case() -> tuple[np.ndarray, np.ndarray]:
    """The notebook's hand-worked example: A and B merged, C one column too wide, D extra."""
    truth = np.zeros((16, 18), dtype=np.int32)
    truth[0:6, 0:10], truth[6:10, 0:10], truth[12:16, 12:16] = 1, 2, 3
    guess = np.zeros_like(truth)
    guess[0:10, 0:10], guess[12:16, 12:17], guess[0:3, 14:17] = 1, 2, 3
    return truth, guess


def check_exercise_1(score_at: Callable) -> Result:
    """``score_at(true_labels, pred_labels, t) -> float``: TP / (TP + FP + FN) at one IoU
    threshold, compared with the hand-worked table (also with non-consecutive ids) and
    scikit-image's contingency table."""
    from scipy import ndimage as ndi

    from unet_course.data import make_nuclei

    truth, guess = _hand_case()
    cases = [(truth, guess, t, want) for t, want in ((0.5, 0.5), (0.7, 0.2), (0.8, 0.0))]
    sparse = np.where(guess > 0, 7 * guess + 100, 0)  # the same objects, ids 107, 114, 121
    cases += [(truth, sparse, 0.5, 0.5), (np.where(truth > 0, 3 * truth + 5, 0), sparse, 0.7, 0.2)]
    _, labels = make_nuclei(2, size=64, seed=21)
    for lab in labels:
        shifted = np.roll(lab, 2, axis=1)  # every nucleus two pixels to the right
        merged = ndi.label(lab > 0)[0]  # touching nuclei merged
        for pred, t in ((shifted, 0.5), (shifted, 0.75), (merged, 0.6)):
            cases.append((lab, pred, t, _ratio(lab, pred, t)))

    def verify(got):
        for (_, _, t, want), value in zip(cases[:3], got[:3], strict=True):
            if not np.isclose(float(value), want):
                hint = (" A pair matches only when its IoU is strictly above t: C and C' have "
                        "IoU exactly 0.8." if t == 0.8 else
                        " Are FN (missed nuclei) in the denominator, not only TP + FP?")
                return f"on the hand-worked example at t = {t} you gave {float(value):.3f}.{hint}"
        for (_, _, t, want), value in zip(cases[3:5], got[3:5], strict=True):
            if not np.isclose(float(value), want):
                return (f"on the hand-worked example with its ids renumbered (107, 114, 121 "
                        f"instead of 1, 2, 3) at t = {t} you gave {float(value):.3f}, not "
                        f"{want:.1f}: ids need not be consecutive, so count the objects, not "
                        "the largest id")
        for (_, _, t, want), value in zip(cases[5:], got[5:], strict=True):
            if not np.isclose(float(value), want):
                return (f"on a generated slide at t = {t} you gave {float(value):.3f}, the "
                        f"contingency table gives {want:.3f}")
        return None

    return run_check("Exercise 1", lambda: [score_at(a, b, t) for a, b, t, _ in cases], verify)


def _watershed(prob: np.ndarray, min_distance: int, threshold: float = 0.5,
               smooth: float = 1.0, min_size: int = 10) -> np.ndarray:
    """The distance-transform watershed written out with SciPy and scikit-image."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    mask = prob > threshold
    distance = ndi.gaussian_filter(ndi.distance_transform_edt(mask), smooth)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=ndi.label(mask)[0],
                           exclude_border=False)
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    found = watershed(-distance, markers, mask=mask)
    areas = np.bincount(found.ravel())
    return np.where(areas[found] >= min_size, found, 0)


def _score(labels, found) -> float:
    """The Data Science Bowl 2018 score of a set of images: mean over images of the mean
    ratio over the ten thresholds."""
    return float(np.mean([np.mean([_ratio(t, f, s) for s in THRESHOLDS])
                          for t, f in zip(labels, found, strict=True)]))


def validation_set() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Six 128x128 validation slides: true labels and blurred, noisy foreground
    probabilities that stand in for a network's predictions."""
    from scipy import ndimage as ndi

    from unet_course.data import make_nuclei

    _, labels = make_nuclei(6, size=128, seed=101)
    rng = np.random.default_rng(1)
    probs = [np.clip(ndi.gaussian_filter((lab > 0).astype(float), 2.0)
                     + rng.normal(0, 0.1, lab.shape), 0, 1).astype(np.float32) for lab in labels]
    return list(labels), probs


CANDIDATES = (1, 2, 3, 5, 8)


def check_exercise_2(choose_min_distance: Callable) -> Result:
    """``choose_min_distance(val_labels, val_probs, candidates) -> int``: the ``min_distance``
    of the distance-transform watershed with the best instance score on the *predictions*."""
    labels, probs = validation_set()
    on_probs = {d: _score(labels, [_watershed(p, d) for p in probs]) for d in CANDIDATES}
    on_masks = {d: _score(labels, [_watershed((lab > 0).astype(np.float32), d)
                                   for lab in labels]) for d in CANDIDATES}
    best = max(on_probs, key=on_probs.get)

    def verify(got):
        if isinstance(got, bool) or not isinstance(got, int | np.integer) or got not in CANDIDATES:
            return f"expected one of the candidates {CANDIDATES} (an int), got {got!r}"
        if got != best and on_masks[got] >= max(on_masks.values()):
            return (f"min_distance={got} is the best on the true masks, not on the predictions "
                    f"(there it scores {on_probs[got]:.3f}): tune on what the network predicts")
        if got != best:
            return (f"min_distance={got} scores {on_probs[got]:.3f} on these validation "
                    "predictions; another candidate scores higher")
        return None

    return run_check("Exercise 2", lambda: choose_min_distance(labels, probs, CANDIDATES), verify)


def _eq2(labels: np.ndarray, y: int, x: int, w0: float, sigma: float) -> float:
    """Eq. 2 at one background pixel, one full distance transform per nucleus."""
    from scipy import ndimage as ndi

    n, n_background = labels.size, np.count_nonzero(labels == 0)
    w_c = n / (2 * n_background)
    dists = sorted(ndi.distance_transform_edt(labels != v)[y, x]
                   for v in np.unique(labels) if v)
    return w_c + w0 * np.exp(-((dists[0] + dists[1]) ** 2) / (2 * sigma**2))


def check_exercise_3(border_weight: Callable) -> Result:
    """``border_weight(labels, y, x, w0=10, sigma=5) -> float``: eq. 2 of Ronneberger et al.
    (2015) at one background pixel, with the class-balancing term N / (2 N_background)."""
    from unet_course.data import make_nuclei
    from unet_course.targets import separate_touching

    pair = np.zeros((7, 11), dtype=np.int32)
    pair[1:6, 0:5], pair[1:6, 6:11] = 1, 2
    hand = 77 / (2 * 27) + 10 * np.exp(-4 / 50)  # d1 = d2 = 1; 27 background pixels of 77
    _, generated = make_nuclei(1, size=64, seed=31)
    lab = separate_touching(generated[0])
    rng = np.random.default_rng(0)
    background = np.argwhere(lab == 0)
    pixels = [tuple(p) for p in background[rng.choice(len(background), 4, replace=False)]]
    cases = [(pair, 3, 5, 10.0, 5.0, hand)]
    cases += [(lab, int(y), int(x), 10.0, 5.0, _eq2(lab, y, x, 10.0, 5.0)) for y, x in pixels]
    cases.append((lab, *map(int, pixels[0]), 5.0, 3.0, _eq2(lab, *pixels[0], 5.0, 3.0)))

    def attempt():
        return [float(border_weight(m, y, x, w0=w0, sigma=s)) for m, y, x, w0, s, _ in cases]

    def verify(got):
        if not np.isclose(got[0], hand, atol=1e-4):
            return (f"for the gap pixel between two 5x5 squares you gave {got[0]:.4f}; "
                    "both nuclei are 1 pixel away, and is the class weight N / (2 N_background) "
                    "added?")
        for (_, y, x, w0, s, want), value in zip(cases[1:], got[1:], strict=True):
            if not np.isclose(value, want, atol=1e-4):
                return (f"at pixel ({y}, {x}) of a generated slide (w0={w0}, sigma={s}) you gave "
                        f"{value:.4f}, a distance transform per nucleus gives {want:.4f}; are "
                        "d1 and d2 the two nearest *different* nuclei?")
        return None

    return run_check("Exercise 3", attempt, verify)
