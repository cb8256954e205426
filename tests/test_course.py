"""Tests of the repository's generated parts: README table, navigation, Colab links, stripping.

Also checks every notebook follows the course skeleton (CONTRIBUTING.md).
"""

import json
import re
import shutil
from pathlib import Path

import pytest

from tools import course

ROOT = course.repo_root()
NOTEBOOKS = course.find_notebooks(ROOT)


def test_generated_parts_are_current():
    assert course.sync(ROOT, write=False) == [], "run `make sync`"


def test_notebooks_are_stripped():
    assert course.unstripped(ROOT) == [], "run `make strip`"


def test_there_are_notebooks_numbered_from_01():
    assert NOTEBOOKS and [nb.number for nb in NOTEBOOKS] == list(range(1, len(NOTEBOOKS) + 1))


def test_slug_is_written_in_one_place():
    slug = course.GITHUB_REPO
    holders = [
        p.relative_to(ROOT)
        for p in ROOT.rglob("*.py")
        if ".venv" not in p.parts and slug in p.read_text(encoding="utf-8")
    ]
    assert holders == [Path("tools/course.py")]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.path.name)
def test_colab_badges_point_at_existing_notebooks(nb):
    text = nb.path.read_text(encoding="utf-8") + (ROOT / "README.md").read_text(encoding="utf-8")
    prefix = f"https://colab.research.google.com/github/{course.GITHUB_REPO}/blob/{course.BRANCH}/"
    urls = set(re.findall(re.escape(prefix) + r"([\w/.-]+\.ipynb)", text))
    assert f"notebooks/{nb.path.name}" in urls
    for path in urls:
        assert (ROOT / path).is_file(), f"a Colab badge points at missing {path}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.path.name)
def test_navigation_links_resolve(nb):
    cells = course.read_notebook(nb.path)["cells"]
    nav = [c for c in cells if "navigation" in c.get("metadata", {}).get("tags", [])]
    assert len(nav) == 2 and nav[0] is cells[1] and nav[-1] is cells[-1]
    for target in re.findall(r"\]\(([^)]+)\)", course.cell_text(nav[0])):
        assert (nb.path.parent / target).resolve().is_file(), target


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.path.name)
def test_notebook_follows_the_skeleton(nb):
    cells = course.read_notebook(nb.path)["cells"]
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in cells]
    header = course.cell_text(cells[0])
    goals = re.findall(r"^- ", header.split("**Learning goals.**")[-1], flags=re.M)
    assert "**Learning goals.**" in header and 3 <= len(goals) <= 5
    assert "colab-install" in tags[2] and any("setup" in t for t in tags)
    setup = course.cell_text(next(c for c, t in zip(cells, tags, strict=True) if "setup" in t))
    assert "QUICK = unet_course.quick_mode()" in setup and "runtime_summary(" in setup
    lines = [
        line
        for c in cells
        if c["cell_type"] == "markdown"
        for line in course.cell_text(c).splitlines()
    ]
    assert "## Summary" in lines and "## Exercises" in lines
    checks = [
        c for c in cells if c["cell_type"] == "code" and "# Self-check" in course.cell_text(c)
    ]
    assert len(checks) >= 3, "each section ends in a self-check"


def _tiny_repo(tmp_path: Path) -> Path:
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copy(NOTEBOOKS[0].path, tmp_path / "notebooks" / NOTEBOOKS[0].path.name)
    return tmp_path


def test_sync_rewrites_stale_parts_and_then_is_current(tmp_path):
    root = _tiny_repo(tmp_path)
    path = root / "notebooks" / NOTEBOOKS[0].path.name
    nb = course.read_notebook(path)
    nb["cells"][1]["source"] = "stale navigation"
    course.write_notebook(path, nb)
    assert f"notebooks/{path.name}" in course.sync(root, write=False)
    course.sync(root)
    assert course.sync(root, write=False) == []
    assert "stale" not in path.read_text(encoding="utf-8")


def test_bad_notebook_names_and_headings_are_refused(tmp_path):
    root = _tiny_repo(tmp_path)
    src = root / "notebooks" / NOTEBOOKS[0].path.name
    gap = root / "notebooks" / "03_later_lesson.ipynb"
    shutil.copy(src, gap)
    with pytest.raises(ValueError, match="heading number 01 does not match"):
        course.find_notebooks(root)
    nb = json.loads(gap.read_text())
    nb["cells"][0]["source"] = "# 03 · Later lesson\n\nText.\n\n[![Open In Colab](x)](y)"
    course.write_notebook(gap, nb)
    with pytest.raises(ValueError, match="without gaps"):
        course.find_notebooks(root)
    gap.rename(root / "notebooks" / "02_Bad.ipynb")
    with pytest.raises(ValueError, match="NN_topic_words"):
        course.find_notebooks(root)


def test_check_command_reports_stale_files(tmp_path, monkeypatch, capsys):
    root = _tiny_repo(tmp_path)
    (root / "README.md").write_text(course.README_START + "\nold\n" + course.README_END + "\n")
    monkeypatch.setattr(course, "repo_root", lambda: root)
    assert course.main(["check"]) == 1
    assert "stale: README.md" in capsys.readouterr().err
    assert course.main(["sync"]) == 0
    assert course.main(["check"]) == 0


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.path.name)
def test_notebook_keeps_the_budget(nb):
    """STYLE.md rule 9, counted by tools/budget.py: prose words, cell sizes, decimals."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("budget", ROOT / "tools" / "budget.py")
    budget = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(budget)
    assert budget.breaches(budget.measure(nb.path)) == []


def test_the_budget_counts_decimals_in_prose_and_every_word():
    import importlib.util

    spec = importlib.util.spec_from_file_location("budget", ROOT / "tools" / "budget.py")
    budget = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(budget)
    text = "Dice is 0.91 here, `x = 0.5` and $p = 0.25$ and [a 1.5 link](https://x.org/v1.2)"
    plain = budget.prose(text)
    assert budget._DECIMAL.findall(plain) == ["0.91", "1.5"]  # not the code's, formula's or URL's
    assert len(budget._WORD.findall("`label_instances` finds 16×16 nuclei")) == 6
