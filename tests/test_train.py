"""Tests for unet_course.train and unet_course.datasets: device policy, native-size prediction,
pixel scores against scikit-learn, seeded splits, and the recipe's run reproducible on CPU."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score

from unet_course import datasets, evaluate, geometry, model, predict, scoring, train


def tiny_unet(input_shape=(None, None, 3), padding="same", depth=2, name="tiny"):
    return model.build_unet(input_shape, base_filters=4, depth=depth, padding=padding,
                            rescale=1 / 255, name=name)


# --------------------------------------------------------------------------- device policy


def test_cpu_policy_is_float32_and_xla_follows_the_backend():
    accel = train.choose_accelerator()
    assert accel.gpus == ()  # the test machine has no GPU
    assert accel.precision == "float32"
    assert accel.jit_compile == (keras.backend.backend() == "jax")
    assert "CPU" in accel.describe() and "float32" in accel.describe()


def test_explicit_policy_and_bad_values():
    accel = train.choose_accelerator("mixed_bfloat16", xla=True)
    assert (accel.precision, accel.jit_compile) == ("mixed_bfloat16", True)
    with pytest.raises(ValueError, match="precision"):
        train.choose_accelerator("float8")
    with pytest.raises(ValueError, match="xla"):
        train.choose_accelerator(xla="yes")


def test_dtype_policy_is_restored_even_after_an_error():
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError), train.dtype_policy("mixed_float16"):
        assert keras.config.dtype_policy().name == "mixed_float16"
        raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == before


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_build_model_under_mixed_precision_has_a_float32_head(precision):
    keras.utils.set_random_seed(0)
    reference = tiny_unet()  # float32, same seed: same initial weights
    accel = train.Accelerator("tensorflow", (), precision, False)
    keras.utils.set_random_seed(0)
    net = train.build_model(lambda: tiny_unet(), accel)
    assert keras.config.dtype_policy().name == "float32"  # global policy restored
    convs = [la for la in net.layers if isinstance(la, keras.layers.Conv2D)]
    assert convs[0].compute_dtype == precision.removeprefix("mixed_")  # body in 16 bit
    assert net.layers[-1].name == "outputs" and net.layers[-1].compute_dtype == "float32"
    assert str(net.outputs[0].dtype) == "float32"
    assert net.count_params() == reference.count_params()
    for got, want in zip(net.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)  # the builder's weights are kept
    out = net.predict_on_batch(np.zeros((1, 16, 16, 3), np.float32))
    assert out.dtype == np.float32


def test_build_model_rejects_a_builder_that_returns_no_model():
    with pytest.raises(TypeError, match="keras.Model"):
        train.build_model(lambda: "model", train.choose_accelerator())


# --------------------------------------------------------------------------- native-size prediction


def test_model_geometry_reads_depth_and_padding():
    assert geometry.unet_geometry(tiny_unet(depth=3)) == (3, "same")
    assert geometry.unet_geometry(tiny_unet(padding="valid", depth=1)) == (1, "valid")


def test_predict_native_pads_and_crops_back_without_resizing():
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    net = tiny_unet()
    fits = rng.integers(0, 256, (32, 24, 3)).astype(np.uint8)  # divisible by 2**2: no padding
    odd = rng.integers(0, 256, (30, 21, 3)).astype(np.uint8)  # padded to 32 x 24
    probs = predict.predict_native(net, [fits, odd])
    assert [p.shape for p in probs] == [(32, 24), (30, 21)]
    direct = net.predict_on_batch(fits[None].astype(np.float32))[0, ..., 0]
    np.testing.assert_allclose(probs[0], direct, atol=1e-6)
    padded = np.pad(odd, [(0, 2), (0, 3), (0, 0)], mode="reflect").astype(np.float32)
    expected = net.predict_on_batch(padded[None])[0, :30, :21, 0]
    np.testing.assert_allclose(probs[1], expected, atol=1e-6)


def test_predict_native_valid_padding_output_covers_the_image():
    rng = np.random.default_rng(1)
    net = tiny_unet(padding="valid", depth=1)  # loses 8 pixels a side
    image = rng.integers(0, 256, (20, 25, 3)).astype(np.uint8)
    (prob,) = predict.predict_native(net, [image])
    assert prob.shape == (20, 25) and np.all((prob >= 0) & (prob <= 1))
    size_h, margin = predict._fit_size(20, 1, "valid")
    assert geometry.unet_output_size(size_h, 1, "valid") >= 20 and margin == 8


def test_predict_native_tiles_a_fixed_size_model_without_seams():

    rng = np.random.default_rng(2)
    keras.utils.set_random_seed(2)
    net = tiny_unet(input_shape=(32, 32, 3))
    twin = tiny_unet()  # the same network for any input size, given the same weights
    twin.set_weights(net.get_weights())
    image = rng.integers(0, 256, (64, 72, 3)).astype(np.uint8)
    (prob,) = predict.predict_native(net, [image])
    np.testing.assert_allclose(prob, predict.predict_tiled(net, image)[..., 0], atol=1e-6)
    whole = twin.predict_on_batch(image[None].astype(np.float32))[0, ..., 0]
    # Tiles that merely abut (no overlap) disagree with the whole-image pass at their edges;
    # overlap-tile drops those edges, so it is closer to the whole-image answer.
    abutting = np.block([
        [twin.predict_on_batch(image[None, y : y + 32, x : x + 32].astype(np.float32))[0, ..., 0]
         for x in (0, 32)]
        for y in (0, 32)
    ])
    inner = (slice(8, 56), slice(8, 56))
    assert np.abs(prob - whole)[inner].max() < np.abs(abutting - whole[:, :64])[inner].max()


def test_predict_native_rejects_wrong_channels():
    with pytest.raises(ValueError, match="expected images"):
        predict.predict_native(tiny_unet(), [np.zeros((16, 16), np.uint8)])


# --------------------------------------------------------------------------- scores


@pytest.mark.parametrize("seed", range(4))
def test_pixel_scores_match_sklearn_over_images_of_mixed_sizes(seed):
    rng = np.random.default_rng(seed)
    shapes = [(10, 13), (7, 7), (16, 5)]
    masks = [rng.random(s) < rng.uniform(0.05, 0.6) for s in shapes]
    probs = [rng.random(s).astype(np.float32) for s in shapes]
    threshold = float(rng.uniform(0.2, 0.8))
    got = scoring.pixel_scores(masks, probs, threshold)
    truth = np.concatenate([m.ravel() for m in masks])
    pred = np.concatenate([p.ravel() >= threshold for p in probs])
    assert got["dice"] == pytest.approx(f1_score(truth, pred))
    assert got["iou"] == pytest.approx(jaccard_score(truth, pred))
    assert got["iou"] == pytest.approx(got["dice"] / (2 - got["dice"]))


def test_pixel_scores_empty_and_mismatched():
    empty = [np.zeros((4, 4))]
    assert scoring.pixel_scores(empty, [np.zeros((4, 4))])["dice"] == 1.0
    assert scoring.pixel_scores(empty, [np.ones((4, 4))])["iou"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        scoring.pixel_scores(empty, [np.zeros((4, 5))])
    with pytest.raises(ValueError, match="masks"):
        scoring.pixel_scores(empty, [])


def test_choose_threshold_matches_a_brute_force_sklearn_search():
    rng = np.random.default_rng(5)
    truth = rng.random((2, 20, 20)) < 0.3
    probs = np.clip(truth * 0.35 + rng.random(truth.shape) * 0.6, 0, 1)  # best cut near 0.4-0.6
    best, dice = evaluate.choose_threshold(list(truth), list(probs))
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    brute = [f1_score(truth.ravel(), probs.ravel() >= t) for t in grid]
    np.testing.assert_allclose(dice, brute)
    assert f1_score(truth.ravel(), probs.ravel() >= best) == pytest.approx(max(brute))
    with pytest.raises(ValueError, match="thresholds"):
        evaluate.choose_threshold(list(truth), list(probs), thresholds=[0.0, 0.5])


# --------------------------------------------------------------------------- datasets


def test_synthetic_splits_are_seeded_sized_and_disjoint():
    a = datasets.load_splits("synthetic", 32, quick=True, seed=3)
    b = datasets.load_splits("synthetic", 32, quick=True, seed=3)
    assert [len(a.train), len(a.val), len(a.test)] == list(datasets.QUICK_COUNTS.values())
    assert a.train.images.shape == (24, 32, 32, 3) and a.train.images.dtype == np.uint8
    np.testing.assert_array_equal(a.test.labels, b.test.labels)
    assert not np.array_equal(a.train.images[0], a.test.images[0])
    np.testing.assert_array_equal(a.val.masks, (a.val.labels > 0).astype(np.uint8))
    c = datasets.load_splits("synthetic", 32, quick=True, seed=4)
    assert not np.array_equal(a.train.images, c.train.images)


def test_load_splits_sizes_and_bad_input():
    s = datasets.load_splits("synthetic", quick=True, counts={"train": 3})
    assert (len(s.train), s.train.images.shape[1]) == (3, datasets.QUICK_IMG_SIZE)
    with pytest.raises(FileNotFoundError, match="nope"):
        datasets.load_splits("/nope")
    with pytest.raises(ValueError, match="img_size"):
        datasets.load_splits("synthetic", 20)
    with pytest.raises(ValueError, match="counts"):
        datasets.load_splits("synthetic", counts={"tests": 2})


# --------------------------------------------------------------------------- training


def _tiny_run(tmp_path, name: str, precision: str = "float32", seed: int = 7,
              disturb: int | None = None):
    """Two steps of the recipe's run with a tiny U-Net on 32x32 synthetic nuclei, after
    ``disturb`` scrambles the global random state; returns (model, history, splits)."""
    from unet_course import recipe

    chosen = recipe.Recipe(img_size=32, batch_size=4, base_filters=4, depth=2, steps=2,
                           check_every=1, warmup_steps=0, seed=seed, model="unet",
                           targets="binary", dropout=0.2)
    if disturb is not None:
        keras.utils.set_random_seed(disturb)
    splits = datasets.load_splits("synthetic", 32, quick=True, seed=1,
                                  counts={"train": 8, "val": 4, "test": 1})
    accel = train.Accelerator(keras.backend.backend(), (), precision, False)
    net = train.build_model(lambda: recipe.build_model(chosen), accel, seed=chosen.seed)
    recipe.compile_model(net, chosen, jit_compile=False)
    history = recipe.train_recipe(net, splits, chosen, tmp_path / name, verbose=0)
    return net, history.history, splits


def test_training_is_reproducible_on_cpu_for_a_fixed_seed(tmp_path):
    """Same seed, same data order and augmentation, same initial weights: the logged values
    agree to 1e-5 (float32 on CPU; oneDNN may reorder sums, hence not exact equality)."""
    _, first, _ = _tiny_run(tmp_path, "a")
    _, second, _ = _tiny_run(tmp_path, "b")
    assert set(first) >= {"loss", "val_score", "val_dice", "val_iou"}
    for key in first:
        np.testing.assert_allclose(first[key], second[key], rtol=1e-5, atol=1e-5, err_msg=key)


def test_the_run_writes_a_checkpoint_that_reloads_in_safe_mode(tmp_path):
    net, logs, splits = _tiny_run(tmp_path, "run", precision="mixed_bfloat16")
    path = tmp_path / "run" / "model.keras"
    assert path.is_file() and (tmp_path / "run" / "history.csv").is_file()
    loaded = keras.saving.load_model(path, safe_mode=True)  # no custom_objects
    assert loaded.layers[-1].dtype_policy.compute_dtype == "float32"
    assert loaded.layers[1].dtype_policy.name == "mixed_bfloat16"  # the policy is saved too
    batch = splits.val.images[:2].astype(np.float32)
    np.testing.assert_allclose(loaded.predict_on_batch(batch), net.predict_on_batch(batch),
                               atol=1e-6)


def make_dsb_folder(root, sizes=((40, 48), (36, 52), (64, 64), (48, 40), (50, 50), (33, 47))):
    """A tiny folder in the DSB2018 layout: ROOT/<id>/images/<id>.png, ROOT/<id>/masks/*.png."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate(sizes):
        sample = f"{k:04x}" * 4
        (root / sample / "images").mkdir(parents=True)
        (root / sample / "masks").mkdir()
        image = rng.integers(0, 60, (h, w, 4), dtype=np.uint8)
        image[..., 3] = 255  # RGBA, as some DSB images are
        for j in range(1 + k % 3):
            mask = np.zeros((h, w), np.uint8)
            y, x = 4 + 10 * j, 4 + 9 * j
            mask[y : y + 8, x : x + 7] = 255
            image[mask > 0, :3] = 200
            Image.fromarray(mask).save(root / sample / "masks" / f"m{j}.png")
        Image.fromarray(image, "RGBA").save(root / sample / "images" / f"{sample}.png")
    return root


def test_dsb_splits_partition_the_folder_and_are_seeded(tmp_path):
    root = make_dsb_folder(tmp_path / "dsb")
    a = datasets.load_splits(root, seed=0)
    assert [len(a.train), len(a.val), len(a.test)] == [4, 1, 1]
    assert not a.train.same_size and all(im.shape[-1] == 3 for im in a.train.images)
    keys = [im.tobytes() for s in (a.train, a.val, a.test) for im in s.images]
    assert len(set(keys)) == 6  # every image exactly once
    again = datasets.load_splits(root, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(a.test.labels, again.test.labels, strict=True))
    other = datasets.load_splits(root, seed=5)
    assert [im.tobytes() for im in other.train.images] != [im.tobytes() for im in a.train.images]
    assert all(set(np.unique(m)) <= {0, 1} for m in a.train.masks)


def test_the_seed_makes_two_runs_give_the_same_weights_whatever_ran_before(tmp_path):
    """``Recipe.seed`` seeds the weights (``build_model(..., seed=)``) and the batches, so two
    runs agree whatever the global random state before them, and another seed differs."""
    first = _tiny_run(tmp_path, "a", seed=11, disturb=1)[0].get_weights()
    second = _tiny_run(tmp_path, "b", seed=11, disturb=2)[0].get_weights()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    other = _tiny_run(tmp_path, "c", seed=12, disturb=1)[0].get_weights()
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(first, other, strict=True))
