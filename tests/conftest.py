"""Fixtures several command-line tests share: two small slides to predict."""

from __future__ import annotations

import pytest
from PIL import Image


@pytest.fixture()
def slides(tmp_path):
    """Two synthetic slides, a.png and b.png, 48x48 RGB."""
    from unet_course.data import make_nuclei

    folder = tmp_path / "slides"
    folder.mkdir()
    images, _ = make_nuclei(2, size=48, seed=0)
    for name, image in zip("ab", images, strict=True):
        Image.fromarray(image).save(folder / f"{name}.png")
    return folder

