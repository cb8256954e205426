"""The U-Net builders and the tools that explain them: sizes, shapes, parameters, receptive fields.

What belongs here:

- ``build_unet``: one builder for every U-Net in the course (``same`` or ``valid`` padding,
  transposed or bilinear up-sampling, sigmoid or softmax head). Layers only, so the models
  run on the TensorFlow, JAX and PyTorch backends and save to ``.keras`` in safe mode.
- ``seed_unet``: the widely copied 256x256 Keras U-Net (1,941,105 parameters), layer names
  ``c1``...``c9``, ``p1``...``p4``, ``u6``...``u9`` as in the popular write-ups.
- ``paper_unet``: Ronneberger et al. (2015) as published, 572x572x1 -> 388x388x2
  (31,030,658 parameters).
- Size arithmetic: ``unet_output_size``, ``valid_input_sizes``, ``nearest_valid_sizes`` and
  ``check_input_size`` (the error that names the sizes that work).
- Tracing: ``trace_shapes`` / ``format_trace`` (level, layer, output shape, parameters),
  ``params_per_level``, ``unet_blocks`` (what ``plotting.draw_unet`` draws) and
  ``receptive_field``, computed from the layer list.

Layer names follow one scheme: block ``l`` (1 to ``2 * depth + 1``) has the convolutions
``c{l}_conv1`` and ``c{l}``, the dropout ``c{l}_dropout``, the pooling ``p{l}`` on the way
down and, on the way up, the up-sampling ``u{l}``, the cropped skip ``u{l}_crop`` (valid
padding only) and the concatenation ``u{l}_concat``. The head is ``outputs``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

#: Dropout rates of the popular Keras U-Net, contracting path and bottleneck; mirrored on the
#: way up (0.2, 0.2, 0.1, 0.1).
SEED_DROPOUT = (0.1, 0.1, 0.2, 0.2, 0.3)
SEED_PARAMS = 1_941_105
PAPER_PARAMS = 31_030_658
_PADDINGS = ("same", "valid")
_UPSAMPLINGS = ("transpose", "bilinear")
_NAME = re.compile(r"^([cpu])(\d+)(?:_|$)")


# --------------------------------------------------------------------------------------------
# Size arithmetic (pure Python, no Keras)
# --------------------------------------------------------------------------------------------
def _check_arch(depth: int, padding: str) -> None:
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be an int >= 1 (number of poolings), got {depth!r}")
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")


def _output_size_or_none(
    size: int, depth: int, padding: str, convs: int = 2, kernel_size: int = 3
) -> int | None:
    """Follow one side length through the U; the output side, or None where it does not fit."""
    loss = convs * (kernel_size - 1) if padding == "valid" else 0
    for _ in range(depth):  # contracting path: convolutions, then a 2x2 pooling
        size -= loss
        if size < 2 or size % 2:
            return None
        size //= 2
    size -= loss  # bottleneck
    if size < 1:
        return None
    for _ in range(depth):  # expanding path: up-sampling by 2, then convolutions
        size = 2 * size - loss
        if size < 1:
            return None
    return size


def unet_output_size(input_size: int, depth: int = 4, padding: str = "same") -> int:
    """Side length of the output map of a U-Net (two 3x3 convolutions per block).

    ``same`` keeps the size; ``valid`` loses 4 pixels per block, e.g. 572 -> 388 for the
    paper's depth 4. Raises ValueError (naming the nearest sizes that work) when
    ``input_size`` does not fit.
    """
    check_input_size(input_size, depth, padding)
    return _output_size_or_none(int(input_size), depth, padding)


def valid_input_sizes(
    depth: int = 4, padding: str = "valid", max_size: int = 1024, min_size: int = 1
) -> list[int]:
    """Every input side length in ``[min_size, max_size]`` that fits the U exactly.

    For ``same`` these are the multiples of ``2**depth``; for ``valid`` (the paper's unpadded
    model) they are ``16 k + 60`` for ``k >= 8`` at depth 4 (188, 204, ..., 572, ...).
    """
    _check_arch(depth, padding)
    if min_size < 1 or max_size < min_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size} and {max_size}")
    return [s for s in range(min_size, max_size + 1) if _output_size_or_none(s, depth, padding)]


def nearest_valid_sizes(size: int, depth: int = 4, padding: str = "same") -> tuple[int | None, int]:
    """The largest size that fits and is ``<= size`` (None if there is none) and the smallest
    one that fits and is ``>= size``."""
    _check_arch(depth, padding)
    below = next(
        (s for s in range(int(size), 0, -1) if _output_size_or_none(s, depth, padding)), None
    )
    above = next(
        s for s in range(max(int(size), 1), 10**7) if _output_size_or_none(s, depth, padding)
    )
    return below, above


def unet_geometry(model: Any) -> tuple[int, str]:
    """``(depth, padding)`` of a U-Net-like Keras model, read from its layers.

    ``depth`` is the number of 2x2 pooling layers (so an input side must be a multiple of
    ``2**depth`` and tiles must sit on that grid); ``padding`` is ``"valid"`` when some
    convolution larger than 1x1 is unpadded (the paper's model, whose output is smaller than
    its input) and ``"same"`` otherwise. Raises ValueError for a model without pooling.
    """
    import keras

    layers_ = list(model._flatten_layers())
    pools = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    depth = sum(isinstance(layer, pools) for layer in layers_)
    valid = any(
        isinstance(layer, keras.layers.Conv2D)
        and max(layer.kernel_size) > 1
        and layer.padding == "valid"
        for layer in layers_
    )
    if depth < 1:
        raise ValueError(f"model {model.name!r} has no pooling layer; expected a U-Net")
    return depth, "valid" if valid else "same"


def check_input_size(size: int | Sequence[int], depth: int = 4, padding: str = "same") -> None:
    """Raise ValueError, naming the nearest sizes that work, if ``size`` does not fit the U.

    ``size``: one side length or ``(H, W)``. A ``same`` model needs each side divisible by
    ``2**depth`` (every pooling halves it and every up-sampling doubles it back); a ``valid``
    model also loses 4 pixels per block, so only some sizes tile (see ``valid_input_sizes``).
    """
    _check_arch(depth, padding)
    sides = [size] if np.ndim(size) == 0 else list(size)
    if len(sides) not in (1, 2):
        raise ValueError(f"size must be an int or (H, W), got {size!r}")
    for side in sides:
        if side is None:
            continue
        if isinstance(side, bool) or not isinstance(side, int | float | np.integer):
            raise TypeError(f"image sides must be integers, got {size!r}")
        if int(side) != side or side < 1:
            raise ValueError(f"image sides must be positive integers, got {size!r}")
        if _output_size_or_none(int(side), depth, padding) is None:
            raise ValueError(_size_message(int(side), depth, padding))


def _size_message(side: int, depth: int, padding: str) -> str:
    below, above = nearest_valid_sizes(side, depth, padding)
    if padding == "same":
        why = (
            f"each of the {depth} poolings halves it, so it must be divisible by "
            f"2**{depth} = {2**depth}"
        )
    else:
        why = (
            "unpadded 3x3 convolutions trim 4 pixels per block and each pooling needs an "
            "even size, so only some sizes tile"
        )
    near = f"{below} or {above}" if below else f"{above} (none smaller fits)"
    return (
        f"input size {side} does not fit a U-Net with depth={depth} and padding={padding!r}: "
        f"{why}. Nearest sizes that work: {near}."
    )


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------
def _dropout_rates(dropout: float | Sequence[float], depth: int) -> list[float]:
    """Per-block rates for blocks 1 .. 2*depth+1 from a float, the contracting path and
    bottleneck (``depth + 1`` rates, mirrored on the way up) or all ``2*depth+1`` rates."""
    if isinstance(dropout, int | float):
        rates = [float(dropout)] * (2 * depth + 1)
    else:
        rates = [float(r) for r in dropout]
        if len(rates) == depth + 1:
            rates = rates + rates[-2::-1]
        elif len(rates) != 2 * depth + 1:
            raise ValueError(
                f"dropout needs 1, depth+1={depth + 1} or 2*depth+1={2 * depth + 1} rates, "
                f"got {len(rates)}: {dropout!r}"
            )
    if any(not 0.0 <= r < 1.0 for r in rates):
        raise ValueError(f"dropout rates must be in [0, 1), got {dropout!r}")
    return rates


def _conv_block(x: Any, filters: int, level: int, rate: float, cfg: dict) -> Any:
    """Two 3x3 convolutions (optionally batch-normalised), dropout between them."""
    from keras import layers

    for i in (1, 2):
        last = f"c{level}" if i == 2 else f"c{level}_conv1"
        conv = dict(padding=cfg["padding"], kernel_initializer=cfg["kernel_initializer"])
        if cfg["batch_norm"]:  # conv (no bias) -> batch norm -> activation named as above
            act = last if i == 2 else f"c{level}_act1"
            x = layers.Conv2D(filters, 3, use_bias=False, name=f"c{level}_conv{i}", **conv)(x)
            x = layers.BatchNormalization(name=f"c{level}_bn{i}")(x)
            x = layers.Activation(cfg["activation"], name=act)(x)
        else:
            x = layers.Conv2D(filters, 3, activation=cfg["activation"], name=last, **conv)(x)
        if i == 1 and rate > 0:
            x = layers.Dropout(rate, name=f"c{level}_dropout")(x)
    return x


def _up_block(x: Any, skip: Any, filters: int, level: int, crop: int, cfg: dict) -> Any:
    """Up-sample by 2 to ``filters`` channels, crop the skip if needed, concatenate."""
    from keras import layers

    init = cfg["kernel_initializer"]
    if cfg["upsampling"] == "transpose":
        x = layers.Conv2DTranspose(
            filters, 2, strides=2, padding="same", kernel_initializer=init, name=f"u{level}"
        )(x)
    else:  # the paper's wording: up-sample, then a 2x2 convolution that halves the channels
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"u{level}_upsample")(x)
        x = layers.Conv2D(filters, 2, padding="same", kernel_initializer=init, name=f"u{level}")(x)
    if crop:
        skip = layers.Cropping2D(crop, name=f"u{level}_crop")(skip)
    return layers.Concatenate(name=f"u{level}_concat")([x, skip])


def skip_crops(depth: int = 4, padding: str = "valid") -> list[int]:
    """Pixels cropped from each side of the skip tensor of blocks 1 .. depth (crop-and-copy).

    Zero for ``same`` padding. For ``valid`` they do not depend on the input size; at depth 4
    they are ``[88, 40, 16, 4]`` (the paper's 568 -> 392, 280 -> 200, 136 -> 104, 64 -> 56).
    """
    _check_arch(depth, padding)
    if padding == "same":
        return [0] * depth
    size = valid_input_sizes(depth, "valid", max_size=64 * 2**depth)[0]
    skips = []
    for _ in range(depth):  # the skip sizes on the way down
        size -= 4
        skips.append(size)
        size //= 2
    size -= 4
    crops = []
    for skip in reversed(skips):  # the up-sampled sizes on the way up
        size *= 2
        crops.append((skip - size) // 2)
        size -= 4
    return crops[::-1]


def _check_build_args(input_shape: Sequence, num_classes: int, base_filters: int, kw: dict) -> None:
    if len(tuple(input_shape)) != 3:
        raise ValueError(
            f"input_shape must be (H, W, C) with H, W int or None, got {input_shape!r}"
        )
    if not isinstance(input_shape[2], int) or input_shape[2] < 1:
        raise ValueError(f"input_shape needs a fixed channel count C >= 1, got {input_shape!r}")
    for name, value in (("num_classes", num_classes), ("base_filters", base_filters)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    _check_arch(kw["depth"], kw["padding"])
    if kw["upsampling"] not in _UPSAMPLINGS:
        raise ValueError(f"upsampling must be one of {_UPSAMPLINGS}, got {kw['upsampling']!r}")
    check_input_size(tuple(input_shape[:2]), kw["depth"], kw["padding"])


def build_unet(
    input_shape: Sequence[int | None] = (256, 256, 3),
    num_classes: int = 1,
    base_filters: int = 16,
    depth: int = 4,
    dropout: float | Sequence[float] = 0.0,
    activation: str = "elu",
    batch_norm: bool = False,
    padding: str = "same",
    upsampling: str = "transpose",
    kernel_initializer: str = "he_normal",
    rescale: float | None = None,
    normalize: bool = False,
    name: str = "unet",
) -> Any:
    """Build a U-Net as a ``keras.Model``.

    input_shape: ``(H, W, C)``; ``H, W`` may be None for a fully convolutional model.
    Filters are ``base_filters * 2**k`` at level ``k`` (doubling down, halving up); skips are
    concatenated; ``padding="valid"`` crops each skip to the up-sampled tensor (the paper's
    crop-and-copy); ``upsampling="bilinear"`` is up-sampling then a 2x2 convolution instead
    of ``Conv2DTranspose``. ``dropout``: one rate, ``depth + 1`` rates (mirrored on the way
    up) or ``2 * depth + 1``. ``rescale`` (e.g. ``1/255``) adds a ``Rescaling`` layer;
    ``normalize=True`` instead adds ``normalization.PercentileNormalization`` (each image's
    1st and 99.8th percentiles to 0 and 1), so the model takes images of any bit depth.
    Output: ``(batch, H', W', num_classes)`` float32, sigmoid if ``num_classes == 1`` else
    softmax; ``H' = H`` for ``same`` and ``unet_output_size(H, depth, "valid")`` otherwise.
    Raises ValueError (naming the nearest sizes that work) if a fixed H or W does not fit.
    """
    import keras
    from keras import layers

    cfg = dict(
        depth=depth,
        padding=padding,
        upsampling=upsampling,
        activation=activation,
        batch_norm=bool(batch_norm),
        kernel_initializer=kernel_initializer,
    )
    _check_build_args(input_shape, num_classes, base_filters, cfg)
    rates = _dropout_rates(dropout, depth)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Rescaling(rescale, name="rescale")(inputs) if rescale is not None else inputs
    if normalize:
        if rescale is not None:
            raise ValueError("pass rescale or normalize=True, not both")
        from unet_course.normalization import PercentileNormalization

        x = PercentileNormalization(name="normalize")(inputs)
    skips = []
    for k in range(depth):  # contracting path: blocks 1 .. depth
        x = _conv_block(x, base_filters * 2**k, k + 1, rates[k], cfg)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"p{k + 1}")(x)
    x = _conv_block(x, base_filters * 2**depth, depth + 1, rates[depth], cfg)  # bottleneck
    crops = skip_crops(depth, padding)
    for k in range(depth - 1, -1, -1):  # expanding path: blocks depth+2 .. 2*depth+1
        level = 2 * depth + 1 - k
        x = _up_block(x, skips[k], base_filters * 2**k, level, crops[k], cfg)
        x = _conv_block(x, base_filters * 2**k, level, rates[level - 1], cfg)
    head = "sigmoid" if num_classes == 1 else "softmax"
    # float32 head: under mixed precision the probabilities stay float32 (see notebook 05).
    outputs = layers.Conv2D(num_classes, 1, activation=head, name="outputs", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def seed_unet(input_shape: Sequence[int | None] = (256, 256, 3), name: str = "seed_unet") -> Any:
    """The widely copied Keras U-Net: 1,941,105 parameters.

    Input ``(256, 256, 3)`` pixel values in [0, 255] (uint8 images may be fed directly),
    scaled by a ``Rescaling(1/255)`` layer; filters 16-32-64-128-256; elu; he_normal; dropout
    0.1/0.1/0.2/0.2/0.3 down and 0.2/0.2/0.1/0.1 up; ``Conv2DTranspose`` 2x2 stride 2; a
    sigmoid 1x1 head. Output ``(batch, 256, 256, 1)`` float32 foreground probabilities.
    ``Rescaling`` (not a ``Lambda``) keeps the ``.keras`` file loadable in safe mode.
    """
    return build_unet(
        input_shape,
        num_classes=1,
        base_filters=16,
        depth=4,
        dropout=SEED_DROPOUT,
        activation="elu",
        padding="same",
        upsampling="transpose",
        kernel_initializer="he_normal",
        rescale=1 / 255,
        name=name,
    )


def paper_unet(
    input_shape: Sequence[int | None] = (572, 572, 1),
    num_classes: int = 2,
    name: str = "paper_unet",
) -> Any:
    """Ronneberger, Fischer & Brox (2015) as published: 31,030,658 parameters.

    Input ``(572, 572, 1)``, unpadded 3x3 convolutions with ReLU, 64 to 1024 filters, 2x2
    max pooling, 2x2 up-convolutions, crop-and-copy, a 1x1 head with 2 classes (softmax):
    output ``(batch, 388, 388, 2)``. Weights drawn from a Gaussian with std sqrt(2/N)
    (``he_normal``). The paper puts dropout "at the end of the contracting path" without a
    rate; here it is 0.5 in the bottleneck (no parameters, so the count is unaffected).
    """
    dropout = [0.0] * 4 + [0.5] + [0.0] * 4
    return build_unet(
        input_shape,
        num_classes=num_classes,
        base_filters=64,
        depth=4,
        dropout=dropout,
        activation="relu",
        padding="valid",
        upsampling="transpose",
        kernel_initializer="he_normal",
        name=name,
    )


# --------------------------------------------------------------------------------------------
# Tracing: shapes, parameters, blocks, receptive fields
# --------------------------------------------------------------------------------------------
def _level(name: str) -> int | None:
    """Block number from a layer name (``c3_conv1`` -> 3, ``p2`` -> 2, ``u7_concat`` -> 7)."""
    match = _NAME.match(name)
    return int(match.group(2)) if match else None


def trace_shapes(model: Any) -> list[dict]:
    """One row per layer: ``level`` (block number, None outside the blocks), ``layer``
    (name), ``kind`` (class name), ``output_shape`` (without the batch axis, e.g.
    ``(16, 16, 256)``; None where the input size is free) and ``params`` (int)."""
    if not hasattr(model, "layers"):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}")
    return [
        {
            "level": _level(layer.name),
            "layer": layer.name,
            "kind": type(layer).__name__,
            "output_shape": tuple(layer.output.shape[1:]),
            "params": layer.count_params(),
        }
        for layer in model.layers
    ]


def format_trace(rows: list[dict] | Any, kinds: Sequence[str] | None = None) -> str:
    """The rows of ``trace_shapes`` (or a model) as a fixed-width text table with a total.

    ``kinds``: keep only these layer classes (e.g. ``("Conv2D", "MaxPooling2D")``).
    """
    rows = trace_shapes(rows) if hasattr(rows, "layers") else rows
    total = sum(r["params"] for r in rows)
    rows = [r for r in rows if kinds is None or r["kind"] in kinds]

    def shape(s: tuple) -> str:
        return " x ".join("?" if d is None else str(d) for d in s)

    lines = [f"{'level':>5}  {'layer':<12} {'kind':<18} {'output shape':<18} {'params':>11}"]
    for r in rows:
        level = "-" if r["level"] is None else r["level"]
        lines.append(
            f"{level:>5}  {r['layer']:<12} {r['kind']:<18} {shape(r['output_shape']):<18} "
            f"{r['params']:>11,}"
        )
    lines.append(f"{'':>5}  {'total':<12} {'':<18} {'':<18} {total:>11,}")
    return "\n".join(lines)


def params_per_level(model: Any) -> dict[str, int]:
    """Parameters per block: ``{"level 1": ..., ..., "level 9": ..., "head": ...}`` for a
    depth-4 U-Net; they add up to ``model.count_params()``."""
    counts: dict[str, int] = {}
    for row in trace_shapes(model):
        key = "head" if row["level"] is None else f"level {row['level']}"
        if row["params"] or row["level"] is not None:
            counts[key] = counts.get(key, 0) + row["params"]
    return dict(sorted(counts.items(), key=lambda kv: (kv[0] == "head", len(kv[0]), kv[0])))


def unet_blocks(model: Any) -> list[dict]:
    """The boxes of the U, for drawing: the input, each block ``c1``...``c{2d+1}`` and the
    output. Each: ``name``, ``level`` (0 input, block number, ``2d+2`` output), ``rung``
    (0 = full resolution .. ``depth`` = bottleneck), ``side`` ("in", "down", "bottom",
    "up", "out") and ``shape`` ``(H, W, C)`` (H, W None where free)."""
    levels = sorted({r["level"] for r in trace_shapes(model) if r["layer"] == f"c{r['level']}"})
    if not levels or levels != list(range(1, len(levels) + 1)) or len(levels) % 2 == 0:
        raise ValueError(f"{model.name!r} has no U-Net blocks named c1, c2, ... (build_unet)")
    depth = len(levels) // 2
    blocks = [dict(name="input", level=0, rung=0, side="in", shape=tuple(model.input_shape[1:]))]
    for lv in levels:
        rung = lv - 1 if lv <= depth + 1 else 2 * depth + 1 - lv
        side = "down" if lv <= depth else "bottom" if lv == depth + 1 else "up"
        shape = tuple(model.get_layer(f"c{lv}").output.shape[1:])
        blocks.append(dict(name=f"c{lv}", level=lv, rung=rung, side=side, shape=shape))
    out = tuple(model.output_shape[1:])
    blocks.append(dict(name="outputs", level=2 * depth + 2, rung=0, side="out", shape=out))
    return blocks


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
    for layer in model.layers:
        parents = [p.operation.name for p in layer._inbound_nodes[0].parent_nodes]
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
    for layer in model.layers:
        parents = [p.operation.name for p in layer._inbound_nodes[0].parent_nodes]
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
