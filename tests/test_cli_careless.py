"""The command line tried as a careless user would (issue 13): each case refuses in one line
with exit code 2 naming the file or flag, loses nothing, and leaves no half-written file.

Run in process on tiny random-weight models, except where what is checked is the process
itself (which modules were imported, what reached standard error).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cli_checks import refused as _refused
from PIL import Image

from unet_course import cli, files


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder as `train` leaves it: model.keras, history.csv, metrics.json (its own)."""
    import keras

    from unet_course.model import build_unet

    folder = tmp_path_factory.mktemp("run")
    keras.utils.set_random_seed(0)
    build_unet((None, None, 3), base_filters=4, depth=2, rescale=1 / 255).save(folder / "model.keras")
    (folder / "history.csv").write_text("epoch,loss\n0,1.0\n")
    files.write_run_record(folder, {"data": "synthetic", "img_size": 32, "seed": 42,
                                    "quick": True, "best_threshold": 0.5, "model": "unet"})
    return folder


def _snapshot(folder) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


# --------------------------------------------------------------------------- evaluate


def test_evaluate_out_never_replaces_the_model_the_record_or_an_existing_file(run, tmp_path, capsys):
    before = _snapshot(run)
    model = run / "model.keras"
    mine = tmp_path / "mine.json"
    mine.write_text("my notes")
    for target, words in [(model, "model or its training record"),
                          (run / "metrics.json", "model or its training record"),
                          (run / "history.csv", "model or its training record"),
                          (mine, "--overwrite"),
                          (tmp_path, "is a folder")]:
        _refused(capsys, ["evaluate", "--model", model, "--out", target], "--out", words)
    _refused(capsys, ["evaluate", "--model", model, "--out", model, "--overwrite"], "model")
    assert _snapshot(run) == before and mine.read_text() == "my notes"


def test_evaluate_out_inside_the_data_folder_is_refused(run, tmp_path, capsys):
    from test_train import make_dsb_folder

    root = make_dsb_folder(tmp_path / "dsb")
    _refused(capsys, ["evaluate", "--model", run / "model.keras", "--data", root,
                      "--out", root / "result.json"], "inside --data")
    assert not (root / "result.json").exists()


def test_evaluate_writes_out_atomically_and_only_over_a_file_when_asked(run, tmp_path, capsys):
    out = tmp_path / "result.json"
    old = {"model": "m.keras", "data": "synthetic", "split": "test", "images": 1, "dice": 0.5,
           "iou": 0.3}  # a report an earlier evaluate wrote
    out.write_text(json.dumps(old))
    argv = ["evaluate", "--model", str(run / "model.keras"), "--out", str(out), "--overwrite"]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed and printed["seed"] == 42  # the record's split
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_evaluate_without_its_own_training_record_refuses_and_names_it(run, tmp_path, capsys):
    copied = tmp_path / "copied"
    copied.mkdir()
    (copied / "model.keras").write_bytes((run / "model.keras").read_bytes())
    _refused(capsys, ["evaluate", "--model", copied / "model.keras"], "metrics.json", "--seed")
    (copied / "metrics.json").write_text(json.dumps({"seed": 42, "data": "synthetic"}))
    _refused(capsys, ["evaluate", "--model", copied / "model.keras"], "metrics.json",
             "not the training record")
    files.write_run_record(copied, {"seed": 1})  # a record of this file ...
    (copied / "model.keras").write_bytes((run / "model.keras").read_bytes() + b"\0")  # ... a newer model
    _refused(capsys, ["evaluate", "--model", copied / "model.keras"], "another model")
    # naming the split yourself is the way out
    assert cli.main(["evaluate", "--model", str(copied / "model.keras"), "--seed", "42",
                     "--img-size", "32", "--quick"]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 42


def test_a_record_that_is_not_an_object_is_named(tmp_path, run, capsys):
    (tmp_path / "model.keras").write_bytes((run / "model.keras").read_bytes())
    (tmp_path / "metrics.json").write_text("[1, 2, 3]")
    _refused(capsys, ["evaluate", "--model", tmp_path / "model.keras"], "metrics.json", "list")


def test_evaluate_refuses_a_four_class_softmax_naming_the_shape(tmp_path, capsys):
    from unet_course.model import build_unet

    build_unet((None, None, 3), num_classes=4, base_filters=2, depth=2).save(tmp_path / "model.keras")
    files.write_run_record(tmp_path, {"data": "synthetic", "img_size": 32, "seed": 0, "quick": True})
    _refused(capsys, ["evaluate", "--model", tmp_path / "model.keras"], "(None, None, None, 4)")


@pytest.mark.parametrize("cut", ["half", "bytes"])
def test_a_truncated_or_corrupted_model_is_the_users_error(run, tmp_path, capsys, cut):
    data = (run / "model.keras").read_bytes()
    broken = data[: len(data) // 2] if cut == "half" else data[:100] + b"\xff" * 200 + data[300:]
    (tmp_path / "model.keras").write_bytes(broken)
    for argv in (["evaluate", "--model", tmp_path / "model.keras", "--seed", "0"],
                 ["predict", "--model", tmp_path / "model.keras", "--input", run,
                  "--output", tmp_path / "out"]):
        line = _refused(capsys, argv, "--model", "not a complete .keras file")
        assert "not found" not in line.lower()


# --------------------------------------------------------------------------- predict


def test_predict_output_inside_the_input_folder_is_refused(run, slides, capsys):
    (slides / "a_labels.png").write_bytes(b"the user's own labels")
    before = _snapshot(slides)
    for output in (slides, slides / "out"):
        _refused(capsys, ["predict", "--model", run / "model.keras", "--input", slides,
                          "--output", output, "--overwrite"], "--output", "inside --input")
    assert _snapshot(slides) == before


def test_a_truncated_image_stops_predict_before_any_output(run, slides, tmp_path, capsys):
    data = (slides / "b.png").read_bytes()
    (slides / "b.png").write_bytes(data[: len(data) // 2])  # a valid header, half the pixels
    out = tmp_path / "out"
    _refused(capsys, ["predict", "--model", run / "model.keras", "--input", slides,
                      "--output", out], "b.png", "not a readable image")
    assert not out.exists()


def test_a_folder_named_like_an_image_is_skipped(run, slides, tmp_path, capsys):
    (slides / "x.png").mkdir()
    assert cli.main(["predict", "--model", str(run / "model.keras"), "--input", str(slides),
                     "--output", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_labels.png", "a_overlay.png", "b_labels.png", "b_overlay.png"]


def test_a_full_disk_in_predict_names_the_file_and_leaves_nothing(run, slides, tmp_path, capsys,
                                                                   monkeypatch):
    import errno

    def full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    out = tmp_path / "out"
    _refused(capsys, ["predict", "--model", run / "model.keras", "--input", slides,
                      "--output", out], "No space left", "a_labels.png")
    assert not out.exists()


def test_predict_and_training_read_16bit_images_the_same_way(run, tmp_path, capsys, monkeypatch):
    """One reader: 12-bit data in a little-endian PNG and a big-endian TIFF reach the model as
    the DSB loader gives them to training (percentiles to 0-255, not /257, not min-max)."""
    import tifffile

    from unet_course import predict
    from unet_course.dsb2018 import load_dsb2018

    rng = np.random.default_rng(0)
    image = rng.integers(100, 400, (48, 48)).astype(np.uint16)
    image[5:9, 5:9] = 4095  # a few saturated pixels: a min-max stretch would differ
    sample = tmp_path / "dsb" / "s"
    (sample / "images").mkdir(parents=True)
    (sample / "masks").mkdir()
    Image.fromarray(image).save(sample / "images" / "s.png")
    Image.fromarray(((image > 300) * 255).astype(np.uint8)).save(sample / "masks" / "m.png")
    (tmp_path / "in").mkdir()
    Image.fromarray(image).save(tmp_path / "in" / "little.png")
    tifffile.imwrite(tmp_path / "in" / "big.tif", image.astype(">u2"), byteorder=">")
    seen = {}
    real = predict.predict_instances

    def spy(model, pixels, *args, **kwargs):
        seen[len(seen)] = np.array(pixels)
        return real(model, pixels, *args, **kwargs)

    monkeypatch.setattr(predict, "predict_instances", spy)
    assert cli.main(["predict", "--model", str(run / "model.keras"), "--input",
                     str(tmp_path / "in"), "--output", str(tmp_path / "out")]) == 0
    training_view = load_dsb2018(tmp_path / "dsb")[0][0]
    assert len(seen) == 2
    for pixels in seen.values():
        np.testing.assert_array_equal(pixels, training_view)
    big, little = (np.asarray(Image.open(tmp_path / "out" / f"{n}_labels.png"))
                   for n in ("big", "little"))
    np.testing.assert_array_equal(big, little)


# --------------------------------------------------------------------------- train and the rest


def test_train_refuses_out_inside_data_and_empty_data_and_tiny_sizes(tmp_path, capsys):
    from test_train import make_dsb_folder

    root = make_dsb_folder(tmp_path / "dsb")
    _refused(capsys, ["train", "--data", root, "--out", root / "run"], "--out", "inside --data")
    assert not (root / "run").exists()
    _refused(capsys, ["train", "--data", "", "--out", tmp_path / "o"], "--data")
    _refused(capsys, ["train", "--out", tmp_path / "o", "--img-size", "16"], "--img-size 16")
    _refused(capsys, ["train", "--out", tmp_path / "o", "--seed", "4294967296"], "--seed")
    assert not (tmp_path / "o").exists()


def test_an_unwritable_out_folder_is_refused_before_work(tmp_path, capsys, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode))
    _refused(capsys, ["train", "--out", tmp_path / "o"], "--out", "not writable")
    _refused(capsys, ["predict", "--model", tmp_path / "m.keras", "--input", tmp_path,
                      "--output", tmp_path / "p"])


def test_a_missing_backend_is_named(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    _refused(capsys, ["doctor"], "KERAS_BACKEND='torch'", "not installed")


def _python(code: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, timeout=300)


def test_path_and_number_checks_happen_before_tensorflow_is_imported(tmp_path):
    code = ("import sys; from unet_course import cli\n"
            f"codes = [cli.main(['train', '--out', {str(tmp_path / 'o')!r}, '--seed', '4294967296']),\n"
            f"         cli.main(['evaluate', '--model', {str(tmp_path / 'm.keras')!r}]),\n"
            f"         cli.main(['train', '--out', {str(tmp_path / 'o')!r}, '--img-size', '16'])]\n"
            "print(codes, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = _python(code)
    assert done.stdout.strip() == "[2, 2, 2] False False", done.stderr[-2000:]


def test_the_command_line_prints_no_tensorflow_startup_lines():
    done = _python("from unet_course.cli import main; raise SystemExit(main(['doctor']))",
                   KERAS_BACKEND="tensorflow")
    assert done.returncode == 0 and "GPUs:" in done.stdout
    assert done.stderr.strip() == "", done.stderr[-2000:]


def test_quick_training_does_not_run_out_of_data_and_writes_its_record(tmp_path, capsys, recwarn):
    out = tmp_path / "run"
    # 16 quick training slides in batches of 8, 6 steps checked every 4: passes of 4 and 2
    assert cli.main(["train", "--out", str(out), "--model", "unet", "--base-filters", "2",
                     "--depth", "2", "--quick", "--img-size", "32", "--batch-size", "8",
                     "--steps", "6"]) == 0
    captured = capsys.readouterr()
    said = captured.out + captured.err + " ".join(str(w.message) for w in recwarn)
    assert "ran out of data" not in said
    assert len(files.read_run_record(out / "model.keras")) > 5
    assert files.read_run_record(out / "model.keras")["seed"] == 42
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "metrics.json", "model.keras"]
