"""The default recipe: its targets, loss, prediction, post-processing and its choices on
validation data, each checked against an independent computation."""

from __future__ import annotations

import dataclasses
import itertools

import keras
import numpy as np
import pytest
from scipy import ndimage

from unet_course import postprocess, predict, recipe, scoring, sequence, targets
from unet_course.data import Difficulty, make_nuclei
from unet_course.losses import ClassesDiceLoss


def _soft(classes: np.ndarray) -> np.ndarray:
    """A plausible network output for a class map: one-hot, blurred a little, renormalised."""
    onehot = ndimage.gaussian_filter(np.eye(3, dtype=np.float32)[classes], (0.7, 0.7, 0))
    return onehot / onehot.sum(-1, keepdims=True)


def test_three_class_targets_of_a_hand_drawn_pair_of_touching_squares():
    labels = np.zeros((1, 16, 16), np.int32)
    labels[0, 2:7, 2:7], labels[0, 2:7, 7:12] = 1, 2  # two 5x5 squares sharing an edge
    image = np.zeros((1, 16, 16, 3), np.uint8)
    seq = sequence.ThreeClassSequence(image, labels, 1, augment=False, image_dtype="uint8")
    classes = seq[0][1][0].argmax(-1)
    expected = np.zeros((16, 16), int)
    expected[2:7, 2:12] = 2  # every pixel of a 5x5 square touches its outside ...
    expected[3:6, 3:6] = expected[3:6, 8:11] = 1  # ... except its 3x3 middle
    np.testing.assert_array_equal(classes, expected)


def test_augmented_batches_keep_each_class_count_under_flips_and_rotations():
    images, labels = make_nuclei(4, size=64, seed=1)
    plain = sequence.ThreeClassSequence(images, labels, 4, augment=False, shuffle=False,
                                      image_dtype="uint8")
    moved = sequence.ThreeClassSequence(images, labels, 4, augment=True, shuffle=False, seed=3,
                                      image_dtype="uint8",
                                      augment_options={"brightness": 0, "contrast": 0})
    (_, y0), (_, y1) = plain[0], moved[0]
    assert not np.array_equal(y0, y1)  # the geometry did change
    np.testing.assert_array_equal(y0.sum(axis=(1, 2)), y1.sum(axis=(1, 2)))


@pytest.mark.parametrize("seed", range(4))
def test_classes_of_the_whole_slide_moved_equal_the_classes_of_the_moved_slide(seed):
    # The fast path computes the classes once per slide and moves them with the image; with
    # gamma, each sample is moved first and its classes computed after. With batches of one and
    # no crop, both draw the same flip and rotation, so their targets must agree exactly.
    images, labels = make_nuclei(3, size=64, seed=seed)
    common = dict(size=64, augment=True, shuffle=False, seed=seed, image_dtype="uint8",
                  boundary_width=2, augment_options={"brightness": 0, "contrast": 0})
    fast = sequence.ThreeClassSequence(images, labels, 1, **common)
    slow = sequence.ThreeClassSequence(images, labels, 1, gamma=0.3, **common)
    assert fast._planes[0] is not None and slow._planes[0] is None  # two different paths
    for i in range(3):
        np.testing.assert_array_equal(fast[i][1], slow[i][1])


def test_classes_dice_loss_equals_a_hand_computation():
    rng = np.random.default_rng(0)
    t = np.eye(3, dtype=np.float32)[rng.integers(0, 3, (2, 5, 4))]
    p = rng.random((2, 5, 4, 3)).astype(np.float32)
    p /= p.sum(-1, keepdims=True)
    ce = -(t * np.log(p)).sum(-1).mean(axis=(1, 2))
    inter, total = (t * p).sum(axis=(1, 2)), t.sum(axis=(1, 2)) + p.sum(axis=(1, 2))
    dice = 1 - (2 * inter + 1) / (total + 1)
    expected = (ce + dice[:, 1:].mean(-1)).mean()
    got = float(keras.ops.convert_to_numpy(ClassesDiceLoss()(t, p)))
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("contrast", postprocess.POSTPROCESSING_GRID["seed_contrast"])
def test_elongated_nuclei_are_not_cut_by_the_interior_seeded_watershed(contrast):
    long = dataclasses.replace(Difficulty(), elongation=4.0, crowding=0.0, mitotic=0.0)
    _, labels = make_nuclei(8, size=128, seed=2, difficulty=long)
    elongated = 0
    for truth in labels:
        probs = _soft(targets.three_class_targets(truth))
        found = postprocess.label_instances(probs, 0.5, "watershed", min_size=5,
                                            seed_contrast=contrast, smooth=2.0)
        # Each true nucleus is mostly (> 20 %) covered by exactly one found object: not cut.
        for k in range(1, truth.max() + 1):
            covers = np.bincount(found[truth == k], minlength=found.max() + 1)[1:]
            assert np.sum(covers > 0.2 * np.sum(truth == k)) == 1, f"nucleus {k}: {covers}"
            rows, cols = np.nonzero(truth == k)
            axes = np.sqrt(np.linalg.eigvalsh(np.cov(rows, cols)))
            elongated += int(axes[1] > 2.5 * axes[0])
    assert elongated >= 4  # the test did see nuclei elongated 2.5 : 1 or more


def test_predict_classes_equals_padding_by_hand_and_batches_same_sizes():
    keras.utils.set_random_seed(0)
    model = recipe.build_model(dataclasses.replace(recipe.Recipe(), base_filters=4, depth=2))
    rng = np.random.default_rng(0)
    # colour noise on a dark field: neither a stained slide nor a grey one in doubt
    images = [(rng.random((21, 30, 3)) ** 3 * 255).astype(np.uint8) for _ in range(3)]
    images.append((rng.random((16, 16, 3)) ** 3 * 255).astype(np.uint8))
    probs = predict.predict_classes(model, images, batch_size=2)
    for image, prob in zip(images, probs, strict=False):
        padded = np.pad(image, ((0, -image.shape[0] % 4), (0, -image.shape[1] % 4), (0, 0)),
                        mode="reflect").astype(np.float32)
        expected = keras.ops.convert_to_numpy(model(padded[None]))[0, : image.shape[0],
                                                                    : image.shape[1]]
        np.testing.assert_allclose(prob, expected, atol=1e-5)
        np.testing.assert_allclose(prob.sum(-1), 1, atol=1e-5)


def _bridged_pair(bridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Two touching 9x9 nuclei whose predicted interiors (0.95) are joined through a bridge of
    interior probability ``bridge``: the truth and a (H, W, 3) class map."""
    truth = np.zeros((20, 30), np.int32)
    truth[5:14, 5:14], truth[5:14, 14:23] = 1, 2
    interior = np.zeros(truth.shape)
    interior[6:13, 6:13] = interior[6:13, 15:22] = 0.95
    interior[8:11, 13:15] = bridge  # where the boundary should have been
    boundary = np.where(truth > 0, 1 - interior, 0)
    return truth, np.stack([1.0 * (truth == 0), interior, boundary], axis=-1)


def test_h_maxima_seeds_split_interiors_joined_by_a_lower_bridge():
    truth, probs = _bridged_pair(bridge=0.75)
    one = postprocess.label_instances(probs, 0.5, "watershed", seed_threshold=0.7, min_size=0)
    assert one.max() == 1  # the bridge is above the seed threshold: one seed, one object
    two = postprocess.label_instances(probs, 0.5, "watershed", seed_threshold=0.7, min_size=0,
                                      seed_contrast=0.1, smooth=0.0)
    assert scoring.dsb_score(truth, two) == 1.0  # each nucleus its own seed, flooded exactly
    # The bridge stands 0.2 below the peaks: with h above that, the two peaks are one again.
    assert postprocess.label_instances(probs, 0.5, "watershed", seed_threshold=0.7,
                                       seed_contrast=0.3, smooth=0.0).max() == 1
    with pytest.raises(ValueError, match="seed_contrast must lie in"):
        postprocess.label_instances(probs, 0.5, "watershed", seed_contrast=1.0)


def test_tuning_picks_the_best_setting_on_the_images_it_is_given():
    _, labels = make_nuclei(4, size=96, seed=4)
    probs = [_soft(targets.three_class_targets(t)) * 0.9 + 0.1 / 3 for t in labels]
    grid = {"threshold": (0.5, 0.95), "seed_threshold": (0.5,), "seed_contrast": (0.0, 0.2),
            "min_size": (0, 30)}
    best, score = postprocess.tune_postprocessing(labels, probs, grid)
    # With a foreground threshold of 0.95 nothing is foreground (probabilities <= 0.93).
    assert best["threshold"] == 0.5 and score > 0.8
    by_hand = np.mean([scoring.dsb_score(t, postprocess.label_instances(p, method="watershed", **best))
                       for t, p in zip(labels, probs, strict=False)])
    assert score == pytest.approx(by_hand)


def test_bad_recipes_are_refused():
    with pytest.raises(ValueError, match="multiple of 2\\*\\*depth"):
        recipe.Recipe(img_size=100)
    with pytest.raises(ValueError, match="learning_rate"):
        recipe.Recipe(learning_rate=2.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        recipe.Recipe(steps=2, warmup_steps=2)
    with pytest.raises(ValueError, match="synthetic_share"):
        recipe.Recipe(synthetic_share=1.0)


def test_a_quick_binary_run_writes_a_complete_record(tmp_path):
    chosen = recipe.settings(quick=True, targets="binary", steps=4, base_filters=4)
    report = recipe.run("synthetic", chosen, tmp_path, quick=True, log=lambda *a: None)
    assert {p.name for p in tmp_path.iterdir()} == {"model.keras", "history.csv", "metrics.json"}
    assert report["recipe"]["targets"] == "binary"
    assert report["split"] == {"seed": chosen.seed, "train": chosen.train_images,
                               "val": chosen.val_images, "test": report["split"]["test"]}
    assert report["options"] == {"precision": "auto", "xla": "auto"}
    assert {"precision", "xla", "keras_backend"} <= set(report)
    assert report["postprocessing"]["seed_threshold"] is None  # no interior channel to seed
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert model.output_shape[-1] == 1


def test_reusing_the_seed_peaks_changes_no_label():
    # tune_postprocessing finds the h-maxima once per map and contrast (interior_peaks) and
    # passes them on; every setting must give the same label map as a call that finds them.
    _, labels = make_nuclei(3, size=96, seed=5)
    probs = [_soft(targets.three_class_targets(t, 2)) for t in labels]
    grid = [dict(threshold=t, seed_threshold=s, seed_contrast=c, smooth=2.0)
            for t in (0.3, 0.5) for s in (0.5, 0.9) for c in (0.1, 0.3)]
    for g in grid:
        for p in probs:
            peaks = postprocess.interior_peaks(p[..., 1], g["seed_contrast"], g["smooth"])
            np.testing.assert_array_equal(
                postprocess.label_instances(p, method="watershed", **g),
                postprocess.label_instances(p, method="watershed", peaks=peaks, **g))
    # and the tuned choice is the best of the grid scored one setting at a time
    small = {"threshold": (0.3, 0.5), "seed_threshold": (0.5, 0.9), "seed_contrast": (0.1, 0.3),
             "smooth": (2.0,), "min_size": (0, 25)}
    best, score = postprocess.tune_postprocessing(labels, probs, small)
    by_hand = max(scoring.dsb_score_dataset(list(labels), [
        postprocess.label_instances(p, method="watershed", **dict(zip(small, v, strict=True))) for p in probs])
        for v in itertools.product(*small.values()))
    assert score == pytest.approx(by_hand)


def test_predict_classes_sees_a_slide_in_one_dye_colour_as_the_grey_slide():
    keras.utils.set_random_seed(0)
    model = recipe.build_model(dataclasses.replace(recipe.Recipe(), base_filters=4, depth=2))
    grey = np.random.default_rng(1).integers(0, 255, (24, 28)).astype(np.uint8)
    blue = np.stack([np.zeros_like(grey), np.zeros_like(grey), grey], axis=-1)
    as_grey, as_blue = predict.predict_classes(model, [np.repeat(grey[..., None], 3, -1), blue])
    np.testing.assert_allclose(as_blue, as_grey, atol=1e-5)
    direct = keras.ops.convert_to_numpy(model(blue[None].astype(np.float32)))[0]
    assert np.abs(direct - as_grey).max() > 1e-3  # given as it is, the network sees another image


def test_predict_classes_keeps_the_polarity_the_network_is_surer_of(monkeypatch):
    """A grey image in doubt is predicted both ways and the more confident maps are kept; an
    image not in doubt is predicted once (a stand-in network, sure of negated images)."""
    calls = []

    def stand_in(model, images, batch_size):
        calls.append(len(images))
        maps = []
        for image in images:
            sure = 0.95 if float(np.mean(image)) < 0 else 0.6  # sure of negated pictures
            p = np.zeros(image.shape[:2] + (3,), np.float32)
            p[..., 1], p[..., 0] = sure, 1 - sure  # every pixel called interior
            maps.append(p)
        return maps

    monkeypatch.setattr(predict, "predict_maps", stand_in)
    light = np.full((24, 24, 3), 200, np.uint8)
    light[8:16, 8:16] = 40  # a dark nucleus on a light field: in doubt
    dark = 240 - light  # the same, bright on black: not in doubt
    kept_light, kept_dark = predict.predict_classes(None, [light, dark])
    assert calls == [2, 1]
    assert kept_light[0, 0, 1] == pytest.approx(0.95)  # the negated maps won
    assert kept_dark[0, 0, 1] == pytest.approx(0.6)  # predicted once, as it is


def _stained(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Dark purple squares on a light lavender field (uint8 RGB), and their label map."""
    labels = np.zeros((32, 40), np.int32)
    labels[4:14, 4:14], labels[18:28, 22:34] = 1, 2
    image = np.where(labels[..., None] > 0, [90, 40, 140], [205, 190, 230])
    noise = np.random.default_rng(seed).integers(-6, 7, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), labels


def test_predict_classes_sees_a_stained_slide_as_bright_nuclei_on_black():
    keras.utils.set_random_seed(0)
    model = recipe.build_model(dataclasses.replace(recipe.Recipe(), base_filters=4, depth=2))
    image, labels = _stained()
    luma = image.astype(np.float64) @ [0.2125, 0.7154, 0.0721]  # BT.709 weights, by hand
    negated = np.repeat((255 - luma).astype(np.float32)[..., None], 3, axis=-1)
    assert negated[labels > 0].min() > negated[labels == 0].max()  # bright nuclei
    as_stain, as_negated = predict.predict_classes(model, [image, negated])
    np.testing.assert_allclose(as_stain, as_negated, atol=1e-4)


def test_training_crops_of_a_stained_slide_are_its_negated_grey_brightness():
    image, labels = _stained()
    splits = type("S", (), {})()
    splits.train = splits.val = type("One", (), {"images": [image], "labels": [labels]})()
    chosen = dataclasses.replace(recipe.Recipe(), img_size=32, batch_size=1, synthetic_share=0)
    train_seq, val_seq = recipe.make_sequences(splits, chosen)
    for seq in (train_seq, val_seq):
        crops, _ = seq[0]
        crop = np.asarray(crops)[0]
        assert np.ptp(crop, axis=-1).max() < 1e-3  # grey: three equal channels
    luma = image.astype(np.float64) @ [0.2125, 0.7154, 0.0721]  # BT.709 weights, by hand
    middle = np.asarray(val_seq[0][0])[0, ..., 0].astype(float)
    np.testing.assert_allclose(middle, np.round(255 - luma)[:, 4:36], atol=1)
    crop = np.asarray(val_seq[0][0])[0, ..., 0]  # the centre crop: the whole slide's middle
    inside = labels[labels.shape[0] // 2 - 16: labels.shape[0] // 2 + 16, 4:36] > 0
    assert crop[inside].min() > crop[~inside].max()  # nuclei brighter than the field


def test_training_crops_of_a_tinted_slide_are_its_grey_brightness():
    """A fluorescence slide saved in one colour trains as the grey slide it is predicted as."""
    grey = (np.random.default_rng(4).random((32, 32)) ** 3 * 255).astype(np.uint8)
    tinted = np.stack([grey // 2, grey, np.zeros_like(grey)], axis=-1)  # a green-yellow dye
    splits = type("S", (), {})()
    splits.train = splits.val = type("One", (), {"images": [tinted],
                                                 "labels": [np.zeros((32, 32), np.int32)]})()
    chosen = dataclasses.replace(recipe.Recipe(), img_size=32, batch_size=1, synthetic_share=0)
    _, val_seq = recipe.make_sequences(splits, chosen)
    crop = np.asarray(val_seq[0][0])[0].astype(float)
    assert np.ptp(crop, axis=-1).max() < 1e-3  # grey
    assert np.corrcoef(crop[..., 0].ravel(), grey.ravel())[0, 1] > 0.999  # its brightness
