"""Check the notebooks in a real JupyterLab: Run All, then every animation shows a frame.

    python site/check_lab.py [notebooks/02_*.ipynb ...] [--shots build/lab-screenshots]

Starts JupyterLab headless on a free local port (the settings ``make lab`` installs, from
``site/lab-overrides.json``), opens each notebook (default: those that show an animation,
``plotting.animate_*`` or ``to_jshtml``) in headless Chromium, runs every cell with JupyterLab's own
``notebook:run-all-cells`` command, waits for the kernel to go idle, then fails when a cell
shows an error or an animation's picture (the ``<img>`` that ``to_jshtml`` draws into) has no
frame or no size. Saves a screenshot of each animation. Quick mode is used
(``UNET_COURSE_QUICK=1``). Needs Chromium (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_site import DevTools, start_chromium  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "course-check"

PANEL = ("Array.from(window.jupyterapp.shell.widgets('main'))"
         ".find(w => w.sessionContext && w.context && w.context.path === NAME)")

STATE = """(() => {
  const app = window.jupyterapp;
  const panel = app && PANEL;
  if (!panel || !panel.sessionContext || !panel.content) return {ready: false};
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  return {ready: true, status: kernel ? kernel.status : 'none',
          pending: cells.filter(c => c.model.executionCount === null ||
                                     c.promptNode.textContent.includes('*')).length,
          errors: Array.from(panel.node.querySelectorAll('.jp-OutputArea-output'))
                  .filter(o => o.textContent.includes('Traceback')).length};
})()"""

ANIMATIONS = """(() => Array.from(PANEL.node.querySelectorAll('img[id^="_anim_img"]')).map(img => {
  img.scrollIntoView({block: 'center'});
  const box = img.getBoundingClientRect();
  return {id: img.id, frame: (img.src || '').startsWith('data:image'),
          drawn: img.naturalWidth, width: Math.round(box.width), height: Math.round(box.height),
          x: box.x, y: box.y};
}))()"""


ANIMATED = re.compile(r"to_jshtml|plotting\.animate_")  # the course's animations


RUN_ALL = ("(() => { const app = window.jupyterapp; const panel = PANEL; "
           "app.shell.activateById(panel.id); "
           "return app.commands.execute('notebook:run-all-cells'); })()")


def script(template: str, notebook: str) -> str:
    """A page script with this notebook's panel in place of ``PANEL``."""
    return template.replace("PANEL", PANEL).replace("NAME", json.dumps(notebook))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(port: int, root: Path) -> subprocess.Popen:
    """JupyterLab on ``port`` serving ``root`` with the course's settings; returns when it
    answers."""
    env = {**os.environ, "UNET_COURSE_QUICK": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
            f"--IdentityProvider.token={TOKEN}", "--LabApp.expose_app_in_browser=True",
            f"--ServerApp.root_dir={root}", "--allow-root"]
    lab = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={TOKEN}", timeout=5)
            return lab
        except OSError:
            time.sleep(1)
    lab.kill()
    sys.exit("error: JupyterLab did not answer within 120 s")


def run_all(tab: DevTools, port: int, notebook: str, timeout: float) -> dict:
    """Open ``notebook`` (a path under the lab's root), run all cells, wait until idle;
    return the last state."""
    url = f"http://127.0.0.1:{port}/lab/tree/{notebook}?reset&token={TOKEN}"  # no old tabs
    tab.send("Page.navigate", url=url)
    deadline = time.monotonic() + timeout
    state = {}
    while time.monotonic() < deadline:
        state = evaluate(tab, script(STATE, notebook))
        if state.get("ready") and state.get("status") == "idle":
            break
        time.sleep(1)
    tries = 0
    while time.monotonic() < deadline:
        if tries < 2:  # Run All once more if the first stopped short with no error
            evaluate(tab, script(RUN_ALL, notebook))
            tries += 1
            time.sleep(3)
        settled = 0
        while time.monotonic() < deadline and settled < 5:
            state = evaluate(tab, script(STATE, notebook))
            settled = settled + 1 if state.get("status") == "idle" else 0
            if settled and state.get("pending") == 0 or state.get("errors"):
                return state
            time.sleep(2)
        if tries >= 2:
            break
    raise TimeoutError(f"{notebook}: Run All did not finish ({timeout:.0f} s allowed): {state}")


def evaluate(tab: DevTools, expression: str):
    reply = tab.send("Runtime.evaluate", expression=expression, returnByValue=True,
                     awaitPromise=True)
    return reply.get("result", {}).get("value")


def check(tab: DevTools, notebook: Path, state: dict, shots: Path) -> list[str]:
    problems = [f"{notebook.name}: {state['errors']} cell(s) show an error"] if state["errors"] else []
    found = evaluate(tab, script(ANIMATIONS, notebook.name)) or []
    if not found:
        problems.append(f"{notebook.name}: no animation on the page after Run All")
    for k, anim in enumerate(found):
        time.sleep(1)
        shot = tab.send("Page.captureScreenshot", format="png")
        (shots / f"{notebook.stem}_animation{k}.png").write_bytes(base64.b64decode(shot["data"]))
        if not (anim["frame"] and anim["drawn"] > 0 and anim["width"] > 50 and anim["height"] > 50):
            problems.append(f"{notebook.name}: animation {anim['id']} shows no frame: {anim}")
    print(f"{notebook.name}: Run All done, {len(found)} animation(s) "
          f"{'blank' if problems else 'showing their frames'}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--shots", type=Path, default=ROOT / "build" / "lab-screenshots")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or [
        p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        if ANIMATED.search(json.dumps(json.loads(p.read_text())["cells"]))]
    if not notebooks:
        sys.exit("error: no notebook with an animation found (plotting.animate_* or to_jshtml)")
    args.shots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as work:  # copies: JupyterLab saves what it runs
        for notebook in notebooks:
            shutil.copy(notebook, work)
        port = free_port()
        lab = start_lab(port, Path(work))
        try:
            for notebook in notebooks:  # a fresh browser each: no leave-page dialog
                with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
                    browser, ws_url = start_chromium(Path(profile))
                    try:
                        tab = DevTools(ws_url)
                        tab.send("Page.enable")
                        tab.send("Runtime.enable")
                        tab.send("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                                 deviceScaleFactor=1, mobile=False)
                        state = run_all(tab, port, notebook.name, args.timeout)
                        problems += check(tab, notebook, state, args.shots)
                    finally:
                        browser.kill()
                        browser.wait(30)
        finally:
            lab.terminate()
            lab.wait(30)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
