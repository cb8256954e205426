"""The gradient of a function's output with respect to its input, on any Keras backend.

What belongs here: one helper, :func:`input_gradient`, that notebook 03 uses to show that the
transposed convolution is the gradient of the convolution. The notebook writes the TensorFlow
version by hand; this module holds the same computation for TensorFlow, JAX and PyTorch.
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
