"""Prediction: a trained model applied to images of any size, at their native resolution.

What belongs here: overlap-tile prediction of images larger than the network's input
(``predict_tiled``, cut as ``tile_plan`` says), native-size prediction of a set of images
(``predict_native``: reflect-pad to a size the model accepts, predict same-size images in
batches, crop the answer back; never resize), the foreground channel of a model's output
(``foreground``) and image in, nuclei out (``predict_instances``). The sizes a model accepts
come from ``geometry``. The command ``unet-course predict`` (image files in, PNGs out) is
``commands.predict``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def tile_plan(model: Any, tile: int | None = None, overlap: int | None = None) -> dict[str, int]:
    """How ``predict_tiled`` cuts an image for ``model``, checked before any prediction.

    Returns ``{"tile", "crop", "overlap", "core"}``: the input side of a tile, the pixels the
    network itself trims from each side (0 for ``same`` padding), the output pixels dropped at
    each side, and the side of the part kept from each tile. Raises ValueError when the model
    cannot take ``tile`` (naming the nearest sizes that work) or nothing would be kept.

    The default ``overlap`` is 0 for an unpadded (``valid``) model, whose every output pixel
    saw its full context. For a ``same`` model it is half the receptive field
    (``receptive_field.receptive_field``), rounded up to the pooling grid ``2**depth``, so that
    each kept pixel saw only image, never the zero padding at a tile edge; it is capped so
    that at least one grid cell of each tile is kept (then the tile is too small for its
    field: pass a larger ``tile``).
    """
    from unet_course.geometry import (
        check_input_size,
        nearest_valid_sizes,
        unet_geometry,
        unet_output_size,
    )

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
    from unet_course.receptive_field import receptive_field

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
    """Overlap-tile prediction of an image of any size (Ronneberger et al. 2015, Fig. 2).

    The image is mirrored at its borders and cut into ``tile x tile`` inputs placed
    ``core`` pixels apart; from each tile's output only the central ``core x core`` part is
    kept, where ``core`` is the output side minus ``overlap`` pixels on each side, rounded
    down to a multiple of ``2**depth`` (so that every tile pools on the same grid). For an
    unpadded (``valid``) model the output is already smaller than the tile and every kept
    pixel saw its full context, so ``overlap`` can be 0; for a ``same`` model ``overlap``
    discards the pixels near the tile edges, whose context was zero padding.

    The result equals a single pass of the model over the whole (mirror-padded) image, for a
    ``valid`` model exactly and for a ``same`` model wherever ``overlap`` covers the receptive
    field; away from the image border it then equals ``model(image)`` too.

    Args:
        model: a U-Net-like Keras model (``unet_course.model.build_unet``), input
            ``(batch, H, W, C)``, output ``(batch, H', W', k)``.
        image: (H, W, C) (or (H, W) for C = 1) array, scaled as the model expects (it is
            cast to float32, not rescaled). Any H, W >= 2.
        tile: input side of each tile; a size the model accepts (default: the model's fixed
            input size, else the nearest size >= 512 that it accepts).
        overlap: output pixels dropped at each side of each tile (default: 0 for a valid
            model; for a same model half its receptive field, rounded up to a multiple of
            ``2**depth``; see ``tile_plan``).
        batch_size: tiles per forward pass (one ``predict_on_batch`` call each).

    Returns:
        (H, W, k) float32 predictions.
    """
    image = _check_image(image, model)
    plan = tile_plan(model, tile, overlap)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
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
        pred = np.asarray(model.predict_on_batch(tiles), dtype=np.float32)
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
    """Instance labels of an image of any size: ``predict_tiled`` then ``label_instances``.

    The model's output decides the post-processing input: 1 channel (sigmoid) is the
    foreground probability, 2 channels (softmax) give it as channel 1, and 3 channels are
    background / interior / boundary probabilities (interior-seeded watershed).

    Args:
        model: a U-Net-like Keras model with 1, 2 or 3 output channels.
        image: (H, W, C) array as the model expects it (see ``predict_tiled``).
        method, threshold, min_size: as in ``label_instances``.
        tile, overlap: as in ``predict_tiled``.

    Returns:
        ``(labels (H, W) int32, probabilities (H, W, k) float32)``.
    """
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
    from unet_course.geometry import nearest_valid_sizes, unet_output_size

    size = nearest_valid_sizes(side, depth, padding)[1]
    while unet_output_size(size, depth, padding) < side:
        size = nearest_valid_sizes(size + 1, depth, padding)[1]
    return size, (size - unet_output_size(size, depth, padding)) // 2


def foreground(probs: np.ndarray) -> np.ndarray:
    """``(..., C)`` model output -> float32 foreground probability: the sigmoid channel for one
    class, else 1 - P(background) (channel 0) for softmax outputs of 2 or 3 classes."""
    probs = np.asarray(probs, dtype=np.float32)
    return probs[..., 0] if probs.shape[-1] == 1 else 1 - probs[..., 0]


def predict_native(model: Any, images, batch_size: int = 4) -> list[np.ndarray]:
    """Foreground probabilities for images of any size, at their native resolution.

    Each image is reflect-padded to the smallest size the model accepts whose output covers
    it, predicted, and the answer cropped back: nothing is resized. Images of the same size
    are predicted together, ``batch_size`` per ``predict_on_batch`` call. A model with a fixed
    input size is slid over the mirrored image in overlapping tiles, keeping each tile's
    centre (the paper's overlap-tile strategy, ``predict_tiled``, ``batch_size`` tiles a call).

    Args:
        model: a U-Net (``same`` or ``valid`` padding) with a sigmoid (1 channel) or softmax
            (2 channels, foreground = channel 1) output.
        images: ``(n, H, W, C)`` array or a list of ``(H_i, W_i, C)`` arrays, in the value range
            the model was trained on (the seed U-Net rescales uint8 itself).
        batch_size: images (or tiles) per forward pass.

    Returns:
        a list of ``(H_i, W_i)`` float32 arrays in [0, 1].
    """
    from unet_course.geometry import unet_geometry

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    depth, padding = unet_geometry(model)
    channels = model.input_shape[-1]
    images = [np.asarray(image) for image in images]
    for image in images:  # every image checked before any prediction
        if image.ndim != 3 or image.shape[-1] != channels:
            raise ValueError(f"expected images (H, W, {channels}), got shape {image.shape}")
    if None not in model.input_shape[1:3]:
        return [foreground(predict_tiled(model, image, batch_size=batch_size)) for image in images]
    out: list[np.ndarray] = [np.empty(0)] * len(images)
    by_shape: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(i)
    for shape, ids in by_shape.items():
        (h, w), plans = shape[:2], []
        for side in shape[:2]:
            size, margin = _fit_size(side, depth, padding)
            plans.append((margin, size - side - margin))
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            batch = np.stack([np.pad(images[i], [*plans, (0, 0)], mode="reflect") for i in chunk])
            probs = foreground(model.predict_on_batch(batch))
            for i, p in zip(chunk, probs, strict=True):
                out[i] = p[:h, :w]
    return out

