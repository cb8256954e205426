"""Tests for the instance parts of the command line: ``predict`` and ``evaluate --instances``.

Run in process (``cli.main``) on tiny random-weight U-Nets saved to ``.keras``: what is checked
is the plumbing (files, formats, tiling, refusals), not the quality of the nuclei.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from unet_course import cli, evaluate, postprocess, predict, scoring, targets
from unet_course.commands import evaluate as evaluate_command


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras

    from unet_course.model import build_unet

    folder = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    same = build_unet((None, None, 3), base_filters=4, depth=2, rescale=1 / 255)
    same.save(folder / "same.keras")
    valid = build_unet((None, None, 3), num_classes=3, base_filters=4, depth=2,
                       padding="valid", rescale=1 / 255)
    valid.save(folder / "three.keras")
    return {"same": folder / "same.keras", "three": folder / "three.keras"}


@pytest.fixture()
def slides(tmp_path):
    """A folder with an RGB, a grey and an RGBA image of different sizes, plus a text file."""
    from unet_course.data import make_nuclei

    folder = tmp_path / "slides"
    folder.mkdir()
    images, _ = make_nuclei(3, size=96, seed=0)
    Image.fromarray(np.concatenate([images[0], images[1][:, :40]], axis=1)).save(folder / "a.png")
    Image.fromarray(images[1]).convert("L").save(folder / "b.png")
    Image.fromarray(images[2][:70]).convert("RGBA").save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _load(path):
    import keras

    from unet_course import losses, metrics  # noqa: F401 (registers the custom objects)

    return keras.saving.load_model(path)


def test_predict_writes_16bit_labels_and_overlays_equal_to_the_package(models, slides, tmp_path):
    out = tmp_path / "out" / "nested"
    code = cli.main(["predict", "--model", str(models["same"]), "--input", str(slides),
                     "--output", str(out), "--tile", "64", "--instances", "components"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        f"{s}_{kind}.png" for s in "abc" for kind in ("labels", "overlay")]
    model = _load(models["same"])
    for stem, shape in (("a", (96, 136)), ("b", (96, 96)), ("c", (70, 96))):
        with Image.open(out / f"{stem}_labels.png") as im:
            assert im.mode == "I;16"
            written = np.asarray(im).astype(np.int64)
        image = np.asarray(Image.open(slides / f"{stem}.png").convert("RGB"))
        expected, _ = predict.predict_instances(model, image, "components", tile=64)
        assert written.shape == shape and np.array_equal(written, expected)
        overlay = np.asarray(Image.open(out / f"{stem}_overlay.png"))
        assert overlay.shape == (*shape, 3) and overlay.dtype == np.uint8


def test_predict_one_file_with_a_three_class_unpadded_model(models, slides, tmp_path):
    out = tmp_path / "out"
    code = cli.main(["predict", "--model", str(models["three"]), "--input",
                     str(slides / "c.png"), "--output", str(out), "--tile", "60"])
    assert code == 0
    labels = np.asarray(Image.open(out / "c_labels.png")).astype(np.int64)
    image = np.asarray(Image.open(slides / "c.png").convert("RGB"))
    expected, prob = predict.predict_instances(_load(models["three"]), image, "watershed", tile=60)
    assert prob.shape == (70, 96, 3) and np.array_equal(labels, expected)


def test_predict_refuses_to_overwrite_unless_asked(models, slides, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["predict", "--model", str(models["same"]), "--input", str(slides / "b.png"),
            "--output", str(out), "--tile", "64"]
    assert cli.main(argv) == 0
    (out / "b_overlay.png").write_bytes(b"mine")
    before = (out / "b_labels.png").read_bytes()
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert (out / "b_overlay.png").read_bytes() == b"mine"  # nothing was touched
    assert (out / "b_labels.png").read_bytes() == before
    assert cli.main([*argv, "--overwrite"]) == 0
    assert (out / "b_overlay.png").read_bytes() != b"mine"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--tile", "30"], "divisible"),  # not a size the model takes
        (["--tile", "64", "--overlap", "32"], "overlap"),  # nothing left to keep
        (["--threshold", "1.5"], "(0, 1)"),
    ],
)
def test_predict_bad_tiling_fails_before_writing(models, slides, tmp_path, capsys, extra, words):
    out = tmp_path / "never"
    code = cli.main(["predict", "--model", str(models["same"]), "--input", str(slides),
                     "--output", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err
    assert not out.exists()


def test_predict_user_errors(models, slides, tmp_path, capsys):
    model = str(models["same"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG but not really")
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    holes = tmp_path / "holes.tif"
    float_image = np.ones((16, 16), np.float32)
    float_image[3, 4] = np.nan
    tifffile.imwrite(holes, float_image)
    cases = [
        (["--model", str(tmp_path / "no.keras"), "--input", str(slides)],
         "no such file; expected a .keras file"),
        (["--model", model, "--input", str(tmp_path / "missing")], "expected an image file"),
        (["--model", model, "--input", str(slides / "notes.txt")], "expected an image file"),
        (["--model", model, "--input", str(empty)], "holds no"),
        (["--model", model, "--input", str(broken)], "not a readable image"),
        (["--model", model, "--input", str(holes)], "1 pixels are NaN or infinite"),
    ]
    for argv, words in cases:
        code = cli.main(["predict", *argv, "--output", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and words in err and "Traceback" not in err, (argv, err)
    code = cli.main(["predict", "--model", model, "--input", str(slides), "--output", str(a_file)])
    assert code == 2 and "is a file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["components", "watershed"])
def test_evaluate_reports_the_instance_score(models, tmp_path, method):
    args = cli.build_parser().parse_args(
        ["evaluate", "--model", str(models["same"]), "--img-size", "48", "--quick", "--seed", "0",
         "--instances", method])
    split, probs, result = evaluate.evaluate_model(
        args.model, evaluate_command.settings(args), args.split, args.instances, args.threshold)
    found = [postprocess.label_instances(p, result["threshold"], method) for p in probs]
    assert result["instances"] == method
    assert result["dsb_map"] == pytest.approx(scoring.dsb_score_dataset(split.labels, found))
    assert 0 <= result["dsb_map"] <= 1
    assert result["objects"] == sum(f.max() for f in found)
    json.dumps(result)  # the report stays JSON


def test_evaluate_defaults_to_the_watershed_and_help_names_the_options(capsys):
    args = cli.build_parser().parse_args(["evaluate", "--model", "m.keras"])
    assert args.instances == "watershed"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["predict", "--help"])
    text = capsys.readouterr().out
    assert "--overwrite" in text and "--tile" in text and "16-bit" in text


def test_the_weight_map_travels_with_its_crops_through_the_batches():
    """The paper's weight map (benchmarks/weight_map.py): the masks lose the borders between
    touching nuclei, each image gets ``unet_weight_map`` weights, served beside its mask."""
    from unet_course.data import make_nuclei
    from unet_course.sequence import SegmentationSequence

    images, labels = make_nuclei(3, size=96, seed=1, nuclei=(80, 100))  # crowded: they touch
    separated = [targets.separate_touching(lab) for lab in labels]
    plain = SegmentationSequence(images, labels, 3, augment=False, shuffle=False)
    weighted = SegmentationSequence(images, separated, 3, augment=False, shuffle=False,
                                    weights=[targets.unet_weight_map(s) for s in separated])
    x, y, w = weighted[0]
    assert np.array_equal(x, plain[0][0])
    assert np.array_equal(y[..., 0], (np.stack(separated) > 0).astype(np.float32))
    assert (y[..., 0] < plain[0][1][..., 0]).any()  # borders between touching nuclei are cut
    np.testing.assert_allclose(w, targets.unet_weight_map(np.stack(separated)), rtol=1e-6)


@pytest.fixture(scope="module")
def recipe_model(tmp_path_factory):
    """A random-weight recipe model (percentile layer, three classes), with and without the
    record that ``--scale auto`` needs."""
    import keras

    from unet_course import files, recipe

    keras.utils.set_random_seed(0)
    model = recipe.build_model(recipe.Recipe(base_filters=4, depth=2))
    bare, recorded = tmp_path_factory.mktemp("bare"), tmp_path_factory.mktemp("recorded")
    chosen = tmp_path_factory.mktemp("chosen")
    for folder in (bare, recorded, chosen):
        model.save(folder / "model.keras")
    post = {"threshold": 0.3, "seed_threshold": 0.5, "seed_contrast": 0.0, "smooth": 2.0,
            "min_size": 0}
    files.write_run_record(recorded, {"postprocessing": post, "train_median_area": 30.0})
    sized = {**post, "threshold": 0.4, "min_size": 5}  # what recipe.run records today
    files.write_run_record(chosen, {"postprocessing": sized, "postprocessing_native": post,
                                    "scale": "auto", "train_median_area": 30.0})
    return {"bare": bare / "model.keras", "recorded": recorded / "model.keras",
            "chosen": chosen / "model.keras", "post": post, "sized": sized}


def test_predict_scale_resizes_for_the_prediction_only(recipe_model, slides, tmp_path):
    import keras

    from unet_course import files, rescale

    path, post = recipe_model["recorded"], recipe_model["post"]
    for scale in ("0.5", "auto"):
        out = tmp_path / f"out_{scale}"
        assert cli.main(["predict", "--model", str(path), "--input", str(slides),
                         "--output", str(out), "--scale", scale]) == 0
        model = keras.saving.load_model(path)
        image = files.read_image(slides / "a.png")
        if scale == "auto":  # the two passes, written out: first pass, its nuclei, the factor
            first = predict.predict_classes(model, [image])[0]
            factor = rescale.choose_scale(postprocess.label_instances(first, method="watershed",
                                                                      **post), 30.0)
            probs = first if abs(factor - 1) < 0.1 else rescale.predict_at_scale(model, image,
                                                                                 factor)
        else:
            probs = rescale.predict_at_scale(model, image, 0.5)
        expected = postprocess.label_instances(probs, method="watershed", **post)
        written = np.asarray(Image.open(out / "a_labels.png"))
        assert written.shape == image.shape[:2]
        np.testing.assert_array_equal(written, expected)


@pytest.mark.parametrize("extra, words", [
    (["--scale", "0"], "from 0.1 to 10"),
    (["--scale", "big"], "'auto' or a number"),
])
def test_predict_scale_refuses_bad_values(recipe_model, slides, tmp_path, capsys, extra, words):
    code = cli.main(["predict", "--model", str(recipe_model["recorded"]), "--input", str(slides),
                     "--output", str(tmp_path / "out"), *extra])
    assert code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_predict_scale_auto_needs_the_record_and_a_recipe_model(recipe_model, models, slides,
                                                                 tmp_path, capsys):
    for model, scale, words in ((recipe_model["bare"], "auto", "no train_median_area"),
                                (models["same"], "auto", "no train_median_area"),
                                (models["same"], "0.5", "only the recipe's models")):
        code = cli.main(["predict", "--model", str(model), "--input", str(slides),
                         "--output", str(tmp_path / "out"), "--scale", scale])
        assert code == 2 and words in capsys.readouterr().err
        assert not (tmp_path / "out").exists()
    # --scale 1 is "as it is", which every model can do: a tiled model predicts as without it
    for extra in ([], ["--scale", "1"]):
        out = tmp_path / f"tiled{len(extra)}"
        assert cli.main(["predict", "--model", str(models["same"]), "--input", str(slides),
                         "--output", str(out), *extra]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "tiled0" / "a_labels.png")),
                                  np.asarray(Image.open(tmp_path / "tiled2" / "a_labels.png")))


@pytest.mark.parametrize("key, value, words", [
    ("scale", "bogus", "metrics.json: scale must be 'auto' or a number from 0.1 to 10"),
    ("scale", 0, "metrics.json: scale must be"),
    ("train_median_area", None, "no train_median_area"),
    ("train_median_area", -5, "train_median_area must be a positive number"),
    ("train_median_area", "203", "train_median_area must be a positive number"),
    ("postprocessing", "x", "postprocessing must be the watershed settings"),
])
def test_a_broken_record_is_refused_before_any_work(recipe_model, slides, tmp_path, capsys,
                                                    key, value, words):
    """A hand-edited metrics.json: predict and evaluate name the key and what train writes,
    before the model is loaded or any image predicted; nothing is written."""
    import shutil

    from unet_course import files

    folder = tmp_path / "run"
    shutil.copytree(recipe_model["chosen"].parent, folder)
    record = json.loads((folder / "metrics.json").read_text())
    record[key] = value
    if value is None:
        del record[key]
    files.write_run_record(folder, record)
    for argv in (["predict", "--input", str(slides), "--output", str(tmp_path / "out")],
                 ["evaluate", "--seed", "0", "--quick"]):
        code = cli.main([argv[0], "--model", str(folder / "model.keras"), *argv[1:]])
        assert code == 2 and words in capsys.readouterr().err, argv
        assert not (tmp_path / "out").exists()


def test_predict_says_when_it_has_no_record_and_which_scale_it_used(recipe_model, slides,
                                                                    tmp_path, capsys):
    for path, words in ((recipe_model["bare"], "no training record"),
                        (recipe_model["chosen"], "predicted at scale")):
        assert cli.main(["predict", "--model", str(path), "--input", str(slides),
                         "--output", str(tmp_path / path.parent.name)]) == 0
        captured = capsys.readouterr()
        assert words in (captured.err if words == "no training record" else captured.out)


def test_predict_follows_the_training_runs_choice_of_scale(recipe_model, slides, tmp_path):
    """A record of today's recipe.run (scale auto, settings for each way): predict
    size-normalises by default with the settings tuned for it; --scale 1 is one pass at the
    image's own size with the native settings."""
    import keras

    from unet_course import files, rescale

    path = recipe_model["chosen"]
    model = keras.saving.load_model(path)
    image = files.read_image(slides / "a.png")
    first = predict.predict_classes(model, [image])
    for extra, settings in (([], recipe_model["sized"]), (["--scale", "1"], recipe_model["post"])):
        out = tmp_path / f"out{len(extra)}"
        assert cli.main(["predict", "--model", str(path), "--input", str(slides),
                         "--output", str(out), *extra]) == 0
        if extra:
            probs = first[0]
        else:  # first pass with the native settings, then the factor it gives
            probs = rescale.predict_size_normalised(model, [image], recipe_model["post"], 30.0,
                                                    first=first)[0][0]
        expected = postprocess.label_instances(probs, method="watershed", **settings)
        np.testing.assert_array_equal(np.asarray(Image.open(out / "a_labels.png")), expected)


def test_evaluate_scores_the_size_normalised_pipeline(recipe_model, capsys):
    from unet_course import rescale

    argv = ["evaluate", "--model", str(recipe_model["chosen"]), "--img-size", "48", "--quick",
            "--seed", "0"]
    for extra, scale in (([], "auto"), (["--scale", "1"], 1.0)):
        args = cli.build_parser().parse_args(argv + extra)
        split, probs, result = evaluate.evaluate_model(
            args.model, evaluate_command.settings(args), args.split, args.instances)
        plan = rescale.pipeline(json.loads((recipe_model["chosen"].parent / "metrics.json")
                                           .read_text()), None if not extra else 1.0)
        assert result["scale"] == scale and result["postprocessing"] == plan.settings
        found = [postprocess.label_instances(p, method="watershed", **plan.settings)
                 for p in probs]
        assert result["dsb_map"] == pytest.approx(scoring.dsb_score_dataset(split.labels, found))
    code = cli.main(["evaluate", "--model", str(recipe_model["bare"]), "--seed", "0", "--quick",
                     "--scale", "auto"])
    assert code == 2 and "no train_median_area" in capsys.readouterr().err


def test_predict_gives_an_older_model_an_image_in_its_dyes_colour_as_grey(models, tmp_path,
                                                                         capsys):
    from unet_course.data import make_nuclei

    images, _ = make_nuclei(1, size=64, seed=3, style="fluorescence")
    grey = images[0].max(axis=-1)  # one brightness plane
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(folder / "grey.png")
    Image.fromarray(np.stack([np.zeros_like(grey)] * 2 + [grey], axis=-1)).save(folder / "blue.png")
    out = tmp_path / "out"
    assert cli.main(["predict", "--model", str(models["same"]), "--input", str(folder),
                     "--output", str(out), "--tile", "64"]) == 0
    labels = {s: np.asarray(Image.open(out / f"{s}_labels.png")) for s in ("grey", "blue")}
    assert np.array_equal(labels["blue"], labels["grey"])
    said = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert said["blue.png"].endswith("(one colour: predicted as grey)")
    assert said["grey.png"].endswith("grey_overlay.png")  # nothing to say
