"""Convolution and transposed convolution written as matrices (notebooks 02 and 03).

A 2-D convolution layer is a linear map, so it is a matrix ``C``: flatten the input ``x`` to a
vector, and ``C @ x.ravel()`` is the flattened output. The transposed convolution (Keras'
``Conv2DTranspose``) is the map ``y -> C.T @ y`` with the *same* kernel array. This module builds
``C`` (dense NumPy or ``scipy.sparse`` CSR), applies it, and gives the output-size formulas.

Conventions, all as Keras computes them:

- "convolution" is cross-correlation (the kernel is not flipped);
- arrays are channels-last and flattened in row-major order, so a ``(H, W, C)`` array's
  ``ravel()`` and ``Conv2D.get_weights()[0]`` (``(kh, kw, in_channels, out_channels)``) are used
  as they are;
- ``padding="same"`` pads ``max((ceil(n / s) - 1) * s + k - n, 0)`` in total along a side of
  length ``n``, the extra pixel going to the bottom / right.

Everything here is NumPy / SciPy: these are reference implementations to check the Keras
layers against, not layers to train.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse

Padding = str | int | Sequence[Any]
Pads = tuple[tuple[int, int], tuple[int, int]]

DEFAULT_MAX_DENSE_BYTES = 2**30  # 1 GiB


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be an integer, got the bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def _pair(value: Any, name: str) -> tuple[int, int]:
    """An int or a pair of ints as a pair of ints."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return _as_int(value[0], name), _as_int(value[1], name)
    v = _as_int(value, name)
    return v, v


def _stride(stride: Any) -> tuple[int, int]:
    sh, sw = _pair(stride, "stride")
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be >= 1 along both axes, got {stride!r}")
    return sh, sw


def _numeric_array(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer)
        or np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.complexfloating)
    ):
        raise TypeError(f"{name} must be a numeric (int or float) array, got dtype {arr.dtype}")
    return arr


def _kernel4(kernel: Any) -> tuple[np.ndarray, bool]:
    """The kernel as ``(kh, kw, in_channels, out_channels)``, and whether it was given 2-D."""
    k = _numeric_array(kernel, "kernel")
    if k.ndim not in (2, 4):
        raise ValueError(
            "kernel must be 2-D (kh, kw) or 4-D (kh, kw, in_channels, out_channels), "
            f"got shape {k.shape}"
        )
    if 0 in k.shape:
        raise ValueError(f"kernel must not have an empty axis, got shape {k.shape}")
    if k.ndim == 2:
        return k[:, :, None, None], True
    return k, False


def _spatial(input_shape: Any, channels: int, is_2d: bool, what: str) -> tuple[int, int]:
    """Check ``input_shape`` against the kernel: ``(H, W)`` for 2-D, ``(H, W, C)`` for 4-D."""
    if isinstance(input_shape, str) or not isinstance(input_shape, Sequence):
        raise TypeError(f"{what} must be a tuple of ints, got {input_shape!r}")
    dims = tuple(_as_int(d, what) for d in input_shape)
    want = 2 if is_2d else 3
    if len(dims) != want:
        layout = "(H, W) for a 2-D kernel" if is_2d else "(H, W, channels) for a 4-D kernel"
        raise ValueError(f"{what} must be {layout}, got {input_shape!r}")
    if min(dims) < 1:
        raise ValueError(f"{what} must be positive, got {input_shape!r}")
    if not is_2d and dims[2] != channels:
        raise ValueError(
            f"channel mismatch: {what} has {dims[2]} channels but the kernel expects {channels}"
        )
    return dims[0], dims[1]


def conv_padding(
    input_hw: Sequence[int], kernel_hw: Sequence[int], stride: Any = 1, padding: Padding = "valid"
) -> Pads:
    """The zero padding ``((top, bottom), (left, right))`` that a convolution applies.

    ``padding`` is ``"valid"`` (none), ``"same"`` (as Keras: total ``max((ceil(n/s) - 1) * s + k
    - n, 0)`` per axis, the odd pixel at the bottom / right), an int ``p`` (``p`` on every side),
    a pair ``(ph, pw)`` or ``((top, bottom), (left, right))``.
    """
    sh, sw = _stride(stride)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0), (0, 0)
        if mode == "same":
            pads = []
            for n, k, s in zip(input_hw, kernel_hw, (sh, sw), strict=True):
                total = max((math.ceil(n / s) - 1) * s + k - n, 0)
                pads.append((total // 2, total - total // 2))
            return pads[0], pads[1]
        raise ValueError(f"padding must be 'valid', 'same' or integers, got {padding!r}")
    if isinstance(padding, Sequence) and len(padding) == 2:
        if all(isinstance(p, Sequence) and not isinstance(p, str) for p in padding):
            pads = (_pair(padding[0], "padding"), _pair(padding[1], "padding"))
        else:
            ph, pw = _pair(padding, "padding")
            pads = ((ph, ph), (pw, pw))
    elif isinstance(padding, Sequence):
        raise ValueError(f"padding must be 'valid', 'same' or integers, got {padding!r}")
    else:
        p = _as_int(padding, "padding")
        pads = ((p, p), (p, p))
    if min(min(pads[0]), min(pads[1])) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return pads


def _kernel_shape(kernel_shape: Any) -> tuple[tuple[int, int, int, int], bool]:
    """``(kh, kw)`` or ``(kh, kw, cin, cout)`` as a 4-tuple, and whether it was 2-D."""
    if isinstance(kernel_shape, str) or not isinstance(kernel_shape, Sequence):
        raise TypeError(f"kernel_shape must be a tuple of ints, got {kernel_shape!r}")
    dims = tuple(_as_int(d, "kernel_shape") for d in kernel_shape)
    if len(dims) not in (2, 4) or min(dims) < 1:
        raise ValueError(
            "kernel_shape must be (kh, kw) or (kh, kw, in_channels, out_channels) with "
            f"positive sizes, got {kernel_shape!r}"
        )
    return (dims + (1, 1))[:4], len(dims) == 2


def _geometry(kernel_shape: Any, input_shape: Any, stride: Any, padding: Padding) -> dict:
    """Validate a convolution's arguments and work out its sizes (no array work)."""
    (kh, kw, cin, cout), is_2d = _kernel_shape(kernel_shape)
    h, w = _spatial(input_shape, cin, is_2d, "input_shape")
    strides = _stride(stride)
    pads = conv_padding((h, w), (kh, kw), strides, padding)
    hp, wp = h + sum(pads[0]), w + sum(pads[1])
    if kh > hp or kw > wp:
        raise ValueError(
            f"kernel {kh}x{kw} is larger than the padded input {hp}x{wp} "
            f"(input {h}x{w}, padding {pads})"
        )
    out_hw = ((hp - kh) // strides[0] + 1, (wp - kw) // strides[1] + 1)
    return dict(
        kh=kh, kw=kw, cin=cin, cout=cout, is_2d=is_2d, h=h, w=w,
        strides=strides, pads=pads, out_hw=out_hw,
    )  # fmt: skip


def conv_output_shape(
    input_shape: Sequence[int], kernel_shape: Sequence[int], stride: Any = 1,
    padding: Padding = "valid",
) -> tuple[int, ...]:  # fmt: skip
    """Output shape of a convolution: ``H_out = floor((H + pad_top + pad_bottom - kh) / s) + 1``.

    ``input_shape`` is ``(H, W)`` with a ``(kh, kw)`` kernel shape, or ``(H, W, in_channels)``
    with ``(kh, kw, in_channels, out_channels)``; the result is ``(H_out, W_out)`` or
    ``(H_out, W_out, out_channels)``. With ``padding="same"`` this is ``ceil(H / s)``.
    """
    g = _geometry(kernel_shape, input_shape, stride, padding)
    return g["out_hw"] if g["is_2d"] else (*g["out_hw"], g["cout"])


def _tap_indices(g: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row counts, column indices and kernel-tap indices of every non-zero of ``C``.

    Every (output pixel, output channel, kernel tap, input channel) is one candidate entry; the
    broadcast axes are ordered ``(i, j, c_out, a, b, c_in)`` so that, once the taps that fall in
    the padding are dropped, the entries come out in CSR order (rows, then columns, ascending).
    """
    (ho, wo), (sh, sw) = g["out_hw"], g["strides"]
    (pt, _), (pl, _) = g["pads"]
    kh, kw, cin, cout, h, w = (g[k] for k in ("kh", "kw", "cin", "cout", "h", "w"))
    i = np.arange(ho).reshape(-1, 1, 1, 1, 1, 1)
    j = np.arange(wo).reshape(1, -1, 1, 1, 1, 1)
    co = np.arange(cout).reshape(1, 1, -1, 1, 1, 1)
    a = np.arange(kh).reshape(1, 1, 1, -1, 1, 1)
    b = np.arange(kw).reshape(1, 1, 1, 1, -1, 1)
    ci = np.arange(cin).reshape(1, 1, 1, 1, 1, -1)
    r, c = i * sh - pt + a, j * sw - pl + b  # input pixel under tap (a, b) of window (i, j)
    shape = (ho, wo, cout, kh, kw, cin)
    inside = np.broadcast_to((r >= 0) & (r < h) & (c >= 0) & (c < w), shape)
    cols = np.broadcast_to((r * w + c) * cin + ci, shape)[inside]
    taps = np.broadcast_to(((a * kw + b) * cin + ci) * cout + co, shape)[inside]
    counts = inside.reshape(ho * wo * cout, -1).sum(axis=1)
    return counts, cols, taps


def conv_matrix(
    kernel: Any, input_shape: Sequence[int], stride: Any = 1, padding: Padding = "valid",
    sparse: bool = False, max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES,
) -> np.ndarray | scipy.sparse.csr_matrix:  # fmt: skip
    """The matrix ``C`` with ``(C @ x.ravel()).reshape(out_shape)`` = Keras' ``Conv2D`` of ``x``.

    kernel: ``(kh, kw)`` with ``input_shape=(H, W)``, or Keras' ``(kh, kw, in_channels,
        out_channels)`` with ``input_shape=(H, W, in_channels)``; any int or float dtype, which
        ``C`` keeps.
    stride: int or ``(sh, sw)``. padding: see :func:`conv_padding`.
    sparse: return a ``scipy.sparse`` CSR matrix built directly from its non-zeros (the dense
        matrix is never formed). Entries exist for every tap that lands inside the image, also
        where the kernel weight is 0.
    max_dense_bytes: the dense form refuses to allocate more than this (default 1 GiB).

    Returns ``C`` of shape ``(H_out * W_out * out_channels, H * W * in_channels)``, where
    ``(H_out, W_out[, out_channels]) = conv_output_shape(input_shape, kernel.shape, ...)``.
    """
    k4, _ = _kernel4(kernel)
    g = _geometry(np.shape(kernel), input_shape, stride, padding)
    n_rows = g["out_hw"][0] * g["out_hw"][1] * g["cout"]
    n_cols = g["h"] * g["w"] * g["cin"]
    if not sparse:
        need = n_rows * n_cols * k4.dtype.itemsize
        if need > max_dense_bytes:
            raise ValueError(
                f"the dense {n_rows} x {n_cols} {k4.dtype} matrix would need {need:,} bytes "
                f"({need / 2**30:.2f} GiB), over max_dense_bytes={max_dense_bytes:,}; "
                "use sparse=True (or raise max_dense_bytes if you have the memory)"
            )
    counts, cols, taps = _tap_indices(g)
    values = k4.ravel()[taps]
    if sparse:
        indptr = np.concatenate([[0], np.cumsum(counts)])
        return scipy.sparse.csr_matrix((values, cols, indptr), shape=(n_rows, n_cols))
    dense = np.zeros((n_rows, n_cols), dtype=k4.dtype)
    dense[np.repeat(np.arange(n_rows), counts), cols] = values
    return dense


def conv2d(
    x: Any, kernel: Any, stride: Any = 1, padding: Padding = "valid", sparse: bool = True
) -> np.ndarray:
    """Convolution (Keras' cross-correlation) of one image computed as ``C @ x.ravel()``.

    x: ``(H, W)`` with a ``(kh, kw)`` kernel, or ``(H, W, in_channels)`` with a
    ``(kh, kw, in_channels, out_channels)`` kernel; any numeric dtype.
    Returns ``(H_out, W_out)`` or ``(H_out, W_out, out_channels)``, dtype from NumPy's rules.
    """
    x = _numeric_array(x, "x")
    _kernel4(kernel)
    out_shape = conv_output_shape(x.shape, np.shape(kernel), stride, padding)
    c = conv_matrix(kernel, x.shape, stride, padding, sparse=sparse)
    return np.asarray(c @ x.ravel()).reshape(out_shape)


def _transpose_length(n: int, k: int, s: int, padding: Any, op: int | None) -> int:
    """One axis of Keras' ``Conv2DTranspose`` output size (``padding``: mode or pad pair)."""
    if padding == "valid":  # op defaults to max(k, s) - k
        return (n - 1) * s + k + (max(k, s) - k if op is None else op)
    if padding == "same":
        return n * s if op is None else (n - 1) * s + k % 2 + op
    before, after = padding
    return (n - 1) * s + k - before - after + (0 if op is None else op)


def conv_transpose_output_shape(
    input_shape: Sequence[int], kernel_shape: Sequence[int], stride: Any = 1,
    padding: Padding = "valid", output_padding: Any = None,
) -> tuple[int, ...]:  # fmt: skip
    """Output shape of a transposed convolution, with the formulas Keras uses.

    Per axis, input length ``n``, kernel ``k``, stride ``s``, output padding ``op``:

    - ``"valid"``: ``(n - 1) * s + k + op``, ``op`` defaulting to ``max(k, s) - k``;
    - ``"same"``: ``n * s`` when ``op`` is None, else ``(n - 1) * s + k % 2 + op``;
    - explicit pads ``(before, after)``: ``(n - 1) * s + k - before - after + op`` (``op`` = 0).

    ``input_shape`` is ``(h, w)`` with ``(kh, kw)``, or ``(h, w, in_channels)`` with Keras'
    transposed kernel layout ``(kh, kw, filters, in_channels)``; the result is ``(H, W)`` or
    ``(H, W, filters)``. ``output_padding`` (int or pair) must be in ``[0, stride)``.
    """
    (kh, kw, filters, cin), is_2d = _kernel_shape(kernel_shape)
    n_h, n_w = _spatial(input_shape, cin, is_2d, "input_shape")
    strides = _stride(stride)
    ops = (None, None) if output_padding is None else _pair(output_padding, "output_padding")
    for op, s in zip(ops, strides, strict=True):
        if op is not None and not 0 <= op < s:
            raise ValueError(
                f"output_padding must be >= 0 and < stride, got {output_padding!r} "
                f"with stride {stride!r}"
            )
    if isinstance(padding, str) and padding.lower() in ("valid", "same"):
        per_axis = (padding.lower(), padding.lower())
    else:  # explicit integers: conv_padding validates them
        per_axis = conv_padding((1, 1), (1, 1), 1, padding)
    out_hw = tuple(
        _transpose_length(n, k, s, p, op)
        for n, k, s, p, op in zip((n_h, n_w), (kh, kw), strides, per_axis, ops, strict=True)
    )
    if min(out_hw) < 1:
        raise ValueError(f"transposed convolution output {out_hw} is empty")
    return out_hw if is_2d else (*out_hw, filters)


def conv2d_transpose(
    y: Any, kernel: Any, stride: Any = 1, padding: Padding = "valid", output_padding: Any = None,
    sparse: bool = True,
) -> np.ndarray:  # fmt: skip
    """Transposed convolution computed as ``C.T @ y.ravel()``: Keras' ``Conv2DTranspose``.

    y: ``(h, w)`` with a ``(kh, kw)`` kernel, or ``(h, w, in_channels)`` with Keras' transposed
    layout ``(kh, kw, filters, in_channels)``. The output shape ``(H, W[, filters])`` comes from
    :func:`conv_transpose_output_shape`; ``C`` is :func:`conv_matrix` of the same kernel array
    for that input shape, so ``C`` maps ``(H, W, filters)`` to ``y``'s shape and ``C.T`` maps
    back. Raises ValueError when no such ``C`` exists (for example ``padding="same"``, an even
    kernel and ``output_padding=0``: the convolution of the output would not give ``y``'s size).
    """
    y = _numeric_array(y, "y")
    _kernel4(kernel)
    out_shape = conv_transpose_output_shape(y.shape, np.shape(kernel), stride, padding,
                                            output_padding)  # fmt: skip
    forward = conv_output_shape(out_shape, np.shape(kernel), stride, padding)
    if forward != y.shape:
        raise ValueError(
            f"a convolution of the {out_shape} output with this kernel, stride "
            f"{_stride(stride)} and padding {padding!r} gives {forward}, not y's shape "
            f"{y.shape}; change "
            "output_padding or padding"
        )
    c = conv_matrix(kernel, out_shape, stride, padding, sparse=sparse)
    return np.asarray(c.T @ y.ravel()).reshape(out_shape)
