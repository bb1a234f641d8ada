"""Training throughput: samples per second of training steps, on the CPU and on a CUDA GPU when there is one.

    python bench/training_throughput.py              # default preset (cpu-small), 3 warm-up + 20 timed steps
    python bench/training_throughput.py --quick      # a quick check

The steps run through the code path of `python -m ser_model train`: its default arguments
(`ser_model.training.arguments`), its split (`ser_model.training.train.prepare_data`) and the trainer
`ser_model.training.train.build_trainer` makes
(balanced draws with waveform and codec augmentation, features, SpecAugment, the label-set loss,
backward, gradient clipping, AdamW, cosine schedule), with evaluation, checkpoints and logging
switched off. Two figures per device:

- data: the trainer's own training data loader alone (drawing and augmenting clips, features, and on
  a GPU pinning); the clips are decoded and their codec copies made once before training, as `train`
  does (timed apart, and cached in runs/cache like a training run's);
- full step: from one optimizer step's end to the next, i.e. data + forward + backward + optimizer.

The implied time per epoch is the training part of the split divided by the full-step rate (the
validation pass that follows each epoch is not included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import _common  # noqa: F401  (sets up sys.path before ser_model is imported)
import numpy as np
import torch
from _common import (REPO_ROOT, add_common_arguments, add_run_count_arguments, count_parameters, environment_lines,
                     percentile, resolve_run_counts, run_script)
from transformers import EarlyStoppingCallback, PrinterCallback, TrainerCallback, set_seed
from transformers.utils import logging as transformers_logging

from ser_model.configuration import PRESETS
from ser_model.training.arguments import TRAINING_DEFAULTS, ModelArguments, parse_arguments, recipe
from ser_model.training.train import build_trainer, prepare_data
from ser_model.training.trainer import SERTrainer

# name: (full default, --quick default, help)
RUN_COUNTS = {
    "steps": (20, 3, "timed training steps per device"),
    "warmup": (3, 1, "untimed training steps first"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser, model=False)
    parser.add_argument("--preset", default=ModelArguments.preset, choices=sorted(PRESETS),
                        help="model size (default: the training default, %(default)s)")
    parser.add_argument("--batch-size", type=int, default=TRAINING_DEFAULTS["per_device_train_batch_size"],
                        help="clips per step (default: the training default, %(default)s)")
    parser.add_argument("--cache-dir", default=str(REPO_ROOT / "runs" / "cache"),
                        help="decoded clips and codec copies, shared with make train (default: %(default)s); "
                             "empty: none")
    parser.add_argument("--cpu-only", action="store_true", help="skip the GPU even where there is one")
    add_run_count_arguments(parser, RUN_COUNTS)
    args = parser.parse_args(argv)
    resolve_run_counts(parser, args, RUN_COUNTS, minimum={"warmup": 1})
    for name in ("threads", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")

    torch.set_num_threads(args.threads)
    # The Trainer's notices (e.g. about the devices) would interleave with the table.
    transformers_logging.set_verbosity_error()
    arguments = parse_arguments({"preset": args.preset, "per_device_train_batch_size": args.batch_size,
                                 "data_dir": str(args.data), "cache_dir": args.cache_dir or None,
                                 "output_dir": tempfile.mkdtemp(prefix="ser-bench-training-")})
    model_args, data_args, training_args = arguments
    try:
        _, split, parts = prepare_data(data_args, training_args.seed)
    except ValueError as error:
        print(f"error: cannot read the training data: {error}", file=sys.stderr)
        return 2
    train_records = parts["train"]
    batch_size, samples_per_epoch = training_args.per_device_train_batch_size, training_args.samples_per_epoch
    total_steps = args.warmup + args.steps
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])

    print("== training throughput: python -m ser_model train's steps ==")
    for line in environment_lines():
        print(line)
    gpu_line = (f"gpu: {torch.cuda.get_device_name()}" if torch.cuda.is_available()
                else "gpu: none (no CUDA device), so the CPU only")
    print(gpu_line + (" (skipped: --cpu-only)" if torch.cuda.is_available() and args.cpu_only else ""))
    print(f"preset: {model_args.preset}; batch size {batch_size}; augmentation as the training "
          f"defaults (codec p={training_args.codec_probability}, reverb p={training_args.reverb_probability}, speed "
          f"p={training_args.speed_probability}, SpecAugment); "
          f"{training_args.dataloader_num_workers} data loader workers")
    print(f"split: seed {split.seed}, {len(train_records)} training clips from {data_args.data_dir}")

    # Decoding happens once before training (`train` holds every clip in memory), so a bounded,
    # evenly spread sample of the training clips is enough for the steps timed here.
    needed = min(len(train_records), batch_size * total_steps)
    chosen = [train_records[i] for i in np.linspace(0, len(train_records) - 1, num=needed).round().astype(int)]
    parts = {**parts, "train": chosen, "validation": parts["validation"][:batch_size]}
    start = time.perf_counter()
    make_trainer(arguments, split, parts, "cpu", training_args.output_dir, 1, StepTimer())
    prepare_seconds = time.perf_counter() - start
    print(f"clips: {len(chosen)} of the training clips, decoded and coded in {prepare_seconds:.1f} s "
          f"({len(chosen) / prepare_seconds:.1f} clips/s, or read from the cache of an earlier run)")
    print(f"runs per device: {args.warmup} warm-up + {args.steps} timed steps"
          + (" (--quick: too few steps to report)" if args.quick else ""))

    results = []
    for device in devices:
        results.append((device, measure(arguments, split, parts, device, args)))
    print()

    header = (f"{'device':<6}  {'data samples/s':>14}  {'full step samples/s':>19}  {'median s/step':>13}  "
              f"{'p90 s/step':>10}  {'epoch s':>7}")
    print(header)
    print("-" * len(header))
    for device, r in results:
        samples_per_second = batch_size / percentile(r["step_seconds"], 50)
        print(f"{device:<6}  {batch_size / percentile(r['data_seconds'], 50):>14.0f}  {samples_per_second:>19.1f}  "
              f"{percentile(r['step_seconds'], 50):>13.3f}  {percentile(r['step_seconds'], 90):>10.3f}  "
              f"{samples_per_epoch / samples_per_second:>7.0f}")
    print(f"(samples/s from median times per batch of {batch_size}; data: the trainer's data loader alone; "
          "full step: data + forward + backward + clipping + AdamW; epoch s: "
          f"{samples_per_epoch} draws per epoch / full-step samples/s, without the validation pass)")
    print(f"(model: {results[0][1]['parameters'] / 1e6:.2f} M parameters; CPU runs use {args.threads} torch thread(s))")
    return 0


class StepTimer(TrainerCallback):
    """Timestamps each optimizer step's end, waiting for the GPU first so that the step is really done."""

    def __init__(self):
        self.ends = []

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available() and not args.use_cpu:
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def make_trainer(arguments, split, parts, device: str, output_dir: str, steps: int,
                 timer: StepTimer) -> SERTrainer:
    """`ser_model.training.train.train`'s trainer, limited to `steps` steps, with no evaluation, saving or logging."""
    timed = parse_arguments({**recipe(*arguments), "output_dir": output_dir, "max_steps": steps, "eval_strategy": "no",
                             "save_strategy": "no", "logging_strategy": "no", "load_best_model_at_end": False,
                             "disable_tqdm": True, "dataloader_pin_memory": device == "cuda",
                             "use_cpu": device == "cpu"})
    set_seed(timed[2].seed)
    trainer = build_trainer(*timed, split, parts, callbacks=[timer])
    # No metrics line at the end of train(): the table is the output. Nothing is evaluated, so nothing stops early.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(EarlyStoppingCallback)
    return trainer


def measure(arguments, split, parts, device: str, args) -> dict:
    total_steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="ser-bench-training-") as output_dir:
        timer = StepTimer()
        trainer = make_trainer(arguments, split, parts, device, output_dir, total_steps, timer)

        # The data loader the trainer itself will use, timed alone first.
        data_seconds = []
        batches = iter(trainer.get_train_dataloader())
        for step in range(total_steps):
            start = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                batches = iter(trainer.get_train_dataloader())
                batch = next(batches)
            if step >= args.warmup:
                data_seconds.append(time.perf_counter() - start)
        del batches

        print(f"training on {device}: {total_steps} steps ...", file=sys.stderr, flush=True)
        trainer.train()
        ends = timer.ends
        if len(ends) != total_steps:
            raise RuntimeError(f"expected {total_steps} training steps, the trainer ran {len(ends)}")
        # Step i (0-based) ends at ends[i]; from the previous step's end it spans fetching its batch too.
        step_seconds = list(np.diff(ends)[args.warmup - 1:])
    return {"data_seconds": data_seconds, "step_seconds": step_seconds,
            "parameters": count_parameters(trainer.model)}


if __name__ == "__main__":
    run_script(main)
