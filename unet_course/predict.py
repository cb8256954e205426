"""Prediction: a trained model applied to whole images of any size: ``predict_maps`` (each image
padded to a size the model accepts, same-size inputs batched, cropped back),
``predict_classes`` (after the colour and polarity steps of ``normalization``),
``predict_native`` (nucleus probabilities), ``predict_tiled`` (overlap tiles) and
``predict_instances`` (image in, nuclei out).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unet_course.devices import predict_on_batch
from unet_course.geometry import (
    check_input_size,
    nearest_valid_sizes,
    unet_geometry,
    unet_output_size,
)
from unet_course.receptive_field import receptive_field

MIN_NUCLEUS_PIXELS = 20  # a map with fewer pixels called nucleus has no confidence


def foreground(probs: np.ndarray) -> np.ndarray:
    """``(..., C)`` model output -> float32 nucleus probability: the one channel of a sigmoid
    output, else 1 - P(background) (channel 0)."""
    probs = np.asarray(probs, dtype=np.float32)
    return probs[..., 0] if probs.shape[-1] == 1 else 1 - probs[..., 0]


def confidence(probs) -> float | None:
    """How sure a map is of its nuclei: the mean, over the pixels it calls nucleus, of the
    largest class probability there (of the nucleus probability for one channel); None when
    fewer than ``MIN_NUCLEUS_PIXELS`` pixels are called nucleus."""
    probs = np.asarray(probs)
    nucleus_probability = foreground(probs)
    nucleus = nucleus_probability >= 0.5 if probs.shape[-1] == 1 else probs[..., 0] < 0.5
    if nucleus.sum() < MIN_NUCLEUS_PIXELS:
        return None
    top = nucleus_probability if probs.shape[-1] == 1 else probs.max(axis=-1)
    return float(top[nucleus].mean())


def bucket(side: int, step: int) -> int:
    """The padded length at which a ``same`` model predicts an image side: the next multiple
    of ``step`` and of a quarter of the side's power of two (few shapes for XLA to compile)."""
    grain = max(step, (1 << (int(side).bit_length() - 1)) // 4 // step * step)
    return -(-int(side) // grain) * grain


def _padding(side: int, depth: int, padding: str) -> tuple[int, int]:
    """Pixels to add before and after an image side of ``side`` for the model's input."""
    if padding == "same":
        return 0, bucket(side, 2**depth) - side
    size, margin = _fit_size(side, depth, padding)
    return margin, size - side - margin


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def predict_maps(model: Any, images, batch_size: int = 8) -> list[np.ndarray]:
    """The model's ``(H_i, W_i, K)`` float32 output for each ``(H_i, W_i, C)`` image, at the
    image's own size: reflect-padded to a size the model accepts (``bucket``), predicted
    ``batch_size`` at a time, cropped back; a fixed-size model goes through ``predict_tiled``.
    """
    _check_batch_size(batch_size)
    channels = model.input_shape[-1]
    images = [np.asarray(image) for image in images]
    for image in images:  # every image checked before any prediction
        if image.ndim != 3 or image.shape[-1] != channels:
            raise ValueError(f"expected images (H, W, {channels}), got shape {image.shape}")
    if None not in model.input_shape[1:3]:
        return [predict_tiled(model, image, batch_size=batch_size) for image in images]
    depth, padding = unet_geometry(model)
    pads = [[_padding(side, depth, padding) for side in image.shape[:2]] for image in images]
    groups: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        padded = tuple(s + a + b for s, (a, b) in zip(image.shape[:2], pads[i], strict=True))
        groups.setdefault(padded, []).append(i)
    out: list[np.ndarray] = [np.empty(0)] * len(images)
    for ids in groups.values():
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            batch = np.stack([np.pad(images[i].astype(np.float32), [*pads[i], (0, 0)],
                                     mode="reflect") for i in chunk])
            maps = np.asarray(predict_on_batch(model, batch), dtype=np.float32)
            for i, p in zip(chunk, maps, strict=True):
                out[i] = p[:images[i].shape[0], :images[i].shape[1]]
    return out


def predict_native(model: Any, images, batch_size: int = 4) -> list[np.ndarray]:
    """The nucleus probability of each image at its own size (``predict_maps``, then
    ``foreground``): a list of ``(H_i, W_i)`` float32 arrays in [0, 1]."""
    return [foreground(p) for p in predict_maps(model, images, batch_size)]


def predict_classes(model: Any, images, batch_size: int = 8) -> list[np.ndarray]:
    """``predict_maps`` of ``(H_i, W_i, 3)`` images of any dtype, a one-colour image taken as
    its grey brightness (``normalization.one_colour_as_grey``), a stained one as its grey
    brightness negated (``normalization.stain_as_fluorescence``, as in training) and a grey one
    whose polarity is in doubt predicted as it is and negated, the more confident maps kept."""
    from unet_course import normalization  # Keras: not before the command line has started it

    images = [normalization.stain_as_fluorescence(normalization.one_colour_as_grey(
        np.asarray(image))) for image in images]
    out = predict_maps(model, images, batch_size)
    doubt = [i for i, image in enumerate(images) if normalization.polarity_in_doubt(image)]
    if doubt:
        negated = predict_maps(model, [-images[i].astype(np.float32) for i in doubt], batch_size)
        for i, p in zip(doubt, negated, strict=True):
            as_is, flipped = confidence(out[i]), confidence(p)
            if flipped is not None and (as_is is None or flipped > as_is):
                out[i] = p
    return out


def tile_plan(model: Any, tile: int | None = None, overlap: int | None = None) -> dict[str, int]:
    """How ``predict_tiled`` cuts an image, checked before any prediction:
    ``{"tile", "crop", "overlap", "core"}``, the input side of a tile, the pixels the network
    trims from each side, the output pixels dropped at each side (default: 0 for a ``valid``
    model, else half the receptive field on the pooling grid) and the side kept from each
    tile. ValueError when the model cannot take ``tile`` or nothing would be kept."""
    depth, padding = unet_geometry(model)
    fixed = model.input_shape[1:3]
    if tile is None:
        tile = fixed[0] if fixed[0] else nearest_valid_sizes(512, max(depth, 1), padding)[1]
    if isinstance(tile, bool) or not isinstance(tile, int | np.integer) or tile < 1:
        raise ValueError(
            f"tile must be a positive integer (the network's input side), got {tile!r}"
        )
    if any(side not in (None, tile) for side in fixed):
        raise ValueError(f"this model takes {fixed} inputs only, got tile={tile}")
    if depth:
        check_input_size(int(tile), depth, padding)  # names the nearest sizes that work
        out = unet_output_size(int(tile), depth, padding)
    else:
        out = int(model.compute_output_shape((1, tile, tile, model.input_shape[-1]))[1])
    crop, step = (tile - out) // 2, 2**depth
    if overlap is None:  # same padding needs context discarded around each tile
        overlap = 0 if crop else _default_overlap(model, out, step)
    if isinstance(overlap, bool) or not isinstance(overlap, int | np.integer) or overlap < 0:
        raise ValueError(f"overlap must be an integer >= 0, got {overlap!r}")
    core = (out - 2 * overlap) // step * step
    if core < step:
        raise ValueError(
            f"tile={tile} gives a {out}-pixel output; with overlap={overlap} on each side "
            f"nothing of at least {step} pixels is left to keep: use a larger tile or a "
            "smaller overlap"
        )
    return {"tile": int(tile), "crop": crop, "overlap": int(overlap), "core": core}


def _default_overlap(model: Any, out: int, step: int) -> int:
    """Half the receptive field rounded up to a multiple of ``step``, at most what leaves
    ``step`` pixels of an ``out``-pixel output (that much too for a layer it cannot trace)."""
    most = (out - step) // 2 // step * step
    try:
        half = receptive_field(model) // 2  # ceil((field - 1) / 2): context on each side
    except TypeError:  # a layer the tracing does not know: drop as much as possible
        return most
    return min(-(-half // step) * step, most)


def _check_image(image: Any, model: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a NumPy array, got {type(image).__name__}")
    channels = model.input_shape[-1]
    if image.ndim == 2 and channels == 1:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] != channels or min(image.shape[:2]) < 2:
        raise ValueError(
            f"image must be (H, W, {channels}) with H, W >= 2 for this model, got {image.shape}"
        )
    if not (
        np.issubdtype(image.dtype, np.number) and not np.issubdtype(image.dtype, np.complexfloating)
    ):
        raise TypeError(f"image must hold real numbers, got dtype {image.dtype}")
    return image


def predict_tiled(
    model: Any,
    image: np.ndarray,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 4,
) -> np.ndarray:
    """Overlap-tile prediction (Ronneberger et al. 2015, Fig. 2) of an (H, W, C) image (or
    (H, W) for C = 1), H, W >= 2, as the model takes it: the mirrored image cut into ``tile``
    inputs ``core`` pixels apart (``tile_plan``; default tile: the model's fixed input, else
    the nearest size >= 512), the central part of each output kept. (H, W, k) float32.
    """
    image = _check_image(image, model)
    plan = tile_plan(model, tile, overlap)
    _check_batch_size(batch_size)
    t, core, dropped = plan["tile"], plan["core"], plan["overlap"]
    (h, w), before = image.shape[:2], plan["crop"] + dropped
    ny, nx = -(-h // core), -(-w // core)
    pads = ((before, (ny - 1) * core + t - h - before), (before, (nx - 1) * core + t - w - before))
    padded = np.pad(image.astype(np.float32), (*pads, (0, 0)), mode="reflect")
    corners = [(i * core, j * core) for i in range(ny) for j in range(nx)]
    result = None
    for start in range(0, len(corners), batch_size):
        batch = corners[start : start + batch_size]
        tiles = np.stack([padded[y : y + t, x : x + t] for y, x in batch])
        pred = np.asarray(predict_on_batch(model, tiles), dtype=np.float32)
        if result is None:
            result = np.zeros((ny * core, nx * core, pred.shape[-1]), dtype=np.float32)
        for (y, x0), p in zip(batch, pred, strict=True):
            result[y : y + core, x0 : x0 + core] = p[dropped : dropped + core, dropped : dropped + core]
    return result[:h, :w]


def predict_instances(
    model: Any,
    image: np.ndarray,
    method: str = "watershed",
    threshold: float = 0.5,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    min_size: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (H, W) int32, probabilities (H, W, k) float32)``: ``predict_tiled``, then
    ``label_instances`` of the foreground (channel 1 of a 2-channel model) or of the 3-class
    map. ValueError for a model with another number of output channels."""
    from unet_course.postprocess import METHODS, label_instances

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    channels = model.output_shape[-1]
    if channels not in (1, 2, 3):
        raise ValueError(f"expected a model with 1, 2 or 3 output channels, got {channels}")
    prob = predict_tiled(model, image, tile, overlap)
    post = prob[..., 1] if channels == 2 else prob
    labels = label_instances(post, threshold, method, min_size=min_size)
    return labels, prob


def _fit_size(side: int, depth: int, padding: str) -> tuple[int, int]:
    """Smallest input side whose output covers ``side`` pixels, and the output's margin."""
    size = nearest_valid_sizes(side, depth, padding)[1]
    while unet_output_size(size, depth, padding) < side:
        size = nearest_valid_sizes(size + 1, depth, padding)[1]
    return size, (size - unet_output_size(size, depth, padding)) // 2


