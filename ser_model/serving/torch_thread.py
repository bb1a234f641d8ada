"""One thread for every torch call of a server that answers from many threads (the app).

torch runs its operations in parallel with OpenMP (libgomp in the PyPI wheels), which gives every thread
that starts a parallel region a team of worker threads of its own. Once the teams of a process hold more
threads than there are cores, libgomp stops letting idle workers spin between operations, and every
operation then waits for sleeping workers to wake up: classifying 10 minutes of speech took 12.5 s on a
thread other than the one that loaded the model, against 8.4 s when one thread did both (2 cores,
bfloat16). Gradio answers each request on a thread of its pool, so the app loads the model and runs
every feature extraction and forward pass on one thread of its own (`EmotionRecognizer(torch_thread=...)`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Result = TypeVar("Result")


class TorchThread:
    """Runs functions on one thread of its own, one at a time, in the order they come."""

    def __init__(self):
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pid: int | None = None
        self._local = threading.local()

    def run(self, function: Callable[..., Result], *args, **kwargs) -> Result:
        """`function(*args, **kwargs)` on the torch thread (directly when called from it); its result or
        its exception, here."""
        if getattr(self._local, "inside", False):
            return function(*args, **kwargs)
        return self._executor_here().submit(self._call, function, args, kwargs).result()

    def _call(self, function, args, kwargs):
        self._local.inside = True
        return function(*args, **kwargs)

    def _executor_here(self) -> ThreadPoolExecutor:
        # A forked process (batch prediction's workers) inherits the executor but not its thread: it gets
        # an executor of its own.
        with self._lock:
            if self._pid != os.getpid():
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch")
                self._pid = os.getpid()
            return self._executor


__all__ = ["TorchThread"]
