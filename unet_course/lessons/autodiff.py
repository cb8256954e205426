"""Input gradients on Keras' TensorFlow, JAX and PyTorch backends (notebooks 03 and 04)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def input_gradient(fn: Callable[[Any], Any], x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The vector-Jacobian product ``J^T g`` of ``fn`` at ``x`` (``∂ sum(g * fn(x)) / ∂x``) by
    the active backend's autodiff, ``x`` and ``g`` as float32: a float32 array of ``x``'s shape.
    Raises RuntimeError on a backend other than TensorFlow, JAX or PyTorch."""
    import keras

    x, g = np.asarray(x, "float32"), np.asarray(g, "float32")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        t = tf.Variable(x)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(g * fn(t))
        return tape.gradient(loss, t).numpy()
    if backend == "jax":
        import jax

        _, vjp = jax.vjp(fn, x)
        return np.asarray(vjp(g)[0])
    if backend == "torch":
        import torch

        t = torch.tensor(x, requires_grad=True)
        torch.sum(fn(t) * torch.tensor(g)).backward()
        return t.grad.numpy()
    raise RuntimeError(f"no automatic differentiation for the {backend!r} backend")


def output_pixel_gradients(model: Any, x: np.ndarray, rows: np.ndarray,
                           cols: np.ndarray) -> np.ndarray:  # fmt: skip
    """``|∂ model(x)[b, rows[b], cols[b], 0] / ∂ x[b]|`` summed over channels, for ``x (n, H, W,
    C)`` and output positions ``rows, cols (n,)``, in one backward pass: ``(n, H, W)`` float32.
    Raises ValueError for other shapes or positions outside the output."""
    x = np.asarray(x, "float32")
    rows, cols = np.asarray(rows, int), np.asarray(cols, int)
    if x.ndim != 4 or rows.shape != (len(x),) or cols.shape != (len(x),):
        raise ValueError(f"expected x (n, H, W, C) and rows, cols (n,), got x {x.shape}, "
                         f"rows {rows.shape}, cols {cols.shape}")  # fmt: skip
    import keras

    out_shape = tuple(keras.ops.shape(model(x[:1], training=False)))[1:]
    if not ((0 <= rows) & (rows < out_shape[0]) & (0 <= cols) & (cols < out_shape[1])).all():
        raise ValueError(f"rows and cols must lie inside the {out_shape[:2]} output")
    g = np.zeros((len(x), *out_shape), "float32")
    g[np.arange(len(x)), rows, cols, 0] = 1.0
    grad = input_gradient(lambda t: model(t, training=False), x, g)
    return np.abs(grad).sum(axis=-1)
