"""Does padding the Whisper branch's input to 30 s, as Whisper was trained, change the validation score?

    python bench/whisper_padding.py --threads 2              # the bundled model, every validation clip
    python bench/whisper_padding.py --max-clips 20            # a quick check

The Whisper branch runs the encoder on the window only (4 s: 200 positions), its positional table
sliced, padded positions masked. Whisper itself was trained on 30 s inputs: the clip's log-mel padded
with the log-mel of silence to 3000 frames, every one of the 1500 positions attending to all others.
This script scores the model's validation speakers (from its split.json) both ways, on the same first
window of each clip:

- window: the model as shipped;
- padded to 30 s: `WhisperFeatureExtractor(padding="max_length")` on the window, the encoder over all
  1500 positions without a mask (Whisper's own convention), the branch's pooling over the positions of
  the real audio only; every other branch and the head unchanged.

It prints the macro recall (UAR) per corpus and pooled over the speaker-held-out corpora, how often
the two agree on the top emotion, and the time per clip of each. The model was trained on windows, so
a padded score at least as good would argue for training on padded inputs; a lower one does not
settle that, which would need its own training run (ten times the encoder's compute).
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (sets up sys.path before ser_model is imported)
import numpy as np
import torch
from _common import add_common_arguments, environment_lines, load_recognizer, resolve_model, run_script
from tqdm import tqdm
from transformers import WhisperFeatureExtractor

from ser_model.data.train_data import load_clips
from ser_model.evaluation.evaluate import evaluate_predictions, model_parts
from ser_model.evaluation.report import SPEAKER_INDEPENDENT
from ser_model.modeling import frame_mask

WAYS = ("window", "padded to 30 s")


def main(argv=None) -> int:
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    model_dir = resolve_model(args.model)
    if model_dir is None:
        print("error: this needs a trained model folder with split.json (--model)")
        return 2
    recognizer, model_line = load_recognizer(model_dir)
    if "whisper" not in recognizer.config.branches:
        print(f"error: {model_dir} has no Whisper branch")
        return 2
    _, parts, held_out_by = model_parts(model_dir, str(args.data), None, args.max_clips)
    records = parts["validation"]
    waves = load_clips(records, recognizer.sampling_rate, "loading validation", args.cache_dir or None)
    print("== the Whisper branch on the window vs padded to 30 s, validation speakers ==")
    for line in environment_lines():
        print(line)
    print(f"model: {model_line}")
    print(f"clips: {len(records)} validation clips, first {recognizer.config.window_seconds:g} s of each; "
          f"threads: {args.threads}")
    print()
    predicted, seconds = score_both_ways(recognizer, waves, args.batch_size)
    print_results(records, predicted, seconds, recognizer.labels, held_out_by)
    return 0


def parse_arguments(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--max-clips", type=int, default=None, help="at most this many validation clips (spread out)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per forward pass (default: %(default)s)")
    parser.add_argument("--cache-dir", default="runs/cache", help="decoded clips kept by training (empty: none)")
    return parser.parse_args(argv)


@torch.inference_mode()
def score_both_ways(recognizer, waves: list[np.ndarray], batch_size: int) -> tuple[dict, dict]:
    """Each way's predicted labels and its seconds of features + model per clip."""
    model, feature_extractor = recognizer.model, recognizer.feature_extractor
    whisper_features = WhisperFeatureExtractor(feature_size=model.config.speech_encoder.num_mel_bins,
                                               sampling_rate=recognizer.sampling_rate)
    predicted = {way: [] for way in WAYS}
    seconds = {way: 0.0 for way in WAYS}
    for start in tqdm(range(0, len(waves), batch_size), desc="scoring"):
        batch = [w[:recognizer.window] for w in waves[start:start + batch_size]]
        began = time.perf_counter()
        inputs = feature_extractor(batch, sampling_rate=recognizer.sampling_rate, return_tensors="pt",
                                   check_audio=False)
        features_done = time.perf_counter()
        logits = model(**inputs).logits
        window_done = time.perf_counter()
        padded = whisper_features(batch, sampling_rate=recognizer.sampling_rate, padding="max_length",
                                  return_tensors="pt")["input_features"]
        padded = padded_logits(model, inputs, padded)
        padded_done = time.perf_counter()
        for way, values in zip(WAYS, (logits, padded)):
            predicted[way].extend(recognizer.labels[i] for i in values.argmax(dim=-1).tolist())
        # Both ways need the model's own features (the mel and MFCC branches', and the window's length).
        seconds[WAYS[0]] += window_done - began
        seconds[WAYS[1]] += (features_done - began) + (padded_done - window_done)
    return predicted, {way: total / len(waves) for way, total in seconds.items()}


def padded_logits(model, inputs, padded_features: torch.Tensor) -> torch.Tensor:
    """The model's logits with the Whisper branch run on 30 s of Whisper's own features
    (`padded_features`), all positions attending to all as Whisper was trained, and pooled over the
    positions of the real audio only; the other branches as the model runs them."""
    pooled = {"whisper": padded_whisper_embedding(model.ser.whisper_encoder, inputs, padded_features)}
    for name, features in (("mel", "input_values"), ("mfcc", "input_mfcc")):
        if name in model.config.branches:
            pooled[name] = model.ser.branch_encoder(name)(inputs[features], inputs["attention_mask"])
    # Concatenated in SERModel's order of the branches.
    logits, _ = model.head(torch.cat([pooled[name] for name in ("mel", "mfcc", "whisper") if name in pooled], dim=1))
    return logits / model.config.calibration_temperature


def padded_whisper_embedding(branch, inputs, padded_features: torch.Tensor) -> torch.Tensor:
    """The Whisper branch's embedding of `padded_features` with no position masked in the encoder, pooled
    over the positions of the real audio (`inputs["whisper_attention_mask"]`, the model's own features)."""
    everything = torch.ones(padded_features.shape[0], padded_features.shape[-1], dtype=torch.long)
    hidden_states, _ = branch.hidden_states(padded_features, everything)
    real = branch.encoder._get_feat_extract_output_lengths(inputs["whisper_attention_mask"].sum(dim=-1))
    return branch.pool(hidden_states, frame_mask(real, hidden_states[0].shape[1]))


def print_results(records, predicted: dict, seconds: dict, labels: list[str], held_out_by: dict) -> None:
    results = {way: evaluate_predictions(records, predicted[way], labels, held_out_by) for way in WAYS}
    groups = sorted(results[WAYS[0]], key=lambda group: (group == SPEAKER_INDEPENDENT, group))
    header = f"{'set':<22}  {'clips':>5}  " + "  ".join(f"{way + ' UAR':>20}" for way in WAYS)
    print(header)
    print("-" * len(header))
    for group in groups:
        row = results[WAYS[0]][group]
        print(f"{group:<22}  {row['clips']:>5}  "
              + "  ".join(f"{100 * results[way][group]['macro_recall']:>19.1f}%" for way in WAYS))
    agree = np.mean([a == b for a, b in zip(predicted[WAYS[0]], predicted[WAYS[1]])])
    print()
    print(f"same top emotion both ways: {100 * agree:.1f}% of {len(records)} clips")
    print("features + model per clip: " + ", ".join(f"{way} {1000 * seconds[way]:.0f} ms" for way in WAYS))


if __name__ == "__main__":
    run_script(main)
