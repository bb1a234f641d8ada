"""The real app as the API and browser tests see it: `bench/_app_server.py` starts `python app.py` (the
benchmarks start it the same way), here with a tiny random model unless a test names one."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

from bench._app_server import free_port
from bench._app_server import running_app as _serve_app

from .conftest import save_tiny_model

__all__ = ["free_port", "running_app"]


@contextlib.contextmanager
def running_app(workdir: Path, model: str | None = None, revision: str | None = None,
                env: dict[str, str] | None = None) -> Iterator[str]:
    """Serves app.py at the URL it yields, with `model` (a folder or Hub id, at `revision`) or else the
    tiny model saved under `workdir`; see `bench._app_server.running_app`."""
    with _serve_app(workdir, model or str(save_tiny_model(workdir / "model")), revision, env) as url:
        yield url
