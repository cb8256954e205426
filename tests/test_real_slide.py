"""The real slide: fetched at set-up (never by a test), verified by hash, and scored by the
baseline as the course says it is."""

import hashlib
import io
import zipfile

import numpy as np
import pytest

from unet_course import baseline, real_slide

# What the course states about this slide (notebook 07, benchmarks/results/quality_cpu.md):
# global Otsu + watershed scores 0.22 on it, and its labels hold 125 nuclei.
BASELINE_WATERSHED = 0.223
NUCLEI = 125


def _fake_wheel(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_extraction_checks_each_hash_and_writes_nothing_on_a_mismatch(tmp_path, monkeypatch):
    good = {name: f"contents of {name}".encode() for name in real_slide.FILES}
    monkeypatch.setattr(real_slide, "FILES", {
        name: (member, hashlib.sha256(good[name]).hexdigest())
        for name, (member, _) in real_slide.FILES.items()})
    wheel = _fake_wheel(tmp_path / "stardist.whl",
                        {member: good[name] for name, (member, _) in real_slide.FILES.items()})
    written = real_slide.extract_from_wheel(wheel, tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(real_slide.FILES)
    assert real_slide.is_fetched(tmp_path / "out")
    bad = _fake_wheel(tmp_path / "bad.whl", {member: b"tampered"
                                             for member, _ in real_slide.FILES.values()})
    with pytest.raises(ValueError, match="SHA-256"):
        real_slide.extract_from_wheel(bad, tmp_path / "other")
    assert not (tmp_path / "other").exists()
    with pytest.raises(ValueError, match="expected a stardist wheel"):
        real_slide.extract_from_wheel(_fake_wheel(tmp_path / "empty.whl", {"x": b""}), tmp_path)


def test_a_missing_or_damaged_slide_says_how_to_fetch_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m unet_course.real_slide"):
        real_slide.load_real_slide(tmp_path)
    for name in real_slide.FILES:
        (tmp_path / name).write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="damaged"):
        real_slide.load_real_slide(tmp_path)


@pytest.mark.skipif(not real_slide.is_fetched(), reason="run `make setup` to fetch the slide")
def test_the_slide_and_the_baseline_score_the_course_quotes():
    image, labels = real_slide.load_real_slide()
    assert image.shape == (512, 512) and image.dtype == np.uint16
    assert image.max() < 256  # 8-bit data in a 16-bit file: dividing by 257 would blacken it
    assert len(np.unique(labels)) - 1 == NUCLEI
    scores = baseline.baseline_scores([real_slide.as_rgb(image)], [labels])
    assert scores["otsu_watershed"]["dsb_map"] == pytest.approx(BASELINE_WATERSHED, abs=0.005)
    assert scores["otsu_components"]["dsb_map"] < scores["otsu_watershed"]["dsb_map"]
    # The PNG round trip a learner would use keeps every value.
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    assert np.array_equal(np.asarray(Image.open(buffer)), image)
