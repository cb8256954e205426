"""A practitioner's own folder: a training budget in steps, the model kept by its validation
score, and the classical pipeline it must beat, tuned on the same slides."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from dsb_fixture import make_dsb_fixture
from scipy import ndimage

from unet_course import baseline, cli, datasets, recipe, scoring
from unet_course.callbacks import ScoreCheckpoint
from unet_course.sequence import ThreeClassSequence

# A folder as a practitioner has one: sizes from 64 to 96 pixels, RGBA, RGB, 8- and 16-bit grey
# files, bright nuclei on dark and dark on light, mixed in one folder.
MIXED = [(64, 96, "RGBA"), (80, 64, "RGB"), (72, 72, "L"), (96, 80, "I;16"), (64, 64, "dark")]


def _splits(n: int, seed: int = 0) -> datasets.Splits:
    from unet_course.data import make_nuclei

    images, labels = make_nuclei(n + 2, size=64, seed=seed)
    return datasets.Splits(datasets.Split(images[:n], labels[:n]),
                           datasets.Split(images[n:], labels[n:]),
                           datasets.Split(images[n:], labels[n:]), source="test")


@pytest.mark.parametrize("slides", [3, 40])
def test_the_budget_is_the_same_number_of_steps_for_any_number_of_slides(slides):
    r = recipe.Recipe(img_size=32, steps=50, check_every=20, batch_size=2, depth=2, warmup_steps=5)
    train_seq, _ = recipe.make_sequences(_splits(slides), r)
    # 50 steps in 3 checks: 17 steps between checks, 51 in all (the schedule's length too)
    assert (r.checks, recipe.steps_per_check(r), len(train_seq)) == (3, 17, 17)
    images, targets = train_seq[0]
    assert images.shape == (2, 32, 32, 3) and targets.shape == (2, 32, 32, 3)


def test_crops_come_from_each_source_in_its_share():
    r = recipe.settings(img_size=32, steps=400, check_every=400, depth=2, synthetic_share=0.25)
    real, synthetic = _splits(3), _splits(30, seed=1).train
    # the real slides black, the synthetic ones white: each crop tells where it was cut
    real = datasets.Splits(datasets.Split(np.zeros_like(real.train.images), real.train.labels),
                           real.val, real.test, "test")
    synthetic = datasets.Split(np.full_like(synthetic.images, 255), synthetic.labels)
    train_seq, _ = recipe.make_sequences(real, r, extra_train=synthetic)
    white = np.concatenate([train_seq[i][0].mean(axis=(1, 2, 3)) == 255
                            for i in range(len(train_seq))])
    assert len(white) == 1600 and abs(white.mean() - 0.25) < 0.04, white.mean()  # 3.7 sd
    assert set(np.unique([train_seq[i][0].mean() for i in range(5)])) - {0, 255}  # mixed batches


def test_draws_are_refused_when_they_do_not_match_the_images():
    images, labels = _splits(3).train.images, _splits(3).train.labels
    with pytest.raises(ValueError, match="draw needs batches"):
        ThreeClassSequence(images, labels, 2, size=32, draw=[1, 1, 1])
    with pytest.raises(ValueError, match="3 non-negative weights"):
        ThreeClassSequence(images, labels, 2, size=32, batches=4, draw=[1, 1])


class _Scripted:
    """A score that reads the model's one weight, so the test knows which check is best."""

    def __call__(self, labels, probs):
        return {"val_score": float(self.model.get_weights()[0].ravel()[0])}


def test_the_kept_model_is_the_one_with_the_best_validation_score(tmp_path):
    from unet_course.model import build_unet

    model = build_unet((None, None, 3), num_classes=3, base_filters=2, depth=1)
    score = _Scripted()
    score.model = model
    images, labels = _splits(2).val.images, _splits(2).val.labels
    path = tmp_path / "model.keras"
    checker = ScoreCheckpoint(images, labels, score, path)
    checker.set_model(model)
    values = [0.2, 0.7, 0.4]  # the second check is the best
    for epoch, value in enumerate(values):
        weights = model.get_weights()
        weights[0][...] = value
        model.set_weights(weights)
        logs = {}
        checker.on_epoch_end(epoch, logs)
        assert logs["val_score"] == pytest.approx(value)
    assert (checker.best, checker.best_epoch) == (pytest.approx(0.7), 1)
    checker.restore_best()
    assert model.get_weights()[0].ravel()[0] == pytest.approx(0.7)
    saved = keras.saving.load_model(path)
    assert saved.get_weights()[0].ravel()[0] == pytest.approx(0.7)


def _uneven_slide(seed: int = 0):
    """Bright discs on a background that ramps from dark to brighter than the dimmest disc
    (uneven light), with their labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:128, :128]
    labels = np.zeros((128, 128), np.int32)
    image = 0.9 * xx / 127.0  # the light: 0 on the left, 0.9 on the right
    for k in range(12):
        cy, cx = 12 + 34 * (k // 4) + rng.integers(-3, 4), 14 + 33 * (k % 4) + rng.integers(-3, 4)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 36
        labels[disc] = k + 1
        image[disc] += 0.5
    image = ndimage.gaussian_filter(image, 1) + rng.normal(0, 0.02, image.shape)
    return (np.clip(image, 0, 1.5) / 1.5 * 255).astype(np.uint8)[..., None].repeat(3, -1), labels


def test_the_tuned_classical_pipeline_subtracts_uneven_light():
    images, labels = zip(*(_uneven_slide(s) for s in range(3)), strict=True)
    tuned = baseline.tune_classical(list(images), list(labels))
    otsu = scoring.dsb_score_dataset(list(labels), [baseline.otsu_instances(im) for im in images])
    assert tuned["settings"]["background"] > 0
    assert tuned["dsb_map"] > otsu + 0.3, (tuned, otsu)
    # its score is the mean of the per-slide scores of the settings it returned
    found = [baseline.classical_instances(im, **tuned["settings"]) for im in images]
    assert tuned["dsb_map"] == pytest.approx(np.mean([scoring.dsb_score(t, f)
                                                      for t, f in zip(labels, found, strict=True)]))


def test_train_on_a_folder_reports_both_scores_and_warns_when_the_unet_loses(tmp_path, capsys):
    root = tmp_path / "folder"
    make_dsb_fixture(root, specs=MIXED * 2)
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(root), "--out", str(out), "--quick"]) == 0
    printed, err = capsys.readouterr()
    report = json.loads((out / "metrics.json").read_text())
    assert report["synthetic_slides"] == recipe.quick_recipe().train_images
    assert report["steps_run"] == recipe.quick_recipe().steps and report["checks_run"] == 2
    line = next(s for s in printed.splitlines() if s.startswith("validation instance score"))
    assert f"U-Net {report['val_dsb_map']:.3f}" in line
    assert f"classical pipeline {report['val_classical']['dsb_map']:.3f}" in line
    lost = report["val_dsb_map"] <= report["val_classical"]["dsb_map"]
    assert ("warning: the U-Net does not beat" in err) == lost


def test_every_model_counts_its_training_in_steps(tmp_path, capsys):
    assert cli.main(["train", "--out", str(tmp_path / "o"), "--quick", "--epochs", "3"]) == 2
    assert "unrecognized arguments: --epochs" in capsys.readouterr().err


def test_predict_warns_when_the_model_lost_to_the_classical_pipeline():
    from unet_course.commands.predict import lost_to_classical

    lost = {"val_dsb_map": 0.10, "val_classical": {"dsb_map": 0.25, "settings": {}}}
    assert "did not beat the classical pipeline" in lost_to_classical(lost)
    assert "0.100 against 0.250" in lost_to_classical(lost)
    assert lost_to_classical({"val_dsb_map": 0.3, "val_classical": {"dsb_map": 0.25}}) is None
    assert lost_to_classical({"val_dsb_map": 0.3}) is None  # a record from before the baseline
