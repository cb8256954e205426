"""Receptive fields of a Keras model, traced through its layer graph.

What belongs here: ``receptive_field`` (the textbook field, ``rf += (k - 1) * jump`` through
the layers) and ``receptive_field_spans`` (the exact first and last input row each output row
depends on, by interval arithmetic). Both walk the functional graph with public Keras API
only (``model.layers``, ``layer.input``, ``layer.output``). Prediction uses the field to
choose how much of each tile's edge to drop (``predict.tile_plan``); notebook 04 measures it.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np


def _graph(model: Any) -> Iterator[tuple[Any, list[str]]]:
    """``(layer, names of the layers that feed it)`` in the order of ``model.layers``.

    A layer's parents are found by matching its input tensors with the other layers' output
    tensors (public ``layer.input`` / ``layer.output``); an input layer has none.
    """
    import keras

    made_by = {id(layer.output): layer.name for layer in model.layers}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            yield layer, []
            continue
        inputs = keras.tree.flatten(layer.input)
        yield layer, [made_by[id(tensor)] for tensor in inputs]


_POINTWISE = (
    "InputLayer", "Dropout", "SpatialDropout2D", "BatchNormalization", "Activation", "ReLU",
    "ELU", "LeakyReLU", "Rescaling", "Normalization", "Cropping2D", "ZeroPadding2D",
)  # fmt: skip


def _rf_step(layer: Any, rf: Fraction, jump: Fraction) -> tuple[Fraction, Fraction]:
    """Receptive field and jump (input pixels between neighbouring outputs) after ``layer``."""
    kind = type(layer).__name__
    if kind in ("Conv2D", "MaxPooling2D", "AveragePooling2D"):
        k = layer.kernel_size[0] if kind == "Conv2D" else layer.pool_size[0]
        s = layer.strides[0]
        d = layer.dilation_rate[0] if kind == "Conv2D" else 1
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
    """Textbook receptive field: side of the square of input pixels that one output pixel of
    ``layer_name`` (default: the model's output) can depend on, computed from the layer list.
    Behind a stride or pooling this is an average over output positions: the exact field of
    a given pixel depends on its place on the pooling grid (``receptive_field_spans``; 188
    or 204 rows for an interior output pixel of ``seed_unet``, 200 on average).

    Walks the graph in order with the rules ``rf += (k - 1) * jump, jump *= stride`` for
    convolutions and pooling, ``jump /= 2`` for up-sampling (a 2x2 stride-2 transposed
    convolution sees one input pixel; bilinear up-sampling sees two) and the largest field
    where branches are concatenated. 140 for the bottleneck ``c5`` and 200 for the output of
    ``seed_unet`` (and of ``paper_unet``).
    """
    fields: dict[str, tuple[Fraction, Fraction]] = {}
    for layer, parents in _graph(model):
        if not parents:
            fields[layer.name] = (Fraction(1), Fraction(1))
            continue
        incoming = [fields[p] for p in parents]
        if type(layer).__name__ in ("Concatenate", "Add", "Multiply", "Average", "Maximum"):
            fields[layer.name] = (max(r for r, _ in incoming), min(j for _, j in incoming))
        else:
            fields[layer.name] = _rf_step(layer, *incoming[0])
    name = layer_name if layer_name is not None else model.layers[-1].name
    if name not in fields:
        raise ValueError(f"no layer named {name!r} in {model.name!r}")
    return int(fields[name][0])


def _window_spans(
    lo: np.ndarray, hi: np.ndarray, n_out: int, k: int, s: int, d: int, padding: str
) -> tuple[np.ndarray, np.ndarray]:
    """Spans after a windowed layer (convolution or pooling) along one axis."""
    n_in = len(lo)
    extent = d * (k - 1) + 1
    before = max((n_out - 1) * s + extent - n_in, 0) // 2 if padding == "same" else 0
    first = np.clip(np.arange(n_out) * s - before, 0, n_in - 1)
    last = np.clip(np.arange(n_out) * s - before + extent - 1, 0, n_in - 1)
    return lo[first], hi[last]


def _span_step(layer: Any, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact input spans ``(lo, hi)`` of every output row of ``layer`` from those of its input."""
    kind, n = type(layer).__name__, len(lo)
    if kind in ("Conv2D", "MaxPooling2D", "AveragePooling2D"):
        conv = kind == "Conv2D"
        k = layer.kernel_size[0] if conv else layer.pool_size[0]
        s, d = layer.strides[0], (layer.dilation_rate[0] if conv else 1)
        n_out = -(-n // s) if layer.padding == "same" else (n - d * (k - 1) - 1) // s + 1
        return _window_spans(lo, hi, n_out, k, s, d, layer.padding)
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


def receptive_field_spans(
    model: Any, layer_name: str | None = None, size: int | None = None
) -> np.ndarray:
    """Exact first and last input row that each output row of ``layer_name`` depends on.

    Interval arithmetic along the height axis through every layer (zero padding is not
    input, so spans are clipped to the image). ``size``: input height, needed only when the
    model's is free. Returns ``(H_out, 2)`` int array of ``[first, last]``; the widths
    ``last - first + 1`` vary with the row's position on the pooling grid (188 or 204 for an
    interior output row of ``seed_unet``), while ``receptive_field`` gives the textbook 200.
    """
    n = model.input_shape[1] if size is None else int(size)
    if n is None or n < 1:
        raise ValueError(f"{model.name!r} has a free input height: pass size=, got {size!r}")
    spans: dict[str, tuple] = {}
    for layer, parents in _graph(model):
        if not parents:
            spans[layer.name] = (np.arange(n), np.arange(n))
        elif type(layer).__name__ in ("Concatenate", "Add", "Multiply", "Average", "Maximum"):
            los, his = zip(*(spans[p] for p in parents), strict=True)
            spans[layer.name] = (np.minimum.reduce(los), np.maximum.reduce(his))
        else:
            spans[layer.name] = _span_step(layer, *spans[parents[0]])
    name = layer_name if layer_name is not None else model.layers[-1].name
    if name not in spans:
        raise ValueError(f"no layer named {name!r} in {model.name!r}")
    return np.stack(spans[name], axis=1)
