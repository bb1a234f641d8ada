"""The real app as a user starts it: `python app.py` in a subprocess, on a free loopback port, stopped
when the caller is done.

The benchmarks (`app_load.py`, `live_latency.py`) and the API and browser tests start the app through
this one helper, so that what is measured is what is tested. It imports only the standard library:
the tests import it as `bench._app_server` and must not pay for, or be changed by, the benchmarks'
own set-up in `_common.py`.
"""

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

REPO_ROOT = Path(__file__).resolve().parent.parent
# Importing gradio, transformers and torch takes about 10 s on an idle 2-core machine, and several times
# that when other work shares the cores.
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


def _app_environment(workdir: Path, model: str, revision: str | None, env: dict[str, str] | None) -> dict[str, str]:
    """The server's environment: the model to serve, and nothing that reaches beyond the loopback address."""
    return {
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


@contextlib.contextmanager
def running_app(workdir: Path, model: str, revision: str | None = None,
                env: dict[str, str] | None = None) -> Iterator[str]:
    """Serves app.py at the URL it yields, with `model` (a folder or Hub id, at `revision`) and `env` added
    to its environment; the server's output goes to `workdir/app.log`, quoted in the `RuntimeError` raised
    when it does not start within `START_TIMEOUT` seconds."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = workdir / "app.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT, env=_app_environment(workdir, model, revision, env), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_up(process, url, log_path, START_TIMEOUT)
            yield url
        finally:
            _stop(process)
