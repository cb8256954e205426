"""environment.yml (the conda route) must agree with pyproject.toml, the one dependency list."""

import re
import tomllib

from tools import course

ROOT = course.repo_root()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENV_TEXT = (ROOT / "environment.yml").read_text()


def _env_entries() -> list[str]:
    return [m.strip() for m in re.findall(r"^\s*-\s+(.+)$", ENV_TEXT, flags=re.M)]


def test_python_version_agrees_with_requires_python():
    floor = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert f"python>={floor}" in _env_entries()


def test_environment_installs_the_package_with_dev_and_site_extras():
    entries = _env_entries()
    assert "pip" in entries and "-e .[dev,site]" in entries
    assert {"dev", "site"} <= set(PYPROJECT["project"]["optional-dependencies"])


def test_environment_pins_no_package_of_its_own():
    # Anything besides python, pip and the package itself would be a second dependency list.
    ours = ("pip", "pip:", "-e .[dev,site]", "conda-forge")
    others = [e for e in _env_entries() if e not in ours]
    assert [e for e in others if not e.startswith("python")] == []


def test_pyproject_lists_the_course_dependencies_with_lower_bounds():
    extras = PYPROJECT["project"]["optional-dependencies"]
    deps = PYPROJECT["project"]["dependencies"] + [d for x in extras.values() for d in x]
    names = {re.split(r"[<>=!~ \[]", d)[0].lower() for d in deps}
    needed = {
        "tensorflow",
        "keras",
        "numpy",
        "scipy",
        "scikit-image",
        "scikit-learn",
        "matplotlib",
        "ipywidgets",
        "jupyterlab",
        "nbmake",
        "pytest",
        "pytest-xdist",
        "ruff",
        "nbstripout",
        "sphinx",
        "myst-nb",
        "sphinx-book-theme",
        "sphinx-mathjax-offline",
    }
    assert needed <= names
    assert all(">=" in d for d in deps), "every dependency has a lower bound"
    assert any(d.startswith("nbmake>=1.5.5") for d in deps)
