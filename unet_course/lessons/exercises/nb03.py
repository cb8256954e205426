"""Checks for notebook 03's exercises (transposed convolution).

Each ``check_exercise_N`` takes the learner's answer and returns a ``Result``. The expected
values come from Keras layers (``Conv2D``, ``Conv2DTranspose``), never from the reference
solutions or from ``unet_course.lessons.conv``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from unet_course.lessons.exercises import Result, run_check


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


def check_exercise_2(conv_transpose_by_stamps: Callable) -> Result:
    """``conv_transpose_by_stamps(y, kernel, stride) -> (H, W, in_channels)``: the learner's own
    transposed convolution (``'valid'``, ``y`` of shape ``(h, w, filters)``, a ``Conv2D`` kernel
    ``(kh, kw, in_channels, filters)``), judged by the dot-product test ``(C x) · y = x · (T y)``
    with ``C x`` from Keras' ``Conv2D`` on random ``x`` and ``y``, then against ``Conv2DTranspose``."""
    import keras

    rng = np.random.default_rng(3)
    # (x shape, kernel shape, stride): each x has the size a 'valid' transpose gives back; the
    # (9, 9, 2) -> 2 filters case has as many filters as channels, so swapped axes show as values
    cases = [((9, 9, 2), (3, 3, 2, 3), 2), ((9, 9, 2), (3, 3, 2, 2), 2), ((8, 7, 1), (2, 3, 1, 2), 1),
             ((8, 8, 3), (2, 2, 3, 2), 2), ((9, 10, 1), (3, 4, 1, 2), 3)]  # fmt: skip
    data = []
    for x_shape, k_shape, stride in cases:
        k = rng.standard_normal(k_shape)
        forward = _keras_layer("Conv2D", k, k_shape[3], stride, "valid", x_shape)
        xs = [rng.standard_normal(x_shape) for _ in range(2)]
        cxs = [keras.ops.convert_to_numpy(forward(x[None].astype("float32")))[0] for x in xs]
        ys = [rng.standard_normal(cxs[0].shape) for _ in range(2)]
        data.append((k, stride, xs, cxs, ys))

    def attempt():
        return [[np.asarray(conv_transpose_by_stamps(y, k, s), dtype=float) for y in ys]
                for k, s, _, _, ys in data]  # fmt: skip

    def verify(answers):
        for (k, s, xs, cxs, ys), outs in zip(data, answers, strict=True):
            where = f"for y {ys[0].shape}, kernel {k.shape}, stride {s}"
            if outs[0].shape != xs[0].shape:
                return f"{where}: your output has shape {outs[0].shape}, the convolution's input {xs[0].shape}"
            for x, cx, y, out in zip(xs, cxs, ys, outs, strict=True):
                lhs, rhs = float(np.sum(cx * y)), float(np.sum(x * out))
                if not np.isclose(lhs, rhs, rtol=1e-4, atol=1e-3):
                    return (f"{where}: the dot-product test fails: (C x) · y = {lhs:.4f} but "
                            f"x · (your map of y) = {rhs:.4f}")
            back = _keras_layer("Conv2DTranspose", k, k.shape[2], s, "valid", ys[0].shape)
            want = keras.ops.convert_to_numpy(back(ys[0][None].astype("float32")))[0]
            if not np.allclose(outs[0], want, atol=1e-4):
                return f"{where}: your output differs from Conv2DTranspose with the same kernel array"
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
