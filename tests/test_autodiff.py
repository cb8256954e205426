"""input_gradient is the vector-Jacobian product J^T g, checked on maps with known Jacobians."""

import keras
import numpy as np
import pytest

from unet_course.lessons import autodiff


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


def test_output_pixel_gradients_of_a_3x3_box_filter_cover_its_3x3_window():
    inputs = keras.Input((9, 9, 2))
    conv = keras.layers.Conv2D(1, 3, padding="same", use_bias=False, kernel_initializer="ones")
    model = keras.Model(inputs, conv(inputs))
    x = np.random.default_rng(0).random((2, 9, 9, 2))
    grads = autodiff.output_pixel_gradients(model, x, np.array([4, 0]), np.array([4, 8]))
    want = np.zeros((2, 9, 9))
    want[0, 3:6, 3:6] = 2  # two channels of weight 1 each
    want[1, 0:2, 7:9] = 2  # cut off by the corner
    assert grads.shape == (2, 9, 9) and np.allclose(grads, want)


def test_output_pixel_gradients_rejects_positions_outside_the_output():
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))
    with pytest.raises(ValueError, match="inside"):
        autodiff.output_pixel_gradients(model, np.zeros((1, 4, 4, 1)), np.array([4]), np.array([0]))
