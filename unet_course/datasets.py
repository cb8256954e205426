"""Datasets for training: ``"synthetic"`` or a DSB2018 folder as seeded train/val/test splits.

What belongs here: ``load_splits``, which the command line and notebook 05 use to get the
same three splits for the same settings, and the ``Split``/``Splits`` containers.

- ``"synthetic"``: three independent sets of ``unet_course.data.make_nuclei`` images, each with
  its own seed derived from ``seed`` (so no test image is a training image).
- a folder in the Data Science Bowl 2018 layout (``ROOT/<id>/images/<id>.png``,
  ``ROOT/<id>/masks/*.png``): loaded at native resolution with ``load_dsb2018`` and shuffled
  with ``seed`` into 70 % / 15 % / 15 % train / validation / test.

Quick mode keeps a few dozen images (and, for the synthetic set, 64x64 images unless you ask
for a size), so that a whole training run takes seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
import numbers
from pathlib import Path

import numpy as np

SYNTHETIC = "synthetic"
FULL_COUNTS = {"train": 320, "val": 64, "test": 64}
QUICK_COUNTS = {"train": 24, "val": 8, "test": 8}
QUICK_IMG_SIZE = 64
FULL_IMG_SIZE = 256
DSB_FRACTIONS = (0.70, 0.15, 0.15)
SPLIT_NAMES = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a dataset.

    Attributes:
        images: ``(n, H, W, 3) uint8`` array, or a list of ``(H_i, W_i, 3) uint8`` arrays when
            the sizes differ (DSB2018).
        labels: instance labels to match, ``(n, H, W) int32`` or a list of ``(H_i, W_i) int32``;
            0 is background.
    """

    images: np.ndarray | list[np.ndarray]
    labels: np.ndarray | list[np.ndarray]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def masks(self) -> np.ndarray | list[np.ndarray]:
        """The semantic masks ``labels > 0`` as ``uint8`` 0/1, in the same container type."""
        if isinstance(self.labels, np.ndarray):
            return (self.labels > 0).astype(np.uint8)
        return [(lab > 0).astype(np.uint8) for lab in self.labels]

    @property
    def same_size(self) -> bool:
        """True when every image has the same height and width (a stacked array)."""
        return isinstance(self.images, np.ndarray)


@dataclasses.dataclass(frozen=True)
class Splits:
    """Train, validation and test splits of one dataset, and where they came from."""

    train: Split
    val: Split
    test: Split
    source: str

    def describe(self) -> str:
        """One line: the source and the number of images in each split."""
        return (
            f"{self.source}: {len(self.train)} train, {len(self.val)} validation, "
            f"{len(self.test)} test images"
        )


def check_data(data: str | Path) -> str | Path:
    """Return ``data`` if it is ``"synthetic"`` or an existing folder; raise otherwise."""
    if isinstance(data, str) and data == SYNTHETIC:
        return data
    if not isinstance(data, str | Path):
        raise TypeError(f"data must be 'synthetic' or a folder path, got {type(data).__name__}")
    path = Path(data)
    if not path.is_dir():
        raise FileNotFoundError(
            f"data {str(data)!r} is neither 'synthetic' nor an existing folder in the DSB2018 "
            "layout (ROOT/<id>/images/<id>.png and ROOT/<id>/masks/*.png)"
        )
    return path


def load_splits(
    data: str | Path = SYNTHETIC,
    img_size: int | None = None,
    *,
    quick: bool = False,
    seed: int = 0,
    counts: dict[str, int] | None = None,
) -> Splits:
    """Seeded train/validation/test splits of the synthetic nuclei or of a DSB2018 folder.

    Args:
        data: ``"synthetic"`` or the path of a folder in the DSB2018 layout.
        img_size: side of the synthetic images (default 256, or 64 in quick mode). Ignored for
            DSB2018, whose images keep their native sizes (training crops them).
        quick: keep a few dozen images only (``QUICK_COUNTS``).
        seed: the same seed gives the same splits.
        counts: synthetic only: ``{"train": n, "val": n, "test": n}`` to override the sizes.

    Returns:
        ``Splits``; for synthetic data each split's images are ``(n, S, S, 3) uint8``.
    """
    data, counts = _check_args(data, img_size, seed, counts, quick)
    if data == SYNTHETIC:
        size = img_size or (QUICK_IMG_SIZE if quick else FULL_IMG_SIZE)
        return _synthetic_splits(size, seed, counts)
    return _dsb_splits(Path(data), seed, quick)


def load_split(
    data: str | Path = SYNTHETIC,
    name: str = "test",
    img_size: int | None = None,
    *,
    quick: bool = False,
    seed: int = 0,
    counts: dict[str, int] | None = None,
) -> Split:
    """``getattr(load_splits(data, img_size, ...), name)``, reading or making only that split's
    images (``evaluate`` scores one split of a large folder without loading the others)."""
    if name not in SPLIT_NAMES:
        raise ValueError(f"name must be one of {SPLIT_NAMES}, got {name!r}")
    data, counts = _check_args(data, img_size, seed, counts, quick)
    if data == SYNTHETIC:  # each split is made from its own seed: make only this one
        size = img_size or (QUICK_IMG_SIZE if quick else FULL_IMG_SIZE)
        split_seed = _split_seeds(seed)[SPLIT_NAMES.index(name)]
        from unet_course.data import make_nuclei

        return Split(*make_nuclei(counts[name], size=size, seed=split_seed))
    return _dsb_splits(Path(data), seed, quick, only=name)


def source(data: str | Path, img_size: int | None = None, *, quick: bool = False,
           seed: int = 0) -> str:
    """The ``Splits.source`` line of ``load_splits(data, img_size, quick=quick, seed=seed)``."""
    if data == SYNTHETIC:
        size = img_size or (QUICK_IMG_SIZE if quick else FULL_IMG_SIZE)
        return f"synthetic nuclei {size}x{size} (seed {seed})"
    return f"DSB2018 folder {str(data)!r} (seed {seed})"


def _check_args(data, img_size, seed, counts, quick) -> tuple[str | Path, dict[str, int]]:
    data = check_data(data)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if img_size is not None and (
        isinstance(img_size, bool) or not isinstance(img_size, numbers.Integral) or img_size < 32
    ):
        raise ValueError(f"img_size must be an integer >= 32, got {img_size!r}")
    return data, _check_counts(counts, quick)


def _check_counts(counts: dict[str, int] | None, quick: bool) -> dict[str, int]:
    default = QUICK_COUNTS if quick else FULL_COUNTS
    if counts is None:
        return dict(default)
    if not isinstance(counts, dict) or set(counts) - set(default):
        raise ValueError(f"counts must be a dict with keys among {sorted(default)}, got {counts!r}")
    merged = {**default, **counts}
    for key, value in merged.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"counts[{key!r}] must be a positive integer, got {value!r}")
    return merged


def _split_seeds(seed: int) -> list[int]:
    """Three independent seeds for train, validation and test, derived from ``seed``."""
    children = np.random.SeedSequence(seed).spawn(3)
    return [int(child.generate_state(1)[0]) for child in children]


def _synthetic_splits(size: int, seed: int, counts: dict[str, int]) -> Splits:
    from unet_course.data import make_nuclei

    parts = []
    for name, split_seed in zip(("train", "val", "test"), _split_seeds(seed), strict=True):
        images, labels = make_nuclei(counts[name], size=size, seed=split_seed)
        parts.append(Split(images, labels))
    return Splits(*parts, source=source(SYNTHETIC, size, seed=seed))


def _dsb_splits(root: Path, seed: int, quick: bool, only: str | None = None):
    from unet_course.dsb2018 import dsb2018_ids, load_dsb2018

    ids = dsb2018_ids(root)
    n = len(ids)
    if n < 3:
        raise ValueError(f"{str(root)!r} holds {n} image(s); at least 3 are needed to split")
    order = np.random.default_rng(seed).permutation(n)
    if quick:  # read only the images kept
        order = order[: sum(QUICK_COUNTS.values())]
    n_val = max(1, round(len(order) * DSB_FRACTIONS[1]))
    n_test = max(1, round(len(order) * DSB_FRACTIONS[2]))
    n_train = len(order) - n_val - n_test
    pieces = dict(zip(SPLIT_NAMES, np.split(order, [n_train, n_train + n_val]), strict=True))
    if only is not None:  # one split: read its images only
        return Split(*_as_lists(load_dsb2018(root, ids=[ids[i] for i in pieces[only]])))
    images, labels = _as_lists(load_dsb2018(root, ids=[ids[i] for i in order]))
    where = {i: k for k, i in enumerate(order)}  # position in what was read
    parts = [Split([images[where[i]] for i in p], [labels[where[i]] for i in p])
             for p in pieces.values()]
    return Splits(*parts, source=source(root, seed=seed))


def _as_lists(loaded) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``load_dsb2018``'s answer as two lists: RGB ``uint8`` images and ``int32`` labels."""
    images, labels = loaded[0], loaded[1]
    images = [np.asarray(im)[..., :3] for im in images]
    return images, [np.asarray(lab, dtype=np.int32) for lab in labels]
