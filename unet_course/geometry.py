"""The size arithmetic of a U-Net (two 3x3 convolutions per block, 2x2 pooling): which input
sizes fit, what comes out, what crop-and-copy trims, and ``(depth, padding)`` of a model."""

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


def _output_size_or_none(size: int, depth: int, padding: str) -> int | None:
    """One side length followed through the U: the output side, or None where it does not fit."""
    loss = 4 if padding == "valid" else 0
    for _ in range(depth):  # convolutions, then a 2x2 pooling
        size -= loss
        if size < 2 or size % 2:
            return None
        size //= 2
    size -= loss  # bottleneck
    if size < 1:
        return None
    for _ in range(depth):  # up-sampling by 2, then convolutions
        size = 2 * size - loss
        if size < 1:
            return None
    return size


def unet_output_size(input_size: int, depth: int = 4, padding: str = "same") -> int:
    """Side length of the output map: ``input_size`` for ``same``; for ``valid`` 4 pixels fewer
    per block (572 -> 388 at depth 4). Raises ValueError when ``input_size`` does not fit."""
    check_input_size(input_size, depth, padding)
    return _output_size_or_none(int(input_size), depth, padding)


def valid_input_sizes(depth: int = 4, padding: str = "valid", max_size: int = 1024,
                      min_size: int = 1) -> list[int]:
    """Every input side length in ``[min_size, max_size]`` that fits the U exactly: multiples of
    ``2**depth`` for ``same``; ``16 k + 60`` for ``k >= 8`` for ``valid`` at depth 4."""
    check_arch(depth, padding)
    if min_size < 1 or max_size < min_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size} and {max_size}")
    return [s for s in range(min_size, max_size + 1) if _output_size_or_none(s, depth, padding)]


def nearest_valid_sizes(size: int, depth: int = 4, padding: str = "same") -> tuple[int | None, int]:
    """The largest fitting size ``<= size`` (None if none) and the smallest one ``>= size``."""
    check_arch(depth, padding)

    def first(sizes: range) -> int | None:
        return next((s for s in sizes if _output_size_or_none(s, depth, padding)), None)

    return first(range(int(size), 0, -1)), first(range(max(int(size), 1), 10**7))


def check_input_size(size: int | Sequence[int], depth: int = 4, padding: str = "same") -> None:
    """Raise, naming the nearest sizes that work, unless ``size`` (a side or ``(H, W)``, None
    for a free side) fits the U: TypeError for non-integer sides, ValueError otherwise."""
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
            below, above = nearest_valid_sizes(int(side), depth, padding)
            why = (f"each of the {depth} poolings halves it, so it must be divisible by "
                   f"2**{depth} = {2**depth}" if padding == "same" else
                   "unpadded 3x3 convolutions trim 4 pixels per block and each pooling needs "
                   "an even size, so only some sizes tile")
            near = f"{below} or {above}" if below else f"{above} (none smaller fits)"
            raise ValueError(f"input size {int(side)} does not fit a U-Net with depth={depth} "
                             f"and padding={padding!r}: {why}. Nearest sizes that work: {near}.")


def skip_crops(depth: int = 4, padding: str = "valid") -> list[int]:
    """Pixels cropped from each side of the skips of blocks 1 .. depth: zeros for ``same``,
    ``[88, 40, 16, 4]`` for ``valid`` at depth 4 (independent of the input size)."""
    check_arch(depth, padding)
    if padding == "same":
        return [0] * depth
    size, skips = valid_input_sizes(depth, "valid", max_size=64 * 2**depth)[0], []
    for _ in range(depth):  # the skip sizes on the way down
        skips.append(size - 4)
        size = (size - 4) // 2
    size -= 4
    crops = []
    for skip in reversed(skips):  # the up-sampled sizes on the way up
        size *= 2
        crops.append((skip - size) // 2)
        size -= 4
    return crops[::-1]


def unet_geometry(model: Any) -> tuple[int, str]:
    """``(depth, padding)`` of a U-Net-like Keras model: the number of 2x2 pooling layers, and
    ``"valid"`` when some convolution larger than 1x1 is unpadded (else ``"same"``), nested
    models included. Raises ValueError for a model without pooling."""
    import keras

    def all_layers(m: Any) -> list:
        return [x for layer in m.layers
                for x in [layer, *(all_layers(layer) if hasattr(layer, "layers") else [])]]

    layers = all_layers(model)
    depth = sum(isinstance(x, keras.layers.MaxPooling2D | keras.layers.AveragePooling2D)
                for x in layers)
    valid = any(isinstance(x, keras.layers.Conv2D) and max(x.kernel_size) > 1
                and x.padding == "valid" for x in layers)
    if depth < 1:
        raise ValueError(f"model {model.name!r} has no pooling layer; expected a U-Net")
    return depth, "valid" if valid else "same"
