"""One torch thread or several per prediction: one clip at a time, and requests served side by side.

    python bench/threads.py                          # 1 vs 2 threads: 30 single clips, 3 rounds of 16 requests
    python bench/threads.py --thread-counts 1 2 4 --rounds 5

The app and the CLI run torch on every available core unless OMP_NUM_THREADS says otherwise, one forward
pass at a time (`ser_model.serving.inference.set_inference_threads`, `EmotionRecognizer.classify`'s lock);
this script measures thread counts under that lock. The thread
counts are measured in interleaved rounds (1, 2, 1, 2, ...), so that each sees the same load when the
machine is shared with other work, which is when the choice matters most. In order:

1. one clip: `EmotionRecognizer.predict_waveform` on a 3 s RAVDESS clip, `--single` times per count;
2. served side by side: `--requests` clips classified by `--concurrency` threads at once, as the app's
   request workers run them (its `CONCURRENCY` is 4), `--rounds` rounds per count: the latency of each
   request and the requests per second.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _common  # noqa: F401  (sets up sys.path before ser_model is imported)
import torch
from _common import DEFAULT_DATA_DIR, environment_lines, load_recognizer, percentile, resolve_model, run_script
from latency import three_second_clips


def main(argv=None) -> int:
    args = parse_arguments(argv)
    print("== torch threads per prediction ==")
    for line in environment_lines():
        print(line)
    recognizer, model_line = load_recognizer(resolve_model(args.model))
    rate = recognizer.sampling_rate
    clips, clips_line = three_second_clips(args.data, args.requests, rate)
    print(f"model: {model_line}\nclips: {clips_line}")
    predict = lambda clip: timed(recognizer.predict_waveform, clip, rate)  # noqa: E731
    for threads in args.thread_counts:  # warm-up: the first calls of each thread count allocate
        torch.set_num_threads(threads)
        predict(clips[0])

    single = {threads: [] for threads in args.thread_counts}
    for _ in range(args.single):
        for threads in args.thread_counts:
            torch.set_num_threads(threads)
            single[threads].append(predict(clips[0]))
    served = {threads: {"latencies": [], "walls": []} for threads in args.thread_counts}
    for _ in range(args.rounds):
        for threads in args.thread_counts:
            torch.set_num_threads(threads)
            start = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                served[threads]["latencies"] += list(pool.map(predict, clips))
            served[threads]["walls"].append(time.perf_counter() - start)

    print(f"\n| torch threads | one clip: median, p90 ({args.single} runs) | {len(clips)} requests, "
          f"{args.concurrency} at once: latency median, p95 | requests/s ({args.rounds} rounds) |")
    print("|---|---|---|---|")
    for threads in args.thread_counts:
        latencies, walls = served[threads]["latencies"], served[threads]["walls"]
        print(f"| {threads} | {1000 * percentile(single[threads], 50):.0f} ms, "
              f"{1000 * percentile(single[threads], 90):.0f} ms | {percentile(latencies, 50):.2f} s, "
              f"{percentile(latencies, 95):.2f} s | {len(clips) / percentile(walls, 50):.1f} |")
    return 0


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def parse_arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None,
                        help="model folder or Hub id (default: $SER_MODEL, else the bundled model/)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR,
                        help="folder holding ravdess/ (default: $SER_DATA_DIR, else %(default)s)")
    parser.add_argument("--thread-counts", type=int, nargs="+", default=[1, 2],
                        help="torch intra-op thread counts to compare (default: %(default)s)")
    parser.add_argument("--single", type=int, default=30, help="one-clip runs per count (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=16, help="requests per round (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="requests classified at once, as app.py's CONCURRENCY (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per count (default: %(default)s)")
    args = parser.parse_args(argv)
    for name in ("single", "requests", "concurrency", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if any(threads < 1 for threads in args.thread_counts):
        parser.error(f"every --thread-counts must be at least 1, got {args.thread_counts}")
    return args


if __name__ == "__main__":
    run_script(main)
