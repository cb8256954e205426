"""The course site's browser check (site/check_site.py): its link and raw-TeX logic, on a tiny
site written to a temporary folder. Neither Chromium nor Sphinx is needed."""

import importlib.util

import pytest

from tools import course

SPEC = importlib.util.spec_from_file_location(
    "check_site", course.repo_root() / "site" / "check_site.py"
)
check_site = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(check_site)


@pytest.fixture
def tiny_site(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "index.html").write_text('<h1 id="top">Home</h1><a name="old-anchor"></a>')
    (tmp_path / "notebooks" / "01_a.html").write_text('<section id="set-up"><h2>Set up</h2>')
    (tmp_path / "notebooks" / "fig.png").write_bytes(b"\x89PNG")
    return tmp_path


def test_links_that_resolve_are_not_reported(tiny_site):
    page = tiny_site / "notebooks" / "01_a.html"
    hrefs = ["../index.html", "../index.html#top", "../index.html#old-anchor", "#set-up",
             "fig.png", "./01_a.html?x=1#set-up", "../", "/notebooks/01_a.html"]  # fmt: skip
    assert check_site.broken_links(tiny_site, page, hrefs) == []


def test_missing_files_and_anchors_are_reported(tiny_site):
    page = tiny_site / "notebooks" / "01_a.html"
    hrefs = ["02_b.html", "../index.html#nowhere", "#set_up", "../../outside.html"]
    assert check_site.broken_links(tiny_site, page, hrefs) == [
        "02_b.html (no such file)",
        "../index.html#nowhere (no such anchor)",
        "#set_up (no such anchor)",
        "../../outside.html (no such file)",
    ]


def test_external_links_are_not_followed(tiny_site):
    hrefs = ["https://colab.research.google.com/x.ipynb", "mailto:a@b.c", "data:image/png;base64,",
             "javascript:void(0)", "//cdn.example.org/x.js"]  # fmt: skip
    assert check_site.broken_links(tiny_site, tiny_site / "index.html", hrefs) == []


@pytest.mark.parametrize(
    "text",
    [
        "the loss $$L = 1 - D$$ here",
        r"so \(x\) is",
        r"Dice \frac{2|A \cap B|}{|A|+|B|}",
        r"\[ y = Cx \]",
        "where $x_i$ is",
        "and $n^2$ entries",
        r"\begin{aligned}",
    ],  # fmt: skip
)
def test_untypeset_tex_is_found(text):
    assert check_site.raw_tex(text)


@pytest.mark.parametrize(
    "text",
    ["Dice = 2|A ∩ B| / (|A| + |B|)", "it costs $5 or $6", "a 3 × 3 kernel", "x_i in the code"],
)
def test_typeset_or_plain_text_is_not_taken_for_tex(text):
    assert check_site.raw_tex(text) == []
