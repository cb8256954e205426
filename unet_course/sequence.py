"""``SegmentationSequence``, the Keras ``PyDataset`` serving augmented batches to ``fit``, and
``ThreeClassSequence``, the recipe's three-class batches. A uint8 image that needs no padding
nor elastic warp is served the pixels of ``augment.augment_pair`` by a faster path: the crop's
window found in the source, a lookup table per channel, one ``numpy.take``.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np

from unet_course.augment import (
    _check_image_mask,
    _dihedral_view,
    _draw_dihedral,
    _draw_intensity,
    _hw,
    augment_pair,
    intensity_lut,
    random_crop_or_pad,
)

__all__ = ["SegmentationSequence", "ThreeClassSequence"]

_AUGMENT_OPTIONS = {"flip", "rotate90", "brightness", "contrast", "elastic", "elastic_alpha",
                    "elastic_grid"}


def _as_list(arrays, what: str) -> list[np.ndarray]:
    if isinstance(arrays, np.ndarray | list | tuple):
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
        _check_image_mask(image, mask, None if weights is None else weights[i])
        if image_dtype == "uint8" and image.dtype != np.uint8:
            raise ValueError(f"image_dtype='uint8' needs uint8 images; image {i} is {image.dtype}")
    if size is None and len({im.shape[:2] for im in images}) > 1:
        raise ValueError("images have different sizes; pass size=(h, w) to crop/pad them")


def _check_draw(batches, draw, n: int):
    """``(batches, draw)`` checked: ``draw`` as ``(n,)`` float64 probabilities or ``None``."""
    if batches is not None and (isinstance(batches, bool)
                                or not isinstance(batches, (int, np.integer)) or batches < 1):
        raise ValueError(f"batches must be None or a positive int, got {batches!r}")
    if draw is None:
        return batches, None
    if batches is None:
        raise ValueError("draw needs batches: a pass over the data shows each image once")
    draw = np.asarray(draw, np.float64)
    if draw.shape != (n,) or not np.all(np.isfinite(draw)) or draw.min() < 0 or draw.sum() <= 0:
        raise ValueError(f"draw must hold {n} non-negative weights, not all 0; got {draw!r}")
    return int(batches), draw / draw.sum()


@functools.lru_cache(maxsize=64)
def _gather_index(k: int, flip_v: bool, flip_h: bool, h: int, w: int, channels: int):
    """Flat indices into a ``(C, h, w)`` window giving its transform as raveled ``(h', w', C)``."""
    pixels = _dihedral_view(np.arange(h * w).reshape(h, w), k, flip_v, flip_h)
    index = (pixels[..., None] + np.arange(channels) * (h * w)).ravel()
    index.setflags(write=False)
    return index


@functools.lru_cache(maxsize=256)
def _source_coordinates(h: int, w: int, k: int, flip_v: bool, flip_h: bool):
    """Source row and column of each pixel of an ``(h, w)`` image's transform (read-only views)."""
    ys = np.broadcast_to(np.arange(h)[:, None], (h, w))
    xs = np.broadcast_to(np.arange(w)[None, :], (h, w))
    return _dihedral_view(ys, k, flip_v, flip_h), _dihedral_view(xs, k, flip_v, flip_h)


class SegmentationSequence(keras.utils.PyDataset):
    """Batches of (augmented) image/mask pairs built on the fly, for ``model.fit``.

    Args:
        images: ``(N, H, W, C)`` array or a list of ``(H, W, C)`` / ``(H, W)`` uint8 or float
            arrays, which may differ in size.
        masks: matching ``(H, W)`` arrays (binary or instance labels) or ``(H, W, C)``.
        batch_size: images per batch (the last batch may be smaller).
        size: ``int`` or ``(h, w)``: a random crop, or mirrored pad, of each image (centre crop
            when ``augment=False``); ``None`` keeps the sizes (all must be equal).
        augment: apply ``augment.augment_pair`` with ``augment_options`` (its keyword
            arguments but ``crop`` and ``weights``).
        shuffle: a new image order for every pass.
        seed: batch ``i`` of pass ``p`` is drawn from ``numpy.random.default_rng([seed, p, i])``.
        binarize: masks become ``labels > 0``; ``False`` keeps them as given.
        weights: optional per-pixel ``(H, W)`` arrays, moved with the mask (sample weights).
        image_dtype: ``"float32"`` (uint8 scaled to [0, 1]) or ``"uint8"`` (as stored).
        workers: threads (or processes) that build batches ahead, at most ``max_queue_size``.
        batches: ``None``: a pass shows each image once. An int: a pass is that many batches
            of images drawn with replacement, with probabilities ``draw`` ``(N,)`` (default equal).

    Items: ``(images (B, h, w, C), masks (B, h, w, 1) float32)``, plus ``weights (B, h, w)
    float32`` when given. Raises ValueError (TypeError for a wrong container) for inconsistent
    inputs, IndexError for an index outside ``range(len(self))``.

    A batch depends on ``(seed, epoch, index)`` alone; ``epoch`` counts finished passes, and
    ``on_epoch_end`` starts a new one only once every batch of this one was asked for (with
    ``use_multiprocessing``: always). On JAX and PyTorch Keras sees one worker and the
    sequence's own threads build ahead, so ``fit`` gets the same batches whatever ``workers``
    is; on TensorFlow ``workers > 1`` is Keras's thread pool (the same batches only when each
    Keras epoch is a whole pass).
    """

    def __init__(self, images, masks, batch_size: int = 8, *, size=None, augment: bool = True,
                 shuffle: bool = True, seed: int = 0, binarize: bool = True, weights=None,
                 image_dtype: str = "float32", augment_options: dict | None = None,
                 workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10,
                 batches: int | None = None, draw=None):
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
        self.batches, self.draw = _check_draw(batches, draw, len(images))
        self.epoch = 0
        self._served: set[int] = set()
        self._ahead: dict = {}  # (epoch, index) -> Future of the batch
        self._pool = None
        self._planes = self._planar_copies()
        self._binary = [None if p is None or not self.binarize else (m > 0).view(np.uint8)
                        for p, m in zip(self._planes, self.masks, strict=True)]

    @property
    def workers(self) -> int:
        """What Keras's loader sees: ``workers`` on TensorFlow or with processes, else 1."""
        keras_pool = self.use_multiprocessing or keras.backend.backend() == "tensorflow"
        return self._workers if keras_pool else 1

    @workers.setter
    def workers(self, value: int) -> None:
        self._workers = value

    def _planar_copies(self) -> list:
        """``(C, H, W)`` copies of the uint8 images the fast path serves (others ``None``)."""
        fast = (self.augment and self.size is not None and not self.augment_options.get("elastic")
                and self._samples_are_plain())
        return [np.ascontiguousarray(np.moveaxis(im, -1, 0))
                if fast and im.dtype == np.uint8 and mask.ndim == 2 else None
                for im, mask in zip(self.images, self.masks, strict=True)]

    def _samples_are_plain(self) -> bool:
        """True when an item is ``augment_pair``'s output as it stands (the fast path's)."""
        return type(self)._sample is SegmentationSequence._sample

    def __len__(self) -> int:
        return self.batches or math.ceil(len(self.images) / self.batch_size)

    def on_epoch_end(self) -> None:
        """Start a new pass (new order, new draws) once every batch of this one was asked for."""
        if self.use_multiprocessing or len(self._served) >= len(self):
            self.epoch += 1
            self._served, ahead, self._ahead = set(), self._ahead, {}
            for future in ahead.values():
                future.cancel()
            self._build_ahead()

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The image indices in the order of pass ``epoch`` (default: this one), ``(N,)`` int."""
        if not self.shuffle:
            return np.arange(len(self.images))
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch])
        return rng.permutation(len(self.images))

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        key = (self.epoch, int(index))
        self._served.add(key[1])
        future = self._ahead.pop(key, None)
        batch = self._batch(*key) if future is None else future.result()
        self._build_ahead()
        return batch

    def _build_ahead(self) -> None:
        """Up to ``max_queue_size`` batches of this pass not yet asked for, built in threads."""
        if self._workers <= 1 or self.workers > 1:  # no threads, or Keras's own
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="batches")
        epoch = self.epoch
        for index in range(len(self)):
            if len(self._ahead) >= self.max_queue_size:
                break
            if index not in self._served and (epoch, index) not in self._ahead:
                self._ahead[epoch, index] = self._pool.submit(self._batch, epoch, index)

    def _batch(self, epoch: int, index: int) -> tuple:
        """Batch ``index`` of pass ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch, index])
        if self.batches is None:
            ids = self.order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        else:  # drawn with replacement, from this batch's own generator
            ids = rng.choice(len(self.images), self.batch_size, p=self.draw)
        if any(p is not None for p in self._planes):
            return self._fast_batch(ids, rng)
        samples = [self._sample(int(i), rng) for i in ids]
        return tuple(np.stack(parts) for parts in zip(*samples, strict=True))

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

    def _fast_batch(self, ids: np.ndarray, rng: np.random.Generator) -> tuple:
        """The batch written straight into its output arrays, image by image in ``ids``."""
        (th, tw), n = self.size, len(ids)
        dtype = np.uint8 if self.image_dtype == "uint8" else np.float32
        out = [np.empty((n, th, tw, self.images[0].shape[-1]), dtype),
               np.empty((n, th, tw, 1), np.float32)]
        if self.weights is not None:
            out.append(np.empty((n, th, tw), np.float32))
        for b, i in enumerate(int(i) for i in ids):
            item = [a[b] for a in out]
            if not self._fast_sample(i, rng, item):
                for target, value in zip(item, self._sample(i, rng), strict=True):
                    target[...] = value  # same draws, the general path (padding needed)
        return tuple(out)

    def _fast_sample(self, i: int, rng: np.random.Generator, out: list) -> bool:
        """``augment_pair`` of image ``i`` without padding or elastic, written into ``out``.
        Returns False, having drawn nothing, when the image needs the general path."""
        planes, (th, tw) = self._planes[i], self.size
        options = self.augment_options
        rotate90, flip = options.get("rotate90", True), options.get("flip", True)
        h, w = (0, 0) if planes is None else planes.shape[1:]
        if not (h >= th and w >= tw and (not rotate90 or (w >= th and h >= tw))):
            return False  # no planar copy, or a crop of some orientation would need padding
        k, flip_v, flip_h = _draw_dihedral(rng, flip, rotate90)
        big_h, big_w = (w, h) if k % 2 else (h, w)
        rng.integers(1), rng.integers(1)  # random_crop_or_pad's (empty) padding draws
        y0, x0 = int(rng.integers(big_h - th + 1)), int(rng.integers(big_w - tw + 1))
        ys, xs = _source_coordinates(h, w, k, flip_v, flip_h)
        corners = [(y0, x0), (y0 + th - 1, x0 + tw - 1)]
        r, c = sorted(int(ys[p]) for p in corners), sorted(int(xs[p]) for p in corners)
        rows, cols = slice(r[0], r[1] + 1), slice(c[0], c[1] + 1)
        window = planes[:, rows, cols]
        brightness, contrast = options.get("brightness", 0.1), options.get("contrast", 0.2)
        wh, ww = window.shape[1:]
        if brightness or contrast:
            c, b = _draw_intensity(rng, brightness, contrast)
            total = np.uint32 if wh * ww * 255 < 2**32 else np.uint64  # exact sums
            sums = window.sum(axis=(1, 2), dtype=total)
            lut = intensity_lut((sums / (wh * ww)).astype(np.float32), c, b)
        else:
            lut = np.broadcast_to(np.arange(256, dtype=np.uint8), (len(planes), 256))
        if self.image_dtype == "float32":
            lut = lut.astype(np.float32) * np.float32(1 / 255)
        mapped = np.empty(window.shape, lut.dtype)
        for ch in range(len(planes)):
            np.take(lut[ch], window[ch], out=mapped[ch])
        np.take(mapped.reshape(-1), _gather_index(k, flip_v, flip_h, wh, ww, len(planes)),
                out=out[0].reshape(-1))  # moved and interleaved in one pass
        mask = self._binary[i] if self.binarize else self.masks[i]
        out[1][..., 0] = _dihedral_view(mask[rows, cols], k, flip_v, flip_h)
        if self.weights is not None:
            out[2][...] = _dihedral_view(self.weights[i][rows, cols], k, flip_v, flip_h)
        return True


class ThreeClassSequence(SegmentationSequence):
    """``SegmentationSequence`` of instance label maps with one-hot background / interior /
    boundary targets ``(B, h, w, 3)`` float32 (``(B, h, w, 1)`` 0/1 with ``three_class=False``)
    from ``targets.three_class_targets``. ``gamma=g > 0`` raises each image
    (``skimage.exposure.adjust_gamma``, floats clipped at 0) to a power drawn log-uniformly
    from ``[exp(-g), exp(g)]``."""

    def __init__(self, images, labels, batch_size: int = 8, *, boundary_width: int = 1,
                 gamma: float = 0.0, three_class: bool = True, **kwargs):
        from unet_course.targets import three_class_targets

        self.boundary_width, self.gamma, self.three_class = boundary_width, gamma, three_class
        elastic = (kwargs.get("augment_options") or {}).get("elastic", False)
        self._per_slide = not elastic and not (gamma and kwargs.get("augment", True))
        super().__init__(images, labels, batch_size, binarize=False, **kwargs)
        if self._per_slide:
            self.masks = [three_class_targets(np.asarray(m, np.int32), boundary_width)
                          .astype(np.uint8) if three_class else (np.asarray(m) > 0).view(np.uint8)
                          for m in self.masks]

    def _samples_are_plain(self) -> bool:
        return self._per_slide

    def _batch(self, epoch: int, index: int) -> tuple:
        images, targets = super()._batch(epoch, index)
        if self._per_slide and self.three_class:  # class numbers -> one-hot
            targets = np.eye(3, dtype=np.float32)[targets[..., 0].astype(np.intp)]
        return images, targets

    def _sample(self, i: int, rng: np.random.Generator) -> tuple:
        from unet_course.targets import three_class_targets

        image, labels = super()._sample(i, rng)
        if self._per_slide:  # class numbers (or 0/1), moved with the image
            return image, labels
        if self.gamma and self.augment:
            from skimage.exposure import adjust_gamma

            power = float(np.exp(rng.uniform(-self.gamma, self.gamma)))
            image = adjust_gamma(image if image.dtype == np.uint8 else np.maximum(image, 0), power)
        if not self.three_class:
            return image, (labels > 0).astype(np.float32)
        classes = three_class_targets(labels[..., 0].astype(np.int32), self.boundary_width)
        return image, np.eye(3, dtype=np.float32)[classes]
