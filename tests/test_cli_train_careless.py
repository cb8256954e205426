"""`train` tried carelessly (issue 26's third trial): every mistake below is refused in one
line with exit code 2 before any training, or stops the run as Ctrl-C does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_checks import refused as _refused
from dsb_fixture import make_dsb_fixture
from PIL import Image


@pytest.mark.parametrize("out", [".", ""])
def test_the_folder_you_are_in_is_refused_as_out(out, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(capsys, ["train", "--quick", "--out", out], "the folder you are working in")
    assert list(tmp_path.iterdir()) == []


def test_an_out_whose_folder_cannot_be_written_is_refused(tmp_path, capsys, monkeypatch):
    from unet_course.commands import common

    real = os.access
    monkeypatch.setattr(common.os, "access",
                        lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    _refused(capsys, ["train", "--quick", "--out", tmp_path / "run"], "is not writable")


def _folder(root: Path, masks: str) -> Path:
    """Three slides; their masks: one label map each, or every mask blank."""
    make_dsb_fixture(root, specs=[(48, 48, "grey")] * 3)
    for sample in root.iterdir():
        paths = sorted((sample / "masks").iterdir())
        if masks == "label map":
            labels = sum((i + 1) * (np.asarray(Image.open(p)) > 0) for i, p in enumerate(paths))
            for p in paths:
                p.unlink()
            Image.fromarray(labels.astype(np.uint8)).save(sample / "masks" / "labels.png")
        else:
            for p in paths:
                Image.fromarray(np.zeros((48, 48), np.uint8)).save(p)
    return root


def test_a_label_map_in_place_of_one_mask_per_nucleus_is_refused(tmp_path, capsys):
    data = _folder(tmp_path / "dsb", "label map")
    _refused(capsys, ["train", "--quick", "--data", data, "--out", tmp_path / "o"],
             "labels.png", "label map", "one PNG per nucleus")
    assert not (tmp_path / "o").exists()


def test_a_folder_whose_masks_are_all_blank_is_refused(tmp_path, capsys):
    data = _folder(tmp_path / "dsb", "blank")
    _refused(capsys, ["train", "--quick", "--data", data, "--out", tmp_path / "o"],
             "no training slide has a nucleus")
    assert not (tmp_path / "o").exists()


def test_a_data_folder_one_level_off_gets_the_right_one_named(tmp_path, capsys):
    data = tmp_path / "outer" / "stage1_train"
    make_dsb_fixture(data, specs=[(48, 48, "grey")] * 3)
    slide = next(data.iterdir())
    _refused(capsys, ["train", "--quick", "--data", slide, "--out", tmp_path / "o"],
             "one slide's folder", str(data))
    _refused(capsys, ["train", "--quick", "--data", tmp_path / "outer", "--out", tmp_path / "o"],
             f"give --data {str(data)!r}")


@pytest.mark.parametrize("argv, words", [
    (["--batch-size", "100000"], ["--batch-size 100000", "GiB"]),
    (["--img-size", "100000"], ["100000x100000", "GiB"]),
    (["--model", "unet", "--activation", "nosuch"], ["--activation 'nosuch'"]),
    (["--model", "unet", "--depth", "20"], ["--depth 20", "--depth 6 at most"]),
    (["--model", "unet", "--depth", "9", "--img-size", "512"], ["--depth 9", "GiB"]),
    (["--synthetic-share", "0.3"], ["--synthetic-share", "--data FOLDER"]),
])
def test_impossible_settings_are_refused_before_training(argv, words, tmp_path, capsys):
    _refused(capsys, ["train", "--quick", "--out", tmp_path / "o", *argv], *words)
    assert not (tmp_path / "o").exists()


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_the_numpy_backend_runs_doctor_and_refuses_to_train(tmp_path):
    main = "from unet_course.cli import main; raise SystemExit(main({!r}))"
    doctor = _python(main.format(["doctor"]), KERAS_BACKEND="numpy")
    assert doctor.returncode == 0 and "--devices all would use: cpu:0" in doctor.stdout
    train = _python(main.format(["train", "--quick", "--out", str(tmp_path / "o")]),
                    KERAS_BACKEND="numpy")
    assert train.returncode == 2 and "KERAS_BACKEND=numpy cannot train" in train.stderr
    assert not (tmp_path / "o").exists()


def test_sigterm_stops_training_as_ctrl_c_does_and_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    run = subprocess.Popen([sys.executable, "-m", "unet_course", "train", "--quick",
                            "--steps", "400", "--out", str(out)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**os.environ,
                                                                    "UNET_COURSE_QUICK": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob(".run.new-*/*")):
        time.sleep(0.5)  # until the run has started writing
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err[-2000:]
    assert "nothing of it was kept" in err
    assert list(tmp_path.iterdir()) == []


def test_evaluate_refuses_a_synthetic_slide_too_large_for_memory(tmp_path, capsys):
    import zipfile

    model = tmp_path / "m.keras"
    with zipfile.ZipFile(model, "w") as archive:  # refused before Keras reads it
        archive.writestr("config.json", "{}")
        archive.writestr("metadata.json", "{}")
    _refused(capsys, ["evaluate", "--model", model, "--seed", "1", "--img-size", "100000"],
             "--img-size 100000", "GiB")
