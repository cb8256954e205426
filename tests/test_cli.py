"""Tests for the command line (unet_course.cli): end to end in quick mode in a subprocess, and
every user-error path in process (one line on stderr, exit code 2, no traceback)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unet_course import cli, recipe

TINY = ["--model", "seed", "--quick", "--img-size", "32", "--batch-size", "4", "--steps", "2"]


def run_cli(*args: str, backend: str = "tensorflow") -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "UNET_COURSE_QUICK": "1"}
    return subprocess.run([sys.executable, "-m", "unet_course", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_train_then_evaluate_then_refuse_end_to_end(tmp_path):
    out = tmp_path / "run"
    done = run_cli("train", "--out", str(out), *TINY)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {p.name for p in out.iterdir()} == {"model.keras", "history.csv", "metrics.json"}
    report = json.loads((out / "metrics.json").read_text())
    assert 0 <= report["val_iou"] <= report["val_dice"] <= 1
    assert report["val_iou"] == pytest.approx(report["val_dice"] / (2 - report["val_dice"]))
    assert (report["model"], report["steps_run"], report["quick"]) == ("seed", 2, True)
    assert report["recipe"]["img_size"] == 32 and 0 < report["best_threshold"] < 1
    assert report["scale"] == 1.0  # the seed model is predicted at the images' own size
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == report["checks_run"]
    assert {"loss", "val_score", "val_dice", "val_iou"} <= set(rows[0])
    scores = [float(row["val_score"]) for row in rows]  # a binary model is kept by its Dice
    assert report["best_check"] == 1 + scores.index(max(scores))

    result_file = tmp_path / "eval.json"
    done = run_cli("evaluate", "--model", str(out / "model.keras"), "--out", str(result_file))
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout[done.stdout.index("{"):])
    assert printed == json.loads(result_file.read_text())
    assert printed["split"] == "test" and printed["images"] == report["split"]["test"]
    assert printed["threshold"] == report["best_threshold"]  # chosen on validation data
    assert 0 <= printed["iou"] <= printed["dice"] <= 1

    before = (out / "metrics.json").read_text()
    done = run_cli("train", "--out", str(out), *TINY)
    assert done.returncode == 2
    assert "not empty" in done.stderr and "Traceback" not in done.stderr
    assert (out / "metrics.json").read_text() == before  # nothing was touched


def test_evaluate_predicts_images_the_training_size_does_not_fit(tmp_path):
    """A model trained at 32x32 evaluated on 40x40 images: padded to 48 and cropped back."""
    import keras

    from unet_course import datasets, evaluate, model, scoring
    from unet_course.commands import evaluate as evaluate_command

    keras.utils.set_random_seed(0)
    net = model.build_unet((None, None, 3), base_filters=4, depth=2, rescale=1 / 255)
    net.save(tmp_path / "model.keras")
    args = cli.build_parser().parse_args(
        ["evaluate", "--model", str(tmp_path / "model.keras"), "--img-size", "40", "--quick",
         "--seed", "0"])
    split, probs, result = evaluate.evaluate_model(
        args.model, evaluate_command.settings(args), args.split, args.instances, args.threshold)
    assert [p.shape for p in probs] == [(40, 40)] * len(split)
    expected = datasets.load_splits("synthetic", 40, quick=True, seed=0).test
    np.testing.assert_array_equal(split.images, expected.images)
    assert result["dice"] == pytest.approx(scoring.pixel_scores(expected.masks, probs)["dice"])


def test_doctor_on_the_jax_backend_reports_xla():
    """The device policy's JAX branch: every step is XLA-compiled, float32 on a CPU."""
    done = run_cli("doctor", backend="jax")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Keras backend: jax" in done.stdout
    assert "precision float32 · XLA on (JAX always compiles with XLA)" in done.stdout


def test_doctor_reports_versions_backend_and_a_gpu_hint(capsys):
    assert cli.main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "keras" in text and "Keras backend: tensorflow" in text
    assert "GPUs: none visible" in text and "Runtime > Change runtime type > GPU" in text


@pytest.mark.parametrize(
    "argv, words",
    [
        ([], "COMMAND"),
        (["fly"], "invalid choice"),
        (["train"], "--out"),
        (["train", "--out", "{tmp}/o", "--steps", "0"], "positive integer"),
        (["train", "--out", "{tmp}/o", "--epochs", "3"], "unrecognized arguments"),
        (["train", "--out", "{tmp}/o", "--batch-size", "x"], "positive integer"),
        (["train", "--out", "{tmp}/o", "--data", "{tmp}/missing"], "no such folder"),
        (["train", "--out", "{tmp}/o", "--data", "{tmp}/file.txt"], "is a file"),
        (["train", "--out", "{tmp}/file.txt"], "is a file"),
        (["train", "--out", "{tmp}/full"], "not empty"),
        (["train", "--out", "{tmp}/o", "--img-size", "100"], "96 or 112"),
        (["train", "--out", "{tmp}/o", "--depth", "3"], "--model unet"),
        (["train", "--out", "{tmp}/o", "--model", "unet", "--dropout", "1.5"], "dropout"),
        (["train", "--out", "{tmp}/o", "--lr", "2"], "(0, 1)"),
        (["train", "--out", "{tmp}/o", "--xla", "maybe"], "auto, on, off"),
        (["evaluate", "--model", "{tmp}/none.keras"], "no such file"),
        (["evaluate", "--model", "{tmp}/file.txt"], ".keras"),
        (["evaluate", "--model", "{tmp}/m.keras", "--out", "{tmp}/no/dir.json"], "does not exist"),
        (["evaluate", "--model", "{tmp}/m.keras", "--threshold", "1"], "(0, 1)"),
        (["evaluate", "--model", "{tmp}/m.keras", "--data", "{tmp}/missing"], "no such folder"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys, argv, words):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "m.keras").write_text("not really a model")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unet-course")
    assert words in lines[0]
    assert not Path(tmp_path / "o").exists()  # checked before any work or file


def test_a_broken_model_file_is_one_line_not_a_traceback(tmp_path, capsys):
    (tmp_path / "m.keras").write_text("not a zip")
    code = cli.main(["evaluate", "--model", str(tmp_path / "m.keras")])
    err = capsys.readouterr().err
    assert code in (1, 2) and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_every_subcommand_has_help():
    parser = cli.build_parser()
    for name in ("train", "evaluate", "doctor"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0


def test_train_and_evaluate_on_a_dsb_folder_of_mixed_sizes(tmp_path, capsys):
    from test_train import make_dsb_folder

    root = make_dsb_folder(tmp_path / "dsb")
    out = tmp_path / "run"
    small = ["--model", "unet", "--base-filters", "4", "--depth", "2", "--batch-size", "2"]
    assert cli.main(["train", "--data", str(root), "--out", str(out), "--quick",
                     "--img-size", "32", *small]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["data"] == str(root) and report["val_images"] == 1
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(out / "model.keras")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"] == str(root) and result["images"] == 1  # the held-out test image
    assert 0 <= result["iou"] <= result["dice"] <= 1


def test_a_broken_dsb_folder_names_the_file(tmp_path, capsys):
    from test_train import make_dsb_folder

    root = make_dsb_folder(tmp_path / "dsb")
    broken = next(p for p in sorted(root.iterdir()))
    for mask in (broken / "masks").iterdir():
        mask.unlink()
    (broken / "masks").rmdir()
    assert cli.main(["train", "--data", str(root), "--out", str(tmp_path / "o"), "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and broken.name in err[0] and "masks" in err[0]
    assert not (tmp_path / "o").exists()


def test_the_default_recipe_trains_records_and_evaluates_beside_the_baseline(tmp_path, capsys):
    """`train` with no tuning flags runs the recipe; `evaluate` scores it next to Otsu."""
    from unet_course import baseline, datasets, postprocess

    out = tmp_path / "run"
    assert cli.main(["train", "--out", str(out), "--quick", "--steps", "4"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["model"] == "recipe" and report["recipe"]["steps"] == 4
    assert set(report["postprocessing"]) == set(postprocess.POSTPROCESSING_GRID)
    assert 0 <= report["val_iou"] <= report["val_dice"] <= 1
    # Both ways chosen on the validation slides, written out: one pass at their own size, then
    # size-normalised from that pass's nuclei (the default of predict and evaluate).
    import keras

    from unet_course import postprocess, predict, rescale

    model = keras.saving.load_model(out / "model.keras")
    counts = {name: report["split"][name] for name in ("train", "val")}
    splits = datasets.load_splits("synthetic", report["img_size"], quick=True, seed=42,
                                  counts=counts)
    native = predict.predict_classes(model, splits.val.images)
    assert postprocess.tune_postprocessing(splits.val.labels, native)[0] == report["postprocessing_native"]
    area = rescale.median_area(splits.train.labels)
    sized, _ = rescale.predict_size_normalised(model, splits.val.images,
                                               report["postprocessing_native"], area, first=native)
    assert postprocess.tune_postprocessing(splits.val.labels, sized)[0] == report["postprocessing"]
    assert report["scale"] == "auto" and report["train_median_area"] == area
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(out / "model.keras")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["postprocessing"] == report["postprocessing"]  # chosen on validation data
    assert result["scale"] == "auto"
    test = datasets.load_splits("synthetic", report["img_size"], quick=True, seed=42).test
    expected = baseline.baseline_scores(test.images, test.labels)
    for name in baseline.PIPELINES:
        assert result["baseline"][name]["dsb_map"] == pytest.approx(expected[name]["dsb_map"])
    assert isinstance(result["baseline"]["model_beats_baseline"], bool)


def test_metrics_json_records_every_setting_and_two_runs_with_one_seed_agree(tmp_path, capsys):
    """The record holds the recipe (model and build options included), the precision and XLA
    and the data split; the recipe rebuilds the model; two runs with one --seed agree."""
    from unet_course import datasets

    tiny = ["--model", "unet", "--base-filters", "4", "--depth", "2", "--dropout", "0.1",
            "--quick", "--img-size", "32", "--batch-size", "4", "--steps", "2",
            "--seed", "5", "--precision", "float32", "--xla", "off"]
    reports = []
    for name in ("a", "b"):
        assert cli.main(["train", "--out", str(tmp_path / name), *tiny]) == 0
        reports.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    capsys.readouterr()
    report = reports[0]
    chosen = recipe.Recipe(**report["recipe"])  # the recipe round-trips
    assert (chosen.seed, chosen.batch_size, chosen.steps, chosen.model) == (5, 4, 2, "unet")
    assert (chosen.targets, chosen.depth, chosen.dropout) == ("binary", 2, 0.1)
    assert (report["precision"], report["xla"]) == ("float32", False)
    assert report["keras_backend"] == "tensorflow" and report["model"] == "unet"
    assert recipe.build_model(chosen).count_params() == keras_params(tmp_path / "a" / "model.keras")
    splits = datasets.load_splits("synthetic", chosen.slide_size, quick=True, seed=5,
                                  counts={"train": chosen.train_images, "val": chosen.val_images})
    assert report["split"] == {"seed": 5, "train": len(splits.train), "val": len(splits.val),
                               "test": len(splits.test)}
    first, second = reports
    assert first.keys() == second.keys()
    for key, value in first.items():
        if key in ("model_sha256", "train_seconds"):  # the .keras zip stores its save time
            continue
        assert second[key] == (pytest.approx(value, abs=1e-5) if isinstance(value, float)
                               else value), key


def keras_params(path: Path) -> int:
    import keras

    return keras.saving.load_model(path).count_params()


def test_train_and_evaluate_choices_come_from_the_package_tables():
    import inspect

    from unet_course import model, postprocess, train

    parser = cli.build_parser()
    for name in recipe.MODELS:
        assert parser.parse_args(["train", "--out", "o", "--model", name]).model == name
    for precision in train.PRECISIONS:
        assert parser.parse_args(["train", "--out", "o", "--precision", precision]).precision == precision
    for upsampling in model.UPSAMPLINGS:
        assert parser.parse_args(["train", "--out", "o", "--upsampling", upsampling]).upsampling == upsampling
    for method in postprocess.METHODS:
        assert parser.parse_args(["evaluate", "--model", "m", "--instances", method]).instances == method
    args = parser.parse_args(["train", "--out", "o"])
    defaults = inspect.signature(model.build_unet).parameters
    for option in ("base_filters", "depth", "dropout", "batch_norm", "upsampling", "activation"):
        assert getattr(args, option) == defaults[option].default, option
    assert args.batch_size is None  # the recipe's own (recipe.Recipe)


def test_train_help_states_the_recipes_own_defaults(capsys):
    """The help names the recipe's crop, steps, batch and peak learning rate: the numbers
    of ``recipe.Recipe()``, not of the seed/unet training config."""
    import re

    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split("options:", 1)[1].split())
    stated = {flag: re.search(rf"{flag} \S+ (\S.*?)(?= --|$)", text).group(1)
              for flag in ("--img-size", "--steps", "--batch-size", "--lr")}
    numbers = {flag: re.search(r"(?:recipe: |default )([0-9.e-]+)", help_).group(1)
               for flag, help_ in stated.items()}
    r = recipe.Recipe()
    assert numbers == {"--img-size": str(r.img_size), "--steps": str(r.steps),
                       "--batch-size": str(r.batch_size), "--lr": numbers["--lr"]}
    assert float(numbers["--lr"]) == r.learning_rate
