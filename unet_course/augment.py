"""Data augmentation for segmentation, and a Keras ``PyDataset`` that serves augmented batches.

What belongs here: transforms applied identically to an image and its mask (flips, 90-degree
rotations, random crops or pads to the training size, the elastic deformation of the U-Net
paper), photometric changes applied to the image only (brightness, contrast), and
``SegmentationSequence``, which builds batches on the fly, in worker threads or processes, so
the accelerator is not left waiting for data.

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

import keras
import numpy as np
from scipy import ndimage

__all__ = [
    "augment_pair",
    "elastic_deform",
    "displacement_field",
    "random_crop_or_pad",
    "adjust_brightness_contrast",
    "SegmentationSequence",
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


def _check_pair(image: np.ndarray, mask: np.ndarray, weights=None) -> None:
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
    ``b ~ U(-brightness, brightness)``, ``mean`` per channel, ``full_range`` 255 for uint8
    (then rounded and clipped to 0..255) and 1.0 for float images (not clipped).
    """
    rng = _rng(rng)
    if brightness < 0 or contrast < 0 or contrast > 1:
        raise ValueError(f"need brightness >= 0 and 0 <= contrast <= 1, got {brightness}, {contrast}")
    full = 255.0 if image.dtype == np.uint8 else 1.0
    x = image.astype(np.float32)
    if contrast:
        mean = x.mean(axis=(0, 1), keepdims=True)
        x = (x - mean) * np.float32(rng.uniform(1 - contrast, 1 + contrast)) + mean
    if brightness:
        x = x + np.float32(rng.uniform(-brightness, brightness) * full)
    if image.dtype == np.uint8:
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return x.astype(image.dtype)


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
    """Sample ``a`` (H, W, ...) at ``coords`` (2, H, W): order 0 by index, else SciPy splines."""
    h, w = a.shape[:2]
    if order == 0:
        iy = _reflect(np.rint(coords[0]).astype(np.int64), h)
        ix = _reflect(np.rint(coords[1]).astype(np.int64), w)
        return a[iy, ix]
    x = a.astype(np.float32).reshape(h, w, -1)
    out = np.stack([ndimage.map_coordinates(x[..., c], coords, order=order, mode="reflect")
                    for c in range(x.shape[-1])], axis=-1).reshape(a.shape)
    if a.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(a.dtype)


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
    _check_pair(image, mask, weights)
    if order not in (0, 1, 2, 3, 4, 5):
        raise ValueError(f"order must be a spline order 0..5, got {order!r}")
    h, w = image.shape[:2]
    d = displacement_field((h, w), rng, alpha, grid)
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32),
                         indexing="ij")
    coords = np.stack([yy + d[0], xx + d[1]])
    out = (_warp(image, coords, order), _warp(mask, coords, 0))
    if weights is None:
        return out
    return (*out, _warp(np.asarray(weights), coords, 0))


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
    _check_pair(image, mask, weights)
    rng = _rng(rng)
    arrays = _dihedral([image, mask, weights], rng, flip, rotate90)
    margin = int(math.ceil(2 * elastic_alpha)) if elastic else 0
    if crop is not None:
        th, tw = _hw(crop, "crop")
        arrays = random_crop_or_pad(arrays, (th + 2 * margin, tw + 2 * margin), rng)
    if elastic:
        image, mask, *rest = arrays
        warped = elastic_deform(image, mask, rng, elastic_alpha, elastic_grid, weights=rest[0])
        arrays = list(warped) + ([None] if rest[0] is None else [])
        if crop is not None and margin:
            arrays = [a if a is None else a[margin:-margin, margin:-margin] for a in arrays]
    image, mask, weights = arrays
    if brightness or contrast:
        image = adjust_brightness_contrast(image, rng, brightness, contrast)
    out = tuple(np.ascontiguousarray(a) for a in (image, mask, weights) if a is not None)
    return out


_AUGMENT_OPTIONS = {"flip", "rotate90", "brightness", "contrast", "elastic", "elastic_alpha",
                    "elastic_grid"}


def _as_list(arrays, what: str) -> list[np.ndarray]:
    if isinstance(arrays, np.ndarray):
        return list(arrays)
    if isinstance(arrays, (list, tuple)):
        return [np.asarray(a) for a in arrays]
    raise TypeError(f"{what} must be an array (N, H, W, ...) or a list of arrays, "
                    f"got {type(arrays).__name__}")


def _check_dataset(images: list, masks: list, weights, size, image_dtype: str) -> None:
    if len(images) == 0 or len(images) != len(masks):
        raise ValueError(f"need as many masks as images (at least one), got {len(images)} "
                         f"images and {len(masks)} masks")
    if weights is not None and len(weights) != len(images):
        raise ValueError(f"got {len(weights)} weight maps for {len(images)} images")
    if image_dtype not in ("float32", "uint8"):
        raise ValueError(f"image_dtype must be 'float32' or 'uint8', got {image_dtype!r}")
    channels = {1 if im.ndim == 2 else im.shape[-1] for im in images}
    if len(channels) > 1:
        raise ValueError(f"all images need the same number of channels, got {sorted(channels)}")
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        _check_pair(image, mask, None if weights is None else weights[i])
        if image_dtype == "uint8" and image.dtype != np.uint8:
            raise ValueError(f"image_dtype='uint8' needs uint8 images; image {i} is {image.dtype}")
    if size is None and len({im.shape[:2] for im in images}) > 1:
        raise ValueError("images have different sizes; pass size=(h, w) to crop/pad them")


class SegmentationSequence(keras.utils.PyDataset):
    """Batches of (augmented) image/mask pairs built on the fly, for ``model.fit``.

    Args:
        images: ``(N, H, W, C)`` array or a list of ``(H, W, C)`` / ``(H, W)`` arrays, which
            may differ in size (e.g. ``load_dsb2018(root)[0]``); uint8 or float.
        masks: matching ``(H, W)`` arrays (binary or instance labels) or ``(H, W, C)``.
        batch_size: images per batch (the last batch may be smaller).
        size: training size ``int`` or ``(h, w)``: random crop, or mirrored pad, per image
            (centre crop when ``augment=False``). ``None``: keep sizes (all must be equal).
        augment: apply :func:`augment_pair` (flips, 90-degree rotations, brightness, contrast;
            ``augment_options`` may change these and switch on ``elastic``).
        shuffle: a new image order every epoch.
        seed: with it, batch ``i`` of epoch ``e`` is the same every run, whatever the workers.
        binarize: masks become ``labels > 0`` (float32 0/1). ``False`` keeps them as given.
        weights: optional per-pixel ``(H, W)`` arrays (e.g. the U-Net border weight map),
            moved with the mask and returned as Keras sample weights.
        image_dtype: ``"float32"`` (uint8 scaled to [0, 1]) or ``"uint8"`` (as stored, for a
            model that rescales inside).
        workers, use_multiprocessing, max_queue_size: passed to ``keras.utils.PyDataset``.

    Each item is ``(images (B, h, w, C), masks (B, h, w, 1) float32)``, plus
    ``weights (B, h, w) float32`` when weights are given. Masks that have a channel axis keep it.
    """

    def __init__(self, images, masks, batch_size: int = 8, *, size=None, augment: bool = True,
                 shuffle: bool = True, seed: int = 0, binarize: bool = True, weights=None,
                 image_dtype: str = "float32", augment_options: dict | None = None,
                 workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing,
                         max_queue_size=max_queue_size)
        images, masks = _as_list(images, "images"), _as_list(masks, "masks")
        weights = None if weights is None else _as_list(weights, "weights")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        size = None if size is None else _hw(size)
        options = dict(augment_options or {})
        if set(options) - _AUGMENT_OPTIONS:
            raise ValueError(f"unknown augment_options {sorted(set(options) - _AUGMENT_OPTIONS)}; "
                             f"expected some of {sorted(_AUGMENT_OPTIONS)}")
        _check_dataset(images, masks, weights, size, image_dtype)
        if augment and size is None and options.get("rotate90", True) and \
                images[0].shape[0] != images[0].shape[1]:
            raise ValueError("90-degree rotations of non-square images change their shape; "
                             "pass size=(h, w) or augment_options={'rotate90': False}")
        self.images = [im[..., None] if im.ndim == 2 else im for im in images]
        self.masks, self.weights = masks, weights
        self.batch_size, self.size, self.augment = int(batch_size), size, bool(augment)
        self.shuffle, self.seed, self.binarize = bool(shuffle), int(seed), bool(binarize)
        self.image_dtype, self.augment_options = image_dtype, options
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def on_epoch_end(self) -> None:
        """Keras calls this after each epoch: the next epoch gets a new order and new draws."""
        self.epoch += 1

    def order(self) -> np.ndarray:
        """The image indices in this epoch's order, ``(N,)`` int."""
        n = len(self.images)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        ids = self.order()[index * self.batch_size:(index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        samples = [self._sample(int(i), rng) for i in ids]
        batch = tuple(np.stack(parts) for parts in zip(*samples, strict=True))
        return batch

    def _sample(self, i: int, rng: np.random.Generator) -> tuple:
        image, mask = self.images[i], self.masks[i]
        weights = None if self.weights is None else self.weights[i]
        if self.augment:
            out = augment_pair(image, mask, rng, crop=self.size, weights=weights,
                               **self.augment_options)
            image, mask, weights = out if weights is not None else (*out, None)
        elif self.size is not None:
            image, mask, weights = random_crop_or_pad([image, mask, weights], self.size, None)
        if self.image_dtype == "float32":
            scale = np.float32(1 / 255) if image.dtype == np.uint8 else np.float32(1)
            image = image.astype(np.float32) * scale
        mask = (mask > 0).astype(np.float32) if self.binarize else mask.astype(np.float32)
        mask = mask[..., None] if mask.ndim == 2 else mask
        if weights is None:
            return image, mask
        return image, mask, np.asarray(weights, np.float32)
