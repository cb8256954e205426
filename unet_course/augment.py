"""Data augmentation for segmentation, one image and its mask at a time.

Geometric transforms move the image, its mask and optional weights alike (masks by index, never
interpolated); brightness and contrast touch the image only. A seed reproduces a result exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["augment_pair", "displacement_field", "random_crop_or_pad",
           "adjust_brightness_contrast", "channel_means", "intensity_lut"]


def _rng(rng) -> np.random.Generator:
    """A Generator as given, or one seeded with an int; raises TypeError otherwise."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, "
                    f"got {type(rng).__name__}")


def _hw(size, what: str = "size") -> tuple[int, int]:
    """``256`` or ``(256, 320)`` -> ``(h, w)``; raises ValueError unless positive ints."""
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 and v > 0 for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


def _check_image_mask(image: np.ndarray, mask: np.ndarray, weights=None) -> None:
    """Raises ValueError unless image and mask are 2-D or 3-D and share H, W (and weights)."""
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if mask.ndim not in (2, 3) or mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"mask must be (H, W) or (H, W, C) with the image's H, W "
                         f"{image.shape[:2]}, got shape {mask.shape}")
    if weights is not None and np.shape(weights)[:2] != image.shape[:2]:
        raise ValueError(f"weights must have the image's H, W {image.shape[:2]}, "
                         f"got {np.shape(weights)}")


def _draw_dihedral(rng: np.random.Generator, flip: bool, rotate90: bool) -> tuple:
    """``(k, flip_v, flip_h)``: a rotation by ``k`` * 90 degrees and the flips, drawn."""
    k = int(rng.integers(4)) if rotate90 else 0
    return k, bool(flip and rng.random() < 0.5), bool(flip and rng.random() < 0.5)


def _dihedral_view(a: np.ndarray, k: int, flip_v: bool, flip_h: bool) -> np.ndarray:
    """``a`` rotated by ``k`` * 90 degrees, then flipped up-down and left-right, as a view."""
    a = np.rot90(a, k, axes=(0, 1))
    a = a[::-1] if flip_v else a
    return a[:, ::-1] if flip_h else a


def random_crop_or_pad(arrays: Sequence, size, rng=None) -> list:
    """Crop (or mirror-pad, where smaller) every array to ``size`` at the same place.

    ``arrays``: ``(H, W, ...)`` sharing H and W (``None`` entries pass through); ``size``: int
    or ``(h, w)``; ``rng``: a Generator for a random place, ``None`` for the centre. Padding is
    ``numpy.pad(mode="symmetric")``. Returns a list of ``(h, w, ...)`` arrays.
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
    """Random contrast then brightness of one image, same shape and dtype:
    ``(x - mean) * c + mean + b * full``, ``c ~ U(1 - contrast, 1 + contrast)``, ``b ~
    U(-brightness, brightness)``, ``mean`` per channel, ``full`` an integer dtype's range
    (rounded and clipped to it) or 1.0 for floats. ValueError for a negative ``brightness`` or
    ``contrast`` outside [0, 1]."""
    c, b = _draw_intensity(_rng(rng), brightness, contrast)
    integer = np.issubdtype(image.dtype, np.integer)
    full = float(np.iinfo(image.dtype).max - np.iinfo(image.dtype).min) if integer else 1.0
    x = image.astype(np.float64 if integer and image.dtype.itemsize > 2 else np.float32)
    return _as_dtype(_intensity(x, channel_means(image), c, b, full), image.dtype)


def _as_dtype(x: np.ndarray, dtype) -> np.ndarray:
    """``x`` cast to ``dtype``, rounded and clipped to its range if it is an integer dtype."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _draw_intensity(rng: np.random.Generator, brightness: float, contrast: float):
    """``(c, b)``: contrast factor and brightness shift drawn, ``None`` where disabled."""
    if brightness < 0 or contrast < 0 or contrast > 1:
        raise ValueError(f"need brightness >= 0 and 0 <= contrast <= 1, "
                         f"got {brightness}, {contrast}")
    c = rng.uniform(1 - contrast, 1 + contrast) if contrast else None
    b = rng.uniform(-brightness, brightness) if brightness else None
    return c, b


def _intensity(x: np.ndarray, mean, c, b, full: float) -> np.ndarray:
    """``(x - mean) * c + mean + b * full`` (c or b may be None: that step is skipped)."""
    if c is not None:
        x = (x - mean) * np.float32(c) + mean
    if b is not None:
        x = x + np.float32(b * full)
    return x


def channel_means(image: np.ndarray) -> np.ndarray:
    """Mean of each channel, ``(C,)`` float32 (``()`` for a 2-D image); uint8 summed exactly."""
    if image.dtype == np.uint8:
        flat = image.reshape(-1, image.shape[-1]) if image.ndim == 3 else image.reshape(-1, 1)
        means = (flat.sum(axis=0, dtype=np.uint64) / flat.shape[0]).astype(np.float32)
        return means if image.ndim == 3 else means[0]
    return image.astype(np.float32).mean(axis=(0, 1))


def intensity_lut(means: np.ndarray, c, b) -> np.ndarray:
    """``(C, 256)`` uint8: what :func:`adjust_brightness_contrast` maps each uint8 value to,
    per channel, for the drawn ``c``, ``b`` and the channel ``means`` ``(C,)``."""
    values = np.arange(256, dtype=np.float32)[None, :]
    x = _intensity(values, np.asarray(means, np.float32).reshape(-1, 1), c, b, 255.0)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def displacement_field(shape, rng, alpha: float = 10.0, grid: int = 3) -> np.ndarray:
    """Smooth random displacements ``(2, H, W)`` float32 (dy, dx in pixels), as in Ronneberger
    et al. 2015: ``(2, grid, grid)`` vectors drawn from N(0, alpha), each component zoomed to
    ``shape`` by ``ndimage.zoom(order=3, grid_mode=False, mode="nearest")`` (as two 1-D zooms).
    Raises ValueError for ``grid < 2`` or ``alpha < 0``."""
    h, w = _hw(shape, "shape")
    if not isinstance(grid, (int, np.integer)) or grid < 2:
        raise ValueError(f"grid must be an int >= 2, got {grid!r}")
    if alpha < 0:
        raise ValueError(f"alpha (displacement std in pixels) must be >= 0, got {alpha}")
    coarse = _rng(rng).normal(0.0, alpha, size=(2, grid, grid))
    # the zoom of the identity along each axis: field = M_h @ coarse @ M_w.T
    m_h, m_w = (ndimage.zoom(np.eye(grid), (n / grid, 1), order=3, grid_mode=False,
                             mode="nearest") for n in (h, w))
    return (m_h @ coarse @ m_w.T).astype(np.float32)


def _warp(a: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    """``a`` ``(H, W, ...)`` sampled at ``coords`` ``(2, h, w)`` by
    ``ndimage.map_coordinates(mode="reflect")``: ``(h, w, ...)``, ``a``'s dtype."""
    h, w = a.shape[:2]
    if order == 0:
        index = ndimage.map_coordinates(np.arange(h * w).reshape(h, w), coords, order=0,
                                        mode="reflect")
        return a.reshape(h * w, *a.shape[2:])[index]
    x = a.reshape(h, w, -1)
    out = np.stack([ndimage.map_coordinates(x[..., c], coords, output=np.float32, order=order,
                                            mode="reflect") for c in range(x.shape[-1])], -1)
    return _as_dtype(out.reshape(coords.shape[1:] + a.shape[2:]), a.dtype)


def _elastic(image, mask, weights, rng, alpha, grid, order=1, margin: int = 0) -> tuple:
    """The U-Net paper's elastic deformation: the same warp of image, mask (and weights).

    Output pixel ``(y, x)`` takes the input at ``(y + dy, x + dx)`` of ``displacement_field``
    (borders mirrored), ``image`` interpolated with spline ``order``, ``mask`` and ``weights``
    moved by index; only the pixels at least ``margin`` from the border are kept. Returns
    ``(image, mask)`` or ``(image, mask, weights)``, dtypes unchanged.
    """
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

    In order: a random multiple of 90 degrees and flips; a random crop or mirrored pad to
    ``crop`` (int or ``(h, w)``; ``None`` keeps the size, a non-square image may come back
    ``(W, H)``); the elastic deformation (of a crop grown by a margin); brightness and contrast
    (image only; 0 disables). ``image`` and ``mask`` ``(H, W)`` or ``(H, W, C)``, ``weights``
    ``(H, W)`` or None. Returns ``(image, mask)`` or ``(image, mask, weights)``, contiguous,
    dtypes unchanged. ValueError for mismatched shapes or a bad ``crop``, TypeError for a bad
    ``rng``.
    """
    image, mask = np.asarray(image), np.asarray(mask)
    weights = None if weights is None else np.asarray(weights)
    _check_image_mask(image, mask, weights)
    rng = _rng(rng)
    turn = _draw_dihedral(rng, flip, rotate90)
    arrays = [None if a is None else _dihedral_view(a, *turn) for a in (image, mask, weights)]
    margin = int(math.ceil(2 * elastic_alpha)) if elastic else 0
    if crop is not None:
        th, tw = _hw(crop, "crop")
        arrays = random_crop_or_pad(arrays, (th + 2 * margin, tw + 2 * margin), rng)
    if elastic:
        image, mask, weights = arrays
        warped = _elastic(image, mask, weights, rng, elastic_alpha, elastic_grid,
                          margin=margin if crop is not None else 0)
        arrays = list(warped) + ([None] if weights is None else [])
    image, mask, weights = arrays
    if brightness or contrast:
        image = adjust_brightness_contrast(image, rng, brightness, contrast)
    return tuple(np.ascontiguousarray(a) for a in (image, mask, weights) if a is not None)
