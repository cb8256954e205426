"""The course site's build script (site/build_site.py): what it changes in an executed notebook
for a static page, its home page and its cache key. Nothing is executed; Sphinx is not needed."""

import importlib.util
import json

from tools import course

SPEC = importlib.util.spec_from_file_location(
    "build_site", course.repo_root() / "site" / "build_site.py"
)
build_site = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(build_site)

WIDGET = {"text/plain": "interactive(children=(IntSlider(...),))", build_site.WIDGET_MIME: {}}
ANIMATION = (  # the head of matplotlib's to_jshtml()
    '<link rel="stylesheet"\n'
    'href="https://maxcdn.bootstrapcdn.com/font-awesome/4.4.0/css/font-awesome.min.css">\n'
    '<div class="animation">'
)


def _executed() -> dict:
    badge = f"[![Open In Colab]({course.BADGE_IMAGE})](https://colab.research.google.com/x)"
    return {
        "metadata": {"widgets": {"state": {}}},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": f"# 01 · T\n\n{badge}"},
            {"cell_type": "markdown", "metadata": {}, "source": "[Contents](../README.md) | x"},
            {
                "cell_type": "code",
                "metadata": {},
                "source": "explorer()",
                "outputs": [
                    {"output_type": "display_data", "data": {"image/png": "iVBOR"}},
                    {"output_type": "display_data", "data": WIDGET},
                    {"output_type": "display_data", "data": {"text/html": ANIMATION.split("\n")}},
                ],
            },
        ],
    }


def test_a_page_loads_nothing_from_the_network_and_shows_no_widget():
    page = build_site.for_the_site(_executed())
    text = json.dumps(page)
    assert course.BADGE_IMAGE not in text and "../colab-badge.svg" in text
    assert "font-awesome" not in text and '<div class=\\"animation\\">' in text
    assert build_site.WIDGET_MIME not in text and "widgets" not in page["metadata"]
    outputs = page["cells"][2]["outputs"]
    assert [list(o["data"]) for o in outputs] == [["image/png"], ["text/html"]]


def test_navigation_points_at_the_home_page_and_the_input_is_not_changed():
    executed = _executed()
    before = json.dumps(executed)
    page = build_site.for_the_site(executed)
    assert page["cells"][1]["source"] == "[Contents](../index.md) | x"
    assert json.dumps(executed) == before


def test_heading_links_use_the_anchors_myst_gives_the_headings():
    executed = _executed()
    executed["cells"][1]["source"] = (
        "[there](03_transposed_convolution.ipynb#See-the-checkerboard-artifacts), "
        "[here](#Why-not-just-threshold?), [page](02_convolution_as_matrix.ipynb)"
    )
    page = build_site.for_the_site(executed)
    assert page["cells"][1]["source"] == (
        "[there](03_transposed_convolution.ipynb#see-the-checkerboard-artifacts), "
        "[here](#why-not-just-threshold), [page](02_convolution_as_matrix.ipynb)"
    )


def test_home_page_links_the_site_pages_and_makes_readme_links_absolute():
    home = build_site.home_page(quick=True)
    notebooks = course.find_notebooks()
    for nb in notebooks:
        assert f"](notebooks/{nb.path.name})" in home  # the page built from that notebook
        assert f"notebooks/{nb.path.stem}\n" in home  # in the table of contents
    assert "(benchmarks/README.md" not in home and "quick mode" in home
    assert course.README_START not in home and course.BADGE_IMAGE not in home


def test_github_links_leave_absolute_links_and_anchors_alone():
    text = "[a](https://x.org/y) [b](#here) [c](benchmarks/README.md#qualitypy)"
    assert build_site._github_links(text, "o/r", "main") == (
        "[a](https://x.org/y) [b](#here) "
        "[c](https://github.com/o/r/blob/main/benchmarks/README.md#qualitypy)"
    )


def test_cache_key_follows_the_notebook_and_the_mode(tmp_path, monkeypatch):
    notebook = course.find_notebooks()[0].path
    key = build_site.cache_key(notebook, quick=True)
    assert key == build_site.cache_key(notebook, quick=True)
    assert key != build_site.cache_key(notebook, quick=False)
    monkeypatch.setattr(build_site, "ROOT", tmp_path)
    (tmp_path / "unet_course").mkdir()
    (tmp_path / "unet_course" / "a.py").write_text("x = 1\n")
    copy = tmp_path / notebook.name
    copy.write_bytes(notebook.read_bytes())
    first = build_site.cache_key(copy, quick=True)
    (tmp_path / "unet_course" / "a.py").write_text("x = 2\n")
    assert build_site.cache_key(copy, quick=True) != first
    copy.write_bytes(notebook.read_bytes() + b" ")
    assert len({first, build_site.cache_key(copy, quick=True)}) == 2
