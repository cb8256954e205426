"""Checks for notebook 01's exercises (semantic vs instance segmentation).

Each ``check_exercise_N`` takes the learner's function(s) and returns a ``Result``. The expected
values come from scikit-image (``regionprops``, ``measure.label``, ``threshold_otsu``), Keras
(``to_categorical``) and small hand-worked examples, never from the reference solutions or from
``unet_course.baseline``. The test images are drawn by the course's generator with fixed seeds,
so the checks do not depend on the notebook's variables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from unet_course.lessons.exercises import Result, run_check


def _label_maps() -> np.ndarray:
    """A hand-worked map (areas 2, 3, 1: mean 2) and three generated ones, as ``(4, 64, 64)``."""
    from unet_course.data import make_nuclei

    hand = np.zeros((64, 64), dtype=np.int32)
    hand[0, 0:2] = 1
    hand[2, 0:3] = 2
    hand[5, 5] = 3
    _, generated = make_nuclei(3, size=64, seed=11)
    return np.concatenate([hand[None], generated])


def check_exercise_1(mean_areas: Callable) -> Result:
    """``mean_areas(labels (n, H, W) int) -> (n,)``: mean nucleus area per image, vs regionprops."""
    from skimage import measure

    labels = _label_maps()
    want = np.array([np.mean([p.area for p in measure.regionprops(lab)]) for lab in labels])

    def verify(got):
        got = np.asarray(got, dtype=float)
        if got.shape != want.shape:
            return f"expected one mean per image, shape {want.shape}, got shape {got.shape}"
        if not np.isclose(got[0], 2.0):
            return (f"on a hand-worked map with nuclei of 2, 3 and 1 pixels (mean 2) you gave "
                    f"{got[0]:g}; is the background (label 0) left out?")
        if not np.allclose(got, want):
            return f"your means {np.round(got, 1)} differ from regionprops' {np.round(want, 1)}"
        return None

    return run_check("Exercise 1", lambda: mean_areas(labels), verify)


def check_exercise_2(count_components_8: Callable, answer: Any) -> Result:
    """``count_components_8(mask) -> int`` with 8-connectivity, and ``answer`` (bool) to "can
    8-connectivity ever give more components than 4-connectivity?"."""
    from skimage import measure

    diagonal = np.eye(4, dtype=bool)  # four pixels touching only at corners: 1 component, not 4
    masks = [diagonal, *(_label_maps()[1:] > 0)]
    want = [int(measure.label(m, connectivity=2).max()) for m in masks]
    with_4 = [int(measure.label(m, connectivity=1).max()) for m in masks]

    def attempt():
        if answer is None or answer is Ellipsis:
            raise NotImplementedError
        return [int(count_components_8(m)) for m in masks], answer

    def verify(value):
        counts, given = value
        if counts[0] != 1:
            return (f"a diagonal line of 4 pixels is one component with 8-connectivity, you "
                    f"counted {counts[0]}; do corner neighbours connect?")
        if counts != want:
            return f"your counts {counts} differ from scikit-image's {want}"
        if not isinstance(given, bool | np.bool_):
            return f"answer should be True or False, got {given!r}"
        if bool(given) != any(a > b for a, b in zip(want, with_4, strict=True)):
            return (f"answer is {given!r}: a corner contact joins two pieces; can it ever "
                    "split one?")
        return None

    return run_check("Exercise 2", attempt, verify)


def check_exercise_3(to_one_hot: Callable, from_one_hot: Callable) -> Result:
    """``to_one_hot(index_map, num_classes) -> (H, W, C)`` and ``from_one_hot -> (H, W)``."""
    import keras

    hand = np.array([[0, 2], [1, 0]])
    rng = np.random.default_rng(3)
    cases = [(hand, 3), (rng.integers(0, 3, (16, 16)), 3), (rng.integers(0, 5, (8, 12)), 5)]

    def attempt():
        return [(np.asarray(to_one_hot(index, c)), np.asarray(from_one_hot(
            keras.utils.to_categorical(index, c)))) for index, c in cases]

    def verify(answers):
        for (index, c), (hot, back) in zip(cases, answers, strict=True):
            if hot.shape != (*index.shape, c):
                return (f"for a {index.shape} map with {c} classes the one-hot array should "
                        f"have shape {(*index.shape, c)} (channels last), got {hot.shape}")
            if not np.array_equal(hot, keras.utils.to_categorical(index, c)):
                return f"to_one_hot differs from keras.utils.to_categorical for {c} classes"
            if back.shape != index.shape or not np.array_equal(back, index):
                return "from_one_hot does not give the class-index map back: which axis holds the classes?"
        return None

    return run_check("Exercise 3", attempt, verify)


def _exercise_4_slides() -> list[tuple[str, np.ndarray]]:
    """``(description, image (96, 96, 3) uint8)``: two easy slides of each style, an
    under-exposed bright-field slide (lit background below 128) and a fluorescence slide with a
    raised background (above 128), so that no fixed grey level tells the styles apart. Easy
    slides, so that any fair grey conversion gives Otsu's mask: the polarity is what is checked."""
    from unet_course.data import Difficulty, make_nuclei

    easy = Difficulty.easy()
    slides = []
    for style in ("fluorescence", "brightfield"):
        images, _ = make_nuclei(2, size=96, seed=5, style=style, difficulty=easy)
        slides += [(f"{style} slide", image) for image in images]
    (dim,), _ = make_nuclei(1, size=96, seed=6, style="brightfield", difficulty=easy)
    slides.append(("under-exposed brightfield slide", (dim * 0.4).astype(np.uint8)))
    (raised,), _ = make_nuclei(1, size=96, seed=6, style="fluorescence", difficulty=easy)
    slides.append(("fluorescence slide with a raised background",
                   np.clip(raised.astype(np.int32) + 120, 0, 255).astype(np.uint8)))
    return slides


def check_exercise_4(nuclei_mask: Callable) -> Result:
    """``nuclei_mask(image (H, W, 3) uint8) -> (H, W) bool``: global Otsu, nuclei True in both
    styles, whatever the exposure. Compared with scikit-image's Otsu on the grey image, flipped
    where the slide is known to be bright-field."""
    from skimage.color import rgb2gray
    from skimage.filters import threshold_otsu

    cases = []
    for what, image in _exercise_4_slides():
        grey = -rgb2gray(image) if "brightfield" in what else rgb2gray(image)
        cases.append((what, image, grey > threshold_otsu(grey)))

    def verify(masks):
        for (what, image, want), got in zip(cases, masks, strict=True):
            got = np.asarray(got)
            if got.shape != want.shape or got.dtype != bool:
                return f"expected a {want.shape} bool mask, got {got.shape} {got.dtype}"
            iou = np.sum(got & want) / max(np.sum(got | want), 1)
            if iou < 0.9:
                hint = ("is it Otsu's threshold, with nuclei True?" if iou > 0.2 else
                        "are the nuclei dark or bright there? A slide's mean grey level is "
                        f"{image.mean():.0f} here: does your rule compare with a fixed level?")
                return f"on a {what} your mask overlaps Otsu's nuclei by IoU {iou:.2f}; {hint}"
        return None

    return run_check("Exercise 4", lambda: [nuclei_mask(image) for _, image, _ in cases], verify)
