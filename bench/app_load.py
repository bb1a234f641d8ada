"""The Gradio app under load: cold start, concurrent gradio_client users on loopback, server memory.

    python bench/app_load.py                          # 8, 16 and 32 clients; 500 requests for memory
    python bench/app_load.py --clients 2 --requests 60 --per-client 1    # a quick check

Starts `python app.py --host 127.0.0.1` on a free port, exactly as a user would, with the helper the
API and browser tests start it with too (`bench/_app_server.py`), and talks to it only with
`gradio_client`, one `Client` per simulated user. Every request uploads a real 3-second clip
(RAVDESS, cropped or zero-padded to 3.0 s, written as 16 kHz WAV; synthetic noise stands in when the
corpus is absent) and calls the `/predict` endpoint the app's button uses. `/predict` returns the
numbers; the page then asks for its pictures in a second event, which API clients never call, so
their cost is timed apart, in-process, at the end. In order:

1. cold start: from starting the process to the first successful `/predict` answer;
2. memory: requests from `--memory-clients` clients until `--requests` have been sent in all, with
   the server's resident memory (VmRSS) read after 50 requests and after the last one;
3. concurrency: for each count in `--clients`, that many users each send `--per-client` requests at
   once; per-request latency (upload + queue + inference + answer), errors and throughput.

Every phase is bounded in time; requests still unanswered at its limit count as errors. The server is
always stopped and the temporary files removed, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import _common  # noqa: F401  (sets up sys.path before ser_model is imported)
import soundfile as sf
import torch
from _app_server import START_TIMEOUT, running_app
from _common import (add_common_arguments, available_cores, environment_lines, load_recognizer, model_to_serve,
                      percentile, run_script)
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError
from latency import three_second_clips

SAMPLING_RATE = 16_000
# The goals, for a Space on 2 cores (the README's Performance table gives the figures): first answer
# within 15 s of starting the process, so a sleeping Space wakes while its visitor still waits; with 16
# concurrent users on loopback, no errors and a 95th-percentile latency under 2 s; memory after 500
# requests within 10% of memory after 50, since a server that grows with every request runs out of memory.
GOAL_CORES = 2
GOAL_COLD_START_SECONDS = 15.0
GOAL_CLIENTS = 16
GOAL_P95_SECONDS = 2.0
GOAL_MEMORY_FRACTION = 0.10
MEMORY_CHECKPOINT = 50
# Only the app on 127.0.0.1 is ever contacted, whatever proxy the environment names.
LOOPBACK = "127.0.0.1,localhost"


@dataclass
class Outcome:
    """What a batch of requests gave: latencies of the answered ones (seconds), errors by kind, requests sent."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    sent: int = 0
    wall: float = 0.0
    # CPU seconds used meanwhile by the app and by this process (the clients share the machine with it).
    server_cpu: float = 0.0
    client_cpu: float = 0.0

    def add(self, other: Outcome) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        for name in ("sent", "wall", "server_cpu", "client_cpu"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def main(argv=None) -> int:
    args = parse_arguments(argv)
    sys.stdout.reconfigure(line_buffering=True)
    prepare_environment(args)
    print("== app load: python app.py on loopback, gradio_client users ==")
    for line in environment_lines():
        print(line)
    with tempfile.TemporaryDirectory(prefix="ser-bench-app-load-") as folder:
        workdir = Path(folder)
        try:
            model, model_line = model_to_serve(args.model, workdir)
        except (OSError, ValueError) as error:
            print(f"error: cannot load the model: {error}", file=sys.stderr)
            return 2
        clips, clips_line = write_clips(args.data, args.clips, workdir / "clips")
        print_setup(args, model_line, clips_line)
        return run(args, model, clips, workdir)


def parse_arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] + " At the defaults it is meant to "
                                     "finish within 5 minutes on 2 idle cores.")
    add_common_arguments(parser)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 16, 32],
                        help="concurrent users per level, one gradio_client.Client each (default: %(default)s)")
    parser.add_argument("--per-client", type=int, default=1,
                        help="requests each user sends per level, one at a time (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=500,
                        help="requests sent in all (the first one included) before the last memory reading; "
                             f"the first is after {MEMORY_CHECKPOINT} (default: %(default)s)")
    parser.add_argument("--memory-clients", type=int, default=4,
                        help="users sending the memory phase's requests (default: %(default)s, the app's "
                             "concurrency limit)")
    parser.add_argument("--clips", type=int, default=16,
                        help="distinct 3 s clips the requests cycle through (default: %(default)s)")
    parser.add_argument("--memory-timeout", type=float, default=240.0,
                        help="time limit of the memory phase in seconds (default: %(default)s)")
    parser.add_argument("--level-timeout", type=float, default=120.0,
                        help="time limit of each concurrency level in seconds (default: %(default)s)")
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    return args


def check_arguments(parser, args) -> None:
    """Ends with argparse's usage error when a count is below 1 or a time limit is not positive."""
    for name in ("threads", "per_client", "requests", "memory_clients", "clips"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if any(n < 1 for n in args.clients):
        parser.error(f"every --clients must be at least 1, got {args.clients}")
    for name in ("memory_timeout", "level_timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")


def prepare_environment(args) -> None:
    """This process's threads and environment, which the app server and the clients inherit."""
    # The server's torch reads OMP_NUM_THREADS; set here too so the environment lines describe it.
    torch.set_num_threads(args.threads)
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, [LOOPBACK, os.environ.get(name)]))
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_OFFLINE"] = "1"


def print_setup(args, model_line: str, clips_line: str) -> None:
    print(f"model: {model_line}")
    print(f"clips: {clips_line}")
    print(f"server: app.py, CPU only, {args.threads} torch threads (OMP_NUM_THREADS); memory phase: "
          f"{args.requests} requests from {args.memory_clients} clients; concurrency: "
          f"{', '.join(map(str, args.clients))} clients x {args.per_client} requests each")
    print()


def write_clips(data_dir: Path, count: int, folder: Path) -> tuple[list[Path], str]:
    """`count` 3-second clips as 16 kHz PCM_16 WAV files under `folder`: what a user would upload."""
    waveforms, line = three_second_clips(data_dir, count, SAMPLING_RATE)
    folder.mkdir()
    paths = []
    for i, waveform in enumerate(waveforms):
        path = folder / f"clip_{i:02d}.wav"
        sf.write(path, waveform, SAMPLING_RATE, subtype="PCM_16")
        paths.append(path)
    return paths, f"{line}; 16 kHz PCM_16 WAV"


def run(args, model: str, clips: list[Path], workdir: Path) -> int:
    """Serves `model` with app.py (output in `workdir/app.log`), measures it, then stops it and times the
    pictures with the cores to itself."""
    print("starting app.py on a free loopback port ...", file=sys.stderr)
    # The server's torch reads OMP_NUM_THREADS, and the goals are for CPU cores, as in the other benchmarks.
    server_env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(args.threads)}
    try:
        with contextlib.ExitStack() as server:
            start = time.perf_counter()
            try:
                url = server.enter_context(running_app(workdir, model=model, env=server_env))
            except RuntimeError as error:  # app.py exited, or did not answer within START_TIMEOUT
                print(f"error: {error}", file=sys.stderr)
                return 2
            measured = measure(args, server_pid(url), start, time.perf_counter(), url, clips, workdir / "app.log")
    finally:
        report_server_log(workdir / "app.log")
    if measured is None:
        return 2
    print(f"pictures: {1000 * time_pictures(model, clips):.0f} ms median per 3 s clip to draw and encode "
          f"the page's probability chart and waveform/spectrogram/MFCC picture (in this process, server stopped); "
          f"the page asks for them after /predict has answered, and API clients never do, so they are not in the "
          f"latencies above")
    print()
    print_goals(*measured, args)
    return 0


def server_pid(url: str) -> int:
    """The process id of the app serving `url`: the child of this process whose command line holds its port.
    (`running_app` yields only the URL; memory and CPU time are read from /proc/PID.)"""
    port = str(urllib.parse.urlsplit(url).port).encode()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # field 4 of proc(5): the parent's id
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile
        if parent == os.getpid() and b"--port" in command and port in command:
            return int(stat.parent.name)
    raise RuntimeError(f"no child process of this one serves {url}")


def measure(args, pid: int, start: float, listening: float, url: str, clips: list[Path],
            log_path: Path) -> tuple | None:
    """The three phases against the app at `url` (process `pid`), started at `start` and serving since
    `listening` (perf_counter times). Prints the cold start, memory and levels, and returns the arguments
    of `print_goals`, or None when the first request fails."""
    try:
        first_client = new_client(url)
        try:
            first_start = time.perf_counter()
            job = first_client.submit(handle_file(str(clips[0])), api_name="/predict")
            check_answer(job.result(timeout=max(1.0, start + START_TIMEOUT - first_start)))
            first_answer = time.perf_counter()
        finally:
            first_client.close()
    except Exception as error:  # noqa: BLE001  (any failure of the first request is reported, not raised)
        print(f"error: the first request failed: {describe_error(error)}; app.py's output ends with:\n"
              f"{log_path.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        return None
    readings = [(1, rss_bytes(pid))]

    print(f"memory phase: {args.requests} requests from {args.memory_clients} clients ...", file=sys.stderr)
    memory_outcome = memory_phase(args, url, clips, pid, readings)

    levels = []
    for clients in args.clients:
        print(f"concurrency: {clients} clients x {args.per_client} requests ...", file=sys.stderr)
        levels.append((clients, run_level(url, clients, args.per_client, clips, args.level_timeout, pid)))
    memory_after_levels = rss_bytes(pid)
    sent = readings[-1][0] + sum(outcome.sent for _, outcome in levels)
    print(file=sys.stderr)

    cold_start = first_answer - start
    print(f"cold start: {cold_start:.1f} s from starting the process to the first answer "
          f"(listening after {listening - start:.1f} s; connecting and the first request took "
          f"{first_answer - listening:.1f} s, of which the request {first_answer - first_start:.2f} s)")
    print()
    print_memory(readings, sent, memory_after_levels, memory_outcome, args)
    print_levels(levels, args)
    return cold_start, levels, readings


def report_server_log(log_path: Path) -> None:
    """Server-side tracebacks explain client-side errors; quote the last one."""
    text = log_path.read_text(errors="replace")
    tracebacks = text.count("Traceback (most recent call last)")
    if tracebacks:
        last = text[text.rindex("Traceback (most recent call last)"):]
        print(f"note: app.py logged {tracebacks} traceback(s); the last one:\n{last[-2000:]}", file=sys.stderr)


def new_client(url: str) -> Client:
    # No telemetry, no proxy, no downloads: the only traffic is to the app on 127.0.0.1.
    return Client(url, verbose=False, analytics_enabled=False, download_files=False,
                  httpx_kwargs={"trust_env": False})


def rss_bytes(pid: int) -> int | None:
    """Resident memory (VmRSS) of process `pid` now, None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, all threads) of process `pid`, or of this process; 0 when it is gone."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        # Fields 14 and 15 of /proc/PID/stat (proc(5)), counted after the parenthesised command name.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_percent(seconds: float, wall: float) -> float:
    """`seconds` of CPU time over `wall` seconds, as a percentage of all available cores."""
    return 100 * seconds / wall / available_cores() if wall > 0 else 0.0


def check_answer(result) -> None:
    """The outputs of `/predict`, the first a gr.Label value; anything else is an error."""
    if not (isinstance(result, tuple) and isinstance(result[0], dict) and "label" in result[0]):
        raise ValueError(f"unexpected answer from /predict: {str(result)[:100]}")


def time_pictures(model: str, clips: list[Path], count: int = 8) -> float:
    """Median seconds to draw and encode the page's pictures of one clip (the step after `/predict`,
    which API clients skip), in this process, as the app does it: `draw_pictures`, then each figure
    saved as the PNG the page's gr.Image shows."""
    from ser_model.serving.analysis import analyze_file, draw_pictures
    from ser_model.serving.plots import save_png

    recognizer, _ = load_recognizer(model)
    durations = []
    for clip in clips[:count]:
        prediction = analyze_file(recognizer, str(clip)).prediction
        started = time.perf_counter()
        pictures = draw_pictures(prediction, recognizer.labels)
        with tempfile.TemporaryDirectory() as folder:
            for name, figure in (("probabilities", pictures.probabilities), ("signal", pictures.signal)):
                save_png(figure, Path(folder) / f"{name}.png")
        durations.append(time.perf_counter() - started)
    return percentile(durations, 50)


def describe_error(error: BaseException) -> str:
    if isinstance(error, QueueError):
        return "queue full (the app refused the request)"
    if isinstance(error, AppError):
        return f"app error: {str(error)[:100]}"
    return f"{type(error).__name__}: {str(error)[:100]}"


def memory_phase(args, url: str, clips: list[Path], pid: int, readings: list) -> Outcome:
    """Sends requests until `args.requests` in all (the first one included), appending (requests sent,
    server RSS) to `readings` after the first `MEMORY_CHECKPOINT` and after the last one."""
    outcome = Outcome()
    deadline = time.monotonic() + args.memory_timeout
    # Requests sent so far, and requests planned so far (sent, failed or given up at the time limit).
    sent = planned = readings[-1][0]
    clients, outcome.errors = connect(url, args.memory_clients, 0)
    try:
        for target in sorted({min(MEMORY_CHECKPOINT, args.requests), args.requests}):
            if target <= planned or not clients:
                continue
            if time.monotonic() >= deadline:
                outcome.errors["not sent: phase time limit reached"] += args.requests - planned
                break
            part = run_clients(clients, split(target - planned, len(clients)), clips, deadline - time.monotonic(), pid)
            planned = target
            outcome.add(part)
            sent += part.sent
            readings.append((sent, rss_bytes(pid)))
    finally:
        for client in clients:
            client.close()
    return outcome


def connect(url: str, count: int, requests_each: int) -> tuple[list[Client], Counter]:
    """`count` clients; one that cannot connect is an error for each of its `requests_each` requests."""
    clients, failed = [], Counter()
    for _ in range(count):
        try:
            clients.append(new_client(url))
        except Exception as error:  # noqa: BLE001  (a user that cannot connect is an error, not a crash)
            failed[f"could not connect: {describe_error(error)}"] += max(requests_each, 1)
    return clients, failed


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def run_level(url: str, count: int, per_client: int, clips: list[Path], timeout: float, pid: int) -> Outcome:
    """`count` users, each with its own client (connected before the clock starts), `per_client` requests each."""
    clients, failed = connect(url, count, per_client)
    try:
        outcome = run_clients(clients, [per_client] * len(clients), clips, timeout, pid)
    finally:
        for client in clients:
            client.close()
    outcome.errors += failed
    return outcome


@dataclass
class Level:
    """What the users of one batch of requests share: the outcome they add to (under `lock`), the
    time limit (a time.monotonic() value) and the signal to stop early."""

    outcome: Outcome = field(default_factory=Outcome)
    lock: threading.Lock = field(default_factory=threading.Lock)
    deadline: float = 0.0
    # Set when the benchmark stops early (Ctrl-C): the users then send nothing more.
    abort: threading.Event = field(default_factory=threading.Event)


def run_clients(clients: list[Client], counts: list[int], clips: list[Path], timeout: float, pid: int) -> Outcome:
    """Each client sends its count of requests, one after the other, all clients at once, within `timeout` s;
    `pid` is the app's process, whose CPU time is measured meanwhile."""
    level = Level(deadline=time.monotonic() + timeout)
    barrier = threading.Barrier(len(clients) + 1)
    # User i's k-th request uploads clip i + k * users, so the users upload different clips at once.
    uploads = [[clips[(i + k * len(clients)) % len(clips)] for k in range(n)] for i, n in enumerate(counts)]
    threads = [threading.Thread(target=send_requests, args=(level, barrier, client, user_clips), daemon=True)
               for client, user_clips in zip(clients, uploads)]
    for thread in threads:
        thread.start()
    outcome = level.outcome
    try:
        barrier.wait()
        level_start = time.perf_counter()
        server_cpu, client_cpu = cpu_seconds(pid), cpu_seconds()
        for thread in threads:
            # A cancelled job returns at once; the margin only guards against a client that hangs.
            thread.join(max(0.0, level.deadline - time.monotonic()) + 30)
    finally:
        level.abort.set()
    outcome.wall = time.perf_counter() - level_start
    outcome.server_cpu = cpu_seconds(pid) - server_cpu
    outcome.client_cpu = cpu_seconds() - client_cpu
    return outcome


def send_requests(level: Level, barrier: threading.Barrier, client: Client, clips: list[Path]) -> None:
    """One user: once every user is ready, uploads `clips` one after the other until the level's time limit;
    the requests left unsent then count as errors."""
    barrier.wait()
    for k, clip in enumerate(clips):
        remaining = level.deadline - time.monotonic()
        if level.abort.is_set():
            return
        if remaining <= 0:
            with level.lock:
                level.outcome.errors["not sent: phase time limit reached"] += len(clips) - k
            return
        if not send_request(level, client, clip, remaining):
            with level.lock:
                level.outcome.errors["not sent: phase time limit reached"] += len(clips) - k - 1
            return


def send_request(level: Level, client: Client, clip: Path, remaining: float) -> bool:
    """Uploads `clip` to `/predict` and records its latency or its error; False when no answer came within
    `remaining` seconds (the job is then cancelled)."""
    start = time.perf_counter()
    job = None
    try:
        job = client.submit(handle_file(str(clip)), api_name="/predict")
        with level.lock:
            level.outcome.sent += 1
        check_answer(job.result(timeout=remaining))
    except TimeoutError:
        if job is not None:
            job.cancel()
        with level.lock:
            level.outcome.errors["no answer within the phase time limit"] += 1
        return False
    except Exception as error:  # noqa: BLE001  (every failed request is counted by kind)
        with level.lock:
            level.outcome.errors[describe_error(error)] += 1
    else:
        latency = time.perf_counter() - start
        with level.lock:
            level.outcome.latencies.append(latency)
    return True


def print_memory(readings: list, sent: int, after_levels: int | None, outcome: Outcome, args) -> None:
    header = f"{'after requests':>14}  {'server RSS MB':>13}"
    print(header)
    print("-" * len(header))
    for count, rss in readings:
        print(f"{count:>14}  {megabytes(rss):>13}")
    print(f"{sent:>14}  {megabytes(after_levels):>13}  (after the concurrency levels)")
    print("(requests sent, the first one included; RSS = VmRSS of the app process; MB = 1e6 bytes)")
    answered = len(outcome.latencies)
    if answered:
        print(f"memory phase: {answered} answered by {args.memory_clients} clients in {outcome.wall:.1f} s, "
              f"{answered / outcome.wall:.1f} answers/s, median latency {percentile(outcome.latencies, 50):.2f} s, "
              f"{outcome.error_count} errors; app CPU {1000 * outcome.server_cpu / answered:.0f} ms per answer, "
              f"{cpu_percent(outcome.server_cpu, outcome.wall):.0f}% of the cores; "
              f"the benchmark's clients {cpu_percent(outcome.client_cpu, outcome.wall):.0f}%")
    else:
        print(f"memory phase: nothing answered, {outcome.error_count} errors")
    for kind, count in outcome.errors.most_common():
        print(f"  memory phase: error x{count}: {kind}")
    print()


def megabytes(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1e6:.0f}"


def print_levels(levels: list[tuple[int, Outcome]], args) -> None:
    header = (f"{'clients':>7}  {'requests':>8}  {'answered':>8}  {'errors':>6}  {'p50 s':>6}  {'p95 s':>6}  "
              f"{'max s':>6}  {'wall s':>6}  {'answers/s':>9}  {'app CPU %':>9}  {'clients CPU %':>13}")
    print(header)
    print("-" * len(header))
    for clients, outcome in levels:
        latencies = outcome.latencies
        stats = ([f"{percentile(latencies, q):>6.2f}" for q in (50, 95)] + [f"{max(latencies):>6.2f}"]
                 if latencies else [f"{'n/a':>6}"] * 3)
        rate = len(latencies) / outcome.wall if outcome.wall > 0 else 0.0
        app_cpu, client_cpu = (cpu_percent(outcome.server_cpu, outcome.wall),
                               cpu_percent(outcome.client_cpu, outcome.wall))
        print(f"{clients:>7}  {clients * args.per_client:>8}  {len(latencies):>8}  {outcome.error_count:>6}  "
              f"{'  '.join(stats)}  {outcome.wall:>6.1f}  {rate:>9.1f}  {app_cpu:>9.0f}  {client_cpu:>13.0f}")
    print(f"(latency: upload + queue + inference + answer, per request; each user sends {args.per_client} "
          f"request(s) one after the other; time limit {args.level_timeout:g} s per level; the app runs "
          "at most 4 requests at once and queues the rest; CPU %: share of all cores used by the app and by this "
          "benchmark's clients, which run on the same machine)")
    for clients, outcome in levels:
        for kind, count in outcome.errors.most_common():
            print(f"  {clients} clients: error x{count}: {kind}")
    print()


def print_goals(cold_start: float, levels: list[tuple[int, Outcome]], readings: list, args) -> None:
    cores = available_cores()
    note = "" if cores == GOAL_CORES and args.threads == GOAL_CORES else (
        f"; measured with {cores} cores and {args.threads} threads, not {GOAL_CORES}")
    verdict = "PASS" if cold_start <= GOAL_COLD_START_SECONDS else "FAIL"
    print(f"goal: cold start <= {GOAL_COLD_START_SECONDS:g} s on {GOAL_CORES} cores: {verdict} "
          f"({cold_start:.1f} s{note})")

    goal = f"goal: {GOAL_CLIENTS} clients, zero errors and p95 < {GOAL_P95_SECONDS:g} s"
    matching = [outcome for clients, outcome in levels if clients == GOAL_CLIENTS]
    if not matching:
        print(f"{goal}: n/a ({GOAL_CLIENTS} clients were not measured)")
    else:
        outcome = matching[0]
        p95 = percentile(outcome.latencies, 95) if outcome.latencies else float("inf")
        verdict = "PASS" if outcome.error_count == 0 and p95 < GOAL_P95_SECONDS else "FAIL"
        print(f"{goal}: {verdict} ({outcome.error_count} errors, p95 {p95:.2f} s{note})")

    goal = f"goal: memory after 500 requests within {100 * GOAL_MEMORY_FRACTION:g}% of after {MEMORY_CHECKPOINT}"
    if args.requests <= MEMORY_CHECKPOINT:
        print(f"{goal}: n/a (needs --requests above {MEMORY_CHECKPOINT}, got {args.requests})")
    elif len(readings) < 3 or readings[-1][0] < args.requests or None in (readings[1][1], readings[-1][1]):
        print(f"{goal}: n/a (the memory phase stopped after {readings[-1][0]} of {args.requests} requests)")
    else:
        (first_count, first), (last_count, last) = readings[1], readings[-1]
        change = last / first - 1
        verdict = "PASS" if abs(change) <= GOAL_MEMORY_FRACTION else "FAIL"
        note = "" if (first_count, last_count) == (MEMORY_CHECKPOINT, 500) else (
            f"; measured after {first_count} and {last_count} requests")
        print(f"{goal}: {verdict} ({100 * change:+.1f}%{note})")


if __name__ == "__main__":
    run_script(main)
