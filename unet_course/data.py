"""``make_nuclei``: synthetic fluorescence and bright-field slides of nuclei with instance
labels, like the Data Science Bowl 2018 images; the course's offline default data.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from pathlib import Path

import numpy as np
from skimage import draw, measure

from unet_course.rendering import COARSE, render

STYLES = ("fluorescence", "brightfield")
MIN_SIZE = 32
_MIN_PIXELS = 30  # a nucleus cut by the border to fewer pixels than this is not drawn at all
_RANGES = {"mitotic": (0, 1), "crowding": (0, 1), "elongation": (1, 6)}  # others: [0, 100]


def data_dir() -> Path:
    """The course's ``data/`` folder (where downloads go), next to the package's source tree."""
    return Path(__file__).resolve().parent.parent / "data"


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """What makes a slide hard for a global threshold (the troubles Caicedo et al. 2019 list in
    the Data Science Bowl images); drawn per image from its seed. ``Difficulty()`` is the
    course's realistic default, ``Difficulty.easy()`` switches them off.

    Attributes:
        illumination: uneven light, a tilt and a vignette (0 even, 1 up to about 2x).
        brightness_spread: std of log nucleus brightness within an image, times 2 (0 alike).
        mitotic: share of nuclei drawn small, compact and 2.5-4x brighter (dividing cells).
        out_of_focus: unlabelled blurred, dim nuclei of another focal plane per labelled one.
        debris: mean number of unlabelled specks (and now and then a fibre) per 256x256.
        background: strength of the textured cytoplasm (fluorescence) or tissue background.
        elongation: largest axis ratio (1 round) of about a third of the nuclei; outlines get
            more irregular with it.
        crowding: share of nuclei placed touching an earlier one.
        magnification: (low, high) log-uniform factor on nucleus size, per image; the number
            of nuclei scales to fill the field about equally.

    Raises ValueError for a value out of range.
    """

    illumination: float = 1.0
    brightness_spread: float = 1.0
    mitotic: float = 0.05
    out_of_focus: float = 0.1
    debris: float = 8.0
    background: float = 1.0
    elongation: float = 3.0
    crowding: float = 0.5
    magnification: tuple[float, float] = (0.7, 1.6)

    @classmethod
    def easy(cls) -> Difficulty:
        """Even light, similar nuclei, no debris, no background: a threshold's best case."""
        return cls(illumination=0.0, brightness_spread=0.0, mitotic=0.0, out_of_focus=0.0,
                   debris=0.0, background=0.0, elongation=1.6, crowding=0.3,
                   magnification=(1.0, 1.0))

    def __post_init__(self) -> None:
        for name in ("illumination", "brightness_spread", "out_of_focus", "debris", "background",
                     "mitotic", "crowding", "elongation"):
            value, (low, high) = getattr(self, name), _RANGES.get(name, (0, 100))
            if not isinstance(value, numbers.Real) or not low <= value <= high:
                raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
        if not _is_pair(self.magnification, 0.25, 4):
            raise ValueError(f"magnification must be a pair (low, high) with 0.25 <= low <= high "
                             f"<= 4, got {self.magnification!r}")


def _is_pair(pair, low, high=math.inf) -> bool:
    """Whether ``pair`` is a list or tuple of two numbers, ``low <= pair[0] <= pair[1] <= high``."""
    return (isinstance(pair, tuple | list) and len(pair) == 2
            and all(isinstance(v, numbers.Real) for v in pair)
            and low <= pair[0] <= pair[1] <= high)


def make_nuclei(n: int, size: int = 256, seed: int = 0, *, style: str = "mixed",
                nuclei: tuple[int, int] = (20, 60), radius: tuple[float, float] = (5.0, 13.0),
                difficulty: Difficulty | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic slides of nuclei and their instance labels.

    Args:
        n: number of images (>= 1); ``size``: their side in pixels (>= 32).
        seed: image ``i`` depends only on ``(seed, i)`` (a smaller call gives a prefix).
        style: ``"fluorescence"``, ``"brightfield"`` or ``"mixed"`` (a third bright-field).
        nuclei: (low, high) nuclei in a 256x256 image at magnification 1 (scaled by area).
        radius: (low, high) nucleus radius in pixels at magnification 1.
        difficulty: a ``Difficulty``; default ``Difficulty()``.

    Returns ``images`` ``(n, size, size, 3)`` uint8 and ``labels`` ``(n, size, size)`` int32
    (0 background, nuclei ``1..k`` numbered consecutively, each one 4-connected piece).
    Raises TypeError or ValueError for a bad argument.
    """
    difficulty = Difficulty() if difficulty is None else difficulty
    _check_args(n, size, seed, style, nuclei, radius, difficulty)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty((n, size, size), dtype=np.int32)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        image_style = style if style != "mixed" else STYLES[int(rng.random() < 1 / 3)]
        low, high = difficulty.magnification
        zoom = math.exp(rng.uniform(math.log(low), math.log(high)))
        count = _nuclei_count(rng, size / zoom, nuclei)
        kind = _nucleus_kinds(rng, count, difficulty)
        labels[i], depth, bright = _draw_labels(rng, size, kind, np.multiply(radius, zoom),
                                                difficulty)
        ghosts = _draw_ghosts(rng, size, count, np.multiply(radius, zoom), difficulty)
        render(rng, labels[i], depth, bright, ghosts, image_style, difficulty, images[i])
    return images, labels


def _check_args(n, size, seed, style, nuclei, radius, difficulty) -> None:
    for name, value in (("n", n), ("size", size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} pixels, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if style not in (*STYLES, "mixed"):
        raise ValueError(f"style must be one of {(*STYLES, 'mixed')}, got {style!r}")
    for name, pair, low in (("nuclei", nuclei, 1), ("radius", radius, 2)):
        if not _is_pair(pair, low):
            raise ValueError(f"{name} must be a pair (low, high) with {low} <= low <= high, "
                             f"got {pair!r}")
    if not isinstance(difficulty, Difficulty):
        raise TypeError(f"difficulty must be a data.Difficulty, got {type(difficulty).__name__}")


def _nuclei_count(rng: np.random.Generator, side: float, nuclei: tuple[int, int]) -> int:
    scale = (side / 256) ** 2
    return max(2, round(rng.integers(nuclei[0], nuclei[1] + 1) * scale))


def _nucleus_kinds(rng, count: int, difficulty: Difficulty) -> dict[str, np.ndarray]:
    """Per nucleus: relative brightness, size factor, axis ratio and outline irregularity."""
    mitotic = rng.random(count) < difficulty.mitotic
    bright = np.exp(rng.normal(0, 0.5 * difficulty.brightness_spread, count))
    bright = np.clip(bright / np.median(bright), 0.4, 3.0)
    bright[mitotic] = rng.uniform(2.5, 4.0, int(mitotic.sum()))
    elongated = rng.random(count) < 1 / 3
    ratio = np.where(elongated, rng.uniform(1.0, difficulty.elongation, count),
                     rng.uniform(1.0, min(1.8, difficulty.elongation), count))
    ratio[mitotic] = rng.uniform(1.0, 1.6, int(mitotic.sum()))
    grow = np.where(mitotic, 0.6, 1.0)
    wobble = 0.03 + 0.03 * (difficulty.elongation - 1)
    return {"bright": bright, "ratio": ratio, "grow": grow, "wobble": wobble}


def _draw_labels(rng, size, kind, radius, difficulty) -> tuple[np.ndarray, ...]:
    """Place and paint the nuclei: ``(labels, depth, bright)``, ``(size, size)`` int32,
    float32, float32 (each pixel's depth in its nucleus and brightness, 0 off the nuclei)."""
    count = len(kind["bright"])
    r = rng.uniform(*radius, count) * kind["grow"]
    aspect = np.sqrt(kind["ratio"])
    shape = np.stack([r * aspect, r / aspect, rng.uniform(0, np.pi, count)], axis=1)
    w = kind["wobble"]
    outline = np.concatenate([rng.uniform(-w, w, (count, 2)),
                              rng.uniform(0, 2 * np.pi, (count, 2))], 1)
    clustered = rng.random(count) < difficulty.crowding
    angle = rng.uniform(0, 2 * np.pi, count)
    gap = rng.uniform(0.7, 1.0, count)
    centres = rng.uniform(0, size, (count, 2)).tolist()
    partners = rng.integers(0, np.maximum(np.arange(count), 1)).tolist()  # an earlier nucleus
    reach = np.sqrt(shape[:, 0] * shape[:, 1])  # a touching distance between the two axes
    step = (reach[partners] + reach) * gap
    offsets = np.stack([step * np.sin(angle), step * np.cos(angle)], axis=1).tolist()
    for k in np.flatnonzero(clustered[1:]) + 1:  # touch an earlier nucleus, so clusters grow
        j = partners[k]
        centres[k] = [centres[j][0] + offsets[k][0], centres[j][1] + offsets[k][1]]
    labels, depth = _paint(size, centres, shape.tolist(), outline.tolist())
    labels, bright = _relabel(labels, kind["bright"])
    return labels, depth, bright


def _draw_ghosts(rng, size, count, radius, difficulty) -> np.ndarray:
    """Out-of-focus nuclei (not labelled) on the coarse grid: ``(c, c)`` float32,
    ``c = max(size // COARSE, 2)``."""
    cells = max(size // COARSE, 2)
    number = rng.poisson(difficulty.out_of_focus * count)
    if not number:
        return np.zeros((cells, cells), dtype=np.float32)
    r = rng.uniform(*radius, number) / COARSE
    aspect = np.sqrt(rng.uniform(1.0, 1.8, number))
    shapes, centres = [], []
    for k in range(number):
        shapes.append([float(r[k] * aspect[k]), float(r[k] / aspect[k]),
                       float(rng.uniform(0, np.pi))])
        centres.append((rng.uniform(0, size, 2) / COARSE - 0.5).tolist())
    owner, depth = _paint(cells, centres, shapes, [[0.0] * 4] * number)
    level = np.r_[0.0, rng.uniform(0.15, 0.35, number)].astype(np.float32)
    return level[owner] * (1 - 0.5 * depth * depth)


def _paint(size, centres, shapes, outlines) -> tuple[np.ndarray, np.ndarray]:
    """Draw nuclei ``1..n``, ellipses with a wobbling outline: ``(labels, depth)``, ``(size,
    size)`` int32 and float32 (depth 0 at a centre, 1 on the outline and off the nuclei).

    ``centres``, ``shapes``, ``outlines``: lists of ``[y, x]``, ``[a, b, theta]`` (semi-axes,
    angle) and ``[w2, w3, p2, p3]`` (outline radius ``1 + w2 cos(2 phi + p2) + w3 cos(3 phi +
    p3)``). A pixel goes to the nucleus it lies deepest in, the earliest on a tie.
    """
    labels = np.zeros((size, size), dtype=np.int32)
    depth = np.ones((size, size), dtype=np.float32)
    for k, ((cy, cx), (a, b, theta), (w2, w3, p2, p3)) in enumerate(
            zip(centres, shapes, outlines, strict=True), start=1):
        grow = 1 + abs(w2) + abs(w3)  # the outline lies within the ellipse grown by this
        rr, cc = draw.ellipse(cy, cx, grow * b + 0.5, grow * a + 0.5, (size, size), -theta)
        cos, sin = math.cos(theta), math.sin(theta)
        dy, dx = rr.astype(np.float32) - cy, cc.astype(np.float32) - cx
        u, v = dx * (cos / a) + dy * (sin / a), dy * (cos / b) - dx * (sin / b)
        d = np.sqrt(u * u + v * v)
        # cos and sin of 2 phi and 3 phi, phi the angle of (u, v), by the angle-sum formulas
        inv = 1 / np.maximum(d, np.float32(1e-6))
        c1, s1 = u * inv, v * inv
        c2, s2 = c1 * c1 - s1 * s1, 2 * c1 * s1
        c3, s3 = c2 * c1 - s2 * s1, s2 * c1 + c2 * s1
        d /= 1 + (c2 * (w2 * math.cos(p2)) - s2 * (w2 * math.sin(p2))
                  + c3 * (w3 * math.cos(p3)) - s3 * (w3 * math.sin(p3)))
        won = d < depth[rr, cc]
        rr, cc = rr[won], cc[won]
        depth[rr, cc], labels[rr, cc] = d[won], k
    return labels, depth


def _relabel(labels, bright) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, bright)``: each nucleus's largest 4-connected piece of ``_MIN_PIXELS`` or more,
    numbered 1..k in order, and each pixel's brightness (``bright[k - 1]``, float32, 0 off them)."""
    from unet_course.label_maps import relabel

    pieces, count = measure.label(labels, connectivity=1, background=0, return_num=True)
    owner = np.zeros(count + 1, dtype=labels.dtype)  # the nucleus each piece belongs to
    owner[pieces] = labels
    area = np.bincount(pieces.ravel(), minlength=count + 1)
    order = np.lexsort((-area, owner))  # by owner, largest piece first
    largest = np.r_[True, owner[order][1:] != owner[order][:-1]]
    keep = np.zeros(count + 1, dtype=bool)
    keep[order[largest]] = True
    owner = np.where(keep & (area >= _MIN_PIXELS), owner, 0)
    labels = np.take(relabel(owner)[0], pieces)
    bright = np.take(np.r_[0.0, bright].astype(np.float32)[owner], pieces)
    return labels, bright
