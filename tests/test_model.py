"""Tests for unet_course.model: exact parameter counts, shapes, crop and size arithmetic,
size errors, the .keras round trip, tracing, receptive fields and other backends."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from unet_course import geometry, receptive_field
from unet_course import model as M


def conv_params(k: int, c_in: int, c_out: int, bias: bool = True) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def unet_params_by_hand(c_in: int, base: int, depth: int, classes: int) -> int:
    """Parameter count of a U-Net from the formula k*k*c_in*c_out + c_out, level by level."""
    total, c = 0, c_in
    for k in range(depth + 1):  # two 3x3 convolutions per block, down to the bottleneck
        f = base * 2**k
        total += conv_params(3, c, f) + conv_params(3, f, f)
        c = f
    for k in range(depth - 1, -1, -1):  # 2x2 up-convolution, then two 3x3 on the concatenation
        f = base * 2**k
        total += conv_params(2, c, f) + conv_params(3, 2 * f, f) + conv_params(3, f, f)
        c = f
    return total + conv_params(1, c, classes)


def popular_keras_unet() -> keras.Model:
    """The popular Kaggle-style U-Net written out line by line, as in the write-ups."""
    from keras.layers import Concatenate, Conv2D, Conv2DTranspose, Dropout, Input, MaxPooling2D

    def conv(f, x):
        return Conv2D(f, (3, 3), activation="elu", kernel_initializer="he_normal", padding="same")(
            x
        )

    inputs = Input((256, 256, 3))
    s = keras.layers.Rescaling(1 / 255)(inputs)
    c1 = conv(16, Dropout(0.1)(conv(16, s)))
    c2 = conv(32, Dropout(0.1)(conv(32, MaxPooling2D((2, 2))(c1))))
    c3 = conv(64, Dropout(0.2)(conv(64, MaxPooling2D((2, 2))(c2))))
    c4 = conv(128, Dropout(0.2)(conv(128, MaxPooling2D((2, 2))(c3))))
    c5 = conv(256, Dropout(0.3)(conv(256, MaxPooling2D((2, 2))(c4))))
    x = c5
    for f, skip, rate in ((128, c4, 0.2), (64, c3, 0.2), (32, c2, 0.1), (16, c1, 0.1)):
        u = Conv2DTranspose(f, (2, 2), strides=(2, 2), padding="same")(x)
        u = Concatenate()([u, skip])
        x = conv(f, Dropout(rate)(conv(f, u)))
    outputs = Conv2D(1, (1, 1), activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def seed():
    keras.utils.set_random_seed(0)
    return M.seed_unet()


@pytest.fixture(scope="module")
def paper():
    return M.paper_unet()


# ---------------------------------------------------------------- exact counts and shapes
def test_seed_unet_exact_parameter_count(seed):
    assert seed.count_params() == 1_941_105 == M.SEED_PARAMS
    assert unet_params_by_hand(3, 16, 4, 1) == 1_941_105


def test_paper_unet_exact_parameter_count(paper):
    assert paper.count_params() == 31_030_658 == M.PAPER_PARAMS
    assert unet_params_by_hand(1, 64, 4, 2) == 31_030_658


@pytest.mark.parametrize("c_in,base,depth,classes", [(1, 8, 2, 1), (3, 4, 3, 3), (2, 6, 1, 2)])
def test_build_unet_parameter_count_matches_formula(c_in, base, depth, classes):
    m = M.build_unet((None, None, c_in), classes, base_filters=base, depth=depth)
    assert m.count_params() == unet_params_by_hand(c_in, base, depth, classes)
    bilinear = M.build_unet((None, None, c_in), classes, base, depth, upsampling="bilinear")
    assert bilinear.count_params() == m.count_params()  # 2x2 conv after up-sampling, same size
    bn = M.build_unet((None, None, c_in), classes, base, depth, batch_norm=True)
    convs = sum(2 * base * 2**k for k in range(depth + 1)) + sum(
        2 * base * 2**k for k in range(depth)
    )
    # batch norm drops the conv bias (-1 per filter) and adds 4 per filter (2 trainable)
    assert bn.count_params() == m.count_params() + 3 * convs


def test_build_unet_without_skips_drops_the_concatenated_channels():
    # depth 3, base 8: the first 3x3 convolution of each decoder block loses the skip's
    # 8, 16 and 32 input channels, each feeding 8, 16 and 32 filters (batch norm: no bias)
    removed = 3 * 3 * (8 * 8 + 16 * 16 + 32 * 32)
    assert removed == 12_096
    for batch_norm in (False, True):
        kw = dict(base_filters=8, depth=3, batch_norm=batch_norm)
        with_skips = M.build_unet((None, None, 3), **kw)
        without = M.build_unet((None, None, 3), skips=False, **kw)
        assert with_skips.count_params() - without.count_params() == removed
        assert not any("concat" in layer.name for layer in without.layers)
    y = without.predict(np.zeros((2, 24, 40, 3), np.float32), verbose=0)
    assert y.shape == (2, 24, 40, 1)
    with pytest.raises(TypeError, match="skips"):
        M.build_unet((None, None, 3), skips="no")


def test_seed_unet_matches_popular_code_line_by_line(seed):
    popular = popular_keras_unet()
    assert popular.count_params() == seed.count_params()
    popular.set_weights(seed.get_weights())
    x = np.random.default_rng(1).integers(0, 256, (2, 256, 256, 3)).astype("float32")
    np.testing.assert_allclose(popular.predict(x, verbose=0), seed.predict(x, verbose=0), atol=1e-6)


def test_seed_unet_layers_names_shapes_and_dropout(seed):
    names = {layer.name for layer in seed.layers}
    assert {f"c{i}" for i in range(1, 10)} <= names
    assert {f"u{i}" for i in range(6, 10)} <= names and {f"p{i}" for i in range(1, 5)} <= names
    assert seed.get_layer("c5").output.shape == (None, 16, 16, 256)  # not 28x28x1024
    assert seed.output_shape == (None, 256, 256, 1)
    assert isinstance(seed.get_layer("rescale"), keras.layers.Rescaling)
    rates = [seed.get_layer(f"c{i}_dropout").rate for i in range(1, 10)]
    assert rates == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.3, 0.2, 0.2, 0.1, 0.1])
    convs = [la for la in seed.layers if type(la) is keras.layers.Conv2D]
    assert len(convs) == 2 * 9 + 1 and all(la.kernel_size == (3, 3) for la in convs[:-1])
    assert seed.get_layer("outputs").kernel_size == (1, 1)


def test_paper_unet_shapes(paper):
    assert paper.input_shape == (None, 572, 572, 1)
    assert paper.output_shape == (None, 388, 388, 2)
    assert paper.get_layer("c5").output.shape == (None, 28, 28, 1024)
    assert paper.get_layer("c1").output.shape == (None, 568, 568, 64)
    assert paper.get_layer("outputs").activation.__name__ == "softmax"


# ---------------------------------------------------------------- crop and size arithmetic
def test_crop_arithmetic_matches_the_paper(paper):
    assert geometry.skip_crops(4, "valid") == [88, 40, 16, 4]
    assert geometry.skip_crops(3, "same") == [0, 0, 0]
    # the paper's figure: 568 -> 392, 280 -> 200, 136 -> 104, 64 -> 56
    for skip, up, (before, after) in zip(
        ("c1", "c2", "c3", "c4"),
        ("u9", "u8", "u7", "u6"),
        ((568, 392), (280, 200), (136, 104), (64, 56)),
        strict=True,
    ):
        assert paper.get_layer(skip).output.shape[1] == before
        assert paper.get_layer(f"{up}_crop").output.shape[1:3] == (after, after)
        assert paper.get_layer(up).output.shape[1] == after


def test_valid_input_sizes_closed_form():
    assert geometry.valid_input_sizes(4, "valid", max_size=700) == [16 * k + 60 for k in range(8, 41)]
    assert geometry.valid_input_sizes(3, "same", max_size=100) == list(range(8, 101, 8))
    assert geometry.unet_output_size(572, 4, "valid") == 388 and geometry.unet_output_size(256) == 256
    for depth in (1, 2, 3, 4, 5):
        # closed form: each block loses 4 pixels at its own resolution, i.e. 4 * 2**k input pixels
        loss = 4 * (2 * sum(2**k for k in range(depth)) + 2**depth)
        for s in geometry.valid_input_sizes(depth, "valid", max_size=2000)[::7]:
            assert geometry.unet_output_size(int(s), depth, "valid") == s - loss


@pytest.mark.parametrize("depth", [2, 3])
def test_valid_models_really_produce_the_predicted_sizes(depth):
    m = M.build_unet((None, None, 1), base_filters=2, depth=depth, padding="valid")
    for s in geometry.valid_input_sizes(depth, "valid", max_size=120)[:3]:
        y = m.predict(np.zeros((1, s, s, 1), "float32"), verbose=0)
        assert y.shape == (1, *(2 * [geometry.unet_output_size(s, depth, "valid")]), 1)


def test_same_size_errors_name_the_nearest_multiples():
    rng = np.random.default_rng(2)
    for s in rng.integers(17, 1000, 40):
        s = int(s)
        if s % 16 == 0:
            continue
        below, above = s // 16 * 16, -(-s // 16) * 16
        with pytest.raises(ValueError, match=f"{below} or {above}"):
            geometry.check_input_size(s, 4, "same")
        assert geometry.nearest_valid_sizes(s, 4, "same") == (below, above)
    with pytest.raises(ValueError, match=r"\b16 \(none smaller"):
        geometry.check_input_size(5, 4, "same")
    geometry.check_input_size((256, 512), 4, "same")  # fits: no error
    geometry.check_input_size(np.int64(256), 4, "same")
    geometry.check_input_size((None, 64), 4, "same")  # a free side is not checked
    with pytest.raises(TypeError, match="integers"):
        geometry.check_input_size("256", 4, "same")
    with pytest.raises(ValueError, match="positive"):
        geometry.check_input_size(0, 4, "same")
    with pytest.raises(ValueError, match="250"):
        geometry.check_input_size((256, 250), 4, "same")


def test_valid_size_errors_name_the_nearest_tiling_sizes():
    sizes = geometry.valid_input_sizes(4, "valid", max_size=800)
    for s in range(190, 790, 37):
        if s in sizes:
            continue
        below = max(v for v in sizes if v < s)
        above = min(v for v in sizes if v > s)
        with pytest.raises(ValueError, match=f"{below} or {above}"):
            geometry.check_input_size(s, 4, "valid")


def test_builders_raise_before_building():
    with pytest.raises(ValueError, match="240 or 256"):
        M.build_unet((250, 256, 3))
    with pytest.raises(ValueError, match="556 or 572"):
        M.paper_unet((570, 570, 1))
    with pytest.raises(ValueError, match="padding"):
        M.build_unet(padding="reflect")
    with pytest.raises(ValueError, match="upsampling"):
        M.build_unet(upsampling="nearest")
    with pytest.raises(ValueError, match="dropout"):
        M.build_unet(dropout=(0.1, 0.2))
    with pytest.raises(ValueError, match="input_shape"):
        M.build_unet((256, 256))


def test_unchecked_none_model_really_fails_where_the_check_says():
    m = M.build_unet((None, None, 1), base_filters=2, depth=2)
    with pytest.raises(Exception):  # noqa: B017 - the raw backend error the check replaces
        m.predict(np.zeros((1, 30, 30, 1), "float32"), verbose=0)
    for s in geometry.nearest_valid_sizes(30, 2, "same"):
        assert m.predict(np.zeros((1, s, s, 1), "float32"), verbose=0).shape == (1, s, s, 1)


# ---------------------------------------------------------------- behaviour
def test_fully_convolutional_same_weights_on_three_sizes():
    keras.utils.set_random_seed(3)
    free = M.build_unet((None, None, 3), base_filters=4)
    x = np.random.default_rng(3).random((1, 512, 512, 3), "float32")
    for s in (128, 256, 512):
        fixed = M.build_unet((s, s, 3), base_filters=4)
        fixed.set_weights(free.get_weights())
        y = free.predict(x[:, :s, :s], verbose=0)
        assert y.shape == (1, s, s, 1)
        np.testing.assert_allclose(y, fixed.predict(x[:, :s, :s], verbose=0), atol=1e-5)


def test_heads_sigmoid_and_softmax():
    x = np.random.default_rng(4).random((2, 32, 32, 3), "float32")
    y1 = M.build_unet((32, 32, 3), 1, 4, depth=2).predict(x, verbose=0)
    assert y1.shape == (2, 32, 32, 1) and 0 < y1.min() and y1.max() < 1
    y3 = M.build_unet((32, 32, 3), 3, 4, depth=2).predict(x, verbose=0)
    assert y3.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(y3.sum(-1), 1.0, atol=1e-5)


def test_keras_round_trip_in_safe_mode(seed, tmp_path):
    path = tmp_path / "seed.keras"
    seed.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(5).integers(0, 256, (2, 256, 256, 3)).astype("uint8")
    np.testing.assert_array_equal(seed.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert loaded.count_params() == 1_941_105


def test_lambda_layer_does_not_load_in_safe_mode(tmp_path):
    inputs = keras.Input((8, 8, 3))
    lam = keras.Model(inputs, keras.layers.Lambda(lambda t: t / 255)(inputs))
    lam.save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="(?i)lambda"):
        keras.saving.load_model(tmp_path / "lambda.keras", safe_mode=True)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_build_unet_on_other_backends(backend, tmp_path):
    """Build on the other backend, and reload TensorFlow-built models there: same numbers."""
    pytest.importorskip(backend)
    keras.utils.set_random_seed(9)
    models = {
        "bn": M.build_unet((None, None, 3), 3, base_filters=4, depth=2, batch_norm=True),
        "valid": M.build_unet(
            (None, None, 1), 1, 2, depth=2, padding="valid", upsampling="bilinear"
        ),
    }
    rng = np.random.default_rng(9)
    inputs = {
        "bn": rng.random((2, 32, 32, 3), "float32"),
        "valid": rng.random((1, 60, 60, 1), "float32"),
    }
    for key, m in models.items():
        m.save(tmp_path / f"{key}.keras")
        np.save(tmp_path / f"{key}_x.npy", inputs[key])
        np.save(
            tmp_path / f"{key}_y.npy", keras.ops.convert_to_numpy(m(inputs[key], training=False))
        )
    code = textwrap.dedent(
        """
        import sys, numpy as np, keras
        from unet_course import model as M
        assert keras.backend.backend() == "{b}"
        d = sys.argv[1]
        m = M.build_unet((None, None, 3), 3, base_filters=4, depth=2, batch_norm=True)
        y = keras.ops.convert_to_numpy(m(np.ones((1, 32, 32, 3), "float32"), training=False))
        assert y.shape == (1, 32, 32, 3) and np.allclose(y.sum(-1), 1, atol=1e-5)
        for key in ("bn", "valid"):
            loaded = keras.saving.load_model(f"{{d}}/{{key}}.keras")
            x, y = np.load(f"{{d}}/{{key}}_x.npy"), np.load(f"{{d}}/{{key}}_y.npy")
            out = keras.ops.convert_to_numpy(loaded(x, training=False))
            assert out.shape == y.shape, (key, out.shape, y.shape)
            np.testing.assert_allclose(out, y, atol=1e-5)
        print("ok")
        """
    ).format(b=backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
    assert np.load(tmp_path / "valid_y.npy").shape == (1, 20, 20, 1)


# ---------------------------------------------------------------- tracing and receptive fields
def test_trace_shapes_table_and_params_per_level(seed, paper):
    rows = M.trace_shapes(seed)
    assert len(rows) == len(seed.layers) and sum(r["params"] for r in rows) == 1_941_105
    by_name = {r["layer"]: r for r in rows}
    assert by_name["c5"]["output_shape"] == (16, 16, 256) and by_name["c5"]["level"] == 5
    assert by_name["u6"]["params"] == conv_params(2, 256, 128) and by_name["u6"]["level"] == 6
    assert by_name["outputs"]["level"] is None and by_name["outputs"]["params"] == 17
    for model, base, c_in in ((seed, 16, 3), (paper, 64, 1)):
        levels = M.params_per_level(model)
        assert sum(levels.values()) == model.count_params()
        assert levels["level 1"] == conv_params(3, c_in, base) + conv_params(3, base, base)
        assert levels["level 5"] == max(levels.values())  # the bottleneck holds the most
        f = base * 8  # level 6: up-conv, then two convolutions on the concatenation
        assert levels["level 6"] == conv_params(2, 2 * f, f) + conv_params(
            3, 2 * f, f
        ) + conv_params(3, f, f)


def test_unet_blocks_describe_the_u(paper):
    blocks = M.unet_blocks(paper)
    assert [b["name"] for b in blocks] == ["input"] + [f"c{i}" for i in range(1, 10)] + ["outputs"]
    assert [b["rung"] for b in blocks] == [0, 0, 1, 2, 3, 4, 3, 2, 1, 0, 0]
    assert blocks[5]["side"] == "bottom" and blocks[5]["shape"] == (28, 28, 1024)
    assert blocks[-1]["shape"] == (388, 388, 2)
    with pytest.raises(ValueError, match="c1"):
        M.unet_blocks(popular_keras_unet())


def test_receptive_field_textbook_formula(seed, paper):
    # by hand: each 3x3 conv adds 2 * jump, each pooling adds jump and doubles it
    down = sum(4 * 2**k for k in range(5)) + sum(2**k for k in range(4))
    assert receptive_field.receptive_field(seed, "c5") == 1 + down == 140
    assert receptive_field.receptive_field(seed) == 1 + down + sum(4 * 2**k for k in range(4)) == 200
    assert receptive_field.receptive_field(paper) == 200 and receptive_field.receptive_field(seed, "c1") == 5
    with pytest.raises(ValueError, match="nope"):
        receptive_field.receptive_field(seed, "nope")


def test_exact_spans_of_the_bottleneck_are_uniform(seed):
    spans = receptive_field.receptive_field_spans(seed, "c5")
    widths = spans[:, 1] - spans[:, 0] + 1
    inside = (spans[:, 0] > 0) & (spans[:, 1] < 255)
    assert set(widths[inside]) == {140}
    np.testing.assert_array_equal(np.diff(spans[inside, 0]), 16)  # one step per 16 pixels


@pytest.mark.parametrize(
    "padding,upsampling,size", [("same", "transpose", 64), ("valid", "transpose", 92),
                                ("same", "bilinear", 48)]
)  # fmt: skip
def test_exact_spans_match_the_gradient_support(padding, upsampling, size):
    """The span of each output pixel equals the bounding box of its nonzero input gradient."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient reference written with tf.GradientTape")
    import tensorflow as tf

    keras.utils.set_random_seed(7)
    m = M.build_unet((size, size, 1), base_filters=2, depth=3, padding=padding,
                     upsampling=upsampling)  # fmt: skip
    spans = receptive_field.receptive_field_spans(m)
    x = tf.Variable(np.random.default_rng(7).random((8, size, size, 1), "float32"))
    h = m.output_shape[1]
    for r, c in np.random.default_rng(8).integers(0, h, (4, 2)):
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(m(x, training=False)[:, r, c, 0])
        support = np.abs(tape.gradient(y, x).numpy()).max(axis=(0, 3)) > 0
        rows, cols = np.where(support.any(1))[0], np.where(support.any(0))[0]
        assert (rows.min(), rows.max()) == tuple(spans[r])
        assert (cols.min(), cols.max()) == tuple(spans[c])


def test_exact_spans_vary_around_the_textbook_value():
    m = M.build_unet((380, 380, 1), base_filters=2, padding="valid")
    widths = np.diff(receptive_field.receptive_field_spans(m), axis=1)[:, 0] + 1
    assert set(widths) == {188, 204} and abs(widths.mean() - receptive_field.receptive_field(m)) < 1


def test_draw_unet_draws_the_model(paper):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from unet_course.lessons import plotting

    ax = plotting.draw_unet(paper)
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(boxes) == 11  # input, c1..c9, output
    heights = sorted(b.get_height() for b in boxes)
    assert heights[-1] == pytest.approx(1.2) and heights[0] == pytest.approx(1.2 * 28 / 572)
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "28 x 28 x 1024" in texts and "388 x 388 x 2" in texts
    assert sum(bool(t.get_text()) for t in ax.texts) == 11  # one label per box
    assert len(ax.texts) == 11 + 14  # and 14 arrows: in, 4 pools, 4 up, 4 skips, head
    assert "31,030,658" in ax.get_title()
    assert "crop and copy" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    plt.close(ax.figure)
