"""Checks for notebook 07's exercises (your own images).

Each ``check_exercise_N`` takes the learner's function and returns a ``Result``. The expected
values come from independent computations written here: sample folders in the Data Science
Bowl layout written with PIL from label maps the check knows, nucleus areas from
``skimage.measure.regionprops``, and a loop over the nuclei for the image's edge; never from
``unet_course.dsb2018`` or ``rescale``, nor from the reference solutions. The data are drawn
with fixed seeds, so the checks do not depend on the notebook's variables.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from unet_course.lessons.exercises import Result, run_check

MODES = ("RGBA", "RGB", "L")  # how the check's sample images are stored


def _sample(seed: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """One small slide: the (H, W, 3) uint8 image a reader should return, and its labels."""
    from unet_course.data import make_nuclei

    _, labels = make_nuclei(1, size=48, seed=seed)
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 60, (*labels[0].shape, 3), dtype=np.uint8)
    rgb[labels[0] > 0] += np.array([150, 110, 70], np.uint8)  # nuclei of one hue, noise of all
    if mode == "L":
        rgb = np.repeat(rgb[..., :1], 3, axis=-1)  # a grey picture: the one channel, three times
    return rgb, labels[0].astype(np.int32)


def _write_sample(root: Path, name: str, rgb: np.ndarray, labels: np.ndarray,
                  mode: str) -> Path:
    """Write ``root/name/images/name.png`` (stored as ``mode``) and one 0/255 PNG per nucleus."""
    from PIL import Image

    sample = root / name
    (sample / "images").mkdir(parents=True)
    (sample / "masks").mkdir()
    if mode == "RGBA":
        pixels = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=-1)
    else:
        pixels = rgb[..., 0] if mode == "L" else rgb
    Image.fromarray(pixels, mode).save(sample / "images" / f"{name}.png")
    rng = np.random.default_rng(len(name))
    for v in np.unique(labels[labels > 0]):  # file names as in the Data Science Bowl: hex ids
        mask = ((labels == v) * 255).astype(np.uint8)
        Image.fromarray(mask, "L").save(sample / "masks" / f"{rng.bytes(8).hex()}.png")
    return sample


def _same_nuclei(truth: np.ndarray, got: np.ndarray) -> str | None:
    """None when ``got`` splits the pixels into the same nuclei as ``truth`` (any ids)."""
    if not np.array_equal(got > 0, truth > 0):
        return "its nucleus pixels differ from the mask files' (0 must be background)"
    n_true, n_got = len(np.unique(truth[truth > 0])), len(np.unique(got[got > 0]))
    if n_got != n_true:
        return (f"it holds {n_got} nuclei where the sample has {n_true} mask files: give each "
                "mask file an id of its own")
    for v in np.unique(truth[truth > 0]):
        if len(np.unique(got[truth == v])) != 1:
            return "a nucleus of one mask file got more than one id"
    return None


def check_exercise_1(read_sample: Callable) -> Result:
    """``read_sample(sample_dir) -> (image, labels)``: one sample folder of the Data Science
    Bowl layout read into an (H, W, 3) uint8 image and an (H, W) label map, one id per mask."""
    cases = [(mode, *_sample(71 + k, mode)) for k, mode in enumerate(MODES)]
    with tempfile.TemporaryDirectory() as folder:
        samples = [_write_sample(Path(folder), f"sample{k}{mode.lower()}", rgb, lab, mode)
                   for k, (mode, rgb, lab) in enumerate(cases)]

        def attempt():
            return [read_sample(sample) for sample in samples]

        def verify(got):
            for (mode, rgb, lab), answer in zip(cases, got, strict=True):
                image, labels = (np.asarray(a) for a in answer)
                if image.shape != rgb.shape:
                    hint = {"RGBA": "drop the alpha channel", "L": "repeat the grey plane"}
                    return (f"the image stored as {mode} came back with shape {image.shape}, "
                            f"expected {rgb.shape}" + (f": {hint[mode]}" if mode in hint else ""))
                if not np.array_equal(image, rgb):
                    return f"the image stored as {mode} came back with other pixel values"
                if labels.shape != lab.shape:
                    return f"the labels have shape {labels.shape}, expected {lab.shape}"
                problem = _same_nuclei(lab, labels)
                if problem:
                    return f"the labels of the sample stored as {mode}: {problem}"
            return None

        return run_check("Exercise 1", attempt, verify)


def _areas(labels) -> np.ndarray:
    """Areas in pixels of every nucleus in one label map or a list of them (regionprops)."""
    from skimage.measure import regionprops

    maps = [labels] if np.asarray(labels).ndim == 2 else labels
    return np.array([r.area for lab in maps for r in regionprops(np.asarray(lab))], dtype=float)


def check_exercise_2(scale_factor: Callable) -> Result:
    """``scale_factor(train_labels, labels, limits=(0.5, 2.0)) -> float``: sqrt of the median
    training nucleus area over the median area of ``labels``' nuclei, clipped to ``limits``."""
    from unet_course.data import make_nuclei

    _, train = make_nuclei(3, size=96, seed=41)
    _, others = make_nuclei(2, size=64, seed=43)
    a_train = np.median(_areas(list(train)))
    enlarged = [np.kron(others[0], np.ones((k, k), dtype=others[0].dtype)) for k in (2, 3)]
    cases = [(others[0], (0.5, 2.0)), (enlarged[0], (0.5, 2.0)), (enlarged[1], (0.5, 2.0)),
             (enlarged[1], (0.25, 4.0)), (others[1], (0.9, 1.1))]

    def wrong_ways(lab, limits):
        a = np.median(_areas(lab))
        a_mean = np.mean(_areas(list(train)))
        per_image = np.median([np.median(_areas(t)) for t in train])
        return {
            "without the square root: a width scales with the square root of an area":
                np.clip(a_train / a, *limits),
            "upside down: nuclei larger than the training ones need a factor below 1":
                np.clip(np.sqrt(a / a_train), *limits),
            "not clipped to limits": np.sqrt(a_train / a),
            "with the mean area, not the median": np.clip(np.sqrt(a_mean / a), *limits),
            "with the median of each training image's median, not of all training nuclei":
                np.clip(np.sqrt(per_image / a), *limits),
        }

    def attempt():
        return [float(scale_factor(list(train), lab, limits=lim)) for lab, lim in cases]

    def verify(got):
        for (lab, limits), value in zip(cases, got, strict=True):
            want = float(np.clip(np.sqrt(a_train / np.median(_areas(lab))), *limits))
            if np.isclose(value, want, rtol=1e-6):
                continue
            for why, other in wrong_ways(lab, limits).items():
                if np.isclose(value, other, rtol=1e-6) and not np.isclose(other, want):
                    return f"with limits {limits} you gave {value:.3f}: that is the factor {why}"
            return (f"with limits {limits} you gave {value:.3f}; regionprops' areas give "
                    f"{want:.3f}")
        return None

    return run_check("Exercise 2", attempt, verify)


def _without_edge(labels: np.ndarray) -> np.ndarray:
    """The label map with every nucleus that has a pixel on the image's edge set to 0."""
    out = labels.copy()
    for v in np.unique(labels[labels > 0]):
        ys, xs = np.nonzero(labels == v)
        if ys.min() == 0 or xs.min() == 0 or ys.max() == labels.shape[0] - 1 \
                or xs.max() == labels.shape[1] - 1:
            out[labels == v] = 0
    return out


def check_exercise_3(drop_edge_nuclei: Callable) -> Result:
    """``drop_edge_nuclei(labels) -> labels``: the nuclei with a pixel on the image's edge
    removed, the others kept whole with their ids."""
    from unet_course.data import make_nuclei

    hand = np.zeros((8, 10), dtype=np.int32)
    hand[0:2, 3:5], hand[3:5, 0:2], hand[6:8, 4:6], hand[3:5, 8:10], hand[3:5, 4:6] = 1, 2, 3, 4, 9
    _, generated = make_nuclei(2, size=64, seed=51)
    cases = [hand, *[lab.astype(np.int32) for lab in generated]]

    def verify(got):
        for k, (lab, answer) in enumerate(zip(cases, got, strict=True)):
            answer = np.asarray(answer)
            want = _without_edge(lab)
            where = "the 8x10 example" if k == 0 else f"generated slide {k}"
            if answer.shape != lab.shape:
                return f"on {where} you returned shape {answer.shape}, expected {lab.shape}"
            if np.array_equal(answer, want):
                continue
            kept = set(np.unique(answer[answer > 0]).tolist())
            if kept - set(np.unique(lab).tolist()):
                return f"on {where} your ids are not the input's: keep each nucleus's id"
            partly = [v for v in kept if np.any(want[lab == v] == 0)]
            if partly:
                edge = "bottom or right" if k == 0 and partly[0] in (3, 4) else "image's"
                return (f"on {where} nucleus {partly[0]} touches the {edge} edge and is "
                        "(partly) still there: drop whole nuclei, on all four edges")
            return f"on {where} a nucleus away from the edges was removed or cut"
        return None

    return run_check("Exercise 3", lambda: [drop_edge_nuclei(lab.copy()) for lab in cases],
                     verify)
