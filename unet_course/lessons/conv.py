"""Convolution and transposed convolution as a matrix ``C`` (notebooks 02 and 03), as Keras
computes them: cross-correlation, channels last, flattened row-major, kernels
``(kh, kw, in_channels, out_channels)``. References to check Keras layers against, not layers."""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse

Padding = str | int | Sequence[Any]
Pads = tuple[tuple[int, int], tuple[int, int]]


def _int(value: Any, name: str) -> int:
    if not isinstance(value, bool | np.bool_):
        with contextlib.suppress(TypeError):
            return operator.index(value)
    raise TypeError(f"{name} must be an integer, got {value!r}")


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return _int(value[0], name), _int(value[1], name)
    return _int(value, name), _int(value, name)


def _stride(stride: Any) -> tuple[int, int]:
    sh, sw = _pair(stride, "stride")
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be >= 1 along both axes, got {stride!r}")
    return sh, sw


def _numeric(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if not np.issubdtype(arr.dtype, np.number):  # bool and strings are not numbers
        raise TypeError(f"{name} must be a numeric (int or float) array, got dtype {arr.dtype}")
    return arr


def _ints(shape: Any, name: str) -> tuple[int, ...]:
    if isinstance(shape, str) or not isinstance(shape, Sequence):
        raise TypeError(f"{name} must be a tuple of ints, got {shape!r}")
    return tuple(_int(d, name) for d in shape)


def _kernel_shape(shape: Any) -> tuple[tuple[int, int, int, int], bool]:
    """``(kh, kw)`` or ``(kh, kw, cin, cout)`` as a 4-tuple, and whether it was 2-D."""
    dims = _ints(shape, "kernel_shape")
    if len(dims) not in (2, 4) or min(dims) < 1:
        raise ValueError("kernel_shape must be 2-D (kh, kw) or 4-D (kh, kw, in_channels, "
                         f"out_channels) with no empty axis, got {shape!r}")  # fmt: skip
    return (dims + (1, 1))[:4], len(dims) == 2


def _spatial(input_shape: Any, channels: int, is_2d: bool) -> tuple[int, int]:
    """Check ``input_shape`` against the kernel: ``(H, W)`` for 2-D, ``(H, W, C)`` for 4-D."""
    dims = _ints(input_shape, "input_shape")
    if len(dims) != (2 if is_2d else 3):
        layout = "(H, W) for a 2-D kernel" if is_2d else "(H, W, channels) for a 4-D kernel"
        raise ValueError(f"input_shape must be {layout}, got {input_shape!r}")
    if min(dims) < 1:
        raise ValueError(f"input_shape must be positive, got {input_shape!r}")
    if not is_2d and dims[2] != channels:
        raise ValueError(f"channel mismatch: input_shape has {dims[2]} channels but the kernel "
                         f"expects {channels}")  # fmt: skip
    return dims[0], dims[1]


def conv_padding(
    input_hw: Sequence[int], kernel_hw: Sequence[int], stride: Any = 1, padding: Padding = "valid"
) -> Pads:
    """The zero padding ``((top, bottom), (left, right))`` that a convolution applies.

    ``padding`` is ``"valid"``, ``"same"`` (as Keras: the odd pixel at the bottom / right), an
    int, a pair ``(ph, pw)`` or ``((top, bottom), (left, right))``. Raises ValueError for anything
    else or a negative pad, TypeError for non-integers.
    """
    strides = _stride(stride)
    mode = padding.lower() if isinstance(padding, str) else None
    if mode == "valid":
        return (0, 0), (0, 0)
    if mode == "same":
        th, tw = (max((math.ceil(n / s) - 1) * s + k - n, 0)
                  for n, k, s in zip(input_hw, kernel_hw, strides, strict=True))  # fmt: skip
        return (th // 2, th - th // 2), (tw // 2, tw - tw // 2)
    if isinstance(padding, str) or (isinstance(padding, Sequence) and len(padding) != 2):
        raise ValueError(f"padding must be 'valid', 'same' or integers, got {padding!r}")
    per_axis = padding if isinstance(padding, Sequence) else (padding, padding)
    pads = (_pair(per_axis[0], "padding"), _pair(per_axis[1], "padding"))
    if min(*pads[0], *pads[1]) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return pads


def _geometry(kernel_shape: Any, input_shape: Any, stride: Any, padding: Padding) -> dict:
    """Validate a convolution's arguments and work out its sizes (no array work)."""
    (kh, kw, cin, cout), is_2d = _kernel_shape(kernel_shape)
    h, w = _spatial(input_shape, cin, is_2d)
    strides = _stride(stride)
    pads = conv_padding((h, w), (kh, kw), strides, padding)
    hp, wp = h + sum(pads[0]), w + sum(pads[1])
    if kh > hp or kw > wp:
        raise ValueError(f"kernel {kh}x{kw} is larger than the padded input {hp}x{wp} "
                         f"(input {h}x{w}, padding {pads})")  # fmt: skip
    out_hw = ((hp - kh) // strides[0] + 1, (wp - kw) // strides[1] + 1)
    return dict(kh=kh, kw=kw, cin=cin, cout=cout, is_2d=is_2d, h=h, w=w, strides=strides,
                pads=pads, out_hw=out_hw)  # fmt: skip


def conv_output_shape(
    input_shape: Sequence[int], kernel_shape: Sequence[int], stride: Any = 1,
    padding: Padding = "valid",
) -> tuple[int, ...]:  # fmt: skip
    """Output shape of a convolution: ``(H_out, W_out[, out_channels])`` for ``input_shape
    (H, W[, in_channels])`` and ``kernel_shape (kh, kw[, in_channels, out_channels])``. Raises
    ValueError when the shapes do not match or the kernel is larger than the padded input."""
    g = _geometry(kernel_shape, input_shape, stride, padding)
    return g["out_hw"] if g["is_2d"] else (*g["out_hw"], g["cout"])


def _tap_indices(g: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zeros per row, column indices and kernel-tap indices of ``C``, in CSR order (taps
    in the padding dropped)."""
    (ho, wo), (sh, sw), ((pt, _), (pl, _)) = g["out_hw"], g["strides"], g["pads"]
    kh, kw, cin, cout, h, w = (g[k] for k in ("kh", "kw", "cin", "cout", "h", "w"))
    i, j, co, a, b, ci = np.ogrid[:ho, :wo, :cout, :kh, :kw, :cin]
    r, c = i * sh - pt + a, j * sw - pl + b  # input pixel under tap (a, b) of window (i, j)
    shape = (ho, wo, cout, kh, kw, cin)
    inside = np.broadcast_to((r >= 0) & (r < h) & (c >= 0) & (c < w), shape)
    cols = np.broadcast_to((r * w + c) * cin + ci, shape)[inside]
    taps = np.broadcast_to(((a * kw + b) * cin + ci) * cout + co, shape)[inside]
    return inside.reshape(ho * wo * cout, -1).sum(axis=1), cols, taps


def conv_matrix(
    kernel: Any, input_shape: Sequence[int], stride: Any = 1, padding: Padding = "valid",
    sparse: bool = False, max_dense_bytes: int = 2**30,
) -> np.ndarray | scipy.sparse.csr_matrix:  # fmt: skip
    """The matrix ``C`` with ``(C @ x.ravel()).reshape(out_shape)`` = Keras' ``Conv2D`` of ``x``.

    ``kernel (kh, kw)`` goes with ``input_shape (H, W)``, ``(kh, kw, in_channels, out_channels)``
    with ``(H, W, in_channels)``; ``C`` keeps its int or float dtype and has shape
    ``(H_out * W_out * out_channels, H * W * in_channels)``. ``sparse``: a CSR matrix with one
    entry per tap inside the image. Raises TypeError for a non-numeric kernel, ValueError as
    :func:`conv_output_shape` or when the dense ``C`` would need over ``max_dense_bytes``.
    """
    k = _numeric(kernel, "kernel")
    g = _geometry(k.shape, input_shape, stride, padding)
    n_rows, n_cols = g["out_hw"][0] * g["out_hw"][1] * g["cout"], g["h"] * g["w"] * g["cin"]
    need = n_rows * n_cols * k.dtype.itemsize
    if not sparse and need > max_dense_bytes:
        raise ValueError(
            f"the dense {n_rows} x {n_cols} {k.dtype} matrix would need {need:,} bytes "
            f"({need / 2**30:.2f} GiB), over max_dense_bytes={max_dense_bytes:,}; "
            "use sparse=True (or raise max_dense_bytes if you have the memory)"
        )
    counts, cols, taps = _tap_indices(g)
    values = k.ravel()[taps]  # a 2-D kernel's ravel() is its (kh, kw, 1, 1) form's
    if sparse:
        indptr = np.concatenate([[0], np.cumsum(counts)])
        return scipy.sparse.csr_matrix((values, cols, indptr), shape=(n_rows, n_cols))
    dense = np.zeros((n_rows, n_cols), dtype=k.dtype)
    dense[np.repeat(np.arange(n_rows), counts), cols] = values
    return dense


def conv2d(x: Any, kernel: Any, stride: Any = 1, padding: Padding = "valid") -> np.ndarray:
    """Keras' convolution of one image ``x (H, W[, in_channels])``, computed as
    ``C @ x.ravel()``: ``(H_out, W_out[, out_channels])``. Raises as :func:`conv_matrix`."""
    x = _numeric(x, "x")
    c = conv_matrix(kernel, x.shape, stride, padding, sparse=True)
    return np.asarray(c @ x.ravel()).reshape(
        conv_output_shape(x.shape, np.shape(kernel), stride, padding))  # fmt: skip


def _transpose_length(n: int, k: int, s: int, padding: Any, op: int | None) -> int:
    """One axis of Keras' ``Conv2DTranspose`` output size (``padding``: mode or pad pair)."""
    if padding == "valid":
        return (n - 1) * s + k + (max(k, s) - k if op is None else op)
    if padding == "same":
        return n * s if op is None else (n - 1) * s + k % 2 + op
    return (n - 1) * s + k - sum(padding) + (0 if op is None else op)


def conv_transpose_output_shape(
    input_shape: Sequence[int], kernel_shape: Sequence[int], stride: Any = 1,
    padding: Padding = "valid", output_padding: Any = None,
) -> tuple[int, ...]:  # fmt: skip
    """Output shape ``(H, W[, filters])`` of Keras' ``Conv2DTranspose`` for ``input_shape
    (h, w[, in_channels])`` and ``kernel_shape (kh, kw[, filters, in_channels])``. Raises
    ValueError unless ``output_padding`` (int or pair) is in ``[0, stride)``, or when the output
    would be empty."""
    (kh, kw, filters, cin), is_2d = _kernel_shape(kernel_shape)
    hw = _spatial(input_shape, cin, is_2d)
    strides = _stride(stride)
    ops = (None, None) if output_padding is None else _pair(output_padding, "output_padding")
    if any(op is not None and not 0 <= op < s for op, s in zip(ops, strides, strict=True)):
        raise ValueError(f"output_padding must be >= 0 and < stride, got {output_padding!r} "
                         f"with stride {stride!r}")  # fmt: skip
    mode = padding.lower() if isinstance(padding, str) else None
    valid_or_same = mode in ("valid", "same")  # else explicit pads, checked by conv_padding
    per_axis = (mode, mode) if valid_or_same else conv_padding((1, 1), (1, 1), 1, padding)
    out_hw = tuple(_transpose_length(*axis) for axis in zip(hw, (kh, kw), strides, per_axis, ops,
                                                              strict=True))  # fmt: skip
    if min(out_hw) < 1:
        raise ValueError(f"transposed convolution output {out_hw} is empty")
    return out_hw if is_2d else (*out_hw, filters)


def conv2d_transpose(
    y: Any, kernel: Any, stride: Any = 1, padding: Padding = "valid", output_padding: Any = None
) -> np.ndarray:
    """Keras' ``Conv2DTranspose`` of one image ``y (h, w[, in_channels])``, computed as
    ``C.T @ y.ravel()``: shape :func:`conv_transpose_output_shape`. Raises ValueError when the
    convolution of that output does not give ``y``'s shape."""
    y = _numeric(y, "y")
    out_shape = conv_transpose_output_shape(y.shape, np.shape(kernel), stride, padding,
                                            output_padding)  # fmt: skip
    forward = conv_output_shape(out_shape, np.shape(kernel), stride, padding)
    if forward != y.shape:
        raise ValueError(f"a convolution of the {out_shape} output with this kernel, stride "
                         f"{_stride(stride)} and padding {padding!r} gives {forward}, not y's "
                         f"shape {y.shape}; change output_padding or padding")  # fmt: skip
    c = conv_matrix(kernel, out_shape, stride, padding, sparse=True)
    return np.asarray(c.T @ y.ravel()).reshape(out_shape)
