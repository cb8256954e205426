"""Tests of unet_course.lessons.conv against Keras layers, SciPy and hand-worked values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import scipy.signal
import scipy.sparse

from unet_course.lessons import conv

WORKED_KERNEL = np.array([[1, 4, 1], [1, 4, 3], [3, 3, 1]])
# The matrix published with the classic 4x4 / 3x3 example (rows = the 4 output pixels).
WORKED_MATRIX = np.array(
    [
        [1, 4, 1, 0, 1, 4, 3, 0, 3, 3, 1, 0, 0, 0, 0, 0],
        [0, 1, 4, 1, 0, 1, 4, 3, 0, 3, 3, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 4, 1, 0, 1, 4, 3, 0, 3, 3, 1, 0],
        [0, 0, 0, 0, 0, 1, 4, 1, 0, 1, 4, 3, 0, 3, 3, 1],
    ]
)


def _random_case(rng: np.random.Generator, square_stride: bool = False) -> dict:
    kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
    sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
    if square_stride:
        sw = sh
    cin, cout = (int(v) for v in rng.integers(1, 4, size=2))
    h, w = (int(v) for v in rng.integers(max(kh, kw), 13, size=2))
    return dict(kh=kh, kw=kw, stride=(sh, sw), cin=cin, cout=cout, h=h, w=w)


def _keras_conv(x: np.ndarray, kernel: np.ndarray, stride, padding: str) -> np.ndarray:
    layer = keras.layers.Conv2D(
        kernel.shape[3], kernel.shape[:2], strides=stride, padding=padding, use_bias=False
    )
    layer.build((1, *x.shape))
    layer.set_weights([kernel])
    return keras.ops.convert_to_numpy(layer(x[None]))[0]


def _keras_conv_transpose(y, kernel, stride, padding, output_padding) -> np.ndarray:
    layer = keras.layers.Conv2DTranspose(
        kernel.shape[2], kernel.shape[:2], strides=stride, padding=padding,
        output_padding=output_padding, use_bias=False,
    )  # fmt: skip
    layer.build((1, *y.shape))
    layer.set_weights([kernel])
    assert tuple(layer.compute_output_shape((1, *y.shape)))[1:] == conv.conv_transpose_output_shape(
        y.shape, kernel.shape, stride, padding, output_padding
    )
    return keras.ops.convert_to_numpy(layer(y[None]))[0]


# ---------------------------------------------------------------- the worked example


def test_worked_example_matrix_exactly():
    dense = conv.conv_matrix(WORKED_KERNEL, (4, 4))
    assert dense.shape == (4, 16)
    assert dense.dtype == WORKED_KERNEL.dtype
    np.testing.assert_array_equal(dense, WORKED_MATRIX)
    sparse = conv.conv_matrix(WORKED_KERNEL, (4, 4), sparse=True)
    assert scipy.sparse.issparse(sparse) and sparse.format == "csr"
    np.testing.assert_array_equal(sparse.toarray(), WORKED_MATRIX)
    assert sparse.nnz == 4 * 9


def test_worked_example_convolution_by_hand():
    x = np.arange(16).reshape(4, 4)
    by_hand = np.array(
        [[np.sum(x[i : i + 3, j : j + 3] * WORKED_KERNEL) for j in range(2)] for i in range(2)]
    )
    np.testing.assert_array_equal(conv.conv2d(x, WORKED_KERNEL), by_hand)
    # and its transpose scatters a 2x2 input back onto 4x4 through C.T
    y = np.array([[1, 2], [3, 4]])
    np.testing.assert_array_equal(
        conv.conv2d_transpose(y, WORKED_KERNEL), (WORKED_MATRIX.T @ y.ravel()).reshape(4, 4)
    )


# ---------------------------------------------------------------- padding and shapes


@pytest.mark.parametrize(
    ("hw", "k", "s", "want"),
    [
        ((5, 5), (3, 3), 1, ((1, 1), (1, 1))),
        ((5, 6), (4, 2), 1, ((1, 2), (0, 1))),  # even kernel: the extra pixel bottom / right
        ((6, 6), (3, 3), 2, ((0, 1), (0, 1))),  # (3 - 1) * 2 + 3 - 6 = 1
        ((7, 7), (3, 3), 2, ((1, 1), (1, 1))),
        ((7, 8), (1, 1), 3, ((0, 0), (0, 0))),  # max(..., 0)
        ((4, 4), (5, 5), 1, ((2, 2), (2, 2))),
    ],
)
def test_same_padding_hand_worked(hw, k, s, want):
    assert conv.conv_padding(hw, k, s, "same") == want


@pytest.mark.parametrize(
    ("padding", "want"),
    [
        ("valid", ((0, 0), (0, 0))),
        ("VALID", ((0, 0), (0, 0))),
        (2, ((2, 2), (2, 2))),
        ((1, 3), ((1, 1), (3, 3))),
        (((0, 1), (2, 3)), ((0, 1), (2, 3))),
    ],
)
def test_explicit_padding_forms(padding, want):
    assert conv.conv_padding((9, 9), (3, 3), 1, padding) == want


def test_output_shapes_match_keras_compute_output_shape():
    rng = np.random.default_rng(1)
    for _ in range(40):
        c = _random_case(rng)
        for padding in ("valid", "same"):
            layer = keras.layers.Conv2D(c["cout"], (c["kh"], c["kw"]), c["stride"], padding)
            want = tuple(layer.compute_output_shape((1, c["h"], c["w"], c["cin"])))[1:]
            kshape = (c["kh"], c["kw"], c["cin"], c["cout"])
            got = conv.conv_output_shape((c["h"], c["w"], c["cin"]), kshape, c["stride"], padding)
            assert got == want
            assert conv.conv_output_shape((c["h"], c["w"]), kshape[:2], c["stride"], padding) == (
                want[:2]
            )


# ---------------------------------------------------------------- against Keras and SciPy


def test_sparse_equals_dense_and_is_canonical_csr():
    rng = np.random.default_rng(2)
    for trial in range(25):
        c = _random_case(rng)
        kernel = rng.standard_normal((c["kh"], c["kw"], c["cin"], c["cout"]))
        padding = ["valid", "same", 1, ((0, 2), (1, 0))][trial % 4]
        shape = (c["h"], c["w"], c["cin"])
        dense = conv.conv_matrix(kernel, shape, c["stride"], padding)
        sparse = conv.conv_matrix(kernel, shape, c["stride"], padding, sparse=True)
        assert sparse.has_canonical_format  # sorted column indices, no duplicates
        np.testing.assert_array_equal(sparse.toarray(), dense)


@pytest.mark.parametrize("seed", range(4))
def test_conv2d_matches_keras_conv2d(seed):
    rng = np.random.default_rng(100 + seed)
    for trial in range(6):
        c = _random_case(rng)
        padding = ("valid", "same")[trial % 2]
        kernel = rng.standard_normal((c["kh"], c["kw"], c["cin"], c["cout"])).astype("float32")
        x = rng.standard_normal((c["h"], c["w"], c["cin"])).astype("float32")
        want = _keras_conv(x, kernel, c["stride"], padding)
        got = conv.conv2d(x, kernel, c["stride"], padding)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_explicit_padding_matches_zeropadding_then_conv2d():
    rng = np.random.default_rng(3)
    for _ in range(8):
        c = _random_case(rng)
        pads = tuple(tuple(int(v) for v in rng.integers(0, 3, size=2)) for _ in range(2))
        kernel = rng.standard_normal((c["kh"], c["kw"], c["cin"], c["cout"])).astype("float32")
        x = rng.standard_normal((c["h"], c["w"], c["cin"])).astype("float32")
        padded = keras.ops.convert_to_numpy(keras.layers.ZeroPadding2D(pads)(x[None]))[0]
        want = _keras_conv(padded, kernel, c["stride"], "valid")
        got = conv.conv2d(x, kernel, c["stride"], pads)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv2d_matches_scipy_correlate2d_and_flipped_convolve2d():
    rng = np.random.default_rng(4)
    for _ in range(30):
        kh, kw = rng.integers(1, 6, size=2)
        h, w = rng.integers(1, 15, size=2)
        (pt, pb), (pl, pr) = rng.integers(0, 3, size=(2, 2))
        if h + pt + pb < kh or w + pl + pr < kw:
            continue
        sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
        x, kernel = rng.standard_normal((h, w)), rng.standard_normal((kh, kw))
        padded = np.pad(x, ((pt, pb), (pl, pr)))
        want = scipy.signal.correlate2d(padded, kernel, mode="valid")[::sh, ::sw]
        pads = ((int(pt), int(pb)), (int(pl), int(pr)))
        got = conv.conv2d(x, kernel, (sh, sw), pads)
        np.testing.assert_allclose(got, want, atol=1e-12)
        # a true convolution flips the kernel: same numbers with kernel[::-1, ::-1]
        flipped = scipy.signal.convolve2d(padded, kernel[::-1, ::-1], mode="valid")[::sh, ::sw]
        np.testing.assert_allclose(got, flipped, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_conv2d_transpose_matches_keras_conv2d_transpose(seed):
    rng = np.random.default_rng(200 + seed)
    checked = 0
    while checked < 8:
        c = _random_case(rng)
        padding = ("valid", "same")[checked % 2]
        ops = [None, *range(min(c["stride"]))]
        op = ops[int(rng.integers(len(ops)))]
        kernel = rng.standard_normal((c["kh"], c["kw"], c["cout"], c["cin"])).astype("float32")
        y = rng.standard_normal((c["h"], c["w"], c["cin"])).astype("float32")
        try:
            got = conv.conv2d_transpose(y, kernel, c["stride"], padding, op)
        except ValueError:  # same + even kernel + small output_padding: Keras/TF refuse too
            continue
        want = _keras_conv_transpose(y, kernel, c["stride"], padding, op)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        checked += 1


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("kernel_size", [2, 3, 4])
@pytest.mark.parametrize("output_padding", [None, 0, 1])
def test_unet_upsampling_stride_2_against_keras(padding, kernel_size, output_padding):
    rng = np.random.default_rng(kernel_size)
    kernel = rng.standard_normal((kernel_size, kernel_size, 2, 3)).astype("float32")
    y = rng.standard_normal((5, 6, 3)).astype("float32")
    if padding == "same" and kernel_size % 2 == 0 and output_padding == 0:
        with pytest.raises(ValueError, match="output_padding"):
            conv.conv2d_transpose(y, kernel, 2, padding, output_padding)
        return
    got = conv.conv2d_transpose(y, kernel, 2, padding, output_padding)
    want = _keras_conv_transpose(y, kernel, 2, padding, output_padding)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_transpose_output_shape_hand_worked():
    f = conv.conv_transpose_output_shape
    assert f((4, 4), (3, 3), 2, "same") == (8, 8)
    assert f((4, 4), (3, 3), 2, "same", 0) == (7, 7)  # (4 - 1) * 2 + 3 % 2 + 0
    assert f((4, 4), (3, 3), 2, "valid") == (9, 9)  # (4 - 1) * 2 + 3
    assert f((4, 4), (3, 3), 2, "valid", 1) == (10, 10)
    assert f((4, 4), (1, 1), 3, "valid") == (12, 12)  # op defaults to max(k, s) - k = 2
    assert f((2, 2), (3, 3), 1, "valid") == (4, 4)
    assert f((4, 5, 7), (2, 2, 3, 7), 2, "valid") == (8, 10, 3)
    assert f((4, 4), (3, 3), 2, 1, 1) == (8, 8)  # explicit pads, PyTorch's formula


def test_transpose_is_the_input_gradient_of_the_convolution():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(5)
    for padding in ("valid", "same"):
        x = rng.standard_normal((9, 8, 2)).astype("float32")
        kernel = rng.standard_normal((3, 3, 2, 4)).astype("float32")
        g = rng.standard_normal(conv.conv_output_shape(x.shape, kernel.shape, 2, padding))
        xt = tf.Variable(x[None])
        with tf.GradientTape() as tape:
            y = tf.nn.conv2d(xt, kernel, strides=2, padding=padding.upper())
            loss = tf.reduce_sum(y * g.astype("float32")[None])
        grad = tape.gradient(loss, xt).numpy()[0]
        c = conv.conv_matrix(kernel, x.shape, 2, padding, sparse=True)
        np.testing.assert_allclose((c.T @ g.ravel()).reshape(x.shape), grad, atol=1e-4)


def test_other_backend_in_subprocess():
    """The same equalities with Keras on JAX (checked in a fresh interpreter)."""
    code = textwrap.dedent(
        """
        import json, keras, numpy as np
        from unet_course.lessons import conv
        rng = np.random.default_rng(0)
        errs = []
        for padding, stride, op in [("same", 2, None), ("valid", 2, 1), ("same", (2, 1), (1, 0)), ("valid", 3, None)]:
            k = rng.standard_normal((3, 3, 2, 3)).astype("float32")
            x = rng.standard_normal((7, 6, 2)).astype("float32")
            ref = keras.ops.convert_to_numpy(keras.ops.conv(x[None], k, stride, padding))[0]
            errs.append(float(np.abs(ref - conv.conv2d(x, k, stride, padding)).max()))
            y = rng.standard_normal((5, 4, 2)).astype("float32")
            kt = rng.standard_normal((3, 3, 3, 2)).astype("float32")
            ref = keras.ops.convert_to_numpy(
                keras.ops.conv_transpose(y[None], kt, stride, padding, op))[0]
            errs.append(float(np.abs(ref - conv.conv2d_transpose(y, kt, stride, padding, op)).max()))
        print(json.dumps({"backend": keras.backend.backend(), "errs": errs}))
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    assert max(result["errs"]) < 1e-4, result


# ---------------------------------------------------------------- memory limit and errors


def test_dense_refuses_huge_matrix_and_names_the_bytes():
    kernel = np.ones((3, 3), dtype="float32")
    need = 510 * 510 * 512 * 512 * 4  # 'valid' 512x512 -> 510x510 output
    with pytest.raises(ValueError, match=f"{need:,} bytes") as info:
        conv.conv_matrix(kernel, (512, 512))
    assert "sparse=True" in str(info.value)
    with pytest.raises(ValueError, match="sparse=True"):
        conv.conv_matrix(kernel, (64, 64), max_dense_bytes=1000)
    assert conv.conv_matrix(kernel, (512, 512), sparse=True).shape == (510 * 510, 512 * 512)
    assert conv.conv_matrix(kernel, (8, 8), max_dense_bytes=36 * 64 * 4).shape == (36, 64)


def test_sparse_256_convolution_matches_keras():
    rng = np.random.default_rng(6)
    x = rng.random((256, 256, 1), dtype="float32")
    kernel = rng.standard_normal((3, 3, 1, 1)).astype("float32")
    c = conv.conv_matrix(kernel, x.shape, padding="same", sparse=True)
    assert c.shape == (256 * 256, 256 * 256) and c.nnz == 254 * 254 * 9 + 4 * 254 * 6 + 4 * 4
    got = (c @ x.ravel()).reshape(256, 256, 1)
    np.testing.assert_allclose(got, _keras_conv(x, kernel, 1, "same"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: conv.conv_matrix(np.ones((5, 5)), (4, 4)), ValueError, "larger than the padded"),
        (lambda: conv.conv_matrix(np.ones((3, 3)), (4, 4), stride=0), ValueError, "stride"),
        (lambda: conv.conv_matrix(np.ones((3, 3)), (4, 4), stride=(1, -2)), ValueError, "stride"),
        (lambda: conv.conv_matrix(np.ones((3, 3)), (4, 4), stride=1.5), TypeError, "stride"),
        (lambda: conv.conv_matrix(np.ones((3, 3, 2, 1)), (6, 6, 3)), ValueError, "channel"),
        (lambda: conv.conv_matrix(np.ones((3, 3, 2, 1)), (6, 6)), ValueError, "input_shape"),
        (lambda: conv.conv_matrix(np.ones((3, 3)), (6, 6, 1)), ValueError, "input_shape"),
        (lambda: conv.conv_matrix(np.ones((3, 3)), (6, 6), padding="full"), ValueError, "full"),
        (lambda: conv.conv_matrix(np.ones((3, 3)), (6, 6), padding=-1), ValueError, "padding"),
        (lambda: conv.conv_matrix(np.ones((3, 3)), (6, 6), padding=(1, 2, 3)), ValueError, "pad"),
        (lambda: conv.conv_matrix([["a", "b"]], (6, 6)), TypeError, "numeric"),
        (lambda: conv.conv_matrix(np.ones((2, 2), bool), (6, 6)), TypeError, "numeric"),
        (lambda: conv.conv_matrix(np.ones((3, 3, 3)), (6, 6)), ValueError, "2-D"),
        (lambda: conv.conv_matrix(np.ones((0, 3)), (6, 6)), ValueError, "empty"),
        (lambda: conv.conv_matrix(np.ones((3, 3)), (0, 6)), ValueError, "positive"),
        (lambda: conv.conv2d(np.array([["x"]]), np.ones((1, 1))), TypeError, "numeric"),
        (lambda: conv.conv2d(np.ones((5, 5, 2)), np.ones((3, 3))), ValueError, "input_shape"),
        (lambda: conv.conv2d_transpose(np.ones((2, 2)), np.ones((3, 3)), 2, "same", 2),
         ValueError, "output_padding"),
        (lambda: conv.conv2d_transpose(np.ones((2, 2)), np.ones((3, 3)), 2, "same", -1),
         ValueError, "output_padding"),
        (lambda: conv.conv2d_transpose(np.ones((2, 2)), np.ones((2, 2)), 2, "same", 0),
         ValueError, "y's shape"),
        (lambda: conv.conv2d_transpose(np.ones((2, 2, 3)), np.ones((3, 3, 1, 2))), ValueError,
         "channel"),
        (lambda: conv.conv_output_shape((4, 4), (3,)), ValueError, "kernel_shape"),
    ],
)  # fmt: skip
def test_bad_input_raises_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------- the conv pictures in plotting


def test_show_matrix_and_animations():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unet_course.lessons import plotting

    ax = plotting.show_matrix(conv.conv_matrix(WORKED_KERNEL, (4, 4), sparse=True))
    np.testing.assert_array_equal(ax.images[0].get_array(), WORKED_MATRIX)
    assert len(ax.texts) == WORKED_MATRIX.size
    plt.close(ax.figure)
    html = plotting.animate_conv_window(np.arange(25).reshape(5, 5), WORKED_KERNEL, 2, "same")
    assert "frames[8]" in html and "frames[9]" not in html  # one frame per output pixel (3x3)
    html = plotting.animate_conv_transpose(np.ones((2, 3)), WORKED_KERNEL, 2)
    assert "data:image/png" in html and "frames[5]" in html and "frames[6]" not in html
    assert plt.get_fignums() == []  # the animation figures are closed
    with pytest.raises(ValueError, match="stride"):
        plotting.animate_conv_window(np.ones((4, 4)), WORKED_KERNEL, 0)
