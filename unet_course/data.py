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

    A pixel's depth is 0 at a nucleus centre and 1 on its outline; it matters only where the
    brightness is not 0 (on a kept nucleus). Where two nuclei would overlap, the pixel goes to
    the one it lies deeper in, so touching nuclei meet along a clean boundary, as in hand-made
    masks where each pixel belongs to one nucleus.
    """
    count = len(kind["bright"])
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
    for k in np.flatnonzero(clustered[1:]) + 1:  # touch an earlier nucleus, so clusters grow
        j = partners[k]
        centres[k] = [centres[j][0] + offsets[k][0], centres[j][1] + offsets[k][1]]
    labels, depth = _paint(size, centres, shape.tolist(), outline.tolist())
    labels, bright = _relabel(labels, kind["bright"])
    return labels, depth, bright


def _draw_ghosts(rng, size, count, radius, difficulty) -> np.ndarray:
    """Out-of-focus nuclei (not labelled), drawn on the coarse grid: ``(c, c)`` float32 with
    ``c = size // COARSE``, to be blurred and interpolated up with the rest of the out-of-focus
    light (``_render``)."""
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
    owner, depth = _paint_ellipses(cells, centres, shapes)
    level = np.r_[0.0, rng.uniform(0.15, 0.35, number)].astype(np.float32)
    return level[owner] * (1 - 0.5 * depth * depth)


def _paint_ellipses(size, centres, shapes) -> tuple[np.ndarray, np.ndarray]:
    """``_paint`` for ellipses with no wobble, over the whole grid: faster for a few of them on
    a small grid (the out-of-focus nuclei). The same result: with no wobble, nothing outside
    an ellipse's box could be painted."""
    coef = _boxes(size, centres, shapes, [[0.0] * 4] * len(shapes))[1]
    grid = np.arange(size, dtype=np.float32)
    depth = np.ones((size, size), dtype=np.float32)
    labels = np.zeros((size, size), dtype=np.intp)
    step = max(1, 2**18 // size**2)  # ellipses at a time: about 1 MB an array
    for first in range(0, len(coef), step):
        cy, cx, cos_a, sin_a, cos_b, sin_b = coef[first : first + step, :6].T[:, :, None, None]
        dy, dx = grid[:, None] - cy, grid - cx
        u = dx * cos_a + dy * sin_a
        v = dy * cos_b - dx * sin_b
        d = np.sqrt(u * u + v * v)
        closest = d.min(axis=0)
        # the earliest ellipse on a tie, and an earlier chunk keeps a tie
        labels = np.where(closest < depth, d.argmin(axis=0) + first + 1, labels)
        depth = np.minimum(depth, closest)
    return labels.astype(np.int32), depth


def _paint(size, centres, shapes, outlines) -> tuple[np.ndarray, np.ndarray]:
    """Draw nuclei ``1..n``, each an ellipse (semi-axes a, b, angle theta) with a wobbling
    outline, all at once: ``(labels, depth)``, ``(size, size)`` int32 and float32.

    ``centres``, ``shapes`` and ``outlines`` are lists of ``[y, x]``, ``[a, b, theta]`` and
    ``[w2, w3, p2, p3]``. A pixel goes to the nucleus it lies deepest in (the earliest on a
    tie); its depth is that nucleus's, 1 where there is none. The same pixels and float32
    depths as painting the nuclei one after another, without a Python loop over them.
    """
    boxes, coef = _boxes(size, centres, shapes, outlines)
    y0, y1, x0, x1 = boxes.T
    height = np.maximum(y1 - y0, 0)
    width = np.where(height > 0, np.maximum(x1 - x0, 0), 0)
    # Box pixels row by row: a row's values are repeated along it (np.repeat), a column's are
    # looked up (np.take), both about twice as fast as fancy indexing.
    ys, row_k = _ranges(y0, y0 + height)  # every row of every box, and its nucleus
    xs, col_k = _ranges(x0, x0 + width)  # every column
    run = width[row_k]  # pixels per row
    col_first = np.cumsum(width) - width
    col = _ranges(col_first[row_k], col_first[row_k] + run)[0]  # each pixel's column
    cy, cx, cos_a, sin_a, cos_b, sin_b = coef[:, :6].T
    dy = ys.astype(np.float32) - cy[row_k]
    dx = xs.astype(np.float32) - cx[col_k]
    u = np.take(dx * cos_a[col_k], col) + np.repeat(dy * sin_a[row_k], run)
    v = np.repeat(dy * cos_b[row_k], run) - np.take(dx * sin_b[col_k], col)
    d = np.sqrt(u * u + v * v)
    # The outline wobbles as 1 + w2 cos(2 phi + p2) + w3 cos(3 phi + p3), phi the angle of
    # (u, v); cos/sin of 2 phi and 3 phi come from (u, v) / d by the angle-sum formulas,
    # several times faster than arctan2 and cos.
    inv = 1 / np.maximum(d, np.float32(1e-6))
    c1, s1 = u * inv, v * inv
    c2, s2 = c1 * c1 - s1 * s1, 2 * c1 * s1
    c3, s3 = c2 * c1 - s2 * s1, s2 * c1 + c2 * s1
    w2c, w2s, w3c, w3s = (np.repeat(w, run) for w in coef[row_k, 6:].T)
    d /= 1 + (c2 * w2c - s2 * w2s + c3 * w3c - s3 * w3s)
    pixel = np.repeat(ys * size, run) + np.take(xs, col)
    return _deepest(size, pixel, d, np.repeat(row_k + 1, run))


def _deepest(size, pixel, depth, label) -> tuple[np.ndarray, np.ndarray]:
    """Give each pixel the label it lies deepest in (the earliest label on a tie): ``(labels,
    depth)``, ``(size, size)`` int32 and float32; label 0 and depth 1 where none is < 1.

    ``pixel`` (flat index), ``depth`` (float32, >= 0) and ``label`` (int > 0) hold one
    entry per candidate. A non-negative float32's bits order as integers, so the key (bits,
    label) is least for the deepest label; one ``np.minimum.at`` picks it for every pixel.
    """
    # Little-endian keys: their low and high halves are the label and the depth's bits.
    keys = np.full(size * size, np.int64(np.float32(1).view(np.int32)) << 32, dtype="<i8")
    np.minimum.at(keys, pixel, (depth.view(np.int32).astype(np.int64) << 32) | label)
    halves = keys.view("<i4").reshape(size, size, 2)
    return halves[..., 0].astype(np.int32), halves[..., 1].astype(np.int32).view(np.float32)


def _boxes(size, centres, shapes, outlines) -> tuple[np.ndarray, np.ndarray]:
    """Each nucleus's box ``(y0, y1, x0, x1)`` (n, 4) intp, clipped to the image, outside which
    it paints nothing, and its coefficients (n, 10) float32: centre, the rotation divided by
    the semi-axes and the wobble's cos/sin terms.

    A loop over the nuclei in Python floats and ``math`` (faster than NumPy on a few dozen),
    as when they were painted one at a time: the very same boxes and float32 coefficients.
    """
    boxes, coef = [], []
    for (cy, cx), (a, b, theta), (w2, w3, p2, p3) in zip(centres, shapes, outlines, strict=True):
        cos, sin = math.cos(theta), math.sin(theta)
        # The ellipse grown by the largest wobble: nothing outside it can be painted.
        grow = 1 + abs(w2) + abs(w3)
        reach_y = grow * math.hypot(a * sin, b * cos) + 1
        reach_x = grow * math.hypot(a * cos, b * sin) + 1
        boxes.append((max(int(cy - reach_y), 0), min(int(cy + reach_y) + 2, size),
                      max(int(cx - reach_x), 0), min(int(cx + reach_x) + 2, size)))
        coef.append((cy, cx, cos / a, sin / a, cos / b, sin / b, w2 * math.cos(p2),
                     w2 * math.sin(p2), w3 * math.cos(p3), w3 * math.sin(p3)))
    return np.array(boxes, dtype=np.intp), np.array(coef, dtype=np.float32)


def _ranges(start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All of ``arange(start[i], stop[i])`` end to end, and the ``i`` of each entry (int)."""
    length = stop - start
    offset = np.repeat(start - (np.cumsum(length) - length), length)
    return np.arange(len(offset)) + offset, np.repeat(np.arange(len(length)), length)


def _relabel(labels, bright) -> tuple[np.ndarray, np.ndarray]:
    """Keep one connected piece per nucleus, drop slivers, number the rest 1..k in order
    (``label_maps.relabel``); ``bright`` is each nucleus's brightness.

    A later nucleus can cut an earlier one in two; the smaller pieces are removed, so every
    label is one 4-connected region, as a hand-drawn mask would be. Returns the label map and
    each pixel's brightness (0 off the nuclei), from one labelling of the pieces
    (``skimage.measure.label``) and a lookup per piece.
    """
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
