"""Build the course site: execute the notebooks (cached, in parallel), stage them, run Sphinx.

    python site/build_site.py [--jobs 2] [--timeout 600]

1. Every ``notebooks/NN_*.ipynb`` is executed with nbclient, ``--jobs`` at a time, each in its
   own scratch folder under ``build/site/work``. An executed copy is cached under
   ``build/site/cache``, keyed by a hash of the notebook, the ``unet_course`` sources, quick or
   full mode and the Keras backend: an unchanged notebook is not executed again. A notebook that
   fails to execute fails the build (the others still run, so their results are cached).
2. The executed copies are staged, with the home page, in ``build/site/src``: navigation links
   to the README point at the home page, the Colab badge image is the bundled one and
   matplotlib animations lose their Font Awesome link to a CDN (the theme bundles Font Awesome),
   so a page loads nothing from the network; ipywidgets views are dropped, so the explorer
   shows its static figure. A staged file is only rewritten when it changes, so Sphinx re-reads only what
   changed.
3. Sphinx (MyST-NB with execution off, ``site/conf.py``) writes ``build/site/html``; any
   warning fails the build (``-W --keep-going``).

Quick mode comes from ``UNET_COURSE_QUICK`` (``make site`` sets 1 unless you set 0).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the package and the repository's tools/
SITE = ROOT / "site"
BUILD = ROOT / "build" / "site"
CACHE_VERSION = "1"  # bump to invalidate every cached notebook
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
BADGE_FILE = "colab-badge.svg"
_FONT_AWESOME_CDN = re.compile(r"<link[^>]*font-awesome[^>]*>")


def cache_key(notebook: Path, quick: bool) -> str:
    """Hash of what an executed notebook depends on: its file, the package, mode and backend."""
    h = hashlib.sha256(f"v{CACHE_VERSION} quick={quick} ".encode())
    h.update(os.environ.get("KERAS_BACKEND", "tensorflow").encode())
    sources = [notebook, *sorted((ROOT / "unet_course").rglob("*.py"))]
    for path in sources:
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def execute(notebook: Path, target: Path, workdir: Path, timeout: int) -> tuple[str, float, str]:
    """Run one notebook top to bottom in ``workdir``; write the executed copy to ``target``.

    Returns (name, seconds, error text or ""). Runs in a worker process.
    """
    import nbclient
    import nbformat

    from tools.kernel_polling import poll_in_slices

    start = time.perf_counter()
    nb = nbformat.read(notebook, as_version=4)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)

    poll_in_slices()  # tools.kernel_polling: no whole-timeout stalls on a missed message
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    try:
        client.execute()
    except Exception as error:  # CellExecutionError, DeadKernelError, timeouts
        return notebook.name, time.perf_counter() - start, f"{type(error).__name__}: {error}"
    tmp = target.with_suffix(".tmp")
    nbformat.write(nb, tmp)
    tmp.replace(target)
    return notebook.name, time.perf_counter() - start, ""


def execute_all(notebooks: list[Path], quick: bool, jobs: int, timeout: int) -> list[Path]:
    """Executed copies of ``notebooks`` (from the cache, or run now); exits 1 on a failure."""
    cache = BUILD / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    targets = [cache / f"{nb.stem}-{cache_key(nb, quick)}.ipynb" for nb in notebooks]
    todo = [(nb, t) for nb, t in zip(notebooks, targets, strict=True) if not t.exists()]
    for nb, t in zip(notebooks, targets, strict=True):
        if t.exists():
            print(f"  cached   {nb.name}", flush=True)
    failures = []
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(execute, nb, t, BUILD / "work" / nb.stem, timeout) for nb, t in todo]
        for future in concurrent.futures.as_completed(futures):
            name, seconds, error = future.result()
            print(f"  {'FAILED' if error else 'executed'} {name} in {seconds:.0f} s", flush=True)
            if error:
                failures.append((name, error))
    if todo:
        print(f"  {len(todo)} notebook(s) executed in {time.perf_counter() - start:.0f} s "
              f"wall time, {jobs} at a time", flush=True)  # fmt: skip
    for name, error in failures:
        print(f"\nerror: {name} failed to execute:\n{error}", file=sys.stderr)
    if failures:
        sys.exit(1)
    for stale in cache.glob("*.ipynb"):
        if stale not in targets:
            stale.unlink()
    return targets


_ANCHOR = re.compile(r"(\]\((?:[\w.-]+\.ipynb)?)#([^)\s]+)\)")


def _myst_anchor(match: re.Match) -> str:
    """A link to a heading as JupyterLab writes it (``#See-the-checkerboard``) as MyST names
    that heading on the site (``#see-the-checkerboard``: lower case, no punctuation)."""
    slug = re.sub(r"[^\w-]", "", match.group(2).lower())
    return f"{match.group(1)}#{slug})"


def for_the_site(nb: dict) -> dict:
    """An executed notebook made ready for a static page (see the module docstring, step 2)."""
    from tools import course

    nb = json.loads(json.dumps(nb))
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            text = course.cell_text(cell)
            text = text.replace("](../README.md)", "](../index.md)")
            text = _ANCHOR.sub(_myst_anchor, text)
            cell["source"] = text.replace(course.BADGE_IMAGE, f"../{BADGE_FILE}")
        elif cell["cell_type"] == "code":
            for output in cell.get("outputs", []):
                html = output.get("data", {}).get("text/html")
                if html:  # to_jshtml's icons: the theme bundles Font Awesome, no CDN needed
                    html = html if isinstance(html, str) else "".join(html)
                    output["data"]["text/html"] = _FONT_AWESOME_CDN.sub("", html)
            cell["outputs"] = [o for o in cell.get("outputs", []) if WIDGET_MIME not in o.get("data", {})]  # fmt: skip
    return nb


def _github_links(text: str, repo: str, branch: str) -> str:
    """Relative markdown links of the README made absolute GitHub links (the site lacks them)."""

    def absolute(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"^(https?:|mailto:|#)", target):
            return match.group(0)
        return f"{match.group(1)}(https://github.com/{repo}/blob/{branch}/{target})"

    return re.sub(r"(\[[^\]]*\])\(([^)\s]+)\)", absolute, text)


def home_page(quick: bool) -> str:
    """The home page: the README up to its command line, the notebook table, the table of
    contents.

    The README's own table is replaced by a fresh one whose links point at the site's pages.
    """
    from tools import course

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    intro = readme.split("\n## The command line", 1)[0]
    head, rest = intro.split(course.README_START, 1)
    tail = rest.split(course.README_END, 1)[1]
    notebooks = course.find_notebooks(ROOT)
    table = course.readme_table(notebooks).replace(course.BADGE_IMAGE, BADGE_FILE)
    intro = _github_links(head, course.GITHUB_REPO, course.BRANCH) + table
    intro += _github_links(tail, course.GITHUB_REPO, course.BRANCH)
    mode = (
        "quick mode (`UNET_COURSE_QUICK=1`: smaller data and fewer epochs than a learner's run, "
        "so trained numbers are lower than in full mode)"
        if quick
        else "full mode"
    )
    toc = "\n".join(f"notebooks/{nb.path.stem}" for nb in notebooks)
    return (
        f"{intro.rstrip()}\n\n## Run it yourself\n\n"
        f"These pages show every notebook executed in {mode}. To run them, open a notebook in "
        f"Colab with its badge, or clone [the repository](https://github.com/"
        f"{course.GITHUB_REPO}) and run `make lab`.\n\n"
        f"```{{toctree}}\n:hidden:\n:maxdepth: 1\n:caption: Notebooks\n\n{toc}\n```\n"
    )


def _write_if_changed(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def stage(executed: list[Path], quick: bool) -> Path:
    """Write the Sphinx source folder ``build/site/src`` and return it."""
    src = BUILD / "src"
    wanted = set()
    for path in executed:
        nb = for_the_site(json.loads(path.read_text(encoding="utf-8")))
        name = re.sub(r"-[0-9a-f]{16}$", "", path.stem) + ".ipynb"
        out = src / "notebooks" / name
        _write_if_changed(out, (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode())
        wanted.add(out)
    for old in (src / "notebooks").glob("*.ipynb"):
        if old not in wanted:
            old.unlink()
    _write_if_changed(src / "index.md", home_page(quick).encode())
    _write_if_changed(src / BADGE_FILE, (SITE / BADGE_FILE).read_bytes())
    return src


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed at once")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    import unet_course

    quick = unet_course.quick_mode()
    start = time.perf_counter()
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    print(f"Executing {len(notebooks)} notebooks ({'quick' if quick else 'full'} mode)", flush=True)
    executed = execute_all(notebooks, quick, args.jobs, args.timeout)
    src = stage(executed, quick)
    print("Running Sphinx", flush=True)
    sphinx = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(SITE), "-W", "--keep-going",
              "-q", "-d", str(BUILD / "doctrees"), str(src), str(BUILD / "html")]  # fmt: skip
    result = subprocess.run(sphinx, env={**os.environ, "UNET_COURSE_SITE_QUICK": str(int(quick))})
    if result.returncode:
        print("error: Sphinx failed (warnings count as errors)", file=sys.stderr)
        return result.returncode
    print(f"Site built in {time.perf_counter() - start:.0f} s: {BUILD / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
