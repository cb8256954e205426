"""The U-Net builders (``build_unet``, ``seed_unet``, ``paper_unet``) and the tracing of a built
one: ``trace_shapes``, ``params_per_level`` and ``unet_blocks``.

Layer names: block ``l`` (1 to ``2 * depth + 1``) has the convolutions ``c{l}_conv1`` and
``c{l}``, the dropout ``c{l}_dropout``, the pooling ``p{l}`` on the way down and, on the way up,
the up-sampling ``u{l}``, the cropped skip ``u{l}_crop`` (valid padding) and the concatenation
``u{l}_concat``. The head is ``outputs``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from unet_course.geometry import check_arch, check_input_size, skip_crops

SEED_DROPOUT = (0.1, 0.1, 0.2, 0.2, 0.3)
SEED_PARAMS = 1_941_105
PAPER_PARAMS = 31_030_658
UPSAMPLINGS = ("transpose", "bilinear")
_NAME = re.compile(r"^([cpu])(\d+)(?:_|$)")


def _dropout_rates(dropout: float | Sequence[float], depth: int) -> list[float]:
    """Rates for blocks 1 .. 2*depth+1 from one rate, ``depth + 1`` (mirrored) or all of them."""
    if isinstance(dropout, int | float):
        rates = [float(dropout)] * (2 * depth + 1)
    else:
        rates = [float(r) for r in dropout]
        if len(rates) == depth + 1:
            rates = rates + rates[-2::-1]
        elif len(rates) != 2 * depth + 1:
            raise ValueError(f"dropout needs 1, depth+1={depth + 1} or 2*depth+1="
                             f"{2 * depth + 1} rates, got {len(rates)}: {dropout!r}")
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
    """Up-sample by 2 to ``filters`` channels, then concatenate the (cropped) ``skip`` if any."""
    from keras import layers

    init = cfg["kernel_initializer"]
    if cfg["upsampling"] == "transpose":
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same",
                                   kernel_initializer=init, name=f"u{level}")(x)
    else:  # up-sample, then a 2x2 convolution that halves the channels
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"u{level}_upsample")(x)
        x = layers.Conv2D(filters, 2, padding="same", kernel_initializer=init, name=f"u{level}")(x)
    if skip is None:
        return x
    if crop:
        skip = layers.Cropping2D(crop, name=f"u{level}_crop")(skip)
    return layers.Concatenate(name=f"u{level}_concat")([x, skip])


def _check_build_args(input_shape: Sequence, num_classes: int, base_filters: int, kw: dict) -> None:
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"input_shape must be (H, W, C) with H, W int or None, got {input_shape!r}")
    if not isinstance(input_shape[2], int) or input_shape[2] < 1:
        raise ValueError(f"input_shape needs a fixed channel count C >= 1, got {input_shape!r}")
    for name, value in (("num_classes", num_classes), ("base_filters", base_filters)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    check_arch(kw["depth"], kw["padding"])
    if kw["upsampling"] not in UPSAMPLINGS:
        raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {kw['upsampling']!r}")
    check_input_size(tuple(input_shape[:2]), kw["depth"], kw["padding"])


def build_unet(input_shape: Sequence[int | None] = (256, 256, 3), num_classes: int = 1,
               base_filters: int = 16, depth: int = 4, dropout: float | Sequence[float] = 0.0,
               activation: str = "elu", batch_norm: bool = False, padding: str = "same",
               upsampling: str = "transpose", kernel_initializer: str = "he_normal",
               rescale: float | None = None, normalize: bool = False, skips: bool = True,
               name: str = "unet") -> Any:
    """A U-Net as a ``keras.Model`` of ``(batch, H, W, C)`` images (``H, W`` may be None).

    Filters ``base_filters * 2**k`` at level ``k``; ``padding="valid"`` crops each skip to the
    up-sampled tensor; ``upsampling="bilinear"`` is up-sampling then a 2x2 convolution instead
    of ``Conv2DTranspose``; ``dropout``: one rate, ``depth + 1`` rates (mirrored on the way up)
    or ``2 * depth + 1``. ``rescale`` adds a ``Rescaling`` layer; ``normalize=True`` instead
    adds ``normalization.PercentileNormalization``. ``skips=False`` drops the skip connections.
    Output ``(batch, H', W', num_classes)`` float32, sigmoid for one class else softmax;
    ``H' = H`` for ``same``, ``unet_output_size(H, depth, "valid")`` otherwise.
    Raises ValueError for bad arguments or a fixed H or W that does not fit (naming the
    nearest sizes that do), TypeError for a non-bool ``skips``.
    """
    import keras
    from keras import layers

    cfg = dict(depth=depth, padding=padding, upsampling=upsampling, activation=activation,
               batch_norm=bool(batch_norm), kernel_initializer=kernel_initializer)
    _check_build_args(input_shape, num_classes, base_filters, cfg)
    if not isinstance(skips, bool):
        raise TypeError(f"skips must be True or False, got {skips!r}")
    rates = _dropout_rates(dropout, depth)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Rescaling(rescale, name="rescale")(inputs) if rescale is not None else inputs
    if normalize:
        if rescale is not None:
            raise ValueError("pass rescale or normalize=True, not both")
        from unet_course.normalization import PercentileNormalization

        x = PercentileNormalization(name="normalize")(inputs)
    skip_outputs = []
    for k in range(depth):  # contracting path: blocks 1 .. depth
        x = _conv_block(x, base_filters * 2**k, k + 1, rates[k], cfg)
        skip_outputs.append(x)
        x = layers.MaxPooling2D(2, name=f"p{k + 1}")(x)
    x = _conv_block(x, base_filters * 2**depth, depth + 1, rates[depth], cfg)  # bottleneck
    crops = skip_crops(depth, padding)
    for k in range(depth - 1, -1, -1):  # expanding path: blocks depth+2 .. 2*depth+1
        level = 2 * depth + 1 - k
        skip = skip_outputs[k] if skips else None
        x = _up_block(x, skip, base_filters * 2**k, level, crops[k], cfg)
        x = _conv_block(x, base_filters * 2**k, level, rates[level - 1], cfg)
    head = "sigmoid" if num_classes == 1 else "softmax"  # float32 under mixed precision too
    outputs = layers.Conv2D(num_classes, 1, activation=head, name="outputs", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def seed_unet(input_shape: Sequence[int | None] = (256, 256, 3), name: str = "seed_unet") -> Any:
    """The widely copied Keras U-Net (``SEED_PARAMS`` parameters): pixel values in [0, 255]
    scaled by ``Rescaling(1/255)``, filters 16 to 256, elu, dropout ``SEED_DROPOUT`` mirrored,
    a sigmoid head; output ``(batch, H, W, 1)`` float32."""
    return build_unet(input_shape, base_filters=16, dropout=SEED_DROPOUT, activation="elu",
                      rescale=1 / 255, name=name)


def paper_unet(input_shape: Sequence[int | None] = (572, 572, 1), num_classes: int = 2,
               name: str = "paper_unet") -> Any:
    """Ronneberger, Fischer & Brox (2015) (``PAPER_PARAMS`` parameters): unpadded 3x3 ReLU
    convolutions, 64 to 1024 filters, crop-and-copy, softmax head, dropout 0.5 in the
    bottleneck; ``(batch, 572, 572, 1)`` -> ``(batch, 388, 388, num_classes)``."""
    return build_unet(input_shape, num_classes=num_classes, base_filters=64,
                      dropout=[0.0] * 4 + [0.5] + [0.0] * 4, activation="relu",
                      padding="valid", name=name)


def _level(name: str) -> int | None:
    """Block number from a layer name (``c3_conv1`` -> 3, ``p2`` -> 2, ``u7_concat`` -> 7)."""
    match = _NAME.match(name)
    return int(match.group(2)) if match else None


def trace_shapes(model: Any) -> list[dict]:
    """One dict per layer: ``level`` (block number or None), ``layer`` (name), ``kind`` (class
    name), ``output_shape`` (no batch axis; None where free) and ``params``. TypeError for a
    non-model."""
    if not hasattr(model, "layers"):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}")
    return [{"level": _level(layer.name), "layer": layer.name, "kind": type(layer).__name__,
             "output_shape": tuple(layer.output.shape[1:]), "params": layer.count_params()}
            for layer in model.layers]


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
    """The boxes of the U for drawing (input, blocks ``c1``...``c{2d+1}``, output), each a dict of
    ``name``, ``level`` (0 .. ``2d+2``), ``rung`` (0 = full resolution .. ``d``), ``side`` ("in",
    "down", "bottom", "up", "out") and ``shape`` ``(H, W, C)``. ValueError without such blocks."""
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
