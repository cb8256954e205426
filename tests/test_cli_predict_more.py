"""``predict`` on what issue 26 left open: a model the course did not build, a line as a
large image starts, ``--resume`` after an interrupted run, and images too large for memory.

Run in process on tiny random-weight models; the labels written are compared with
``predict.predict_instances`` called directly.
"""

from __future__ import annotations

import signal
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from unet_course import cli, files, predict
from unet_course.commands import predict as predict_command


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny course unet (with its record) and three plain Keras models: a 3-channel-in
    sigmoid segmenter, the same with a linear head, and an image classifier."""
    import keras

    from unet_course.model import build_unet

    folder = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    (folder / "run").mkdir()
    build_unet((None, None, 3), base_filters=4, depth=2, rescale=1 / 255).save(
        folder / "run" / "model.keras")
    files.write_run_record(folder / "run", {"data": "synthetic", "img_size": 32, "seed": 42,
                                            "quick": True, "best_threshold": 0.5, "model": "unet"})
    for name, head in (("plain", "sigmoid"), ("linear", None)):
        inputs = keras.Input((None, None, 3))
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
        x = keras.layers.UpSampling2D()(keras.layers.MaxPooling2D()(x))
        keras.Model(inputs, keras.layers.Conv2D(1, 1, activation=head)(x)).save(
            folder / f"{name}.keras")
    inputs = keras.Input((32, 32, 3))
    classes = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    keras.Model(inputs, classes).save(folder / "classifier.keras")
    return {"unet": folder / "run" / "model.keras",
            **{name: folder / f"{name}.keras" for name in ("plain", "linear", "classifier")}}


def _predict(*argv) -> int:
    return cli.main(["predict", *map(str, argv)])


def _one_line_error(capsys, code: int, *words) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], (code, err)
    for word in words:
        assert word in err[0], (word, err[0])
    return err[0]


def test_a_plain_keras_model_gets_a_note_and_is_predicted_as_an_older_model(models, slides,
                                                                            tmp_path, capsys):
    import keras

    out = tmp_path / "out"
    assert _predict("--model", models["plain"], "--input", slides, "--output", out) == 0
    captured = capsys.readouterr()
    assert "is not a course model" in captured.err and "0-255 pixels" in captured.err
    assert "note:" not in captured.out and "a.png: " in captured.out  # results on stdout
    model = keras.saving.load_model(models["plain"])
    for stem in "ab":
        image = np.asarray(Image.open(slides / f"{stem}.png").convert("RGB"))
        expected, _ = predict.predict_instances(model, image, "watershed")
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{stem}_labels.png")),
                                      expected)
    assert _predict("--model", models["unet"], "--input", slides, "--output", tmp_path / "u") == 0
    assert "course model" not in capsys.readouterr().err  # the course's own: no note


@pytest.mark.parametrize("name, words", [("linear", ("'linear'", "not probabilities")),
                                         ("classifier", ("(None, 2)", "segmentation network"))])
def test_a_model_whose_output_is_no_probability_map_is_refused(models, slides, tmp_path, capsys,
                                                               name, words):
    code = _predict("--model", models[name], "--input", slides, "--output", tmp_path / "out")
    _one_line_error(capsys, code, f"{name}.keras", *words)
    assert not (tmp_path / "out").exists()


def test_a_large_image_gets_a_line_as_it_starts(models, slides, tmp_path, capsys, monkeypatch):
    assert _predict("--model", models["unet"], "--input", slides, "--output", tmp_path / "o") == 0
    assert "predicting" not in capsys.readouterr().err  # small images: no such line
    monkeypatch.setattr(predict_command, "LARGE", 48 * 48)
    assert _predict("--model", models["unet"], "--input", slides, "--output", tmp_path / "p") == 0
    err = capsys.readouterr().err
    assert "a.png (1 of 2): 48x48 pixels, predicting" in err
    assert "b.png (2 of 2): 48x48 pixels, predicting" in err


def test_resume_keeps_finished_pairs_and_predicts_the_rest(models, slides, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--model", models["unet"], "--input", slides, "--output", out]
    assert _predict(*argv) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    Image.open(slides / "a.png").save(slides / "c.png")
    (out / "b_overlay.png").unlink()  # b's pair is incomplete: it is predicted again
    (out / "b_labels.png").write_bytes(b"half a pair")
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("a_*")}
    capsys.readouterr()
    _one_line_error(capsys, _predict(*argv), "exists", "--resume", "--overwrite")
    _one_line_error(capsys, _predict(*argv, "--resume", "--overwrite"), "--resume", "--overwrite")
    assert _predict(*argv, "--resume") == 0
    said = capsys.readouterr().out
    assert "3 images: 2 segmented" in said and "1 kept from before (--resume)" in said
    assert "a.png" not in said and "wrote 4 files" in said
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("a_*")} == stamps  # not rewritten
    for name in ("b_labels.png", "b_overlay.png"):
        assert (out / name).read_bytes() == first[name]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "c_labels.png")),
                                  np.asarray(Image.open(out / "a_labels.png")))
    assert _predict(*argv, "--resume") == 0  # all done: nothing to predict, Keras not needed
    assert "3 images: 0 segmented" in capsys.readouterr().out


def test_an_interrupted_run_says_resume_picks_up_the_rest(models, slides, tmp_path, capsys,
                                                          monkeypatch):
    """A Ctrl-C while the first image is predicted (lost where it lands, as in a garbage
    collection callback): the line names --resume, and --resume predicts the second."""
    real = predict.predict_instances

    def interrupted(*args, **kwargs):
        try:
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.01)  # the Python handler runs here
        except KeyboardInterrupt:
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(predict, "predict_instances", interrupted)
    out = tmp_path / "out"
    assert _predict("--model", models["unet"], "--input", slides, "--output", out) == 130
    err = capsys.readouterr().err
    assert "1 of 2 images" in err and "--resume" in err
    monkeypatch.undo()
    assert _predict("--model", models["unet"], "--input", slides, "--output", out,
                    "--resume") == 0
    assert "1 segmented" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "a_labels.png", "a_overlay.png", "b_labels.png", "b_overlay.png"]


def _png_claiming(path, width: int, height: int) -> None:
    """A small PNG whose header says ``width x height`` (its pixels are not all there)."""
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # IHDR's checksum
    path.write_bytes(bytes(data))


def test_an_image_too_large_for_memory_is_named_before_it_is_decoded(models, slides, tmp_path,
                                                                     capsys, monkeypatch):
    _png_claiming(slides / "huge.png", 50000, 40000)
    with monkeypatch.context() as patch:  # the header is read as written
        patch.setattr(Image, "MAX_IMAGE_PIXELS", None)
        with Image.open(slides / "huge.png") as im:
            assert im.size == (50000, 40000)

    real = files.read_image

    def not_the_huge_one(path, *args, **kwargs):
        assert path.name != "huge.png", "decoded"
        return real(path, *args, **kwargs)

    monkeypatch.setattr(files, "read_image", not_the_huge_one)
    out = tmp_path / "out"
    code = _predict("--model", models["unet"], "--input", slides, "--output", out)
    _one_line_error(capsys, code, "huge.png", "50000x40000 pixels", "GiB", "smaller images")
    assert not out.exists()


def test_running_out_of_memory_on_one_image_is_named_and_the_rest_go_on(models, slides,
                                                                        tmp_path, capsys,
                                                                        monkeypatch):
    real = predict.predict_instances

    def no_memory_for_b(model, image, *args, **kwargs):
        if image.shape[0] == 40:
            raise MemoryError
        return real(model, image, *args, **kwargs)

    Image.open(slides / "a.png").crop((0, 0, 40, 40)).save(slides / "b.png")
    monkeypatch.setattr(predict, "predict_instances", no_memory_for_b)
    out = tmp_path / "out"
    assert _predict("--model", models["unet"], "--input", slides, "--output", out) == 1
    captured = capsys.readouterr()
    assert "b.png: failed, nothing written for it (out of memory" in captured.err
    assert "2 images: 1 segmented, 0 blank or tiny (empty label maps), 1 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.png", "a_overlay.png"]


def test_an_older_model_is_predicted_at_the_threshold_its_record_chose(models, slides, tmp_path,
                                                                       capsys):
    """The threshold evaluate scores a one-channel model at (metrics.json's best_threshold)
    is the one predict uses, unless --threshold is given; a broken one is named."""
    import keras

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(models["unet"].read_bytes())
    model = keras.saving.load_model(run / "model.keras")
    image = np.asarray(Image.open(slides / "a.png").convert("RGB"))
    _, probs = predict.predict_instances(model, image)
    chosen = float(np.quantile(probs, 0.3))  # some pixels on either side
    expected = {t: predict.predict_instances(model, image, threshold=t)[0] for t in (chosen, 0.5)}
    assert not np.array_equal(expected[chosen], expected[0.5])
    files.write_run_record(run, {"best_threshold": chosen, "model": "unet"})
    for extra, threshold in (([], chosen), (["--threshold", "0.5"], 0.5)):
        out = tmp_path / f"out{len(extra)}"
        assert _predict("--model", run / "model.keras", "--input", slides / "a.png",
                        "--output", out, *extra) == 0
        np.testing.assert_array_equal(np.asarray(Image.open(out / "a_labels.png")),
                                      expected[threshold])
    files.write_run_record(run, {"best_threshold": "high", "model": "unet"})
    capsys.readouterr()
    code = _predict("--model", run / "model.keras", "--input", slides, "--output", tmp_path / "x")
    _one_line_error(capsys, code, "best_threshold", "'high'")


def test_ctrl_c_in_an_overwrite_run_advises_overwrite_and_resume_says_what_it_keeps(
        models, slides, tmp_path, capsys, monkeypatch):
    """--resume after an interrupted --overwrite would keep outputs of other settings."""
    from unet_course import interrupts

    out = tmp_path / "out"
    assert _predict("--model", models["unet"], "--input", slides, "--output", out) == 0
    real = predict_command._segment_one

    def interrupted(*args, **kwargs):
        said = real(*args, **kwargs)
        monkeypatch.setattr(interrupts, "check", lambda: (_ for _ in ()).throw(KeyboardInterrupt))
        return said

    monkeypatch.setattr(predict_command, "_segment_one", interrupted)
    capsys.readouterr()
    assert _predict("--model", models["unet"], "--input", slides, "--output", out,
                    "--overwrite") == 130
    err = capsys.readouterr().err
    assert "with --overwrite" in err and "--resume to predict" not in err, err
    monkeypatch.undo()
    with pytest.raises(SystemExit):
        _predict("--help")
    assert "whatever settings made them" in " ".join(capsys.readouterr().out.split())


def test_resume_predicts_again_an_image_whose_label_png_does_not_open(models, slides, tmp_path,
                                                                      capsys):
    out = tmp_path / "out"
    argv = ["--model", models["unet"], "--input", slides, "--output", out]
    assert _predict(*argv) == 0
    first = (out / "a_labels.png").read_bytes()
    (out / "a_labels.png").write_text("junk\n")
    capsys.readouterr()
    assert _predict(*argv, "--resume") == 0
    said = capsys.readouterr().out
    assert "1 segmented" in said and "1 kept from before" in said and "a.png: " in said
    assert (out / "a_labels.png").read_bytes() == first


def test_every_unreadable_image_of_a_folder_is_named_in_one_error(models, slides, tmp_path,
                                                                  capsys):
    import tifffile

    nan = np.zeros((16, 16), np.float32)
    nan[3, 4] = np.nan
    tifffile.imwrite(slides / "nan.tif", nan)
    (slides / "text.png").write_text("not an image\n")
    (slides / "cut.png").write_bytes((slides / "a.png").read_bytes()[:200])
    out = tmp_path / "out"
    code = _predict("--model", models["unet"], "--input", slides, "--output", out)
    _one_line_error(capsys, code, "3 images", "nan.tif", "text.png", "cut.png", "NaN")
    assert not out.exists()


def test_paths_that_are_not_what_they_should_be_are_named(models, slides, tmp_path, capsys):
    out = tmp_path / "out"
    code = _predict("--model", models["unet"], "--input", tmp_path / "nonexistent.png",
                    "--output", out)
    _one_line_error(capsys, code, "nonexistent.png", "does not exist")
    run = models["unet"].parent
    code = _predict("--model", run, "--input", slides, "--output", out)
    _one_line_error(capsys, code, "is a folder", f"--model {str(run / 'model.keras')!r}")
    code = cli.main(["evaluate", "--model", str(run)])
    _one_line_error(capsys, code, "is a folder", f"--model {str(run / 'model.keras')!r}")
    Image.open(slides / "a.png").save(slides / "a.tif")
    code = _predict("--model", models["unet"], "--input", slides, "--output", out)
    _one_line_error(capsys, code, "a.png", "a.tif", "collide")
    assert not out.exists()


def test_tile_errors_name_tile_and_the_model_file(tmp_path, slides, capsys):
    import keras

    inputs = keras.Input((64, 64, 3))
    x = keras.layers.UpSampling2D()(keras.layers.MaxPooling2D()(inputs))
    keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x)).save(
        tmp_path / "fixed.keras")
    inputs = keras.Input((None, None, 3))
    keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)).save(
        tmp_path / "flat.keras")
    out = tmp_path / "out"
    code = _predict("--model", tmp_path / "fixed.keras", "--input", slides, "--output", out,
                    "--tile", 7)
    line = _one_line_error(capsys, code, "--tile 7", "fixed.keras", "(64, 64)")
    assert "functional" not in line and "tile=" not in line
    code = _predict("--model", tmp_path / "flat.keras", "--input", slides, "--output", out)
    line = _one_line_error(capsys, code, "flat.keras", "no pooling layer")
    assert "functional" not in line


def test_evaluate_names_a_model_for_grey_images(tmp_path, capsys):
    import keras

    inputs = keras.Input((None, None, 1))
    x = keras.layers.UpSampling2D()(keras.layers.MaxPooling2D()(inputs))
    keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x)).save(
        tmp_path / "grey.keras")
    code = cli.main(["evaluate", "--model", str(tmp_path / "grey.keras"), "--seed", "0",
                     "--quick", "--img-size", "32"])
    line = _one_line_error(capsys, code, "--model", "grey.keras", "1-channel", "RGB")
    assert "(H, W, 1)" not in line


def test_a_label_map_covering_nearly_the_whole_image_gets_a_warning(models, slides, tmp_path,
                                                                    capsys, monkeypatch):
    argv = ["--model", models["plain"], "--input", slides]
    assert _predict("--model", models["unet"], "--input", slides, "--output", tmp_path / "o") == 0
    out = capsys.readouterr()
    assert "labelled as nuclei" not in out.err and "a.png: " in out.out

    def everything(model, image, *args, **kwargs):
        labels = np.ones(image.shape[:2], np.int32)
        labels[:4] = 0  # 44 of 48 rows
        return labels, None

    monkeypatch.setattr(predict, "predict_instances", everything)
    assert _predict(*argv, "--output", tmp_path / "p") == 0
    err = capsys.readouterr().err
    for name in ("a.png", "b.png"):
        assert (f"{name}: 92% of the image was labelled as nuclei: check the overlay; if "
                "nuclei and background are swapped, invert the image") in err


def test_predict_on_a_dsb_folder_points_at_the_images_folders(tmp_path, capsys):
    import zipfile

    from dsb_fixture import make_dsb_fixture

    from unet_course import cli

    make_dsb_fixture(tmp_path / "dsb", specs=[(48, 48, "grey")] * 2)
    model = tmp_path / "m.keras"
    with zipfile.ZipFile(model, "w") as archive:  # the inputs are checked before Keras reads it
        archive.writestr("config.json", "{}")
    code = cli.main(["predict", "--model", str(model), "--input", str(tmp_path / "dsb"),
                     "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "a DSB folder? its images lie in" in err and "/images'" in err, err
