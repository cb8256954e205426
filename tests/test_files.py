"""Tests for unet_course.files (atomic writes, the run record, the one image reader) and the
atomic training callbacks of unet_course.callbacks that use it (issue 13)."""

from __future__ import annotations

import errno
import json
import os
import signal
import zipfile

import numpy as np
import pytest
from PIL import Image

from unet_course import files


@pytest.fixture(autouse=True)
def _python_handles_ctrl_c():
    """Ctrl-C as in a terminal: Python's default handler. pytest-xdist workers ignore SIGINT
    (their controller handles it), which would hide what these tests check."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_failed_write_keeps_the_previous_file_and_names_it(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text(json.dumps({"run": 1}))
    with pytest.raises(OSError) as info, files.atomic_path(target) as tmp:
        tmp.write_text('{"run": 2, "trunc')
        raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC and str(target) in str(info.value)
    assert files.user_os_error(info.value)
    assert json.loads(target.read_text()) == {"run": 1}
    assert _leftovers(tmp_path) == []


def test_ctrl_c_inside_a_write_is_honoured_after_it(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt), files.atomic_path(target) as tmp:
        tmp.write_text("first half, ")
        os.kill(os.getpid(), signal.SIGINT)
        tmp.write_text("first half, second half")
    assert target.read_text() == "first half, second half"  # complete, then interrupted
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _tiny_model():
    import keras

    from unet_course.model import build_unet

    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 3), base_filters=2, depth=2, rescale=1 / 255)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def _checkpoint(path):
    """A ``ScoreCheckpoint`` whose scripted score rises at every check: each check saves."""
    from unet_course.callbacks import ScoreCheckpoint

    x, y = _tiny_data()
    rising = iter(range(100))
    return ScoreCheckpoint(list(x[:1]), [y[0, ..., 0].astype(np.int32)],
                           lambda labels, probs: {"val_score": float(next(rising))}, path)


def _tiny_data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (4, 16, 16, 3)).astype("float32")
    return x, (x[..., :1] > 128).astype("float32")


def test_ctrl_c_during_a_checkpoint_write_stops_training_after_the_write(tmp_path):
    import keras

    from unet_course.callbacks import AtomicCSVLogger

    model, (x, y) = _tiny_model(), _tiny_data()
    real_save, calls = model.save, []

    def save_then_interrupted(path, *args, **kwargs):
        calls.append(path)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives while the file is being written
        real_save(path, *args, **kwargs)

    model.save = save_then_interrupted
    callbacks = [_checkpoint(tmp_path / "model.keras"), AtomicCSVLogger(tmp_path / "history.csv")]
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=4, batch_size=2, callbacks=callbacks, verbose=0)
    assert len(calls) == 1  # not swallowed: no further epoch ran
    assert keras.saving.load_model(tmp_path / "model.keras").count_params() == model.count_params()
    assert _leftovers(tmp_path) == []


def test_ctrl_c_while_batches_are_made_stops_training(tmp_path):
    """Keras takes a KeyboardInterrupt inside the data pipeline for the end of the data and
    goes on with the next epoch; HonourInterrupt stops at the next batch end instead."""
    import keras

    from unet_course.callbacks import HonourInterrupt

    x, y = _tiny_data()
    made = []

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            made.append(i)
            if len(made) == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return x[2 * i: 2 * i + 2], y[2 * i: 2 * i + 2]

    model = _tiny_model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(Batches(), epochs=5, callbacks=[HonourInterrupt()], verbose=0)
    assert len(made) <= 4  # stopped in the second epoch, not after five
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_best(tmp_path):
    model, (x, y) = _tiny_model(), _tiny_data()
    checkpoint = _checkpoint(tmp_path / "model.keras")
    model.fit(x, y, epochs=1, batch_size=2, callbacks=[checkpoint], verbose=0)
    before = (tmp_path / "model.keras").read_bytes()

    def full_disk(path, *args, **kwargs):
        path.write_bytes(b"PK\x03\x04 truncated")
        raise OSError(errno.ENOSPC, "No space left on device")

    model.save = full_disk
    with pytest.raises(OSError, match="model.keras"):
        model.fit(x, y, epochs=1, batch_size=2, callbacks=[checkpoint], verbose=0)
    assert (tmp_path / "model.keras").read_bytes() == before
    assert zipfile.is_zipfile(tmp_path / "model.keras") and _leftovers(tmp_path) == []


def test_the_csv_history_has_keras_columns_and_is_rewritten_whole(tmp_path):
    import csv

    import keras

    from unet_course.callbacks import AtomicCSVLogger

    model, (x, y) = _tiny_model(), _tiny_data()
    ours = AtomicCSVLogger(tmp_path / "ours.csv")
    theirs = keras.callbacks.CSVLogger(str(tmp_path / "theirs.csv"))
    model.fit(x, y, epochs=2, batch_size=2, validation_data=(x, y), callbacks=[ours, theirs],
              verbose=0)
    read = [list(csv.DictReader(open(tmp_path / n))) for n in ("ours.csv", "theirs.csv")]
    assert list(read[0][0]) == list(read[1][0]) and len(read[0]) == len(read[1]) == 2
    for a, b in zip(*read, strict=True):
        assert {k: float(v) for k, v in a.items()} == pytest.approx({k: float(v) for k, v in b.items()})


def test_the_run_record_belongs_to_one_model(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"model one")
    record = files.write_run_record(tmp_path, {"seed": 42})
    assert files.read_run_record(tmp_path / "model.keras") == record
    (tmp_path / "model.keras").write_bytes(b"model two, from a later run")
    with pytest.raises(ValueError, match="metrics.json.*another model"):
        files.read_run_record(tmp_path / "model.keras")
    (tmp_path / "metrics.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="metrics.json.*list"):
        files.read_run_record(tmp_path / "model.keras")
    (tmp_path / "metrics.json").unlink()
    assert files.read_run_record(tmp_path / "model.keras") is None


def test_a_truncated_or_corrupted_keras_file_is_named_as_such(tmp_path):
    model = _tiny_model()
    model.save(tmp_path / "good.keras")
    data = (tmp_path / "good.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 3: len(data) // 3 + 64] = b"\0" * 64
    (tmp_path / "bad.keras").write_bytes(bytes(flipped))
    assert files.check_keras_file(tmp_path / "good.keras") == tmp_path / "good.keras"
    for name in ("cut.keras", "bad.keras"):
        with pytest.raises(ValueError, match=f"{name}.*not a complete .keras file"):
            files.check_keras_file(tmp_path / name)


def _twelve_bit(seed: int = 0) -> np.ndarray:
    """A 12-bit slide stored in 16 bits: values 100..4095, a bright spot."""
    rng = np.random.default_rng(seed)
    image = rng.integers(100, 400, (40, 48)).astype(np.uint16)
    image[10:20, 10:20] = rng.integers(3000, 4096, (10, 10))
    return image


def test_sixteen_bit_is_read_the_same_whatever_the_byte_order(tmp_path):
    import tifffile

    image = _twelve_bit()
    Image.fromarray(image).save(tmp_path / "little.png")
    tifffile.imwrite(tmp_path / "big.tif", image.astype(">u2"), byteorder=">")
    little, big = files.read_image(tmp_path / "little.png"), files.read_image(tmp_path / "big.tif")
    assert big.dtype == little.dtype == np.uint16 and big.dtype.byteorder in "=|"
    np.testing.assert_array_equal(big, np.repeat(image[..., None], 3, -1))
    np.testing.assert_array_equal(little, big)


def test_to_uint8_maps_percentiles_and_keeps_8bit():
    image = _twelve_bit()
    low, high = np.percentile(image, [1, 99.8])
    expected = np.clip(np.rint((image - low) * 255 / (high - low)), 0, 255)
    np.testing.assert_array_equal(files.to_uint8(image), expected)
    eight = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert files.to_uint8(eight) is eight
    floats = image.astype(np.float32) / 4095
    assert np.abs(files.to_uint8(floats).astype(int) - expected).max() <= 1


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32, np.float64])
def test_to_uint8_equals_the_percentile_formula_by_hand(dtype):
    """The library call (skimage's rescale_intensity) gives the values of the formula written out
    with NumPy alone: (x - p1) * 255 / (p99.8 - p1), clipped to [0, 255], rounded."""
    rng = np.random.default_rng(4)
    image = (rng.gamma(2.0, 300.0, (37, 41, 3)) + rng.integers(0, 3, (37, 41, 3))).astype(dtype)
    values = image.astype(np.float64)
    low, high = np.percentile(values, [1, 99.8])
    expected = np.rint(np.clip((values - low) * (255 / (high - low)), 0, 255))
    got = files.to_uint8(image)
    assert got.dtype == np.uint8 and got.shape == image.shape
    np.testing.assert_array_equal(got, expected)


def test_to_uint8_of_flat_empty_and_nan_images():
    flat = np.full((10, 10), 700, np.uint16)
    flat[0, 0] = 900  # above the top percentile of an otherwise flat image: bright
    expected = np.zeros((10, 10), np.uint8)
    expected[0, 0] = 255
    np.testing.assert_array_equal(files.to_uint8(flat), expected)
    np.testing.assert_array_equal(files.to_uint8(np.full((3, 3), np.nan)), np.zeros((3, 3)))
    ramp = np.linspace(0, 1, 1001)
    ramp[500] = np.nan  # a NaN counts as the low percentile: 0
    low, high = np.percentile(np.delete(ramp, 500), [1, 99.8])
    got = files.to_uint8(ramp)
    assert got[500] == 0 and got[-1] == 255
    np.testing.assert_array_equal(np.delete(got, 500), np.rint(np.clip(
        (np.delete(ramp, 500) - low) * (255 / (high - low)), 0, 255)))


def test_sha256_equals_hashlib_on_the_bytes(tmp_path):
    import hashlib

    data = np.random.default_rng(0).bytes(3 << 20)  # larger than one read
    (tmp_path / "blob").write_bytes(data)
    assert files.sha256(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


DATA_PART = {"files", "dsb2018", "datasets", "data", "label_maps", "real_slide", "rendering",
             "interrupts"}


@pytest.mark.parametrize("module", sorted(DATA_PART))
def test_the_data_part_imports_no_train_or_predict_module(module):
    """The architecture rule: files, dsb2018, datasets, data, label_maps and real_slide (and the
    helpers they use) import only each other, at the top or inside a function."""
    import ast
    from pathlib import Path

    import unet_course

    source = Path(unet_course.__file__).parent / f"{module}.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("unet_course"):
            parts = node.module.split(".")
            imported |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.name.split(".")[1] for a in node.names
                         if a.name.startswith("unet_course.")}
    assert imported <= DATA_PART, imported - DATA_PART


def test_the_dsb_loader_reads_12bit_data_with_the_one_reader(tmp_path):
    from unet_course.dsb2018 import load_dsb2018

    sample = tmp_path / "dsb" / "a"
    (sample / "images").mkdir(parents=True)
    (sample / "masks").mkdir()
    image = _twelve_bit()
    Image.fromarray(image).save(sample / "images" / "a.png")
    Image.fromarray(((image > 1000) * 255).astype(np.uint8)).save(sample / "masks" / "m.png")
    images, _ = load_dsb2018(tmp_path / "dsb")
    assert images[0].max() == 255  # dividing by 257 gave at most 16: nearly black
    np.testing.assert_array_equal(images[0], files.to_uint8(files.read_image(
        sample / "images" / "a.png")))


def test_jpeg_masks_are_refused_not_ignored(tmp_path):
    from unet_course.dsb2018 import load_dsb2018

    sample = tmp_path / "dsb" / "a"
    (sample / "images").mkdir(parents=True)
    (sample / "masks").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(sample / "images" / "a.png")
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 255
    Image.fromarray(mask).save(sample / "masks" / "m1.png")
    Image.fromarray(mask).save(sample / "masks" / "m2.jpg")
    with pytest.raises(ValueError, match="m2.jpg.*not a PNG"):
        load_dsb2018(tmp_path / "dsb")


def test_grey_palette_rgba_and_one_pixel_images_read_as_three_channels(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (5, 6, 3)).astype(np.uint8)
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(rgb[:1, :1]).save(tmp_path / "one.png")
    np.testing.assert_array_equal(files.read_image(tmp_path / "rgba.png"), rgb)
    palette = np.asarray(Image.open(tmp_path / "palette.png").convert("RGB"))
    np.testing.assert_array_equal(files.read_image(tmp_path / "palette.png"), palette)
    np.testing.assert_array_equal(files.read_image(tmp_path / "grey.png"),
                                  np.repeat(rgb[..., :1], 3, -1))
    assert files.read_image(tmp_path / "one.png").shape == (1, 1, 3)


def test_a_truncated_image_is_named(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("not an image")
    for name in ("cut.png", "text.png"):
        with pytest.raises(ValueError, match=f"{name}.*not a readable image"):
            files.read_image(tmp_path / name)
