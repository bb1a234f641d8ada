"""The real app as the API and browser tests see it: `python app.py` in a subprocess, on a free
loopback port, with a tiny random model, stopped when the tests are done."""

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from .conftest import REPO, save_tiny_model

# Importing gradio, transformers and torch takes about 10 s on an idle 2-core machine; far more
# when training shares the cores.
START_TIMEOUT = 120
STOP_TIMEOUT = 15


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _log_tail(log_path: Path, chars: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-chars:]


def _wait_until_up(process: subprocess.Popen, url: str, log_path: Path, timeout: float) -> None:
    # Straight to the loopback address, whatever proxy the environment names.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with status {process.returncode} before serving:\n"
                               f"{_log_tail(log_path)}")
        try:
            with opener.open(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"app.py did not answer at {url} within {timeout} s:\n{_log_tail(log_path)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def running_app(workdir: Path, model: str | None = None, revision: str | None = None,
                env: dict[str, str] | None = None) -> Iterator[str]:
    """Serves app.py at the URL it yields, with `model` (a folder or Hub id, at `revision`) or else the
    tiny model saved under `workdir`, and `env` added to its environment; the server's output goes to
    `workdir/app.log`, quoted in the error when it fails to start."""
    model = model or str(save_tiny_model(workdir / "model"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {
        **os.environ,
        "SER_MODEL": model,
        "SER_MODEL_REVISION": revision or "",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(workdir / "gradio"),
        "HF_HUB_OFFLINE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    log_path = workdir / "app.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--host", "127.0.0.1", "--port", str(port)],
                                   cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_up(process, url, log_path, START_TIMEOUT)
            yield url
        finally:
            _stop(process)
