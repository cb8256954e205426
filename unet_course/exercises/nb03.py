"""Checks for notebook 03's exercises (transposed convolution).

Each ``check_exercise_N`` takes the learner's answer and returns a ``Result``. The expected
values come from Keras layers (``Conv2D``, ``Conv2DTranspose``), never from the reference
solutions or from ``unet_course.conv``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from unet_course.exercises import Result, run_check


def _keras_layer(cls_name: str, kernel: np.ndarray, filters: int, stride, padding: str,
                 input_shape: tuple) -> object:  # fmt: skip
    import keras

    cls = getattr(keras.layers, cls_name)
    layer = cls(filters, kernel.shape[:2], strides=stride, padding=padding, use_bias=False)
    layer.build((1, *input_shape))
    layer.set_weights([kernel.astype("float32")])
    return layer


def check_exercise_1(unet_up_shapes: Callable) -> Result:
    """``unet_up_shapes() -> (output_shape, kernel_shape)`` of ``Conv2DTranspose(128, 2,
    strides=2, padding="same")`` on a ``(16, 16, 256)`` map, against the built layer."""
    import keras

    def verify(answer):
        out_shape, kernel_shape = (tuple(int(v) for v in a) for a in answer)
        layer = keras.layers.Conv2DTranspose(128, 2, strides=2, padding="same")
        layer.build((1, 16, 16, 256))
        want_out = tuple(layer.compute_output_shape((1, 16, 16, 256))[1:])
        want_kernel = tuple(layer.kernel.shape)
        if out_shape != want_out:
            return f"the output shape {out_shape} is not the layer's (per image, no batch axis)"
        if kernel_shape != want_kernel:
            return (f"the kernel shape {kernel_shape} is not the layer's; which of the last two "
                    "axes holds the filters?")
        return None

    return run_check("Exercise 1", unet_up_shapes, verify)


def check_exercise_2(dot_product_sides: Callable) -> Result:
    """``dot_product_sides(x, kernel, y, stride, padding) -> (lhs, rhs)``: ``(C x) · y`` and
    ``x · (C.T y)``, each against Keras' ``Conv2D`` / ``Conv2DTranspose``."""
    import keras

    rng = np.random.default_rng(3)
    cases = [((9, 9, 2), (3, 3, 2, 3), 2, "valid"), ((8, 7, 1), (2, 3, 1, 2), 1, "same"),
             ((8, 8, 3), (3, 3, 3, 2), 2, "same")]  # shapes where C.T y has x's shape  # fmt: skip
    data = []
    for x_shape, k_shape, stride, padding in cases:
        x, k = rng.standard_normal(x_shape), rng.standard_normal(k_shape)
        layer = _keras_layer("Conv2D", k, k_shape[3], stride, padding, x_shape)
        cx = keras.ops.convert_to_numpy(layer(x[None].astype("float32")))[0]
        data.append((x, k, rng.standard_normal(cx.shape), stride, padding, cx))

    def attempt():
        return [tuple(float(v) for v in dot_product_sides(x, k, y, s, p))
                for x, k, y, s, p, _ in data]  # fmt: skip

    def verify(answers):
        for (x, k, y, s, p, cx), (lhs, rhs) in zip(data, answers, strict=True):
            back = _keras_layer("Conv2DTranspose", k, k.shape[2], s, p, y.shape)
            ct_y = keras.ops.convert_to_numpy(back(y[None].astype("float32")))[0]
            where = f"for x {x.shape}, kernel {k.shape}, stride {s}, '{p}'"
            if not np.isclose(lhs, np.sum(cx * y), rtol=1e-4, atol=1e-4):
                return f"{where}: lhs is not (conv of x) · y"
            if not np.isclose(rhs, np.sum(x * ct_y), rtol=1e-4, atol=1e-4):
                return f"{where}: rhs is not x · (transposed conv of y) with the same kernel array"
        return None

    return run_check("Exercise 2", attempt, verify)


def check_exercise_3(even_overlap: Callable) -> Result:
    """``even_overlap(k, s) -> bool``: does every interior pixel get the same number of k x k
    stamps at stride s? Counted with ``Conv2DTranspose`` (kernel of ones on an input of ones)."""
    import keras

    cases = [(k, s) for k in range(1, 7) for s in range(1, 4)]

    def attempt():
        return [even_overlap(k, s) for k, s in cases]

    def verify(answers):
        for (k, s), got in zip(cases, answers, strict=True):
            layer = _keras_layer("Conv2DTranspose", np.ones((k, k, 1, 1)), 1, s, "valid",
                                 (12, 12, 1))  # fmt: skip
            counts = keras.ops.convert_to_numpy(layer(np.ones((1, 12, 12, 1), "float32")))[0]
            interior = counts[k:-k, k:-k, 0]
            want = bool(np.ptp(interior) == 0)
            if got is None or bool(got) != want:
                return f"even_overlap({k}, {s}) gave {got}; counting the stamps says {want}"
        return None

    return run_check("Exercise 3", attempt, verify)
