"""Prediction over many files: several worker processes on one machine, and sharding across the
processes that `torchrun` or `accelerate launch` start (on one machine or several).

`predict` is what `python -m ser_model predict` calls. Under a launcher (detected from the `RANK` and
`WORLD_SIZE` variables it sets) process `r` of `n` takes files `r, r + n, r + 2n, ...` of the list,
and the results are gathered back into the original order, so that the main process (rank 0) writes
one output file. `workers` applies to each process: `accelerate launch --num_processes 2 ...
--workers 3` runs 6 model copies in all. Each file is classified on its own, so the output (table,
JSON or CSV) is the same however the files were spread.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .audio_io import AudioError
from .inference import EmotionRecognizer, Prediction

Result = tuple[Path, Prediction | None, str | None]
"""(file, its prediction or None, the error sentence or None)."""


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process under torchrun / accelerate launch; (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    return process_rank()[0] == 0


def process_device() -> str | None:
    """The GPU of this launched process (`LOCAL_RANK`; processes share GPUs round-robin when there
    are more of them), or None for `EmotionRecognizer`'s default."""
    if process_rank()[1] > 1 and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    return None


def predict(files: Sequence[Path], recognizer: EmotionRecognizer, model: str, revision: str | None = None,
            max_seconds: float | None = None, workers: int = 1) -> list[Result]:
    """Classifies `files` and returns one result per file, in the order given.

    Args:
        files (`list[Path]`): the files; one that fails to decode gets its error sentence instead.
        recognizer (`EmotionRecognizer`): already loaded from `model`; used directly when `workers` is 1.
        model (`str`): the folder or Hub id each worker process loads its own copy from.
        revision (`str`, *optional*): the Hub revision of `model`.
        max_seconds (`float`, *optional*): refuse longer files.
        workers (`int`, *optional*, defaults to 1): worker processes on this machine (per launched process).
    """
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    rank, world_size = process_rank()
    if world_size == 1:
        return predict_local(files, recognizer, model, revision, max_seconds, workers)
    with _process_group():
        share = predict_local(files[rank::world_size], recognizer, model, revision, max_seconds, workers,
                              progress=rank == 0)
        shares = [None] * world_size
        torch.distributed.all_gather_object(shares, share)
    results: list = [None] * len(files)
    for r, part in enumerate(shares):
        results[r::world_size] = part
    return results


def predict_local(files: Sequence[Path], recognizer: EmotionRecognizer, model: str, revision: str | None,
                  max_seconds: float | None, workers: int, progress: bool = True) -> list[Result]:
    """Classifies `files` in this process, or spread over `workers` spawned processes."""
    bar = dict(total=len(files), desc="files", unit="file", file=sys.stderr,
               disable=not progress or len(files) < 2 or None)
    workers = min(workers, len(files))
    if workers <= 1:
        return [_predict_one(recognizer, path, max_seconds) for path in tqdm(files, **bar)]

    # Each worker gets an equal share of this machine's cores; more threads than cores only adds contention.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // (workers * int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    device = str(next(recognizer.model.parameters()).device)
    # "spawn", not "fork": forking a process that has already run torch can deadlock in its thread pools.
    # An executor, not multiprocessing.Pool: a worker that dies makes it raise instead of waiting forever.
    results: list = [None] * len(files)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                             initargs=(model, revision, recognizer.batch_size, device, threads)) as executor:
        futures = {executor.submit(_predict_task, path, max_seconds): index for index, path in enumerate(files)}
        for future in tqdm(as_completed(futures), **bar):
            results[futures[future]] = future.result()
    return results


def _predict_one(recognizer: EmotionRecognizer, path: Path, max_seconds: float | None) -> Result:
    try:
        return path, recognizer.predict_file(path, max_seconds=max_seconds), None
    except (AudioError, OSError) as error:
        return path, None, str(error)


# One recognizer per worker process, loaded once by `_start_worker`.
_worker: EmotionRecognizer | Exception | None = None


def _start_worker(model: str, revision: str | None, batch_size: int, device: str, threads: int) -> None:
    global _worker
    torch.set_num_threads(threads)
    try:
        _worker = EmotionRecognizer.from_pretrained(model, revision=revision, device=device, batch_size=batch_size)
    except Exception as error:  # noqa: BLE001 - re-raised by each task, so the caller sees the real error
        _worker = error


def _predict_task(path: Path, max_seconds: float | None) -> Result:
    if isinstance(_worker, Exception):
        raise _worker
    return _predict_one(_worker, path, max_seconds)


@contextmanager
def _process_group():
    """The launcher's process group, or a gloo one for the gather (gloo sends Python objects on any
    machine, with or without GPUs); one made here is closed here."""
    if torch.distributed.is_initialized():
        yield
        return
    torch.distributed.init_process_group(backend="gloo")
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


__all__ = ["Result", "is_main_process", "predict", "predict_local", "process_device", "process_rank"]
