"""input_gradient is the vector-Jacobian product J^T g, checked on maps with known Jacobians."""

import keras
import numpy as np

from unet_course import autodiff


def test_gradient_of_a_matrix_product_is_the_transpose_times_g():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 5)).astype("float32")
    x, g = rng.standard_normal(5), rng.standard_normal(3)
    grad = autodiff.input_gradient(lambda t: keras.ops.matmul(keras.ops.convert_to_tensor(a), t),
                                   x, g)  # fmt: skip
    assert grad.shape == (5,) and np.allclose(grad, a.T @ g, atol=1e-5)


def test_gradient_of_an_elementwise_square_is_two_x_g():
    x, g = np.array([1.0, -2.0, 3.0]), np.array([0.5, 1.0, -1.0])
    grad = autodiff.input_gradient(lambda t: t * t, x, g)
    assert np.allclose(grad, 2 * x * g)
