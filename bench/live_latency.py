"""The live mode's responsiveness: how long after a microphone chunk reaches the app the page shows
the emotion it completes, with one live user; and the upload path's latency with and without a live
session running.

    python bench/live_latency.py [--model M] [--seconds 40] [--requests 30]

The real app (`python app.py`, started as the tests start it, by `bench/_app_server.py`) serves the model; headless Chromium
opens the Live tab with its fake microphone playing real RAVDESS speech (Chromium's
`--use-file-for-fake-audio-capture`), exactly as a person's browser would stream it. Gradio 6.31's
audio component sends a chunk every 0.1 s; the app classifies once per second of new audio and names
the chunk that completed the second in the band's `data-chunk` attribute. The script records when the
page sent each chunk (Playwright's request events) and when each update reached the page (a
MutationObserver): delay = update shown - that chunk sent.

The upload path is `/predict` called by gradio_client on a 3 s clip, one request at a time, first
with no live session, then while the live session streams.

On a Space the visitor's browser runs on the visitor's machine, but here it shares the app's CPU
cores (its fake microphone, page rendering and uploads take more than twice the app's CPU). It
therefore runs at the lowest CPU priority (`--browser-nice 19`): it gets the cores only when the
app leaves them idle. `--browser-nice 0` measures both at equal priority. Needs Chromium (`apt-get install
chromium`) and Playwright's Python package (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import _common  # noqa: F401  (sets up sys.path before ser_model is imported)
import numpy as np
import psutil
import soundfile as sf
from _app_server import running_app
from _common import DEFAULT_DATA_DIR, environment_lines, model_to_serve, percentile, ravdess_clips, run_script
from gradio_client import Client, handle_file

CHROMIUM = os.environ.get("SER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
# Records (Date.now(), chunk id, seconds heard) each time the live band is redrawn.
OBSERVE_UPDATES = """() => {
    window.__updates = [];
    const target = document.querySelector('#live-band');
    new MutationObserver(() => {
        const band = target.querySelector('.segment-band');
        if (band && band.dataset.chunk) window.__updates.push([Date.now(), band.dataset.chunk, parseFloat(band.dataset.heard)]);
    }).observe(target, {subtree: true, childList: true, attributes: true});
}"""


@dataclass
class LiveRun:
    """What one run measured: the live updates' delays after their chunks (seconds) and the updates that
    named no chunk sent, /predict latencies alone and during the session (seconds), the audio sent and
    classified (seconds), and the CPU seconds used meanwhile by kind of process."""

    delays: list[float]
    unmatched: int
    alone: list[float]
    during: list[float]
    sent_seconds: float
    chunks: int
    heard: float
    cpu: dict[str, float]


def main(argv=None) -> int:
    args = parse_arguments(argv)
    if not Path(CHROMIUM).is_file():
        print(f"error: no Chromium at {CHROMIUM} (apt-get install chromium, or set SER_CHROMIUM)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    print("\n".join(environment_lines()))
    with tempfile.TemporaryDirectory(prefix="live-latency-") as tmp:
        workdir = Path(tmp)
        model, line = model_to_serve(args.model, workdir)
        print(f"model: {line}")
        microphone, clip = write_audio(args.data, workdir)
        with running_app(workdir, model=model) as url, sync_playwright() as playwright:
            run = measure(playwright, url, microphone, clip, args, workdir)
    print_run(run, args)
    return 0


def parse_arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: $SER_MODEL, else model/)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="folder holding ravdess/")
    parser.add_argument("--seconds", type=float, default=40.0, help="length of the live session (default 40)")
    parser.add_argument("--requests", type=int, default=30, help="/predict requests per phase (default 30)")
    parser.add_argument("--browser-nice", type=int, default=19, choices=range(20), metavar="0-19",
                        help="CPU niceness of the browser, which stands in for the visitor's machine (default 19)")
    args = parser.parse_args(argv)
    if args.seconds < 5 or args.requests < 5:
        parser.error("--seconds and --requests must be at least 5")
    return args


def measure(playwright, url: str, microphone: Path, clip: Path, args, workdir: Path) -> LiveRun:
    """/predict with no live session, then a live session in Chromium with /predict alongside."""
    client = Client(url, verbose=False, download_files=False, httpx_kwargs={"trust_env": False})
    for _ in range(3):  # warm-up: first requests pay for lazy imports and caches
        client.predict(handle_file(str(clip)), api_name="/predict")
    alone = upload_latencies(client, clip, args.requests)
    during: list[float] = []
    uploads = threading.Thread(target=lambda: during.extend(
        upload_latencies(client, clip, args.requests, start_after=3.0)))
    browser = playwright.chromium.launch(executable_path=niced(CHROMIUM, args.browser_nice, workdir),
                                         headless=True,
                                         args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={microphone}"])
    cpu_before = cpu_by_kind()
    try:
        sent, updates = live_session(browser, url, args.seconds, uploads)
        cpu = {kind: seconds - cpu_before.get(kind, 0.0) for kind, seconds in cpu_by_kind().items()}
    finally:
        browser.close()
        # The uploads start once the page records: a failure before that leaves nothing to wait for, and
        # join() would raise over the failure's own error.
        if uploads.ident is not None:
            uploads.join()
    client.close()
    delays, unmatched = pair(sent, updates)
    # The chunks are the server's upload files under `workdir`: read their lengths while they exist.
    chunks = {path for _, path in sent}
    return LiveRun(delays=delays, unmatched=unmatched, alone=alone, during=during,
                   sent_seconds=sum(sf.info(path).duration for path in chunks), chunks=len(chunks),
                   heard=max((update[2] for update in updates), default=0.0), cpu=cpu)


def print_run(run: LiveRun, args) -> None:
    print(f"browser niceness: {args.browser_nice}")
    report(run.delays, run.unmatched, run.alone, run.during)
    print(f"audio: {run.sent_seconds:.1f} s sent in {run.chunks} chunks; {run.heard:.1f} s classified "
          "(Gradio gives a stream's function only the newest chunk: the rest were skipped under load)")
    print(f"CPU during the live phase ({args.seconds:g} s, /predict included): "
          + ", ".join(f"{kind} {seconds:.1f} s" for kind, seconds in sorted(run.cpu.items())))


def cpu_by_kind() -> dict[str, float]:
    """CPU seconds used so far by this script's child processes: the app server, and the browser
    (which on a real Space runs on the visitor's machine, not next to the app)."""
    totals: dict[str, float] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            name = "browser" if "chrom" in child.name() or "node" in child.name() else "app"
            times = child.cpu_times()
            totals[name] = totals.get(name, 0.0) + times.user + times.system
        except psutil.Error:
            continue
    return totals


def niced(executable: str, niceness: int, workdir: Path) -> str:
    """A launcher that starts `executable` at `niceness` (its helper processes inherit it).

    Playwright starts the browser in a session of its own, and Linux's autogroup scheduling shares
    the CPU fairly between sessions whatever the processes' own niceness: the session's group is
    made nice too, where the kernel has autogroups (/proc/self/autogroup)."""
    if niceness == 0:
        return executable
    launcher = workdir / "niced-browser"
    launcher.write_text("#!/bin/sh\n"
                        f"[ -w /proc/self/autogroup ] && echo {niceness} > /proc/self/autogroup\n"
                        f'exec nice -n {niceness} "{executable}" "$@"\n')
    launcher.chmod(0o755)
    return str(launcher)


def write_audio(data_dir: Path, workdir: Path) -> tuple[Path, Path]:
    """A minute of real speech for the fake microphone (16-bit WAV, as Chromium wants it), and a 3 s
    clip to upload; synthetic noise bursts stand in when the corpus is absent."""
    clips = ravdess_clips(data_dir)[::37][:16]
    if clips:
        parts = [sf.read(path, dtype="float32", always_2d=True)[0].mean(axis=1) for path in clips]
        rate = sf.info(clips[0]).samplerate
    else:
        rng = np.random.default_rng(0)
        rate = 16_000
        parts = [0.1 * rng.standard_normal(3 * rate).astype(np.float32) for _ in range(16)]
    speech = np.concatenate(parts)
    sf.write(workdir / "microphone.wav", speech, rate, subtype="PCM_16")
    sf.write(workdir / "clip.wav", speech[: 3 * rate], rate, subtype="PCM_16")
    return workdir / "microphone.wav", workdir / "clip.wav"


def upload_latencies(client: Client, clip: Path, count: int, start_after: float = 0.0) -> list[float]:
    time.sleep(start_after)
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        client.predict(handle_file(str(clip)), api_name="/predict")
        latencies.append(time.perf_counter() - start)
    return latencies


def live_session(browser, url: str, seconds: float, uploads: threading.Thread):
    """Streams the fake microphone for `seconds` while `uploads` runs; returns the chunks sent
    (wall time in ms, the server's file for the chunk) and the updates shown (wall time in ms, chunk
    id, seconds heard)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(120_000)
    sent = []

    def on_request(request):
        if request.method == "POST" and "/gradio_api/stream/" in request.url and not request.url.endswith("/close"):
            payload = json.loads(request.post_data or "{}")
            audio = (payload.get("data") or [None])[0]
            if isinstance(audio, dict) and audio.get("path"):
                sent.append((time.time() * 1000, audio["path"]))

    page.on("request", on_request)
    page.goto(url)
    page.get_by_role("tab", name="Live").click()
    page.evaluate(OBSERVE_UPDATES)
    page.get_by_role("button", name="Record", exact=True).last.click()
    uploads.start()
    page.wait_for_timeout(seconds * 1000)
    page.get_by_role("button", name="Stop", exact=True).last.click()
    page.wait_for_timeout(2000)
    updates = page.evaluate("window.__updates")
    page.close()
    return sent, updates


def pair(sent, updates) -> tuple[list[float], int]:
    """Delay of each update after its chunk was sent (the chunk named by the band's `data-chunk`).

    Gradio hands a stream's function the newest chunk when it is ready for one, so under load some
    chunks are never processed: the count of chunks sent and processed is reported too."""
    sent_at = {}
    for sent_ms, path in sent:
        sent_at.setdefault(Path(path).parent.name, sent_ms)  # a chunk re-sent keeps its first time
    delays, unmatched, seen = [], 0, set()
    for shown_ms, chunk, _ in updates:
        if chunk in seen:  # one redraw fires several mutation records: keep the first
            continue
        seen.add(chunk)
        if chunk in sent_at:
            delays.append((shown_ms - sent_at[chunk]) / 1000)
        else:
            unmatched += 1
    return delays, unmatched


def summary(values: list[float]) -> str:
    if not values:
        return "none"
    return f"median {statistics.median(values):.3f} s, p95 {percentile(values, 95):.3f} s (n={len(values)})"


def report(delays, unmatched, alone, during) -> None:
    print(f"live: {len(delays) + unmatched} updates shown; {len(delays)} paired with their chunk, {unmatched} not")
    if len(delays) >= 4:
        quarter = len(delays) // 4
        print(f"  first quarter of the session: {summary(delays[:quarter])}; last: {summary(delays[-quarter:])}")
    print(f"chunk sent -> emotion shown, one live user: {summary(delays)}  (goal: median <= 1 s)")
    print(f"/predict on a 3 s clip, no live session:    {summary(alone)}")
    print(f"/predict on a 3 s clip, one live session:   {summary(during)}")


if __name__ == "__main__":
    run_script(main)
