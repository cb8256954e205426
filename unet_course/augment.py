"""Data augmentation for segmentation, one image and its mask at a time.

What belongs here: transforms applied identically to an image and its mask (flips, 90-degree
rotations, random crops or pads to the training size, the elastic deformation of the U-Net
paper) and photometric changes applied to the image only (brightness, contrast).
``SegmentationSequence``, the Keras ``PyDataset`` that builds augmented batches from these
(and draws the same random numbers), lives in ``unet_course.sequence`` and is re-exported here.

Rule: masks are never interpolated. Geometric transforms move mask pixels by index
(nearest neighbour), so a mask's values (0/1, instance labels, class ids, weights) come out
exactly as they went in, only moved. Images are interpolated (bilinear by default) where the
transform needs it (the elastic deformation only; flips, rotations and crops are exact).

Everything here is NumPy/SciPy on the CPU and draws its randomness from a
``numpy.random.Generator`` you pass in, so a seed reproduces a batch exactly.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "augment_pair",
    "elastic_deform",
    "displacement_field",
    "random_crop_or_pad",
    "adjust_brightness_contrast",
    "channel_means",
    "intensity_lut",
]


def _rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")


def _hw(size, what: str = "size") -> tuple[int, int]:
    """``256`` or ``(256, 320)`` -> ``(h, w)``; positive ints only."""
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in pair
    ):
        raise ValueError(f"{what} must be a positive int or a pair (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


def _check_image_mask(image: np.ndarray, mask: np.ndarray, weights=None) -> None:
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if mask.ndim not in (2, 3) or mask.shape[:2] != image.shape[:2]:
        raise ValueError(
            f"mask must be (H, W) or (H, W, C) with the image's H, W {image.shape[:2]}, "
            f"got shape {mask.shape}"
        )
    if weights is not None and np.shape(weights)[:2] != image.shape[:2]:
        raise ValueError(
            f"weights must have the image's H, W {image.shape[:2]}, got {np.shape(weights)}"
        )


def _dihedral(arrays: list, rng: np.random.Generator, flip: bool, rotate90: bool) -> list:
    """The same random rotation by k * 90 degrees and flips applied to every array."""
    k = int(rng.integers(4)) if rotate90 else 0
    flip_v = bool(flip and rng.random() < 0.5)
    flip_h = bool(flip and rng.random() < 0.5)
    out = []
    for a in arrays:
        if a is not None:
            a = np.rot90(a, k, axes=(0, 1))
            a = a[::-1] if flip_v else a
            a = a[:, ::-1] if flip_h else a
        out.append(a)
    return out


def random_crop_or_pad(arrays: Sequence, size, rng=None) -> list:
    """Crop (or pad, where smaller) every array to ``size`` at the same place.

    Args:
        arrays: arrays ``(H, W, ...)`` sharing H and W (``None`` entries pass through).
        size: ``int`` or ``(height, width)``.
        rng: a Generator for a random position; ``None`` for the centre (validation).

    Padding mirrors the border (``numpy.pad(mode="symmetric")``) in every array alike, so the
    image and its mask stay consistent. Returns a list of arrays ``(height, width, ...)``.
    """
    th, tw = _hw(size)
    ref = next(a for a in arrays if a is not None)
    h, w = ref.shape[:2]

    def start(extra: int) -> int:
        return int(rng.integers(extra + 1)) if rng is not None else extra // 2

    ph, pw = max(th - h, 0), max(tw - w, 0)
    top, left = start(ph), start(pw)
    y0, x0 = start(max(h - th, 0)), start(max(w - tw, 0))
    out = []
    for a in arrays:
        if a is not None:
            if ph or pw:
                pad = [(top, ph - top), (left, pw - left)] + [(0, 0)] * (a.ndim - 2)
                a = np.pad(a, pad, mode="symmetric")
            a = a[y0:y0 + th, x0:x0 + tw]
        out.append(a)
    return out


def adjust_brightness_contrast(image: np.ndarray, rng, brightness: float = 0.1,
                               contrast: float = 0.2) -> np.ndarray:
    """Random contrast then brightness change of one image; same shape and dtype back.

    ``x -> (x - mean) * c + mean + b * full_range`` with ``c ~ U(1 - contrast, 1 + contrast)``,
    ``b ~ U(-brightness, brightness)``, ``mean`` per channel. For an integer dtype
    ``full_range`` is the dtype's own (255 for uint8, 65535 for uint16) and the result is
    rounded and clipped to the dtype's range, so nothing wraps around; float images use
    ``full_range`` 1.0 and are not clipped.
    """
    rng = _rng(rng)
    c, b = _draw_intensity(rng, brightness, contrast)
    integer = np.issubdtype(image.dtype, np.integer)
    full = float(np.iinfo(image.dtype).max - np.iinfo(image.dtype).min) if integer else 1.0
    # float32 holds integers of up to 24 bits exactly; wider ones are computed in float64
    x = image.astype(np.float64 if integer and image.dtype.itemsize > 2 else np.float32)
    x = _intensity(x, channel_means(image), c, b, full)  # (C,) means broadcast over (H, W, C)
    return _as_dtype(x, image.dtype)


def _as_dtype(x: np.ndarray, dtype) -> np.ndarray:
    """``x`` cast to ``dtype``: rounded and clipped to its range for an integer dtype (a cast
    alone wraps: -1 becomes 65535 in uint16), as it is for a float one."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _draw_intensity(rng: np.random.Generator, brightness: float, contrast: float):
    """``(c, b)``: the contrast factor and brightness shift drawn (``None`` when disabled)."""
    if brightness < 0 or contrast < 0 or contrast > 1:
        raise ValueError(f"need brightness >= 0 and 0 <= contrast <= 1, got {brightness}, {contrast}")
    c = rng.uniform(1 - contrast, 1 + contrast) if contrast else None
    b = rng.uniform(-brightness, brightness) if brightness else None
    return c, b


def _intensity(x: np.ndarray, mean, c, b, full: float) -> np.ndarray:
    """``(x - mean) * c + mean + b * full`` in float32 (``x`` float32; c or b may be None)."""
    if c is not None:
        x = (x - mean) * np.float32(c) + mean
    if b is not None:
        x = x + np.float32(b * full)
    return x


def channel_means(image: np.ndarray) -> np.ndarray:
    """Mean of each channel, ``(C,)`` float32 (``()`` for a 2-D image).

    uint8 images are summed exactly in integers, so the mean does not depend on how the
    pixels are laid out in memory (the batch pipeline sums planar copies and gets the same).
    """
    if image.dtype == np.uint8:
        flat = image.reshape(-1, image.shape[-1]) if image.ndim == 3 else image.reshape(-1, 1)
        means = (flat.sum(axis=0, dtype=np.uint64) / flat.shape[0]).astype(np.float32)
        return means if image.ndim == 3 else means[0]
    return image.astype(np.float32).mean(axis=(0, 1))


def intensity_lut(means: np.ndarray, c, b) -> np.ndarray:
    """``(C, 256)`` uint8: what :func:`adjust_brightness_contrast` maps each uint8 value to,
    per channel, for the drawn ``c``, ``b`` and the image's channel ``means`` ``(C,)``."""
    values = np.arange(256, dtype=np.float32)[None, :]
    x = _intensity(values, np.asarray(means, np.float32).reshape(-1, 1), c, b, 255.0)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def displacement_field(shape, rng, alpha: float = 10.0, grid: int = 3) -> np.ndarray:
    """Smooth random displacements ``(2, H, W)`` float32 (dy, dx in pixels).

    As in Ronneberger et al. 2015: displacement vectors drawn on a coarse ``grid x grid`` grid
    from a Gaussian with ``alpha`` pixels standard deviation (the paper: 3 x 3, 10 pixels),
    then interpolated to every pixel with cubic splines (the grid's corners sit on the image's
    corners).
    """
    h, w = _hw(shape, "shape")
    if not isinstance(grid, (int, np.integer)) or grid < 2:
        raise ValueError(f"grid must be an int >= 2, got {grid!r}")
    if alpha < 0:
        raise ValueError(f"alpha (displacement std in pixels) must be >= 0, got {alpha}")
    coarse = _rng(rng).normal(0.0, alpha, size=(2, grid, grid))
    # Cubic-spline interpolation is separable: field = M_h @ coarse @ M_w.T
    m_h, m_w = _spline_matrix(h, grid), _spline_matrix(w, grid)
    return (m_h @ coarse @ m_w.T).astype(np.float32)


@functools.lru_cache(maxsize=32)
def _spline_matrix(n: int, grid: int) -> np.ndarray:
    """``(n, grid)`` matrix that interpolates ``grid`` control points to ``n`` samples.

    Column j is the cubic-spline zoom of the j-th unit vector, corners aligned with corners
    (``scipy.ndimage.zoom(order=3, grid_mode=False)``).
    """
    columns = []
    for j in range(grid):
        unit = np.zeros(grid)
        unit[j] = 1.0
        fine = ndimage.zoom(unit, n / grid, order=3, grid_mode=False, mode="nearest")
        fine = fine[:n]  # zoom's length is round(grid * n / grid); make it exactly n
        columns.append(np.pad(fine, (0, n - len(fine)), mode="edge"))
    matrix = np.stack(columns, axis=1)
    matrix.setflags(write=False)
    return matrix


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Fold integer indices into 0..n-1 by half-sample symmetric reflection (SciPy 'reflect')."""
    index = np.mod(index, 2 * n)
    return np.where(index >= n, 2 * n - 1 - index, index)


def _warp(a: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    """Sample ``a`` (H, W, ...) at ``coords`` (2, h, w): order 0 by index, 1 bilinear, else SciPy.

    Orders 0 and 1 gather whole pixels with NumPy (the same result as
    ``scipy.ndimage.map_coordinates(mode="reflect")``, about 10x faster on RGB images).
    """
    h, w = a.shape[:2]
    if order == 0:
        iy = _reflect(np.rint(coords[0]).astype(np.int64), h)
        ix = _reflect(np.rint(coords[1]).astype(np.int64), w)
        return a[iy, ix]
    if order == 1:
        out = _bilinear(a.reshape(h, w, -1), coords).reshape(coords.shape[1:] + a.shape[2:])
    else:
        x = a.astype(np.float32).reshape(h, w, -1)
        out = np.stack([ndimage.map_coordinates(x[..., c], coords, order=order, mode="reflect")
                        for c in range(x.shape[-1])], axis=-1).reshape(coords.shape[1:] + a.shape[2:])
    return _as_dtype(out, a.dtype)


def _bilinear(a: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``a`` (H, W, C) at ``coords`` (2, h, w): (h, w, C) float32,
    borders mirrored half-sample (SciPy's ``mode="reflect"``)."""
    h, w, _ = a.shape
    pixels = a.reshape(h * w, -1)
    y0, x0 = np.floor(coords[0]), np.floor(coords[1])
    fy, fx = (coords[0] - y0)[..., None], (coords[1] - x0)[..., None]
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    rows = [_reflect(y0, h) * w, _reflect(y0 + 1, h) * w]
    cols = [_reflect(x0, w), _reflect(x0 + 1, w)]

    def at(r, c):
        return np.take(pixels, r + c, axis=0).astype(np.float32, copy=False)

    top = at(rows[0], cols[0]) * (1 - fx) + at(rows[0], cols[1]) * fx
    bottom = at(rows[1], cols[0]) * (1 - fx) + at(rows[1], cols[1]) * fx
    return top * (1 - fy) + bottom * fy


def elastic_deform(image: np.ndarray, mask: np.ndarray, rng, alpha: float = 10.0,
                   grid: int = 3, *, order: int = 1, weights: np.ndarray | None = None):
    """The U-Net paper's elastic deformation, the same warp for image, mask (and weights).

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, uint8 or float.
        mask: ``(H, W)`` or ``(H, W, C)``, any dtype; sampled nearest-neighbour (values kept).
        rng: ``numpy.random.Generator`` (or an int seed).
        alpha: standard deviation of the coarse displacements, in pixels (paper: 10).
        grid: control points per side of the coarse grid (paper: 3).
        order: spline order for the image (1 bilinear, 3 bicubic, 0 nearest).
        weights: optional ``(H, W)`` per-pixel array, warped like the mask.

    Output pixel ``(y, x)`` takes the input at ``(y + dy, x + dx)`` (borders mirrored).
    Returns ``(image, mask)`` or ``(image, mask, weights)``, shapes and dtypes unchanged.
    """
    image, mask = np.asarray(image), np.asarray(mask)
    _check_image_mask(image, mask, weights)
    if order not in (0, 1, 2, 3, 4, 5):
        raise ValueError(f"order must be a spline order 0..5, got {order!r}")
    return _elastic(image, mask, None if weights is None else np.asarray(weights), rng, alpha,
                    grid, order)


def _elastic(image, mask, weights, rng, alpha, grid, order=1, margin: int = 0) -> tuple:
    """``elastic_deform`` of arrays ``(H, W, ...)``, keeping only the output pixels at least
    ``margin`` from the border (the same values as warping everything and cutting them off)."""
    h, w = image.shape[:2]
    d = displacement_field((h, w), rng, alpha, grid)[:, margin:h - margin, margin:w - margin]
    ys = np.arange(margin, h - margin, dtype=np.float32)[:, None]
    xs = np.arange(margin, w - margin, dtype=np.float32)[None, :]
    coords = np.stack([ys + d[0], xs + d[1]])
    out = (_warp(image, coords, order), _warp(mask, coords, 0))
    return out if weights is None else (*out, _warp(weights, coords, 0))


def augment_pair(image, mask, rng, *, flip: bool = True, rotate90: bool = True, crop=None,
                 brightness: float = 0.1, contrast: float = 0.2, elastic: bool = False,
                 elastic_alpha: float = 10.0, elastic_grid: int = 3, weights=None):
    """One random augmentation, the same geometry for the image, its mask (and weights).

    Steps, in order: a random multiple of 90 degrees and random flips (``rotate90``, ``flip``);
    a random crop, or mirrored pad, to ``crop`` (``int`` or ``(h, w)``; ``None`` keeps the
    size, and a non-square image may then come back rotated to ``(W, H)``); the elastic
    deformation (``elastic``, see :func:`elastic_deform`; it is done on a crop with a margin,
    so the border comes from real pixels); brightness and contrast (image only; 0 disables).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` uint8 or float.
        mask: ``(H, W)`` or ``(H, W, C)`` any dtype (binary, instance labels, class ids).
        rng: ``numpy.random.Generator`` (or an int seed).
        weights: optional ``(H, W)`` per-pixel array transformed exactly like the mask.

    Returns ``(image, mask)``, or ``(image, mask, weights)`` when weights are given; dtypes
    unchanged, arrays contiguous.
    """
    image, mask = np.asarray(image), np.asarray(mask)
    weights = None if weights is None else np.asarray(weights)
    _check_image_mask(image, mask, weights)
    rng = _rng(rng)
    arrays = _dihedral([image, mask, weights], rng, flip, rotate90)
    margin = int(math.ceil(2 * elastic_alpha)) if elastic else 0
    if crop is not None:
        th, tw = _hw(crop, "crop")
        arrays = random_crop_or_pad(arrays, (th + 2 * margin, tw + 2 * margin), rng)
    if elastic:  # warped with a margin of real pixels around the crop, then cut to size
        image, mask, weights = arrays
        warped = _elastic(image, mask, weights, rng, elastic_alpha, elastic_grid,
                          margin=margin if crop is not None else 0)
        arrays = list(warped) + ([None] if weights is None else [])
    image, mask, weights = arrays
    if brightness or contrast:
        image = adjust_brightness_contrast(image, rng, brightness, contrast)
    out = tuple(np.ascontiguousarray(a) for a in (image, mask, weights) if a is not None)
    return out

