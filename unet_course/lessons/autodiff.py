"""Input gradients on the TensorFlow, JAX and PyTorch backends of Keras: the vector-Jacobian
product of notebook 03 and the per-pixel gradients that notebook 04 measures receptive fields by.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def input_gradient(fn: Callable[[Any], Any], x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``∂L/∂x`` for ``L = sum(g * fn(x))``: the vector-Jacobian product ``J^T g`` of ``fn`` at
    ``x``, by the active Keras backend's autodiff.

    ``fn`` (``keras.ops`` or the backend's own ops) maps an array shaped like ``x`` to one shaped
    like ``g``; ``x`` and ``g`` are converted to float32. Returns a float32 NumPy array of
    ``x``'s shape. Raises RuntimeError on a backend other than TensorFlow, JAX or PyTorch.
    """
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
    """``|∂ model(x)[b, rows[b], cols[b], 0] / ∂ x[b]|`` summed over channels, for every ``b``.

    ``model`` maps ``(n, H, W, C)`` to ``(n, H', W', K)``; ``x`` is ``(n, H, W, C)`` (converted
    to float32), ``rows`` and ``cols`` are ``(n,)`` output positions, one per image. Images do
    not interact at prediction time (``training=False``), so one backward pass gives all ``n``.
    Returns ``(n, H, W)`` float32. Raises ValueError for other shapes or positions outside the
    output.
    """
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
