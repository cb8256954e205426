"""`make lab` starts JupyterLab on the course: start the real server headless, ask it for its
/lab page and for the notebooks through its contents API, then stop it."""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request

from tools import course

ROOT = course.repo_root()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def test_jupyterlab_serves_the_course(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}",
        "--ServerApp.default_url=/lab/tree/notebooks",
    ] + (["--allow-root"] if os.geteuid() == 0 else [])  # as `make lab` does
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                status, page = _get(f"{base}/lab", token)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
                time.sleep(0.5)
        assert status == 200 and b"JupyterLab" in page
        status, body = _get(f"{base}/api/contents/notebooks", token)
        listed = {item["name"] for item in json.loads(body)["content"]}
        assert {nb.path.name for nb in course.find_notebooks(ROOT)} <= listed
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    assert server.returncode is not None
