"""Check the built course site in a real browser: headless Chromium over the DevTools protocol.

    python site/check_site.py [--html build/site/html] [--screenshots build/site/screenshots]

Serves the site on a local port, loads every page, waits for MathJax, and fails when a page has
a console error or an uncaught exception, requests anything from the network (the site must
work offline), has a broken internal link (missing file or missing ``#anchor``), a missing
image (``naturalWidth`` 0) or raw TeX left untypeset in its visible text (code excluded). It
saves a screenshot of the first screen and of the whole page (half scale) for each page.

Chromium comes from Debian's ``chromium`` package (``apt-get install -y chromium``). The
browser-free parts (:func:`broken_links`, :func:`raw_tex`) are unit-tested in
``tests/test_site_check.py``.
"""

from __future__ import annotations

import argparse
import base64
import functools
import html.parser
import http.server
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"_static", "_sources", "_images"}
TEX_PATTERNS = [
    r"\$\$",  # display math delimiters
    r"\\[()\[\]]",  # \( \) \[ \]
    r"\\[A-Za-z]+",  # any TeX command: \frac, \sum, \begin ...
    r"\$[^$\n]*[\\^_{}][^$\n]*\$",  # $x^2$ or $a_i$ left as text
]
_TEX_RE = re.compile("|".join(f"(?:{p})" for p in TEX_PATTERNS))


def raw_tex(text: str) -> list[str]:
    """Snippets of ``text`` (a page's visible prose) that look like TeX MathJax did not typeset."""
    return [text[max(0, m.start() - 20) : m.end() + 20].strip() for m in _TEX_RE.finditer(text)]


class _Anchors(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        for name, value in attrs:
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value or "")


@functools.cache
def anchors(page: Path) -> frozenset[str]:
    """The ids (and ``<a name>``) a page defines: the targets its ``#fragment`` links may use."""
    parser = _Anchors()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def broken_links(root: Path, page: Path, hrefs: list[str]) -> list[str]:
    """The internal links among ``hrefs`` (as written in ``page``, a file under the site folder
    ``root``) whose file is missing or whose ``#fragment`` the target page does not define.
    Links with a scheme (``https:``, ``mailto:``, ``data:``, ...) are not followed.
    """
    root = root.resolve()
    broken = []
    for href in hrefs:
        parts = urllib.parse.urlsplit(href)
        if parts.scheme or parts.netloc or href.startswith("javascript:"):
            continue
        path = urllib.parse.unquote(parts.path)
        target = (root / path.lstrip("/")) if path.startswith("/") else (page.parent / path)
        target = target.resolve() if path else page.resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(root) or not target.is_file():
            broken.append(f"{href} (no such file)")
        elif parts.fragment and target.suffix == ".html":
            if urllib.parse.unquote(parts.fragment) not in anchors(target):
                broken.append(f"{href} (no such anchor)")
    return broken


# -- the browser ---------------------------------------------------------------------------

# Runs in the page after the load event: waits for MathJax and for every image, then reports.
PAGE_REPORT_JS = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = "eager"; });
  await Promise.race([
    Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; }))),
    new Promise(r => setTimeout(r, 15000)),
  ]);
  const skip = "pre, code, script, style, noscript, textarea, mjx-container, .MathJax";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const texts = [];
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (el && !el.closest(skip) && el.getClientRects().length) texts.push(walker.currentNode.data);
  }
  return JSON.stringify({
    hrefs: [...document.querySelectorAll("a[href]")].map(a => a.getAttribute("href")),
    missing_images: imgs.filter(i => !i.complete || i.naturalWidth === 0)
                        .map(i => (i.getAttribute("src") || "").slice(0, 120)),
    text: texts.join(" "),
    formulas: document.querySelectorAll("mjx-container").length,
    images: imgs.length,
  });
})()
"""


class DevTools:
    """A minimal Chrome DevTools protocol client for one page target (websocket-client)."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=120, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout:.0f} s")
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))
        self.ws.settimeout(120)


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if found := shutil.which(name):
            return found
    sys.exit("error: no Chromium found; install Debian's package: apt-get install -y chromium")


def start_chromium(profile: Path) -> tuple[subprocess.Popen, str]:
    """Start headless Chromium; return the process and its first page's websocket address."""
    args = [find_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1280,900",
            "about:blank"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit("error: Chromium did not start (no DevToolsActivePort within 60 s)")
        time.sleep(0.2)
    port = port_file.read_text().split()[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as reply:
        pages = [t for t in json.load(reply) if t.get("type") == "page"]
    return proc, pages[0]["webSocketDebuggerUrl"]


def serve(folder: Path) -> http.server.ThreadingHTTPServer:
    """Serve ``folder`` on a free local port in a background thread."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _console_problems(events: list[dict], origin: str) -> list[str]:
    problems = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            problems.append(f"console error: {args[:300]}")
        elif method == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            problems.append(f"uncaught exception: {str(text)[:300]}")
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            entry = p["entry"]
            problems.append(f"console error: {entry.get('text')} {entry.get('url', '')}"[:300])
        elif method == "Network.requestWillBeSent":
            url = p["request"]["url"]
            if not url.startswith((origin, "data:", "blob:", "about:")):
                problems.append(f"loads from the network: {url[:200]}")
    return problems


def check_page(tab: DevTools, root: Path, page: Path, origin: str, shots: Path) -> list[str]:
    """Load one page, report its problems and save its screenshots."""
    rel = page.relative_to(root).as_posix()
    tab.events.clear()
    tab.send("Page.navigate", url=f"{origin}/{rel}")
    tab.wait_for("Page.loadEventFired", timeout=90)
    result = tab.send("Runtime.evaluate", expression=PAGE_REPORT_JS, awaitPromise=True,
                      returnByValue=True, timeout=60000)  # fmt: skip
    if "exceptionDetails" in result:
        return [f"the page check itself failed: {result['exceptionDetails'].get('text')}"]
    report = json.loads(result["result"]["value"])
    time.sleep(0.3)  # late console messages
    tab.send("Runtime.evaluate", expression="0")  # drains pending events into tab.events
    problems = _console_problems(tab.events, origin)
    problems += [f"broken link: {x}" for x in broken_links(root, page, report["hrefs"])]
    problems += [f"missing image: {src}" for src in report["missing_images"]]
    problems += [f"raw TeX: ...{snippet}..." for snippet in raw_tex(report["text"])]
    name = rel.replace("/", "_").removesuffix(".html")
    shots.mkdir(parents=True, exist_ok=True)
    first = tab.send("Page.captureScreenshot", format="png")
    (shots / f"{name}.png").write_bytes(base64.b64decode(first["data"]))
    height = tab.send("Page.getLayoutMetrics")["cssContentSize"]["height"]
    clip = {"x": 0, "y": 0, "width": 1280, "height": min(height, 30000), "scale": 0.5}
    full = tab.send("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
    (shots / f"{name}-full.png").write_bytes(base64.b64decode(full["data"]))
    print(f"  {'ok  ' if not problems else 'FAIL'} {rel}: {report['images']} images, "
          f"{report['formulas']} formulas, {len(report['hrefs'])} links", flush=True)  # fmt: skip
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=ROOT / "build" / "site" / "html")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "build" / "site" / "screenshots")
    args = parser.parse_args(argv)
    root = args.html.resolve()
    pages = sorted(p for p in root.rglob("*.html") if not SKIP_DIRS & set(p.relative_to(root).parts))  # fmt: skip
    if not pages:
        sys.exit(f"error: no pages in {root}; run `make site` first")
    start = time.perf_counter()
    server = serve(root)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    failures = {}
    with tempfile.TemporaryDirectory(prefix="site-check-") as profile:
        proc, ws_url = start_chromium(Path(profile))
        try:
            tab = DevTools(ws_url)
            for domain in ("Page", "Runtime", "Log", "Network"):
                tab.send(f"{domain}.enable")
            tab.send("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                     deviceScaleFactor=1, mobile=False)  # fmt: skip
            for page in pages:
                if problems := check_page(tab, root, page, origin, args.screenshots):
                    failures[page.relative_to(root).as_posix()] = problems
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            server.shutdown()
    for page, problems in failures.items():
        print(f"\n{page}:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    seconds = time.perf_counter() - start
    print(f"{len(pages)} pages checked in {seconds:.0f} s; {len(failures)} with problems; "
          f"screenshots in {args.screenshots}")  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
