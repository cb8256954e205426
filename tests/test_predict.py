"""Tests for unet_course.predict that the tiling tests of test_instances and the native-size
tests of test_train do not cover: batching (issue 12, bugs 5 and 6) and the default overlap
derived from the receptive field (bug 7)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from unet_course import predict
from unet_course.model import build_unet, seed_unet
from unet_course.receptive_field import receptive_field


@pytest.fixture(scope="module")
def same():
    keras.utils.set_random_seed(0)
    return build_unet((None, None, 3), num_classes=1, base_filters=4, depth=2, padding="same")


def _count_calls(monkeypatch, model) -> list[int]:
    """Record the batch size of every ``predict_on_batch`` call of ``model``."""
    sizes: list[int] = []
    real = model.predict_on_batch

    def spy(x):
        sizes.append(len(x))
        return real(x)

    monkeypatch.setattr(model, "predict_on_batch", spy)
    return sizes


def test_predict_tiled_runs_batches_of_tiles_through_predict_on_batch(same, monkeypatch):
    image = np.random.default_rng(0).random((100, 90, 3)).astype(np.float32)
    expected = predict.predict_tiled(same, image, tile=64, overlap=24)
    sizes = _count_calls(monkeypatch, same)
    got = predict.predict_tiled(same, image, tile=64, overlap=24, batch_size=4)
    plan = predict.tile_plan(same, 64, 24)
    tiles = -(-100 // plan["core"]) * -(-90 // plan["core"])  # 7 x 6 tiles of 16 kept pixels
    assert sizes == [4] * (tiles // 4) + ([tiles % 4] if tiles % 4 else [])
    np.testing.assert_array_equal(got, expected)


def test_predict_native_batches_same_size_images(same, monkeypatch):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (32, 24, 3)).astype(np.uint8) for _ in range(5)]
    images.insert(2, rng.integers(0, 256, (30, 21, 3)).astype(np.uint8))  # another size
    one_by_one = predict.predict_native(same, images, batch_size=1)
    sizes = _count_calls(monkeypatch, same)
    batched = predict.predict_native(same, images, batch_size=4)
    assert sorted(sizes) == [2, 4]  # 32x24 and 30x21 both pad to the 32x32 bucket: 6 in 2 calls
    assert [p.shape for p in batched] == [im.shape[:2] for im in images]  # order kept
    for a, b in zip(batched, one_by_one, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_predict_native_checks_every_image_and_the_batch_size_first(same, monkeypatch):
    sizes = _count_calls(monkeypatch, same)
    good = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="expected images"):
        predict.predict_native(same, [good, np.zeros((16, 16), np.uint8)])
    with pytest.raises(ValueError, match="batch_size"):
        predict.predict_native(same, [good], batch_size=0)
    assert sizes == []  # nothing was predicted before the error


def test_default_overlap_is_half_the_receptive_field_on_the_pooling_grid(same):
    field = receptive_field(same)
    plan = predict.tile_plan(same, 64)
    assert plan["overlap"] % 4 == 0 and plan["overlap"] >= (field - 1) / 2
    assert plan["overlap"] - 4 < (field - 1) / 2  # the smallest such multiple of 2**depth
    seed = seed_unet()
    assert receptive_field(seed) == 200
    assert predict.tile_plan(seed)["overlap"] == 112  # 99.5 rounded up to a multiple of 16


def test_default_overlap_makes_tiles_agree_with_the_whole_image(same):
    image = np.random.default_rng(2).random((150, 133, 3)).astype(np.float32)
    whole = np.asarray(same(np.pad(image, ((0, 2), (0, 3), (0, 0)))[None]))[0, :150, :133]
    tiled = predict.predict_tiled(same, image, tile=64)  # tile // 8 = 8 would be too little
    r = predict.tile_plan(same, 64)["overlap"]  # beyond r the whole-image pass sees padding
    np.testing.assert_allclose(tiled[r:-r, r:-r], whole[r:-r, r:-r], atol=1e-5)


def test_default_overlap_leaves_a_grid_cell_when_the_tile_is_small_for_the_field():
    keras.utils.set_random_seed(3)
    fixed = build_unet((32, 32, 3), num_classes=1, base_filters=2, depth=2)
    plan = predict.tile_plan(fixed)  # half the field (22 -> 24) would leave nothing of 32
    assert plan["overlap"] == 12 and plan["core"] == 8


@pytest.mark.parametrize("step", [1, 4, 16])
def test_size_buckets_cover_each_side_with_little_padding_and_few_lengths(step):
    for side in range(1, 3000):
        padded = predict.bucket(side, step)
        assert padded >= side and padded % step == 0
        assert padded - side < max(step, side / 4), side
    for k in range(6, 12):  # sides in (2**k, 2**(k + 1)]: at most four lengths
        assert len({predict.bucket(s, step) for s in range(2**k + 1, 2**(k + 1) + 1)}) <= 4
