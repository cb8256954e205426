"""The size arithmetic of a U-Net: which input sizes fit, what comes out, what a model is.

What belongs here (pure Python, no Keras, except the one function that reads a model):

- ``unet_output_size``, ``valid_input_sizes``, ``nearest_valid_sizes`` and
  ``check_input_size`` (the error that names the sizes that work);
- ``skip_crops``: the pixels crop-and-copy trims from each skip of an unpadded U-Net;
- ``unet_geometry``: ``(depth, padding)`` read from a built model's layers, which prediction
  (``predict``) and the recipe use to pad images onto the pooling grid.

The builders are ``model``; the receptive field is ``receptive_field``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PADDINGS = ("same", "valid")


def check_arch(depth: int, padding: str) -> None:
    """Raise ValueError unless ``depth`` is an int >= 1 and ``padding`` is in ``PADDINGS``."""
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be an int >= 1 (number of poolings), got {depth!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")


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
    check_arch(depth, padding)
    if min_size < 1 or max_size < min_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size} and {max_size}")
    return [s for s in range(min_size, max_size + 1) if _output_size_or_none(s, depth, padding)]


def nearest_valid_sizes(size: int, depth: int = 4, padding: str = "same") -> tuple[int | None, int]:
    """The largest size that fits and is ``<= size`` (None if there is none) and the smallest
    one that fits and is ``>= size``."""
    check_arch(depth, padding)
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
    check_arch(depth, padding)
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



def skip_crops(depth: int = 4, padding: str = "valid") -> list[int]:
    """Pixels cropped from each side of the skip tensor of blocks 1 .. depth (crop-and-copy).

    Zero for ``same`` padding. For ``valid`` they do not depend on the input size; at depth 4
    they are ``[88, 40, 16, 4]`` (the paper's 568 -> 392, 280 -> 200, 136 -> 104, 64 -> 56).
    """
    check_arch(depth, padding)
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



def unet_geometry(model: Any) -> tuple[int, str]:
    """``(depth, padding)`` of a U-Net-like Keras model, read from its layers.

    ``depth`` is the number of 2x2 pooling layers (so an input side must be a multiple of
    ``2**depth`` and tiles must sit on that grid); ``padding`` is ``"valid"`` when some
    convolution larger than 1x1 is unpadded (the paper's model, whose output is smaller than
    its input) and ``"same"`` otherwise. Raises ValueError for a model without pooling.
    """
    import keras

    layers_ = _all_layers(model)
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


def _all_layers(model: Any) -> list:
    """Every layer of ``model``, nested models' layers included (public ``.layers`` only)."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found += _all_layers(layer)
    return found
