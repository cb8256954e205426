"""Data for the course: the synthetic nuclei generator (the offline default) and dataset access.

``make_nuclei`` draws microscopy-like images of cell nuclei with their instance labels, the
kind of data of the Kaggle Data Science Bowl 2018 (BBBC038): dark-field fluorescence (bright
nuclei on black) and bright-field (stained, dark nuclei on a light background), with nuclei of
varied size, shape and orientation, many of them touching in clusters, textured interiors,
blur, noise and uneven illumination. It needs no network and is deterministic for a seed.

The real Data Science Bowl 2018 data are read by ``load_dsb2018`` and fetched by
``download_dsb2018`` (both in ``unet_course.dsb2018``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from pathlib import Path

import numpy as np
from skimage import measure

from unet_course.rendering import COARSE, render

STYLES = ("fluorescence", "brightfield")
MIN_SIZE = 32
_MIN_PIXELS = 30  # a nucleus cut by the border to fewer pixels than this is not drawn at all


def data_dir() -> Path:
    """The course's ``data/`` folder (where downloads go), next to the package's source tree."""
    return Path(__file__).resolve().parent.parent / "data"


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """What makes a slide hard for a global threshold, each an option of ``make_nuclei``.

    Every option reproduces something that defeats a global threshold on real microscopy
    (Caicedo et al. 2019 describe these in the Data Science Bowl 2018 images). All are drawn
    per image from the image's own seed, so a slide is reproducible. ``Difficulty.easy()``
    switches them all off; ``Difficulty()`` (the default) is the course's realistic setting.

    Attributes:
        illumination: strength of uneven lighting: a tilt plus vignetting (the field darkens
            towards one off-centre rim). 0 = even light, 1 = up to about 2x between field
            centre and rim.
        brightness_spread: spread of nucleus brightness within one image (the standard
            deviation of its logarithm is ``0.5 * brightness_spread``): dim nuclei next to
            bright ones. 0 = all alike.
        mitotic: share of nuclei drawn small, compact and 2.5-4x brighter than the others, as
            dividing cells are.
        out_of_focus: extra nuclei per labelled one, drawn blurred and dim in another focal
            plane; they are not labelled (annotators leave them out).
        debris: mean number of unlabelled specks and bright artefacts per 256x256 field.
        background: strength of the textured background: cytoplasm autofluorescence around the
            nuclei (fluorescence) or counterstained tissue (bright-field).
        elongation: largest ratio of long to short axis (1 = round); about a third of the
            nuclei are elongated up to this ratio, as in tissue sections, and outlines grow
            more irregular with it.
        crowding: share of nuclei placed touching an earlier one; touching nuclei are drawn
            with flat profiles in some images, so that no dark gap shows between them.
        magnification: (low, high) factor on the nucleus size, drawn per image (log-uniform):
            the same slide under different objectives. The number of nuclei scales so that the
            field is about equally full.
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
        for name in ("illumination", "brightness_spread", "out_of_focus", "debris", "background"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not 0 <= value <= 100:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("mitotic", "crowding"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if not isinstance(self.elongation, numbers.Real) or not 1 <= self.elongation <= 6:
            raise ValueError(f"elongation must be a number in [1, 6], got {self.elongation!r}")
        low_high = self.magnification
        if (not isinstance(low_high, tuple | list) or len(low_high) != 2
                or not all(isinstance(v, numbers.Real) for v in low_high)
                or not 0.25 <= low_high[0] <= low_high[1] <= 4):
            raise ValueError(f"magnification must be a pair (low, high) with 0.25 <= low <= high "
                             f"<= 4, got {low_high!r}")


def make_nuclei(
    n: int,
    size: int = 256,
    seed: int = 0,
    *,
    style: str = "mixed",
    nuclei: tuple[int, int] = (20, 60),
    radius: tuple[float, float] = (5.0, 13.0),
    difficulty: Difficulty | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` synthetic microscopy images of nuclei with their instance labels.

    Args:
        n: number of images (>= 1).
        size: height and width in pixels (>= 32).
        seed: the random seed; image ``i`` depends only on ``(seed, i)``, so the first images
            of a larger call equal a smaller call's.
        style: ``"fluorescence"``, ``"brightfield"`` or ``"mixed"`` (each image picks one,
            about a third of them bright-field, as in the Data Science Bowl data).
        nuclei: (low, high) number of nuclei in a 256x256 image at magnification 1; scaled by
            area for other sizes and magnifications.
        radius: (low, high) mean radius of a nucleus in pixels at magnification 1.
        difficulty: what makes the slide hard (``Difficulty``); default ``Difficulty()``.

    Returns:
        images: ``(n, size, size, 3) uint8``.
        labels: ``(n, size, size) int32``; 0 is background and ``1..k`` one label per nucleus,
            numbered consecutively. The semantic mask is ``labels > 0``.
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
        if (
            not isinstance(pair, tuple | list)
            or len(pair) != 2
            or not all(isinstance(v, numbers.Real) for v in pair)
            or not low <= pair[0] <= pair[1]
        ):
            raise ValueError(
                f"{name} must be a pair (low, high) with {low} <= low <= high, got {pair!r}"
            )
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
    """Place the nuclei; return the label map, each pixel's normalised depth and brightness.

    A pixel's depth is 0 at a nucleus centre and 1 on its outline. Where two nuclei would
    overlap, the pixel goes to the one it lies deeper in, so touching nuclei meet along a
    clean boundary, as in hand-made masks where each pixel belongs to one nucleus.
    """
    count = len(kind["bright"])
    depth = np.ones((size, size), dtype=np.float32)
    labels = np.zeros((size, size), dtype=np.int32)
    r = rng.uniform(*radius, count) * kind["grow"]
    aspect = np.sqrt(kind["ratio"])
    shape = np.stack([r * aspect, r / aspect, rng.uniform(0, np.pi, count)], axis=1)
    w = kind["wobble"]
    outline = np.concatenate(
        [rng.uniform(-w, w, (count, 2)), rng.uniform(0, 2 * np.pi, (count, 2))], 1
    )
    clustered = rng.random(count) < difficulty.crowding
    angle = rng.uniform(0, 2 * np.pi, count)
    gap = rng.uniform(0.7, 1.0, count)
    centres = rng.uniform(0, size, (count, 2)).tolist()
    partners = rng.integers(0, np.maximum(np.arange(count), 1)).tolist()  # an earlier nucleus
    reach = np.sqrt(shape[:, 0] * shape[:, 1])  # a touching distance between the two axes
    step = (reach[partners] + reach) * gap
    offsets = np.stack([step * np.sin(angle), step * np.cos(angle)], axis=1).tolist()
    coords = np.arange(size, dtype=np.float32)
    shape, outline = shape.tolist(), outline.tolist()
    for k in range(count):
        if k and clustered[k]:  # touch an earlier nucleus, so clusters grow
            j = partners[k]
            centres[k] = [centres[j][0] + offsets[k][0], centres[j][1] + offsets[k][1]]
        _paint(labels, depth, coords, k + 1, centres[k], shape[k], outline[k])
    bright = np.r_[0.0, kind["bright"]].astype(np.float32)[labels]
    labels, depth = _relabel(labels, depth)
    return labels, depth, np.where(labels > 0, bright, np.float32(0))




def _draw_ghosts(rng, size, count, radius, difficulty) -> np.ndarray:
    """Out-of-focus nuclei (not labelled), drawn on the coarse grid: ``(c, c)`` float32 with
    ``c = size // COARSE``, to be blurred and interpolated up with the rest of the out-of-focus
    light (``_render``)."""
    cells = max(size // COARSE, 2)
    ghosts = np.zeros((cells, cells), dtype=np.float32)
    number = rng.poisson(difficulty.out_of_focus * count)
    if not number:
        return ghosts
    depth = np.ones((cells, cells), dtype=np.float32)
    owner = np.zeros((cells, cells), dtype=np.int32)
    coords = np.arange(cells, dtype=np.float32)
    r = rng.uniform(*radius, number) / COARSE
    aspect = np.sqrt(rng.uniform(1.0, 1.8, number))
    for k in range(number):
        shape = [float(r[k] * aspect[k]), float(r[k] / aspect[k]), float(rng.uniform(0, np.pi))]
        centre = (rng.uniform(0, size, 2) / COARSE - 0.5).tolist()
        _paint(owner, depth, coords, k + 1, centre, shape, [0.0, 0.0, 0.0, 0.0])
    level = np.r_[0.0, rng.uniform(0.15, 0.35, number)].astype(np.float32)
    return level[owner] * (1 - 0.5 * depth * depth)


def _paint(labels, depth, coords, k, centre, shape, outline) -> None:
    """Draw nucleus ``k``: an ellipse (semi-axes a, b, angle theta) with a wobbling outline.

    ``coords`` is ``arange(size)`` as float32; all scalars are Python floats (faster than
    NumPy scalars in this hot loop).
    """
    a, b, theta = shape
    cos, sin = math.cos(theta), math.sin(theta)
    # The box around the ellipse grown by the largest wobble: nothing outside it can be painted.
    grow = 1 + abs(outline[0]) + abs(outline[1])
    reach_y = grow * math.hypot(a * sin, b * cos) + 1
    reach_x = grow * math.hypot(a * cos, b * sin) + 1
    size = labels.shape[0]
    y0, y1 = max(int(centre[0] - reach_y), 0), min(int(centre[0] + reach_y) + 2, size)
    x0, x1 = max(int(centre[1] - reach_x), 0), min(int(centre[1] + reach_x) + 2, size)
    if y0 >= y1 or x0 >= x1:
        return
    dy = (coords[y0:y1] - centre[0])[:, None]
    dx = coords[x0:x1] - centre[1]
    u = dx * (cos / a) + dy * (sin / a)
    v = dy * (cos / b) - dx * (sin / b)
    d = np.sqrt(u * u + v * v)
    if outline[0] or outline[1]:
        # The outline wobbles as 1 + w2 cos(2 phi + p2) + w3 cos(3 phi + p3), phi the angle of
        # (u, v); cos/sin of 2 phi and 3 phi come from (u, v) / d by the angle-sum formulas,
        # several times faster than arctan2 and cos on the whole box.
        inv = 1 / np.maximum(d, np.float32(1e-6))
        c1, s1 = u * inv, v * inv
        c2, s2 = c1 * c1 - s1 * s1, 2 * c1 * s1
        c3, s3 = c2 * c1 - s2 * s1, s2 * c1 + c2 * s1
        w2, w3, p2, p3 = outline
        wobble = 1 + (c2 * (w2 * math.cos(p2)) - s2 * (w2 * math.sin(p2))
                      + c3 * (w3 * math.cos(p3)) - s3 * (w3 * math.sin(p3)))
        d /= wobble
    box_depth = depth[y0:y1, x0:x1]
    won = d < box_depth
    np.copyto(box_depth, d, where=won)
    np.copyto(labels[y0:y1, x0:x1], k, where=won)


def _relabel(labels: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep one connected piece per nucleus, drop slivers, number the rest 1..k in order
    (``label_maps.relabel``).

    A later nucleus can cut an earlier one in two; the smaller pieces are removed, so every
    label is one 4-connected region, as a hand-drawn mask would be.
    """
    from unet_course.label_maps import relabel

    pieces = measure.label(labels, connectivity=1, background=0)
    if pieces.max() > np.count_nonzero(np.bincount(labels.ravel())[1:]):
        owner = np.zeros(pieces.max() + 1, dtype=np.int64)
        owner[pieces.ravel()] = labels.ravel()
        area = np.bincount(pieces.ravel())
        order = np.lexsort((-area, owner))  # by owner, largest piece first
        first = np.r_[True, owner[order][1:] != owner[order][:-1]]
        keep_piece = np.zeros_like(first)
        keep_piece[order[first]] = True
        keep_piece[0] = True
        labels = np.where(keep_piece[pieces], labels, 0)
    keep = np.bincount(labels.ravel()) >= _MIN_PIXELS
    keep[0] = True
    labels = relabel(np.where(keep[labels], labels, 0).astype(labels.dtype, copy=False))[0]
    depth = np.where(labels > 0, depth, np.float32(1.0))
    return labels, depth
