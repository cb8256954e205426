"""Checks for notebook 02's exercises (convolution as a matrix).

Each ``check_exercise_N`` takes the learner's function and returns a ``Result``. The expected
values come from Keras' shape inference, ``numpy.correlate`` and ``scipy.signal``, never from
the reference solutions or from ``unet_course.lessons.conv``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from unet_course.lessons.exercises import Result, run_check

# (h, k, s, d): Keras accepts dilation only with stride 1, so d > 1 comes with s = 1; the cases
# with d = 1 check the stride. Each valid case fits the dilated kernel, d * (k - 1) + 1 pixels.
DILATED_CASES = [(7, 3, 1, 2), (11, 3, 1, 3), (10, 2, 1, 4), (9, 4, 1, 2), (16, 3, 1, 5),
                 (9, 3, 2, 1), (10, 3, 3, 1), (10, 4, 2, 1), (6, 3, 1, 1)]  # fmt: skip


def check_exercise_1(dilated_out_size: Callable) -> Result:
    """``dilated_out_size(h, k, s, d, padding) -> H_out``, against ``Conv2D``'s own shapes."""
    import keras

    cases = [(*case, p) for case in DILATED_CASES for p in ("valid", "same")]

    def attempt():
        return [dilated_out_size(*case) for case in cases]

    def verify(answers):
        for (h, k, s, d, padding), got in zip(cases, answers, strict=True):
            layer = keras.layers.Conv2D(1, k, strides=s, dilation_rate=d, padding=padding)
            want = int(layer.compute_output_shape((1, h, h, 1))[1])
            if got is None:
                return f"dilated_out_size{(h, k, s, d, padding)} returned None"
            if int(got) != want:
                return (f"dilated_out_size{(h, k, s, d, padding)} gave {got}, "
                        f"Conv2D(dilation_rate={d}, strides={s}) gives {want}")  # fmt: skip
        return None

    return run_check("Exercise 1", attempt, verify)


def check_exercise_2(difference_matrix: Callable) -> Result:
    """``difference_matrix(n)``: the ``(n - 1, n)`` matrix of the kernel ``[1, -1]``."""
    sizes = (6, 3, 10)
    rng = np.random.default_rng(2)

    def attempt():
        return [np.asarray(difference_matrix(n), dtype=float) for n in sizes]

    def verify(matrices):
        for n, t in zip(sizes, matrices, strict=True):
            if t.shape != (n - 1, n):
                return (f"for a signal of length {n} the matrix should have shape {(n - 1, n)} "
                        f"(outputs x inputs), got {t.shape}")  # fmt: skip
            signal = rng.standard_normal(n)
            want = np.correlate(signal, [1, -1], mode="valid")
            if not np.allclose(t @ signal, want):
                return (f"for n={n}, T @ signal differs from np.correlate(signal, [1, -1], "
                        "'valid'); check the order of 1 and -1 in each row")  # fmt: skip
        return None

    return run_check("Exercise 2", attempt, verify)


def check_exercise_3(nnz_valid: Callable) -> Result:
    """``nnz_valid(h, w)``: stored entries of a 3x3 'valid' matrix, counted with SciPy."""
    import scipy.signal

    cases = [(3, 3), (4, 4), (10, 7), (32, 64), (5, 12)]

    def attempt():
        return [nnz_valid(h, w) for h, w in cases]

    def verify(answers):
        for (h, w), got in zip(cases, answers, strict=True):
            outputs = scipy.signal.correlate2d(np.ones((h, w)), np.ones((3, 3)), "valid").size
            if got != 9 * outputs:  # every 'valid' window lies inside: 9 entries per row
                return (f"nnz_valid({h}, {w}) gave {got}, not the number of entries the matrix "
                        "stores: count the 'valid' windows (one row of C each), then the "
                        "entries in each row")  # fmt: skip
        return None

    return run_check("Exercise 3", attempt, verify)


def check_exercise_4(patches: Callable) -> Result:
    """``patches(x, k) -> (H_out * W_out, k * k)`` (im2col), checked through SciPy's correlation."""
    import scipy.signal

    rng = np.random.default_rng(4)
    cases = [((4, 4), 3), ((6, 5), 2), ((7, 9), 3), ((5, 5), 1)]
    inputs = [(rng.standard_normal(shape), k) for shape, k in cases]

    def attempt():
        return [np.asarray(patches(x, k), dtype=float) for x, k in inputs]

    def verify(answers):
        for (x, k), p in zip(inputs, answers, strict=True):
            n_out = scipy.signal.correlate2d(x, np.ones((k, k)), "valid").size
            if p.shape != (n_out, k * k):
                return (f"for a {x.shape} input and k={k} the patch matrix should have shape "
                        f"{(n_out, k * k)} (one row per window), got {p.shape}")  # fmt: skip
            kernel = rng.standard_normal((k, k))
            want = scipy.signal.correlate2d(x, kernel, "valid").ravel()
            if not np.allclose(p @ kernel.ravel(), want):
                return (f"for a {x.shape} input and k={k}, patches(x, k) @ kernel.ravel() is not "
                        "the convolution; check the order of the windows and of their pixels")
        return None

    return run_check("Exercise 4", attempt, verify)
