"""Seeded train/val/test splits of the synthetic nuclei or of a DSB2018 folder."""

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
MIN_GROUPS = 3  # a grouped split of fewer groups is a plain shuffle
CANDIDATES = 20  # GroupShuffleSplit's draws; the one nearest the fraction is kept


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: ``images`` ``(n, H, W, 3) uint8`` (or a list of ``(H_i, W_i, 3) uint8`` when
    sizes differ) and instance ``labels`` ``(n, H, W) int32`` (or a list), 0 = background."""

    images: np.ndarray | list[np.ndarray]
    labels: np.ndarray | list[np.ndarray]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def masks(self) -> np.ndarray | list[np.ndarray]:
        """``labels > 0`` as ``uint8`` 0/1, in the same container type."""
        if isinstance(self.labels, np.ndarray):
            return (self.labels > 0).astype(np.uint8)
        return [(lab > 0).astype(np.uint8) for lab in self.labels]

    @property
    def same_size(self) -> bool:
        """True when the images are one stacked array (all the same size)."""
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
        return (f"{self.source}: {len(self.train)} train, {len(self.val)} validation, "
                f"{len(self.test)} test images")


def check_data(data: str | Path) -> str | Path:
    """``data`` if it is ``"synthetic"`` or an existing folder; else ``TypeError`` or
    ``FileNotFoundError``."""
    if isinstance(data, str) and data == SYNTHETIC:
        return data
    if not isinstance(data, str | Path):
        raise TypeError(f"data must be 'synthetic' or a folder path, got {type(data).__name__}")
    if not Path(data).is_dir():
        raise FileNotFoundError(
            f"data {str(data)!r} is neither 'synthetic' nor an existing folder in the DSB2018 "
            "layout (ROOT/<id>/images/<id>.png and ROOT/<id>/masks/*.png)")
    return Path(data)


def load_splits(data: str | Path = SYNTHETIC, img_size: int | None = None, *,
                quick: bool = False, seed: int = 0,
                counts: dict[str, int] | None = None, grouped: bool = False) -> Splits:
    """Seeded train/validation/test splits of the synthetic nuclei or of a DSB2018 folder.

    Args:
        data: ``"synthetic"`` or a folder in the DSB2018 layout (images at native size).
        img_size: side of the synthetic images (default 256, quick 64; at least 32).
        quick: keep a few dozen images only (``QUICK_COUNTS``).
        seed: integer >= 0; the same seed gives the same splits.
        counts: synthetic only: ``{"train": n, "val": n, "test": n}`` (any of the keys).
        grouped: DSB2018 only: validation and test slides are whole experiments
            (``split_indices``); by default a seeded shuffle.

    Returns ``Splits``; raises ``ValueError`` for bad arguments or a folder of under 3 images.
    """
    data, counts = _check_args(data, img_size, seed, counts, quick)
    if data == SYNTHETIC:
        parts = [_synthetic(name, img_size, quick, seed, counts) for name in SPLIT_NAMES]
        return Splits(*parts, source=source(SYNTHETIC, img_size, quick=quick, seed=seed))
    return _dsb_splits(Path(data), seed, quick, grouped=grouped)


def load_split(data: str | Path = SYNTHETIC, name: str = "test", img_size: int | None = None,
               *, quick: bool = False, seed: int = 0,
               counts: dict[str, int] | None = None, grouped: bool = False) -> Split:
    """``getattr(load_splits(data, img_size, ...), name)``, reading or making only that split's
    images (with ``grouped``, a DSB2018 folder's other images are read for their groups)."""
    if name not in SPLIT_NAMES:
        raise ValueError(f"name must be one of {SPLIT_NAMES}, got {name!r}")
    data, counts = _check_args(data, img_size, seed, counts, quick)
    if data == SYNTHETIC:
        return _synthetic(name, img_size, quick, seed, counts)
    return _dsb_splits(Path(data), seed, quick, only=name, grouped=grouped)


def source(data: str | Path, img_size: int | None = None, *, quick: bool = False,
           seed: int = 0) -> str:
    """The ``Splits.source`` line of ``load_splits(data, img_size, quick=quick, seed=seed)``."""
    if data == SYNTHETIC:
        size = img_size or (QUICK_IMG_SIZE if quick else FULL_IMG_SIZE)
        return f"synthetic nuclei {size}x{size} (seed {seed})"
    return f"DSB2018 folder {str(data)!r} (seed {seed})"


def split_indices(groups, seed: int, grouped: bool = False) -> dict[str, np.ndarray]:
    """Indices into ``groups`` (one experiment name per slide) of the train, val and test slides:
    a ``seed``-ed shuffle cut 70/15/15, or with ``grouped`` and at least ``MIN_GROUPS`` groups,
    test then validation slides as whole groups (``GroupShuffleSplit``, of ``CANDIDATES`` draws
    the one nearest ``DSB_FRACTIONS``). ValueError for fewer than 3 slides."""
    groups = np.asarray(groups)
    n = len(groups)
    if n < 3:
        raise ValueError(f"{n} image(s); at least 3 are needed to split")
    if not grouped or len(np.unique(groups)) < MIN_GROUPS:
        order = np.random.default_rng(seed).permutation(n)
        n_val = max(1, round(n * DSB_FRACTIONS[1]))
        n_test = max(1, round(n * DSB_FRACTIONS[2]))
        pieces = np.split(order, [n - n_val - n_test, n - n_test])
        return dict(zip(SPLIT_NAMES, pieces, strict=True))
    rest, test = _held_out(groups, np.arange(n), DSB_FRACTIONS[2], seed)
    train, val = _held_out(groups[rest], rest, DSB_FRACTIONS[1] / (1 - DSB_FRACTIONS[2]), seed)
    return {"train": train, "val": val, "test": test}


def _held_out(groups: np.ndarray, index: np.ndarray, fraction: float, seed: int):
    """``(kept, held)`` subsets of ``index``: held is whole groups, about ``fraction`` of it."""
    from sklearn.model_selection import GroupShuffleSplit

    draws = GroupShuffleSplit(CANDIDATES, test_size=fraction, random_state=seed)
    target = fraction * len(groups)
    kept, held = min(draws.split(groups, groups=groups), key=lambda s: abs(len(s[1]) - target))
    return index[kept], index[held]


def _check_args(data, img_size, seed, counts, quick) -> tuple[str | Path, dict[str, int]]:
    data = check_data(data)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if img_size is not None and (isinstance(img_size, bool)
                                 or not isinstance(img_size, numbers.Integral) or img_size < 32):
        raise ValueError(f"img_size must be an integer >= 32, got {img_size!r}")
    default = QUICK_COUNTS if quick else FULL_COUNTS
    if counts is not None and (not isinstance(counts, dict) or set(counts) - set(default)):
        raise ValueError(f"counts must be a dict with keys among {sorted(default)}, got {counts!r}")
    counts = {**default, **(counts or {})}
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"counts[{key!r}] must be a positive integer, got {value!r}")
    return data, counts


def _synthetic(name: str, img_size: int | None, quick: bool, seed: int,
               counts: dict[str, int]) -> Split:
    """One synthetic split, from the seed ``SeedSequence(seed)`` spawns for it."""
    from unet_course.data import make_nuclei

    size = img_size or (QUICK_IMG_SIZE if quick else FULL_IMG_SIZE)
    child = np.random.SeedSequence(seed).spawn(3)[SPLIT_NAMES.index(name)]
    return Split(*make_nuclei(counts[name], size=size, seed=int(child.generate_state(1)[0])))


def _dsb_splits(root: Path, seed: int, quick: bool, only: str | None = None,
                grouped: bool = False):
    from unet_course.dsb2018 import dsb2018_ids, experiment_groups, load_dsb2018

    ids = dsb2018_ids(root)
    if len(ids) < 3:
        raise ValueError(f"{str(root)!r} holds {len(ids)} image(s); at least 3 are needed to split")
    if quick:  # read only the images kept
        ids = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
        ids = ids[: sum(QUICK_COUNTS.values())]
    groups = experiment_groups(root, ids) if grouped else ids  # grouping reads every image
    pieces = split_indices(groups, seed, grouped)
    if only is not None:
        return Split(*load_dsb2018(root, ids=[ids[i] for i in pieces[only]]))
    order = np.concatenate(list(pieces.values()))
    images, labels = load_dsb2018(root, ids=[ids[i] for i in order])
    ends = np.cumsum([len(p) for p in pieces.values()])
    parts = [Split(images[a:b], labels[a:b]) for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    return Splits(*parts, source=source(root, seed=seed))
