"""Prediction over many files: several worker processes on one machine, and sharding across the
processes that `torchrun` or `accelerate launch` start (on one machine or several).

`predict` is what `python -m ser_model predict` calls. Under a launcher, accelerate's `PartialState`
gives each process a contiguous share of the file list (`split_between_processes`) and
`gather_object` brings the shares back in order, so that the main process writes one output file.
`workers` applies to each process: `accelerate launch --num_processes 2 ... --workers 3` runs 6 model
copies in all. Each file is classified on its own, so the output (table, JSON or CSV) is the same
however the files were spread.

Workers are *forked* from a parent that has imported everything but loaded no model and run no
torch operation: a spawned worker would import torch, transformers and timm again (seconds of CPU
each, against milliseconds to classify a clip), and forking a process whose torch thread pools have
run can deadlock. Each worker then loads its own model and runs its share of this machine's cores
(one thread each for 2 workers on 2 cores), because torch's default of one thread per core, in
several processes at once, oversubscribes the cores (docs/performance.md gives the figures).

A file that cannot be decoded gets its error sentence in place of a prediction; a prediction's
notices (a truncated WAV) travel inside it, for the caller to show.

Progress goes to stderr as a bar: over the files when there are several, over the seconds of audio
when there is one.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from ..audio_io import AudioError
from .inference import EmotionRecognizer, ProgressCallback, set_inference_threads
from .prediction import Result


def _state() -> PartialState:
    """accelerate's view of the launched processes. Without a GPU it must be told to use the CPU:
    otherwise processes started by `accelerate launch` or `torchrun` each believe they are alone."""
    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    return _state().is_main_process


def process_device() -> str | None:
    """The device accelerate gives this launched process (its GPU, or the CPU), or None for
    `EmotionRecognizer`'s default when the process was not launched."""
    state = _state()
    return str(state.device) if state.num_processes > 1 else None


def predict(files: Sequence[Path], model: str, revision: str | None = None, batch_size: int = 16,
            max_seconds: float | None = None, workers: int = 1, progress: bool | None = None,
            progress_delay: float = 0.0) -> list[Result]:
    """Classifies `files` and returns one result per file, in the order given.

    Args:
        files (`list[Path]`): the files; one that fails to decode gets its error sentence instead.
        model (`str`): the model folder or Hub id; each process (or worker) loads its own copy.
        revision (`str`, *optional*): the Hub revision of `model`.
        batch_size (`int`, *optional*, defaults to 16): windows per forward pass on long files.
        max_seconds (`float`, *optional*): refuse longer files.
        workers (`int`, *optional*, defaults to 1): worker processes on this machine (per launched process).
        progress (`bool`, *optional*): a progress bar on stderr: always (`True`), never (`False`), or where
            stderr is a terminal (`None`); only the main process of a launch shows one.
        progress_delay (`float`, *optional*, defaults to 0): seconds of work before the bar shows.
    """
    state = _state()
    options = dict(model=model, revision=revision, batch_size=batch_size, max_seconds=max_seconds, workers=workers,
                   progress_delay=progress_delay)
    if state.num_processes == 1:
        return predict_local(files, **options, progress=progress)
    with state.split_between_processes(list(files)) as share:
        results = predict_local(share, **options, progress=progress if state.is_main_process else False)
    return gather_object(results)


def predict_local(files: Sequence[Path], model: str, revision: str | None, batch_size: int,
                  max_seconds: float | None, workers: int, progress: bool | None = None,
                  progress_delay: float = 0.0) -> list[Result]:
    """Classifies `files` in this process, or spread over `workers` forked processes (`progress` and
    `progress_delay` as in `predict`)."""
    bar = dict(file=sys.stderr, disable=None if progress is None else not progress, delay=progress_delay)
    workers = min(workers, len(files))
    if workers <= 1:
        # In this process: the serving default (every core), or the user's OMP_NUM_THREADS.
        set_inference_threads()
        _start_worker(model, revision, batch_size, process_device(), threads=None)
        if len(files) == 1:
            with tqdm(desc=files[0].name, unit="s", **bar) as seconds:
                return [_predict_task(files[0], max_seconds, _advance(seconds))]
        return [_predict_task(path, max_seconds) for path in tqdm(files, desc="files", unit="file", **bar)]

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // (workers * int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    worker_args = (model, revision, batch_size, process_device(), threads)

    results: list = [None] * len(files)
    with ProcessPoolExecutor(workers, mp_context=_worker_context(), initializer=_start_worker,
                             initargs=worker_args) as executor:
        futures = {executor.submit(_predict_task, path, max_seconds): index for index, path in enumerate(files)}
        for future in tqdm(as_completed(futures), total=len(files), desc="files", unit="file", **bar):
            results[futures[future]] = future.result()
    return results


def _advance(bar: tqdm) -> ProgressCallback:
    """A `ProgressCallback` that moves `bar` to the seconds of audio done, out of the file's length."""
    def advance(done: float, total: float | None) -> None:
        if total and bar.total != round(total, 1):
            bar.total = round(total, 1)
        bar.update(round(done - bar.n, 1))

    return advance


def _worker_context():
    """Fork where the platform has it (Linux): the workers inherit the imported modules and start at
    once. This process loads no model and runs no torch operation before forking (see the module
    docstring). Elsewhere each worker is spawned and imports everything itself."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method)


def _predict_one(recognizer: EmotionRecognizer, path: Path, max_seconds: float | None,
                 progress: ProgressCallback | None = None) -> Result:
    try:
        prediction = recognizer.predict_file(path, max_seconds=max_seconds, progress=progress)
    except (AudioError, OSError) as error:
        return path, None, str(error)
    return path, prediction, None


# One recognizer per process (this one, or each worker), loaded once by `_start_worker`.
_worker: EmotionRecognizer | Exception | None = None


def _start_worker(model: str, revision: str | None, batch_size: int, device: str | None,
                  threads: int | None) -> None:
    global _worker
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        _worker = EmotionRecognizer.from_pretrained(model, revision=revision, device=device, batch_size=batch_size)
    except Exception as error:  # noqa: BLE001 - re-raised by each task, so the caller sees the real error
        _worker = error
        if multiprocessing.parent_process() is None:
            raise


def _predict_task(path: Path, max_seconds: float | None, progress: ProgressCallback | None = None) -> Result:
    if isinstance(_worker, Exception):
        raise _worker
    return _predict_one(_worker, path, max_seconds, progress)


__all__ = ["is_main_process", "predict", "predict_local", "process_device"]
