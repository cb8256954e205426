"""The command line tried carelessly a second time (issue 26): Ctrl-C always honoured,
``train --overwrite`` never loses the last good run, one blank image never stops a folder, no
channel silently dropped, no training slide scored as a test slide, outputs never in an input.

Run in process on tiny random-weight models, except where what is checked is the process
itself (a real SIGINT).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
from cli_checks import refused as _refused
from PIL import Image

from unet_course import cli, files

TINY = ["--model", "seed", "--quick", "--img-size", "32", "--batch-size", "4", "--steps", "2"]


def _interrupted(capsys, argv, *words) -> str:
    """Run ``argv``; expect exit code 130 and one line on stderr saying what was kept."""
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130, (code, err)
    assert len(err) == 1 and err[0].startswith("unet-course: interrupted (Ctrl-C)"), err
    for word in words:
        assert word in err[0], (word, err[0])
    return err[0]


def _swallowed_ctrl_c() -> None:
    """A real SIGINT that lands where its KeyboardInterrupt is lost, as it is inside a garbage
    collection callback ("Exception ignored in ...") while TensorFlow traces a model."""
    try:
        signal.raise_signal(signal.SIGINT)
        time.sleep(0.01)  # the Python handler runs here
    except KeyboardInterrupt:
        pass


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    """A tiny random-weight unet model with its own training record."""
    import keras

    from unet_course.model import build_unet

    folder = tmp_path_factory.mktemp("unet")
    keras.utils.set_random_seed(0)
    build_unet((None, None, 3), base_filters=4, depth=2, rescale=1 / 255).save(folder / "model.keras")
    files.write_run_record(folder, {"data": "synthetic", "img_size": 32, "seed": 42,
                                    "quick": True, "best_threshold": 0.5, "model": "unet"})
    return folder / "model.keras"


@pytest.fixture(scope="module")
def recipe_model(tmp_path_factory):
    """A tiny random-weight recipe model (percentile layer, three classes) with a record."""
    import keras

    from unet_course import recipe

    folder = tmp_path_factory.mktemp("recipe")
    keras.utils.set_random_seed(0)
    recipe.build_model(recipe.Recipe(base_filters=4, depth=2)).save(folder / "model.keras")
    post = {"threshold": 0.3, "seed_threshold": 0.5, "seed_contrast": 0.0, "smooth": 2.0,
            "min_size": 0}
    files.write_run_record(folder, {"postprocessing": post, "postprocessing_native": post,
                                    "scale": 1.0, "model": "recipe"})
    return folder / "model.keras"


def _snapshot(folder) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


# --------------------------------------------------------------------------- 1. Ctrl-C


@pytest.mark.parametrize("command", ["predict", "evaluate", "doctor", "train"])
def test_ctrl_c_at_start_up_ends_every_command_with_130_even_if_swallowed(
        command, unet, slides, tmp_path, capsys, monkeypatch):
    """The signal lands while Keras starts (``quiet_startup``) and its KeyboardInterrupt is
    lost there: the recorded Ctrl-C still ends the command, and nothing is written."""
    from unet_course import runtime

    monkeypatch.setattr(runtime, "quiet_startup", _swallowed_ctrl_c)
    out = tmp_path / "out"
    argv = {"predict": ["predict", "--model", unet, "--input", slides, "--output", out],
            "evaluate": ["evaluate", "--model", unet, "--out", out],
            "doctor": ["doctor"],
            "train": ["train", "--out", out, *TINY]}[command]
    _interrupted(capsys, argv)
    assert not out.exists()


def test_ctrl_c_between_images_keeps_whole_pairs_and_says_so(unet, slides, tmp_path, capsys,
                                                            monkeypatch):
    """Ctrl-C, lost where it lands, while the first image is predicted: that image's labels
    and overlay are written, the second image is not predicted, and the line says how many
    were kept."""
    from unet_course import predict

    real = predict.predict_instances
    calls = []

    def interrupted_once(*args, **kwargs):
        if not calls:
            _swallowed_ctrl_c()
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(predict, "predict_instances", interrupted_once)
    out = tmp_path / "out"
    _interrupted(capsys, ["predict", "--model", unet, "--input", slides, "--output", out],
                 "1 of 2 images")
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.png", "a_overlay.png"]


def test_a_real_sigint_during_predict_is_not_swallowed(unet, slides, tmp_path):
    """A separate process gets a real SIGINT while it predicts its first image, at a moment
    where a KeyboardInterrupt would be lost: it still exits 130 with one line."""
    code = f"""
import sys, time
from unet_course import cli, predict
real = predict.predict_instances
def slow(*args, **kwargs):
    print("READY", flush=True)
    try:
        time.sleep(3)
    except KeyboardInterrupt:  # lost, as in a garbage-collection callback
        pass
    return real(*args, **kwargs)
predict.predict_instances = slow
sys.exit(cli.main(["predict", "--model", {str(unet)!r}, "--input", {str(slides)!r},
                   "--output", {str(tmp_path / "out")!r}]))
"""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in child.stdout:
            if line.strip() == "READY":
                child.send_signal(signal.SIGINT)
                break
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("unet-course: interrupted (Ctrl-C)") and "1 of 2 images" in last


# --------------------------------------------------------------------------- 2. train --overwrite


def _a_run(folder, unet) -> None:
    """A complete earlier run in ``folder``: a model with its record and history."""
    folder.mkdir()
    (folder / "model.keras").write_bytes(unet.read_bytes())
    (folder / "history.csv").write_text("epoch,loss\n0,1.0\n")
    files.write_run_record(folder, {"seed": 42, "data": "synthetic", "model": "unet",
                                    "val_dice": 0.61})


@pytest.mark.parametrize("stage", ["seed", "recipe"])
def test_an_interrupted_overwrite_keeps_the_previous_run(stage, unet, tmp_path, capsys,
                                                         monkeypatch):
    """Ctrl-C after the last step, during the tuning (of the seed model or the recipe): the
    checkpoint of the new run was written, but the old run is kept whole, and no partial
    folder is left beside it."""
    from unet_course import recipe

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    run = tmp_path / "run"
    _a_run(run, unet)
    before = _snapshot(run)
    monkeypatch.setattr(recipe, "choose_pipeline", ctrl_c)
    argv = ["train", "--out", run, "--overwrite",
            *(TINY if stage == "seed" else ["--quick", "--steps", "2"])]
    code = cli.main([str(a) for a in argv])
    assert _snapshot(run) == before  # the old model, its record and history, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and len(err) == 1 and "unchanged" in err[0], err


def test_a_complete_overwrite_replaces_the_run_whole(unet, tmp_path, capsys):
    run = tmp_path / "run"
    _a_run(run, unet)
    assert cli.main(["train", "--out", str(run), "--overwrite", *TINY]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sorted(p.name for p in run.iterdir()) == ["history.csv", "metrics.json", "model.keras"]
    record = files.read_run_record(run / "model.keras")  # the record of this very model
    assert record["model"] == "seed" and "val_dice" in record


def test_overwrite_refuses_a_folder_that_holds_more_than_a_run(unet, tmp_path, capsys):
    run = tmp_path / "run"
    _a_run(run, unet)
    (run / "notes.txt").write_text("my notes")
    before = _snapshot(run)
    _refused(capsys, ["train", "--out", run, "--overwrite", *TINY], "--out", "notes.txt")
    assert _snapshot(run) == before


# --------------------------------------------------------------------------- 3. each image


def test_blank_constant_and_tiny_images_get_a_note_and_an_empty_label_map(recipe_model, slides,
                                                                         tmp_path, capsys):
    """Compiled, the percentile layer gave NaN for a constant image, and the message that
    followed stopped the whole folder; now each such image gets an empty label map."""
    Image.fromarray(np.full((48, 48), 200, np.uint8)).save(slides / "blank.png")
    Image.fromarray(np.full((1, 1), 9, np.uint8)).save(slides / "one.png")
    tifffile.imwrite(slides / "flat16.tif", np.full((40, 40), 3000, np.uint16))
    out = tmp_path / "out"
    assert cli.main(["predict", "--model", str(recipe_model), "--input", str(slides),
                     "--output", str(out)]) == 0
    captured = capsys.readouterr()
    for stem in ("a", "b", "blank", "one", "flat16"):
        assert (out / f"{stem}_labels.png").exists() and (out / f"{stem}_overlay.png").exists()
    for stem in ("blank", "one", "flat16"):
        assert not np.asarray(Image.open(out / f"{stem}_labels.png")).any()
        assert f"{stem}." in captured.err
    assert "5 images: 2 segmented, 3 blank or tiny" in captured.out
    assert "note:" not in captured.out


def test_the_percentile_layer_gives_zeros_for_a_constant_image_when_compiled():
    import keras

    from unet_course.normalization import PercentileNormalization

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, PercentileNormalization()(inputs))
    out = model.predict_on_batch(np.full((1, 16, 16, 3), 200, np.float32))
    assert np.isfinite(out).all() and not out.any()


def test_one_failing_image_is_named_and_the_folder_goes_on(recipe_model, slides, tmp_path,
                                                          capsys, monkeypatch):
    from unet_course import postprocess

    real = postprocess.label_instances
    Image.open(slides / "a.png").crop((0, 0, 40, 40)).save(slides / "c.png")

    def fails_on_c(probs, *args, **kwargs):
        if probs.shape[:2] == (40, 40):
            raise ValueError("prob must hold probabilities in [0, 1], got values in [nan, nan]")
        return real(probs, *args, **kwargs)

    monkeypatch.setattr(postprocess, "label_instances", fails_on_c)
    out = tmp_path / "out"
    assert cli.main(["predict", "--model", str(recipe_model), "--input", str(slides),
                     "--output", str(out)]) == 1
    captured = capsys.readouterr()
    assert "c.png: failed" in captured.err
    assert "3 images: 2 segmented, 0 blank or tiny (empty label maps), 1 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == [
        "a_labels.png", "a_overlay.png", "b_labels.png", "b_overlay.png"]


# --------------------------------------------------------------------------- 4. channels


def test_a_two_channel_tiff_is_refused_naming_channel_and_channel_picks_one(
        unet, slides, tmp_path, capsys):
    image = np.asarray(Image.open(slides / "a.png"))
    nuclei = image[..., 0]
    other = np.zeros_like(nuclei)
    folder = tmp_path / "two"
    folder.mkdir()
    tifffile.imwrite(folder / "two.tif", np.stack([other, nuclei], axis=-1))
    _refused(capsys, ["predict", "--model", unet, "--input", folder, "--output", tmp_path / "o"],
             "two.tif", "2 channels", "--channel")
    assert not (tmp_path / "o").exists()
    assert cli.main(["predict", "--model", str(unet), "--input", str(folder), "--output",
                     str(tmp_path / "o"), "--channel", "1"]) == 0
    grey = tmp_path / "grey"
    grey.mkdir()
    Image.fromarray(nuclei).save(grey / "two.png")
    assert cli.main(["predict", "--model", str(unet), "--input", str(grey), "--output",
                     str(tmp_path / "g")]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o" / "two_labels.png")),
                                  np.asarray(Image.open(tmp_path / "g" / "two_labels.png")))
    _refused(capsys, ["predict", "--model", unet, "--input", folder, "--output", tmp_path / "x",
                      "--channel", "2"], "--channel 2", "two.tif", "2 channels")


def test_alpha_is_dropped_only_where_the_file_declares_it(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (6, 7, 3)).astype(np.uint8)
    rgba = np.concatenate([rgb, np.full((6, 7, 1), 255, np.uint8)], axis=-1)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    tifffile.imwrite(tmp_path / "four.tif", rgba, photometric="minisblack", planarconfig="contig")
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(np.stack([rgb[..., 0], rgba[..., 3]], -1), "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(files.read_image(tmp_path / "rgba.tif"), rgb)
    np.testing.assert_array_equal(files.read_image(tmp_path / "rgba.png"), rgb)
    np.testing.assert_array_equal(files.read_image(tmp_path / "la.png"),
                                  np.repeat(rgb[..., :1], 3, -1))
    with pytest.raises(ValueError, match="four.tif.*4 channels.*--channel"):
        files.read_image(tmp_path / "four.tif")
    np.testing.assert_array_equal(files.read_image(tmp_path / "four.tif", channel=3),
                                  np.full((6, 7, 3), 255, np.uint8))


# --------------------------------------------------------------------------- 5. the split


def _folder_run(tmp_path, unet, **record):
    """A model said to be trained on a DSB folder, with its record."""
    from test_train import make_dsb_folder

    root = make_dsb_folder(tmp_path / "dsb")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(unet.read_bytes())
    files.write_run_record(run, {"data": str(root), "seed": 42, "quick": True,
                                 "best_threshold": 0.5, "model": "unet", **record})
    return run / "model.keras"


def test_evaluate_refuses_another_seed_on_the_training_folder(unet, tmp_path, capsys):
    model = _folder_run(tmp_path, unet)
    _refused(capsys, ["evaluate", "--model", model, "--seed", "7"], "--seed 7", "seed 42",
             "training slides")


def test_evaluate_refuses_quick_mode_on_a_model_trained_on_the_whole_folder(
        unet, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNET_COURSE_QUICK", "1")
    model = _folder_run(tmp_path, unet, quick=False)
    _refused(capsys, ["evaluate", "--model", model], "--quick", "training slides")


# --------------------------------------------------------------------------- 6. outputs


def test_predict_output_is_never_the_folder_of_an_input_file(unet, slides, capsys):
    before = _snapshot(slides)
    _refused(capsys, ["predict", "--model", unet, "--input", slides / "a.png",
                      "--output", slides], "--output", "a.png")
    assert _snapshot(slides) == before


def test_predict_skips_its_own_outputs_and_label_maps_with_a_note(unet, slides, tmp_path, capsys):
    from unet_course.data import make_nuclei

    _, labels = make_nuclei(1, size=48, seed=1)
    tifffile.imwrite(slides / "mask2d.tif", labels[0].astype(np.uint16))
    Image.fromarray((labels[0] > 0).astype(np.uint8) * 255).save(slides / "mask.png")
    for name in ("old_labels.png", "old_overlay.png"):
        Image.open(slides / "a.png").save(slides / name)
    out = tmp_path / "out"
    assert cli.main(["predict", "--model", str(unet), "--input", str(slides),
                     "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [
        "a_labels.png", "a_overlay.png", "b_labels.png", "b_overlay.png"]
    assert "mask2d.tif" in captured.err and "mask.png" in captured.err
    assert "predict's own outputs" in captured.err


def test_evaluate_overwrite_replaces_only_its_own_report(unet, slides, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.keras").write_bytes(unet.read_bytes() + b"another run")
    image = slides / "a.png"
    before = {p: p.read_bytes() for p in (other / "model.keras", image)}
    for target in before:
        _refused(capsys, ["evaluate", "--model", unet, "--out", target, "--overwrite"],
                 "--out", "not a report written by evaluate")
    assert {p: p.read_bytes() for p in before} == before


# --------------------------------------------------------------------------- 7. the rest


def test_tile_and_overlap_are_refused_for_recipe_models(recipe_model, slides, tmp_path, capsys):
    for extra in (["--tile", "7"], ["--overlap", "999999"]):
        _refused(capsys, ["predict", "--model", recipe_model, "--input", slides,
                          "--output", tmp_path / "out", *extra], extra[0], "recipe")
    assert not (tmp_path / "out").exists()


def test_predict_notes_go_to_stderr_and_name_no_flag_it_lacks(recipe_model, slides, tmp_path,
                                                              capsys):
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "model.keras").write_bytes(recipe_model.read_bytes())
    (stale / "metrics.json").write_text(json.dumps({"model_sha256": "0" * 64, "seed": 1}))
    assert cli.main(["predict", "--model", str(stale / "model.keras"), "--input", str(slides),
                     "--output", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "note:" not in captured.out and "note: the training record was not used" in captured.err
    assert "--data" not in captured.err and "--seed" not in captured.err


def test_a_text_file_named_png_is_one_line_naming_it(unet, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "notes.png").write_text("not an image at all\n")
    line = _refused(capsys, ["predict", "--model", unet, "--input", folder,
                             "--output", tmp_path / "out"], "notes.png", "PNG, JPEG, TIFF")
    assert "backend" not in line and "iomode" not in line


def test_every_train_option_has_help_and_xla_shows_its_choices(capsys):
    parser = cli.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    helps = {action.option_strings[0]: action.help for action in train._actions
             if action.option_strings}
    for flag in ("--seed", "--base-filters", "--depth", "--dropout", "--batch-norm",
                 "--upsampling", "--activation"):
        assert helps[flag], flag
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    assert "--xla {auto,on,off}" in capsys.readouterr().out
