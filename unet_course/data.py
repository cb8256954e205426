"""Data for the course: the synthetic nuclei generator (the offline default) and dataset access.

``make_nuclei`` draws microscopy-like images of cell nuclei with their instance labels, the
kind of data of the Kaggle Data Science Bowl 2018 (BBBC038): dark-field fluorescence (bright
nuclei on black) and bright-field (stained, dark nuclei on a light background), with nuclei of
varied size, shape and orientation, many of them touching in clusters, textured interiors,
blur, noise and uneven illumination. It needs no network and is deterministic for a seed.

The real Data Science Bowl 2018 data are read by ``load_dsb2018`` and fetched by
``download_dsb2018`` (both defined in ``unet_course.dsb2018`` and re-exported here).
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import measure

STYLES = ("fluorescence", "brightfield")
MIN_SIZE = 32
_MIN_PIXELS = 30  # a nucleus cut by the border to fewer pixels than this is not drawn at all


def data_dir() -> Path:
    """The course's ``data/`` folder (where downloads go), next to the package's source tree."""
    return Path(__file__).resolve().parent.parent / "data"


def make_nuclei(
    n: int,
    size: int = 256,
    seed: int = 0,
    *,
    style: str = "mixed",
    nuclei: tuple[int, int] = (12, 40),
    radius: tuple[float, float] = (5.0, 13.0),
    cluster_fraction: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` synthetic microscopy images of nuclei with their instance labels.

    Args:
        n: number of images (>= 1).
        size: height and width in pixels (>= 32).
        seed: the random seed; image ``i`` depends only on ``(seed, i)``, so the first images
            of a larger call equal a smaller call's.
        style: ``"fluorescence"``, ``"brightfield"`` or ``"mixed"`` (each image picks one,
            about a third of them bright-field, as in the Data Science Bowl data).
        nuclei: (low, high) number of nuclei in a 256x256 image; scaled by area for other sizes.
        radius: (low, high) mean radius of a nucleus in pixels (the same at every image size,
            like a fixed microscope magnification).
        cluster_fraction: share of nuclei placed touching an earlier one, in clusters.

    Returns:
        images: ``(n, size, size, 3) uint8``.
        labels: ``(n, size, size) int32``; 0 is background and ``1..k`` one label per nucleus,
            numbered consecutively. The semantic mask is ``labels > 0``.
    """
    _check_args(n, size, seed, style, nuclei, radius, cluster_fraction)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty((n, size, size), dtype=np.int32)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        image_style = style if style != "mixed" else STYLES[int(rng.random() < 1 / 3)]
        count = _nuclei_count(rng, size, nuclei)
        labels[i], depth = _draw_labels(rng, size, count, radius, cluster_fraction)
        _render(rng, labels[i], depth, image_style, out=images[i])
    return images, labels


def _check_args(n, size, seed, style, nuclei, radius, cluster_fraction) -> None:
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
    if not isinstance(cluster_fraction, numbers.Real) or not 0 <= cluster_fraction <= 1:
        raise ValueError(f"cluster_fraction must be a number in [0, 1], got {cluster_fraction!r}")


def _nuclei_count(rng: np.random.Generator, size: int, nuclei: tuple[int, int]) -> int:
    scale = (size / 256) ** 2
    return max(2, round(rng.integers(nuclei[0], nuclei[1] + 1) * scale))


def _draw_labels(rng, size, count, radius, cluster_fraction) -> tuple[np.ndarray, np.ndarray]:
    """Place ``count`` nuclei; return the label map and each pixel's normalised depth.

    A pixel's depth is 0 at a nucleus centre and 1 on its outline. Where two nuclei would
    overlap, the pixel goes to the one it lies deeper in, so touching nuclei meet along a
    clean boundary, as in hand-made masks where each pixel belongs to one nucleus.
    """
    depth = np.ones((size, size), dtype=np.float32)
    labels = np.zeros((size, size), dtype=np.int32)
    r = rng.uniform(*radius, count)
    aspect = np.sqrt(rng.uniform(1.0, 2.2, count))
    shape = np.stack([r * aspect, r / aspect, rng.uniform(0, np.pi, count)], axis=1)
    outline = np.concatenate(
        [rng.uniform(-0.07, 0.07, (count, 2)), rng.uniform(0, 2 * np.pi, (count, 2))], 1
    )
    clustered = rng.random(count) < cluster_fraction
    angle = rng.uniform(0, 2 * np.pi, count)
    gap = rng.uniform(0.75, 1.0, count)
    centres = rng.uniform(0, size, (count, 2)).tolist()
    partners = rng.integers(0, np.maximum(np.arange(count), 1)).tolist()  # an earlier nucleus
    step = (r[partners] + r) * gap
    offsets = np.stack([step * np.sin(angle), step * np.cos(angle)], axis=1).tolist()
    coords = np.arange(size, dtype=np.float32)
    shape, outline = shape.tolist(), outline.tolist()
    for k in range(count):
        if k and clustered[k]:  # touch an earlier nucleus, so clusters grow
            j = partners[k]
            centres[k] = [centres[j][0] + offsets[k][0], centres[j][1] + offsets[k][1]]
        _paint(labels, depth, coords, k + 1, centres[k], shape[k], outline[k])
    return _relabel(labels, depth)


def _paint(labels, depth, coords, k, centre, shape, outline) -> None:
    """Draw nucleus ``k``: an ellipse (semi-axes a, b, angle theta) with a wobbling outline.

    ``coords`` is ``arange(size)`` as float32; all scalars are Python floats (faster than
    NumPy scalars in this hot loop).
    """
    a, b, theta = shape
    reach = a * 1.15 + 1
    size = labels.shape[0]
    y0, y1 = max(int(centre[0] - reach), 0), min(int(centre[0] + reach) + 2, size)
    x0, x1 = max(int(centre[1] - reach), 0), min(int(centre[1] + reach) + 2, size)
    if y0 >= y1 or x0 >= x1:
        return
    cos, sin = math.cos(theta), math.sin(theta)
    dy = (coords[y0:y1] - centre[0])[:, None]
    dx = coords[x0:x1] - centre[1]
    u = dx * (cos / a) + dy * (sin / a)
    v = dy * (cos / b) - dx * (sin / b)
    phi = np.arctan2(v, u)
    wobble = (
        1 + outline[0] * np.cos(2 * phi + outline[2]) + outline[1] * np.cos(3 * phi + outline[3])
    )
    d = np.sqrt(u * u + v * v)
    d /= wobble
    box_depth = depth[y0:y1, x0:x1]
    won = d < box_depth
    np.copyto(box_depth, d, where=won)
    np.copyto(labels[y0:y1, x0:x1], k, where=won)


def _relabel(labels: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep one connected piece per nucleus, drop slivers, number the rest 1..k in order.

    A later nucleus can cut an earlier one in two; the smaller pieces are removed, so every
    label is one 4-connected region, as a hand-drawn mask would be.
    """
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
    counts = np.bincount(labels.ravel())
    keep = counts >= _MIN_PIXELS
    keep[0] = True
    lut = (np.cumsum(keep) - 1).astype(np.int32)
    lut[~keep] = 0
    labels = lut[labels]
    depth = np.where(labels > 0, depth, np.float32(1.0))
    return labels, depth


def _unit_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Zero-mean, unit-variance float32 noise; uniform, which is several times faster to draw
    than Gaussian and looks the same once blurred or added to an image."""
    noise = rng.random(shape, dtype=np.float32)
    noise -= 0.5
    noise *= np.float32(np.sqrt(12.0))
    return noise


def _illumination(rng: np.random.Generator, size: int) -> np.ndarray:
    """Uneven lighting: a random tilt plus a gentle low-frequency ripple, ``(size, size)``."""
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    gy, gx = rng.uniform(-0.5, 0.5, 2)
    fy, fx = rng.uniform(0.5, 2.0, 2)
    py, px = rng.uniform(0, 2 * np.pi, 2)
    ripple_y = np.cos(2 * np.pi * fy * ramp + py)[:, None]
    ripple_x = np.cos(2 * np.pi * fx * ramp + px)[None, :]
    return 1 + gy * ramp[:, None] + gx * ramp[None, :] + 0.1 * ripple_y * ripple_x


def _render(rng, labels: np.ndarray, depth: np.ndarray, style: str, out: np.ndarray) -> None:
    """Draw a microscope-like image of a label map into ``out``: ``(H, W, 3) uint8``."""
    size = labels.shape[0]
    brightness = np.r_[0.0, rng.uniform(0.45, 1.0, labels.max())].astype(np.float32)
    coarse = _unit_noise(rng, (size // 2 + 1, size // 2 + 1))
    texture = np.abs(1 + 0.3 * np.repeat(np.repeat(coarse, 2, 0), 2, 1)[:size, :size])
    # Dye or stain per pixel: a level per nucleus, densest at the centre, mottled inside.
    signal = brightness[labels] * (1 - 0.45 * depth * depth) * texture
    signal = ndimage.gaussian_filter(signal, rng.uniform(0.6, 1.4), truncate=3.0)
    illumination = _illumination(rng, size)
    noise = _unit_noise(rng, (size, size))
    if style == "fluorescence":
        tint = np.ones(3) if rng.random() < 0.6 else rng.uniform(0.2, 1.0, 3)
        value = (rng.uniform(0.01, 0.08) + rng.uniform(0.55, 0.95) * signal) * illumination
        value += rng.uniform(0.005, 0.03) * noise * np.sqrt(np.abs(value) + 0.05)
        planes = [value * np.float32(255 * t / tint.max()) for t in tint]
    else:  # bright-field: light through a stained sample (Beer-Lambert), haematoxylin-like
        stain = np.array([0.65, 0.70, 0.29]) * rng.uniform(0.8, 1.25, 3)
        counter = np.array([0.07, 0.99, 0.11]) * rng.uniform(0.05, 0.25)
        density = rng.uniform(1.2, 2.2) * signal
        light = 234 * illumination + rng.uniform(1, 5) * noise
        planes = [
            np.exp(-np.float32(s) * density - np.float32(c)) * light
            for s, c in zip(stain, counter, strict=True)
        ]
    for channel, plane in enumerate(planes):
        out[..., channel] = np.clip(plane, 0, 255) + 0.5


def __getattr__(name: str):
    # The DSB2018 loader lives in its own module; import it only when asked for.
    if name in ("load_dsb2018", "download_dsb2018"):
        from unet_course import dsb2018

        return getattr(dsb2018, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
