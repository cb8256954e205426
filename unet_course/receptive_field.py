"""Receptive fields of a functional Keras model, traced through its layer graph."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np


def _walk(model: Any, layer_name: str | None, start: tuple, merge, step) -> tuple:
    """``step(layer, *input value)`` through the graph from ``start``, ``merge`` where branches
    meet; the value at ``layer_name`` (default: the last)."""
    import keras

    made_by = {id(layer.output): layer.name for layer in model.layers}
    values: dict[str, tuple] = {}
    for layer in model.layers:
        is_input = isinstance(layer, keras.layers.InputLayer)
        inputs = [] if is_input else keras.tree.flatten(layer.input)
        parents = [values[made_by[id(tensor)]] for tensor in inputs]
        if not parents:
            values[layer.name] = start
        elif type(layer).__name__ in ("Concatenate", "Add", "Multiply", "Average", "Maximum"):
            values[layer.name] = merge(*zip(*parents, strict=True))
        else:
            values[layer.name] = step(layer, *parents[0])
    name = layer_name if layer_name is not None else model.layers[-1].name
    if name not in values:
        raise ValueError(f"no layer named {name!r} in {model.name!r}")
    return values[name]


_POINTWISE = (
    "InputLayer", "Dropout", "SpatialDropout2D", "BatchNormalization", "Activation", "ReLU",
    "ELU", "LeakyReLU", "Rescaling", "Normalization", "Cropping2D", "ZeroPadding2D",
)  # fmt: skip


def _window(layer: Any) -> tuple[int, int, int]:  # kernel (or pool) size, stride, dilation
    if type(layer).__name__ == "Conv2D":
        return layer.kernel_size[0], layer.strides[0], layer.dilation_rate[0]
    return layer.pool_size[0], layer.strides[0], 1


def _rf_step(layer: Any, rf: Fraction, jump: Fraction) -> tuple[Fraction, Fraction]:
    """Receptive field and jump (input pixels between neighbouring outputs) after ``layer``."""
    kind = type(layer).__name__
    if kind in ("Conv2D", "MaxPooling2D", "AveragePooling2D"):
        k, s, d = _window(layer)
        return rf + (d * (k - 1)) * jump, jump * s
    if kind == "Conv2DTranspose":  # each output sees ceil(k / s) inputs along an axis
        k, s = layer.kernel_size[0], layer.strides[0]
        return rf + (-(-k // s) - 1) * jump, jump / s
    if kind == "UpSampling2D":  # nearest: one input per output; bilinear: two
        extra = jump if layer.interpolation == "bilinear" else 0
        return rf + extra, jump / layer.size[0]
    if kind in _POINTWISE:
        return rf, jump
    raise TypeError(f"receptive_field does not know layer {layer.name!r} of type {kind}")


def receptive_field(model: Any, layer_name: str | None = None) -> int:
    """Textbook receptive field (side in input pixels) of ``layer_name`` (default: the output),
    the largest where branches meet; behind pooling, the average over grid positions. Raises
    ValueError for an unknown layer name, TypeError for an unknown layer type."""
    field, _ = _walk(model, layer_name, (Fraction(1), Fraction(1)),
                     lambda fields, jumps: (max(fields), min(jumps)), _rf_step)
    return int(field)


def _span_step(layer: Any, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact input spans ``(lo, hi)`` of every output row of ``layer`` from those of its input."""
    kind, n = type(layer).__name__, len(lo)
    if kind in ("Conv2D", "MaxPooling2D", "AveragePooling2D"):
        k, s, d = _window(layer)
        extent = d * (k - 1) + 1
        n_out = -(-n // s) if layer.padding == "same" else (n - extent) // s + 1
        before = max((n_out - 1) * s + extent - n, 0) // 2 if layer.padding == "same" else 0
        first = np.arange(n_out) * s - before
        return lo[np.clip(first, 0, n - 1)], hi[np.clip(first + extent - 1, 0, n - 1)]
    if kind == "Conv2DTranspose":  # output o receives input i when 0 <= o + pad - i*s < k
        k, s = layer.kernel_size[0], layer.strides[0]
        n_out = n * s if layer.padding == "same" else (n - 1) * s + k
        pad = max(k - s, 0) // 2 if layer.padding == "same" else 0
        o = np.arange(n_out) + pad
        first = np.clip(-(-(o - k + 1) // s), 0, n - 1)
        return lo[first], hi[np.clip(o // s, 0, n - 1)]
    if kind == "UpSampling2D":
        f = layer.size[0]
        if layer.interpolation == "nearest":
            return np.repeat(lo, f), np.repeat(hi, f)
        centre = (np.arange(n * f) + 0.5) / f - 0.5  # half-pixel centres, as Keras resizes
        i0 = np.clip(np.floor(centre).astype(int), 0, n - 1)
        return lo[i0], hi[np.clip(i0 + 1, 0, n - 1)]
    if kind == "Cropping2D":
        top, bottom = layer.cropping[0]
        return lo[top : n - bottom], hi[top : n - bottom]
    if kind in _POINTWISE:
        return lo, hi
    raise TypeError(f"receptive field spans do not know layer {layer.name!r} of type {kind}")


def receptive_field_spans(model: Any, layer_name: str | None = None,
                          size: int | None = None) -> np.ndarray:
    """First and last input row that each output row of ``layer_name`` depends on, by interval
    arithmetic along the height (clipped to the image): ``(H_out, 2)`` int. ``size``: the input
    height, needed when the model's is free (else ValueError)."""
    n = model.input_shape[1] if size is None else int(size)
    if n is None or n < 1:
        raise ValueError(f"{model.name!r} has a free input height: pass size=, got {size!r}")
    spans = _walk(model, layer_name, (np.arange(n), np.arange(n)),
                  lambda los, his: (np.minimum.reduce(los), np.maximum.reduce(his)), _span_step)
    return np.stack(spans, axis=1)
