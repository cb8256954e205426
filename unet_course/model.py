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
from typing import Any

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


def check_input_size(size: int | Sequence[int], depth: int = 4, padding: str = "same") -> None:
    """Raise ValueError, naming the nearest sizes that work, if ``size`` does not fit the U.

    ``size``: one side length or ``(H, W)``. A ``same`` model needs each side divisible by
    ``2**depth`` (every pooling halves it and every up-sampling doubles it back); a ``valid``
    model also loses 4 pixels per block, so only some sizes tile (see ``valid_input_sizes``).
    """
    _check_arch(depth, padding)
    sides = [size] if isinstance(size, int | float) else list(size)
    if len(sides) not in (1, 2):
        raise ValueError(f"size must be an int or (H, W), got {size!r}")
    for side in sides:
        if side is None:
            continue
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
    name: str = "unet",
) -> Any:
    """Build a U-Net as a ``keras.Model``.

    input_shape: ``(H, W, C)``; ``H, W`` may be None for a fully convolutional model.
    Filters are ``base_filters * 2**k`` at level ``k`` (doubling down, halving up); skips are
    concatenated; ``padding="valid"`` crops each skip to the up-sampled tensor (the paper's
    crop-and-copy); ``upsampling="bilinear"`` is up-sampling then a 2x2 convolution instead
    of ``Conv2DTranspose``. ``dropout``: one rate, ``depth + 1`` rates (mirrored on the way
    up) or ``2 * depth + 1``. ``rescale`` (e.g. ``1/255``) adds a ``Rescaling`` layer.
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
    outputs = layers.Conv2D(num_classes, 1, activation=head, name="outputs")(x)
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
