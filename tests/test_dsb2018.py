"""The DSB2018 loader on fixtures in the real layout, and the download on a local server."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import stat
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from dsb_fixture import break_fixture, make_dsb_fixture
from PIL import Image

from unet_course import dsb2018


@pytest.fixture
def fixture_root(tmp_path):
    root = tmp_path / "stage1_train"
    return root, make_dsb_fixture(root)


# ------------------------------------------------------------------------------ loading

def test_loads_images_and_labels_at_native_resolution(fixture_root):
    root, truth = fixture_root
    images, labels = dsb2018.load_dsb2018(root)
    ids = dsb2018.dsb2018_ids(root)
    assert ids == sorted(truth)
    assert len(images) == len(labels) == 4
    shapes = set()
    for sample_id, image, label in zip(ids, images, labels, strict=True):
        want_image, want_labels = truth[sample_id]
        assert image.dtype == np.uint8 and image.shape == want_image.shape
        assert label.dtype == np.int32
        np.testing.assert_array_equal(image, want_image)  # RGBA and gray come back as RGB
        np.testing.assert_array_equal(label, want_labels)
        shapes.add(image.shape)
    assert len(shapes) == 4  # mixed sizes kept


def test_labels_follow_sorted_mask_files(fixture_root):
    root, _ = fixture_root
    sample = root / dsb2018.dsb2018_ids(root)[2]
    _, labels = dsb2018.load_dsb2018(root)
    for k, path in enumerate(sorted((sample / "masks").glob("*.png")), start=1):
        np.testing.assert_array_equal(labels[2] == k, np.asarray(Image.open(path)) == 255)


def test_limit_reads_the_first_ids(fixture_root):
    root, truth = fixture_root
    images, labels = dsb2018.load_dsb2018(root, limit=2)
    assert len(images) == len(labels) == 2
    np.testing.assert_array_equal(labels[1], truth[sorted(truth)[1]][1])
    with pytest.raises(ValueError, match="limit"):
        dsb2018.load_dsb2018(root, limit=0)


def test_ignores_files_and_hidden_folders(fixture_root):
    root, truth = fixture_root
    (root / "stage1_train.zip").write_bytes(b"not a sample")
    (root / "__MACOSX").mkdir()
    (root / ".ipynb_checkpoints").mkdir()
    assert dsb2018.dsb2018_ids(root) == sorted(truth)


@pytest.mark.parametrize("kind, error, words", [
    ("missing_masks", FileNotFoundError, "missing masks folder"),
    ("empty_masks", FileNotFoundError, "no mask PNG"),
    ("missing_image", FileNotFoundError, "missing image file"),
    ("unreadable_image", ValueError, "cannot read image file"),
    ("unreadable_mask", ValueError, "cannot read image file"),
    ("mask_size", ValueError, "has size"),
])
def test_broken_fixture_names_the_file(fixture_root, kind, error, words):
    root, _ = fixture_root
    culprit = break_fixture(root, kind)
    with pytest.raises(error, match=words) as info:
        dsb2018.load_dsb2018(root)
    assert str(culprit) in str(info.value)


def test_overlapping_masks_keep_the_first_or_raise(fixture_root):
    root, truth = fixture_root
    extra = break_fixture(root, "overlap")
    first_id = sorted(truth)[0]
    _, labels = dsb2018.load_dsb2018(root)
    want = truth[first_id][1].copy()
    k = want.max() + 1
    shifted = np.asarray(Image.open(extra)) > 0
    want[shifted & (want == 0)] = k  # overlapping pixels keep their first label
    np.testing.assert_array_equal(labels[0], want)
    with pytest.raises(ValueError, match="overlaps") as info:
        dsb2018.load_dsb2018(root, overlap="error")
    assert str(extra) in str(info.value)


def test_missing_root_and_empty_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dsb2018.load_dsb2018(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no sample folders"):
        dsb2018.load_dsb2018(tmp_path)


def test_an_image_saved_in_its_dyes_colour_loads_as_its_grey_brightness(tmp_path):
    """A blue DAPI image in the DSB layout loads grey, as predict.predict_classes shows such
    an image to the network, so training on it and predicting it agree."""
    root = tmp_path / "d"
    (root / "a" / "images").mkdir(parents=True)
    (root / "a" / "masks").mkdir()
    gray = np.random.default_rng(3).integers(0, 256, (20, 24)).astype(np.uint8)
    blue = np.zeros((20, 24, 3), np.uint8)
    blue[..., 2] = gray
    Image.fromarray(blue).save(root / "a" / "images" / "a.png")
    Image.fromarray(np.full((20, 24), 255, np.uint8)).save(root / "a" / "masks" / "m.png")
    (image,), _ = dsb2018.load_dsb2018(root)
    low, high = np.percentile(gray.astype(float), [1, 99.8])  # files.to_uint8 by hand
    expected = np.clip(np.rint((gray - low) / (high - low) * 255), 0, 255).astype(np.uint8)
    for k in range(3):
        np.testing.assert_array_equal(image[..., k], expected)


def test_sixteen_bit_gray_image_is_scaled(tmp_path):
    """16-bit images are mapped by their own 1st and 99.8th percentiles to 0 and 255 (the
    course's one normalisation, unet_course.files; issue 13: dividing by 257 made 12-bit
    data nearly black)."""
    root = tmp_path / "d"
    (root / "a" / "images").mkdir(parents=True)
    (root / "a" / "masks").mkdir()
    gray = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    Image.fromarray(gray).save(root / "a" / "images" / "a.png")
    Image.fromarray(np.full((3, 4), 255, np.uint8)).save(root / "a" / "masks" / "m.png")
    (image,), (labels,) = dsb2018.load_dsb2018(root)
    low, high = np.percentile(np.repeat(gray[..., None], 3, -1), [1, 99.8])  # all channels
    expected = np.clip(np.rint((gray - low) / (high - low) * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(image[..., 1], expected)
    assert image.dtype == np.uint8 and image[..., 1].max() == 255
    assert labels.min() == labels.max() == 1


def zip_folder(root: Path, prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + path.relative_to(root).as_posix())
    return buffer.getvalue()


def zip_with(name: str, data: bytes = b"x", symlink: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("aaa/images/aaa.png", b"fine")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, data)
    return buffer.getvalue()


class Server:
    """A tiny HTTP server on 127.0.0.1 serving bytes by path; '/broken' stops midway."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path.startswith("/broken"):
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    truth = make_dsb_fixture(tmp_path / "source")
    good = zip_folder(tmp_path / "source")
    files = {
        "/stage1_train.zip": good,
        "/wrapped.zip": zip_folder(tmp_path / "source", prefix="stage1_train/"),
        "/broken.zip": good,
        "/page.zip": b"<html>Sorry, moved</html>",
        "/escape.zip": zip_with("../evil.png"),
        "/absolute.zip": zip_with("/tmp/evil.png"),
        "/symlink.zip": zip_with("aaa/masks/link.png", b"/etc/passwd", symlink=True),
    }
    srv = Server(files)
    srv.truth, srv.sha256 = truth, hashlib.sha256(good).hexdigest()
    yield srv
    srv.close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_download_extracts_and_loads(server, tmp_path):
    dest = tmp_path / "data" / "dsb"
    got = dsb2018.download_dsb2018(dest, server.url + "/stage1_train.zip", sha256=server.sha256,
                                   expected_images=4, progress=False)
    assert got == dest
    images, labels = dsb2018.load_dsb2018(dest)
    for sample_id, label in zip(dsb2018.dsb2018_ids(dest), labels, strict=True):
        np.testing.assert_array_equal(label, server.truth[sample_id][1])
    record = json.loads((dest / dsb2018.MARKER).read_text())
    assert record["sha256"] == server.sha256 and record["images"] == 4
    assert leftovers(tmp_path / "data") == ["dsb"]  # no temporary files left
    # a second call finds the finished download and does not fetch again
    dsb2018.download_dsb2018(dest, server.url + "/stage1_train.zip", expected_images=4,
                             progress=False)
    assert server.requests.count("/stage1_train.zip") == 1


def test_download_unwraps_a_single_top_folder_and_keeps_archive(server, tmp_path):
    dest = tmp_path / "dsb"
    dsb2018.download_dsb2018(dest, server.url + "/wrapped.zip", expected_images=4,
                             keep_archive=True, progress=False)
    assert dsb2018.dsb2018_ids(dest) == sorted(server.truth)
    assert (tmp_path / "wrapped.zip").is_file() and zipfile.is_zipfile(tmp_path / "wrapped.zip")


def test_file_url_works(tmp_path):
    make_dsb_fixture(tmp_path / "src", specs=[(20, 24, "RGB")])
    archive = tmp_path / "local.zip"
    archive.write_bytes(zip_folder(tmp_path / "src"))
    dest = dsb2018.download_dsb2018(tmp_path / "out", archive.as_uri(), expected_images=1,
                                    progress=False)
    assert len(dsb2018.load_dsb2018(dest)[0]) == 1


@pytest.mark.parametrize("path, error, words", [
    ("/escape.zip", ValueError, "outside"),
    ("/absolute.zip", ValueError, "outside"),
    ("/symlink.zip", ValueError, "symbolic link"),
    ("/page.zip", ValueError, "not a zip"),
    ("/broken.zip", ConnectionError, "broke off"),  # shorter than its Content-Length
    ("/missing.zip", ConnectionError, "HTTP 404"),
])
def test_bad_downloads_leave_nothing_behind(server, tmp_path, path, error, words):
    parent = tmp_path / "data"
    parent.mkdir()
    with pytest.raises(error, match=words):
        dsb2018.download_dsb2018(parent / "dsb", server.url + path, expected_images=None,
                                 progress=False)
    assert leftovers(parent) == []
    assert not (tmp_path / "evil.png").exists() and not Path("/tmp/evil.png").exists()


def test_wrong_checksum_and_count_are_refused(server, tmp_path):
    with pytest.raises(ValueError, match="SHA-256"):
        dsb2018.download_dsb2018(tmp_path / "a", server.url + "/stage1_train.zip",
                                 sha256="0" * 64, expected_images=4, progress=False)
    with pytest.raises(ValueError, match="holds 4 images"):
        dsb2018.download_dsb2018(tmp_path / "b", server.url + "/stage1_train.zip",
                                 progress=False)  # expects 670 by default
    assert leftovers(tmp_path) == ["source"]


def test_offline_gives_a_clear_message(tmp_path):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionError, match="online") as info:
        dsb2018.download_dsb2018(tmp_path / "dsb", f"http://127.0.0.1:{port}/stage1_train.zip",
                                 timeout=5, progress=False)
    assert "synthetic" in str(info.value)
    assert leftovers(tmp_path) == []


def test_arguments_checked_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="https"):
        dsb2018.download_dsb2018(tmp_path / "x", "http://example.com/stage1_train.zip")
    with pytest.raises(ValueError, match="sha256"):
        dsb2018.download_dsb2018(tmp_path / "x", sha256="abc")
    for bad in ({"keep_archive": "yes"}, {"progress": 1}):
        with pytest.raises(TypeError, match=next(iter(bad))):
            dsb2018.download_dsb2018(tmp_path / "x", **bad)
    for bad in ({"expected_images": True}, {"timeout": True}, {"timeout": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            dsb2018.download_dsb2018(tmp_path / "x", **bad)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="full"):
        dsb2018.download_dsb2018(tmp_path / "full")
    assert leftovers(tmp_path) == ["full"]


def test_ids_reads_only_those_samples(fixture_root):
    root, truth = fixture_root
    wanted = sorted(truth)[2:0:-1]  # two ids, in reverse order
    break_fixture(root, "unreadable_image")  # the first sample, not asked for
    images, labels = dsb2018.load_dsb2018(root, ids=wanted)
    for sample_id, label in zip(wanted, labels, strict=True):
        np.testing.assert_array_equal(label, truth[sample_id][1])
    with pytest.raises(FileNotFoundError, match="no sample folder"):
        dsb2018.load_dsb2018(root, ids=["nope"])


def test_corrupt_member_is_refused_while_extracting(tmp_path):
    make_dsb_fixture(tmp_path / "src", specs=[(20, 24, "RGB")])
    data = bytearray(zip_folder(tmp_path / "src"))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF  # damage the compressed bytes
    archive_path = tmp_path / "bad.zip"
    archive_path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        dsb2018.download_dsb2018(tmp_path / "out", archive_path.as_uri(), expected_images=1,
                                 progress=False)
    assert not (tmp_path / "out").exists()


def test_progress_bar_on_stderr_and_quiet_without_it(server, tmp_path, capfd):
    """pooch draws a tqdm bar with progress=True; nothing is printed without."""
    url = server.url + "/stage1_train.zip"
    dsb2018.download_dsb2018(tmp_path / "a", url, expected_images=4, progress=False)
    assert capfd.readouterr().err == ""
    dsb2018.download_dsb2018(tmp_path / "b", url, expected_images=4, progress=True)
    err = capfd.readouterr().err
    assert "100%" in err and f"{len(server.files['/stage1_train.zip']) / 1000:.1f}k" in err


def test_quiet_download_leaves_poochs_logger_as_it_was(server, tmp_path):
    """progress=False hides pooch's INFO lines during the call only (no global change)."""
    import logging

    import pooch

    logger = pooch.get_logger()
    filters, level = list(logger.filters), logger.level
    dsb2018.download_dsb2018(tmp_path / "a", server.url + "/stage1_train.zip",
                             expected_images=4, progress=False)
    assert logger.filters == filters and logger.level == level
    assert logger.isEnabledFor(logging.INFO)  # setLevel + restore would fail here (cache)


def test_missing_local_archive_is_a_connection_error(tmp_path):
    with pytest.raises(ConnectionError, match="could not download"):
        dsb2018.download_dsb2018(tmp_path / "out", (tmp_path / "none.zip").as_uri(),
                                 progress=False)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("quick", [False, True])
def test_load_split_reads_only_its_own_images_and_equals_load_splits(tmp_path, monkeypatch, quick):
    from unet_course import datasets

    root = tmp_path / "stage1_train"
    make_dsb_fixture(root, specs=[(16 + k % 5, 20, "RGB") for k in range(44 if quick else 12)])
    whole = datasets.load_splits(root, quick=quick, seed=5)
    read = []
    original = dsb2018.load_dsb2018
    monkeypatch.setattr(dsb2018, "load_dsb2018",
                        lambda r, ids=None, **kw: read.append(list(ids)) or original(r, ids=ids, **kw))
    for name in datasets.SPLIT_NAMES:
        one = datasets.load_split(root, name, quick=quick, seed=5)
        expected = getattr(whole, name)
        assert len(one) == len(expected) and len(read[-1]) == len(expected)  # no other image read
        for a, b in zip(one.images, expected.images, strict=True):
            np.testing.assert_array_equal(a, b)
    assert datasets.source(root, seed=5) == whole.source


def test_load_split_of_synthetic_data_makes_only_that_split():
    from unet_course import datasets

    whole = datasets.load_splits("synthetic", 48, seed=3, counts={"train": 3, "val": 2, "test": 2})
    one = datasets.load_split("synthetic", "val", 48, seed=3, counts={"train": 3, "val": 2, "test": 2})
    np.testing.assert_array_equal(one.images, whole.val.images)
    np.testing.assert_array_equal(one.labels, whole.val.labels)
    assert datasets.source("synthetic", 48, seed=3) == whole.source
    with pytest.raises(ValueError, match="name must be one of"):
        datasets.load_split("synthetic", "testing")


# ------------------------------------------------------------------------------ the folder split

MODALITY = {"L": "fluorescence", "I;16": "fluorescence", "dark": "brightfield", "RGB": "stain",
            "RGBA": "stain"}


def _by_labels(truth: dict) -> dict[bytes, str]:
    """Sample id by the bytes of its label map (each fixture sample has its own discs)."""
    return {labels.tobytes(): sample_id for sample_id, (_, labels) in truth.items()}


def test_experiment_groups_name_size_and_modality(tmp_path):
    specs = [(40, 40, "L"), (36, 52, "dark"), (48, 64, "RGB"), (48, 64, "RGBA"), (30, 34, "I;16")]
    truth = make_dsb_fixture(tmp_path / "d", specs=specs)
    ids = list(truth)  # in the order of specs
    groups = dsb2018.experiment_groups(tmp_path / "d", ids)
    assert groups == [f"{h}x{w} {MODALITY[mode]}" for h, w, mode in specs]


def test_a_folder_of_several_experiments_keeps_validation_and_test_experiments_apart(tmp_path):
    """Each slide's experiment is known from how the fixture wrote it (size and mode), not from
    the code under test: no experiment of the validation or test slides is a training one."""
    from unet_course import datasets

    kinds = [(40, 40, "L"), (48, 64, "L"), (36, 52, "dark"), (40, 40, "dark"), (44, 44, "RGB"),
             (52, 36, "RGBA")]
    specs = [kinds[k % len(kinds)] for k in range(20)]
    truth = make_dsb_fixture(tmp_path / "d", specs=specs)
    experiment = dict(zip(truth, specs, strict=True))
    which = _by_labels(truth)
    for seed in (0, 1, 7):
        splits = datasets.load_splits(tmp_path / "d", seed=seed, grouped=True)
        named = {name: [which[lab.tobytes()] for lab in getattr(splits, name).labels]
                 for name in datasets.SPLIT_NAMES}
        assert sorted(sum(named.values(), [])) == sorted(truth)  # every slide exactly once
        assert all(named.values())
        seen = {name: {experiment[i] for i in ids} for name, ids in named.items()}
        assert not seen["train"] & seen["val"] and not seen["train"] & seen["test"]
        assert not seen["val"] & seen["test"]
        again = datasets.load_splits(tmp_path / "d", seed=seed, grouped=True)
        for name in datasets.SPLIT_NAMES:
            assert [which[lab.tobytes()] for lab in getattr(again, name).labels] == named[name]


def test_split_indices_takes_whole_groups_near_the_fractions_and_is_seeded():
    from unet_course import datasets

    groups = np.repeat([f"g{k}" for k in range(12)], [30, 10, 8, 8, 6, 6, 5, 5, 4, 4, 2, 2])
    for seed in range(5):
        pieces = datasets.split_indices(groups, seed, grouped=True)
        assert sorted(np.concatenate(list(pieces.values()))) == list(range(len(groups)))
        sets = {name: set(groups[index]) for name, index in pieces.items()}
        assert not sets["train"] & (sets["val"] | sets["test"]) and not sets["val"] & sets["test"]
        for name, fraction in zip(("val", "test"), datasets.DSB_FRACTIONS[1:], strict=True):
            assert 0 < len(pieces[name]) <= 2 * fraction * len(groups), (seed, name)
        again = datasets.split_indices(groups, seed, grouped=True)
        assert all(np.array_equal(pieces[k], again[k]) for k in pieces)
    assert any(not np.array_equal(datasets.split_indices(groups, 0, grouped=True)["test"],
                                  datasets.split_indices(groups, s, grouped=True)["test"])
               for s in (1, 2, 3))


@pytest.mark.parametrize("groups, grouped", [(["a"] * 9, True), (["a"] * 5 + ["b"] * 4, True),
                                             ([f"g{k}" for k in range(9)], False)])
def test_the_default_and_too_few_groups_are_a_seeded_shuffle(groups, grouped):
    from unet_course import datasets

    pieces = datasets.split_indices(groups, 3, grouped)
    order = np.random.default_rng(3).permutation(9)  # by hand: 70 / 15 / 15 of 9 is 7 / 1 / 1
    assert pieces["train"].tolist() == order[:7].tolist()
    assert pieces["val"].tolist() == order[7:8].tolist()
    assert pieces["test"].tolist() == order[8:].tolist()
    with pytest.raises(ValueError, match="at least 3"):
        datasets.split_indices(["a", "b"], 0)


def test_a_folder_of_one_kind_still_splits(tmp_path):
    from unet_course import datasets

    truth = make_dsb_fixture(tmp_path / "d", specs=[(40, 40, "L")] * 7)
    splits = datasets.load_splits(tmp_path / "d", seed=2)
    assert [len(splits.train), len(splits.val), len(splits.test)] == [5, 1, 1]
    which = _by_labels(truth)
    named = [which[lab.tobytes()] for name in datasets.SPLIT_NAMES
             for lab in getattr(splits, name).labels]
    ids = dsb2018.dsb2018_ids(tmp_path / "d")
    assert named == [ids[i] for i in np.random.default_rng(2).permutation(7)]
