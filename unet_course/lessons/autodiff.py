"""The gradient of a function's output with respect to its input, on any Keras backend.

What belongs here: :func:`input_gradient`, that notebook 03 uses to show that the transposed
convolution is the gradient of the convolution (the notebook writes the TensorFlow version by
hand; this module holds the same computation for TensorFlow, JAX and PyTorch), and
:func:`output_pixel_gradients`, that notebook 04 uses to measure receptive fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def input_gradient(fn: Callable[[Any], Any], x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``∂L/∂x`` for ``L = sum(g * fn(x))``, by the active Keras backend's autodiff.

    ``g`` plays the part of ``∂Loss/∂y`` arriving from later layers: for ``y = fn(x)`` the result
    is the vector-Jacobian product ``J^T g``. ``fn`` must be written with ``keras.ops`` (or the
    backend's own ops).

    Args:
        fn: maps an array shaped like ``x`` to one shaped like ``g``.
        x: the input, any shape, converted to float32.
        g: the weights of the outputs, ``fn(x)``'s shape, converted to float32.

    Returns:
        a NumPy float32 array of ``x``'s shape.
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
                           cols: np.ndarray) -> np.ndarray:
    """``|∂ model(x)[b, rows[b], cols[b], 0] / ∂ x[b]|``, summed over channels, for every ``b``.

    Each image of the batch gets its own output pixel; images in a batch do not interact at
    prediction time (``training=False``), so one backward pass gives all ``n`` gradients.

    Args:
        model: a Keras model mapping ``(n, H, W, C)`` to ``(n, H', W', K)``.
        x: ``(n, H, W, C)`` inputs, converted to float32.
        rows, cols: ``(n,)`` integer positions in the output, one per image.

    Returns:
        ``(n, H, W)`` float32, the absolute gradient summed over the input channels.
    """
    x = np.asarray(x, "float32")
    rows, cols = np.asarray(rows, int), np.asarray(cols, int)
    if x.ndim != 4 or rows.shape != (len(x),) or cols.shape != (len(x),):
        raise ValueError(f"expected x (n, H, W, C) and rows, cols (n,), got x {x.shape}, "
                         f"rows {rows.shape}, cols {cols.shape}")
    import keras

    out_shape = tuple(keras.ops.shape(model(x[:1], training=False)))[1:]
    if not ((0 <= rows) & (rows < out_shape[0]) & (0 <= cols) & (cols < out_shape[1])).all():
        raise ValueError(f"rows and cols must lie inside the {out_shape[:2]} output")
    g = np.zeros((len(x), *out_shape), "float32")
    g[np.arange(len(x)), rows, cols, 0] = 1.0
    grad = input_gradient(lambda t: model(t, training=False), x, g)
    return np.abs(grad).sum(axis=-1)
