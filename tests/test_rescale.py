"""Tests for size normalisation (``rescale``): hand-counted areas and scales, and the rescaled
prediction against the same steps written out with scikit-image and a direct model call."""

from __future__ import annotations

import numpy as np
import pytest

from unet_course import predict, rescale


def squares(shape, sides, step=20):
    labels = np.zeros(shape, dtype=np.int32)
    for k, side in enumerate(sides):
        labels[2:2 + side, 2 + k * step:2 + k * step + side] = k + 1
    return labels


def test_median_area_is_counted_over_all_maps():
    one = squares((30, 80), [2, 3, 4])  # areas 4, 9, 16
    assert rescale.median_area(one) == 9
    assert rescale.median_area([one, squares((30, 80), [5, 6])]) == 16  # 4, 9, 16, 25, 36
    assert np.isnan(rescale.median_area(np.zeros((5, 5), np.int32)))


def test_choose_scale_matches_the_median_to_the_target():
    big = squares((60, 90), [20, 20, 20])  # 400 pixels each
    assert rescale.choose_scale(big, 100) == pytest.approx(0.5)
    assert rescale.choose_scale(big, 225) == pytest.approx(0.75)
    assert rescale.choose_scale(big, 400) == pytest.approx(1.0)
    assert rescale.choose_scale(big, 25) == pytest.approx(0.5)  # 0.25, clipped to the limit
    assert rescale.choose_scale(squares((20, 40), [3]), 400) == pytest.approx(2.0)  # clipped
    assert rescale.choose_scale(np.zeros((8, 8), np.int32), 100) == 1.0  # nothing found
    with pytest.raises(ValueError, match="target_area"):
        rescale.choose_scale(big, 0)
    with pytest.raises(ValueError, match="limits"):
        rescale.choose_scale(big, 100, limits=(1.5, 2.0))


def test_choose_scale_around_another_rung_clips_to_its_limits():
    big = squares((60, 90), [20, 20, 20])  # 400 pixels each, found at a rung of 0.5
    assert rescale.choose_scale(big, 100, around=0.5) == pytest.approx(0.5)
    assert rescale.choose_scale(big, 25, around=0.5) == pytest.approx(0.25)  # 0.5 * 0.5
    assert rescale.choose_scale(big, 4, around=0.5) == pytest.approx(0.25)  # 0.1, clipped
    assert rescale.choose_scale(big, 6400, around=0.5) == pytest.approx(1.0)  # 4, clipped
    assert rescale.choose_scale(np.zeros((8, 8), np.int32), 100, around=0.5) == 0.5


def test_confidence_is_the_mean_top_probability_over_nucleus_pixels():
    probs = np.zeros((10, 10, 3), np.float32)
    probs[..., 0] = 1.0  # background, left out
    probs[:3, :] = (0.2, 0.8, 0.0)  # 30 nucleus pixels, 0.8 sure
    probs[3, :5] = (0.1, 0.3, 0.6)  # 5 boundary pixels, 0.6 sure
    assert predict.confidence(probs) == pytest.approx((30 * 0.8 + 5 * 0.6) / 35)
    probs[:3, :] = (0.6, 0.4, 0.0)  # now background: 5 nucleus pixels are too few
    assert predict.confidence(probs) is None


def test_confidence_of_a_one_channel_map_is_its_mean_nucleus_probability():
    nucleus = np.zeros((10, 10, 1), np.float32)  # targets="binary": channel 0 is the nucleus
    nucleus[:3, :, 0] = 0.9
    nucleus[3, :, 0] = 0.6
    nucleus[4, :, 0] = 0.4  # under 0.5: not nucleus, left out
    assert predict.confidence(nucleus) == pytest.approx((30 * 0.9 + 10 * 0.6) / 40)
    unsure = np.full((10, 10, 1), 0.55, np.float32)
    assert predict.confidence(unsure) == pytest.approx(0.55)  # less sure than the map above


def _fragmenting_network(model, images, batch_size=8):
    """A stand-in for ``predict.predict_classes`` that behaves like a network shown nuclei
    twice too large: one square nucleus a quarter of the image wide, found whole and sure
    (0.95) when the image is at most 80 pixels wide, else cut into 4x4 pieces, unsure (0.7)."""
    out = []
    for image in images:
        n = image.shape[0]
        probs = np.zeros((n, n, 3), np.float32)
        probs[..., 0] = 1.0
        side, sure = n // 4, n <= 80
        pieces = 1 if sure else 4
        step, low = side // pieces, (n - side) // 2
        for i in range(pieces):
            for j in range(pieces):
                r, c = low + i * step, low + j * step
                probs[r + 1:r + step - 1, c + 1:c + step - 1] = ((0.05, 0.95, 0) if sure
                                                                 else (0.3, 0.7, 0))
        out.append(probs)
    return out


def test_the_ladder_finds_nuclei_too_large_for_the_first_pass(monkeypatch):
    monkeypatch.setattr(rescale, "predict_classes", _fragmenting_network)
    image = np.zeros((128, 128, 3), np.uint8)
    settings = {"threshold": 0.5, "seed_threshold": 0.5, "min_size": 0}
    # the nucleus: 30x30 = 900 pixels inside its 32-pixel square; the training ones: 225
    _, scales = rescale.predict_size_normalised(None, [image], settings, 225, ladder=(1.0,))
    assert scales == [pytest.approx(2.0)]  # one estimate: 36-pixel pieces say "enlarge"
    probs, scales = rescale.predict_size_normalised(None, [image], settings, 225)
    assert rescale.most_confident_rungs(None, [image])[0] == [0.5]
    # the ladder: 0.71 (91 pixels) is cut into pieces, 0.5 (64) is sure and whole; 0.35 would
    # make the image narrower than LADDER_MIN_SIDE. At 0.5 the nucleus measures about 28x28
    # pixels at the image's size: sqrt(225 / 784) = 0.54, within 10 % of 0.5, so that rung
    # is kept
    assert scales == [0.5]
    np.testing.assert_allclose(probs[0], rescale.predict_at_scale(None, image, 0.5), atol=1e-6)


@pytest.fixture(scope="module")
def tiny():
    from unet_course.model import build_unet

    return build_unet((None, None, 3), num_classes=3, base_filters=4, depth=2)


def test_predict_at_scale_is_resize_predict_resize(tiny):
    from skimage.transform import resize

    # colour specks on a black field (not a stained slide, whose grey is negated first)
    rng = np.random.default_rng(0)
    image = (rng.integers(0, 255, (64, 48, 3)) * (rng.random((64, 48, 1)) < 0.1)).astype(np.uint8)
    got = rescale.predict_at_scale(tiny, image, 0.5)
    small = resize(image.astype(np.float32), (32, 24), order=1, anti_aliasing=True,
                   preserve_range=True)
    direct = np.asarray(tiny(small[None], training=False))[0]
    expected = resize(direct, (64, 48), order=1, preserve_range=True)
    assert got.shape == (64, 48, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, atol=1e-5)


def test_size_normalised_keeps_the_first_pass_when_the_size_is_right(tiny):
    labels = squares((64, 64), [20, 20], step=25)  # two nuclei of 400 pixels, apart
    first = np.stack([labels == 0, labels > 0, np.zeros_like(labels, bool)], -1).astype(np.float32)
    image = np.zeros((64, 64, 3), np.uint8)
    settings = {"threshold": 0.5, "seed_threshold": 0.5, "min_size": 0}
    probs, scales = rescale.predict_size_normalised(tiny, [image], settings, 400, first=[first])
    assert scales == [1.0] and probs[0] is first
    probs, scales = rescale.predict_size_normalised(tiny, [image], settings, 100, first=[first])
    assert scales == [pytest.approx(0.5)] and probs[0].shape == (64, 64, 3)
    np.testing.assert_allclose(probs[0], rescale.predict_at_scale(tiny, image, 0.5), atol=1e-6)


NATIVE = {"threshold": 0.5, "seed_threshold": 0.5, "seed_contrast": 0.0, "smooth": 2.0,
          "min_size": 0}
SIZED = {**NATIVE, "threshold": 0.3}


def test_pipeline_follows_the_record_and_the_users_scale():
    record = {"scale": "auto", "postprocessing": SIZED, "postprocessing_native": NATIVE,
              "train_median_area": 100.0}
    plan = rescale.pipeline(record)  # the training run's choice
    assert plan == rescale.Plan(scale="auto", first=NATIVE, settings=SIZED, target_area=100.0)
    for scale in (1, 0.5):  # another way: the settings tuned for one pass at the image's size
        assert rescale.pipeline(record, scale).settings == NATIVE
    old = {"postprocessing": NATIVE, "train_median_area": 100.0}  # a record from before
    assert rescale.pipeline(old).scale == 1.0 and rescale.pipeline(old).settings == NATIVE
    assert rescale.pipeline(old, "auto").settings == NATIVE  # nothing tuned for it: native
    assert rescale.pipeline(None).scale == 1.0
    with pytest.raises(ValueError, match="no train_median_area"):
        rescale.pipeline({"postprocessing": NATIVE}, "auto")


def test_predict_pipeline_is_each_way_written_out(tiny):
    from unet_course.recipe import predict_classes

    image = np.random.default_rng(1).integers(0, 255, (48, 64, 3)).astype(np.uint8)
    record = {"scale": "auto", "postprocessing": SIZED, "postprocessing_native": NATIVE,
              "train_median_area": 30.0}
    first = predict_classes(tiny, [image])
    auto, factors = rescale.predict_pipeline(tiny, [image], rescale.pipeline(record))
    expected, scales = rescale.predict_size_normalised(tiny, [image], NATIVE, 30.0, first=first)
    np.testing.assert_allclose(auto[0], expected[0], atol=1e-6)
    assert factors == scales
    same, _ = rescale.predict_pipeline(tiny, [image], rescale.pipeline(record, 1))
    np.testing.assert_allclose(same[0], first[0], atol=1e-6)
    half, halves = rescale.predict_pipeline(tiny, [image], rescale.pipeline(record, 0.5))
    np.testing.assert_allclose(half[0], rescale.predict_at_scale(tiny, image, 0.5), atol=1e-6)
    assert halves == [0.5]


def test_predict_at_scale_keeps_the_shape_of_nuclei_and_refuses_huge_enlargements(tiny):
    thin = (np.random.default_rng(2).random((16, 400, 3)) ** 3 * 255).astype(np.uint8)
    # 0.5 would make the 16-pixel side 8: the one factor is raised to keep it at 16 (here 1)
    np.testing.assert_allclose(rescale.predict_at_scale(tiny, thin, 0.5),
                               rescale.predict_at_scale(tiny, thin, 1.0), atol=1e-6)
    with pytest.raises(ValueError, match="megapixels"):
        rescale.predict_at_scale(tiny, np.zeros((600, 600, 3), np.uint8), 10)


def test_pipeline_refuses_another_scale_for_the_older_models():
    for model in ("seed", "unet"):
        with pytest.raises(ValueError, match="only the recipe's models"):
            rescale.pipeline({"model": model}, 0.5)
        assert rescale.pipeline({"model": model}, 1).scale == 1  # as it is: fine
