"""Late fusion of cross-validated recipes, judged on the same folds: does a branch earn its place?

Each recipe's out-of-fold predictions (`crossval`'s `predictions.npz`) give every clip's probabilities
from a model that never heard its speaker (or corpus). The fusion is a weighted product of those
probabilities, `softmax(sum_r w_r log p_r / T)`, with weights on the simplex and a temperature. Both are
fitted, for each fold, on the other folds' predictions only, by their negative log-likelihood, so that
the fused figure of a fold is as honest as each recipe's: nothing about the fold's clips chose it. A
weight of 1 on one recipe is that recipe alone, so the fitted fusion can only lose to its best branch
where the other folds mislead it, and the report shows where.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from ..configuration import EMOTIONS
from ..data.corpora import discover
from ..data.splits import record_key
from ..errors import InputError
from ..training.calibration import clip_probabilities, fit_temperature, reliability
from .crossval import summarize

# Steps of the weight grid on the simplex: 0, 0.1, ..., 1 for each recipe.
WEIGHT_STEPS = 10


def simplex_grid(recipes: int, steps: int = WEIGHT_STEPS) -> np.ndarray:
    """Every weight vector of `recipes` non-negative multiples of 1/steps that sum to 1."""
    return np.array([np.array(c) / steps for c in itertools.product(range(steps + 1), repeat=recipes)
                     if sum(c) == steps])


def fit_fusion(log_probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """The simplex weights (`(recipes,)`) and then the temperature that minimise the negative
    log-likelihood of `labels` under the fused probabilities; `log_probs` is `(recipes, clips, classes)`."""
    best, best_nll = None, np.inf
    for weights in simplex_grid(len(log_probs)):
        fused = np.tensordot(weights, log_probs, axes=1)
        fused = fused - np.logaddexp.reduce(fused, axis=1, keepdims=True)
        nll = -fused[np.arange(len(labels)), labels].mean()
        if nll < best_nll:
            best, best_nll = weights, nll
    fused = np.tensordot(best, log_probs, axes=1)
    return best, fit_temperature(fused, labels)


def _fused_probabilities(log_probs: np.ndarray, weights: np.ndarray, temperature: float) -> np.ndarray:
    return clip_probabilities(np.tensordot(weights, log_probs, axes=1), np.arange(log_probs.shape[1]), temperature)


def fuse(run_dirs: list[Path], data_dir: str, output_dir: Path) -> dict:
    """Fuses the out-of-fold predictions of `run_dirs` (same folds, same clips), writes the report to
    `output_dir` and returns it."""
    settings = [json.loads((d / "folds.json").read_text()) for d in run_dirs]
    if any(s["fold_of_clip"] != settings[0]["fold_of_clip"] for s in settings[1:]):
        raise InputError("the runs to fuse must share their folds and clips: "
                         f"{[str(d) for d in run_dirs]} do not")
    keys = list(settings[0]["fold_of_clip"])
    by_key = {record_key(r): r for r in discover(data_dir)}
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise InputError(f"{len(missing)} clips of the runs are not in {data_dir} (e.g. {missing[0]})")
    records = [by_key[k] for k in keys]
    folds = np.array([settings[0]["fold_of_clip"][k] for k in keys])
    labels = np.array([EMOTIONS.index(r.label) for r in records])
    log_probs = []
    for d in run_dirs:
        saved = np.load(d / "predictions.npz")
        log_probs.append(np.log(np.maximum(clip_probabilities(saved["window_logits"], saved["owner"]), 1e-12)))
    log_probs = np.stack(log_probs)
    fused = np.zeros(log_probs.shape[1:])
    per_fold = {}
    for fold in sorted(set(folds.tolist())):
        other, inside = folds != fold, folds == fold
        weights, temperature = fit_fusion(log_probs[:, other], labels[other])
        fused[inside] = _fused_probabilities(log_probs[:, inside], weights, temperature)
        per_fold[int(fold)] = {"weights": weights.tolist(), "temperature": temperature}
    loco = settings[0]["loco"]
    held_out_by = ({c: "corpus" for c in settings[0]["corpora"]} if loco else
                   {c: d["held_out_by"] for c, d in settings[0]["corpora"].items()})
    alone = {str(d): summarize(records, folds, np.exp(lp), held_out_by) for d, lp in zip(run_dirs, log_probs)}
    weights, temperature = fit_fusion(log_probs, labels)
    report = {"runs": [str(d) for d in run_dirs], "loco": loco, "folds": len(per_fold),
              **summarize(records, folds, fused, held_out_by),
              "fitted_on_other_folds": per_fold, "fitted_on_all_folds": {"weights": weights.tolist(),
                                                                        "temperature": temperature},
              "ece": reliability(fused, labels)["ece"],
              "alone": {run: {g: {k: r[k] for k in ("macro_recall", "accuracy")} for g, r in a["pooled"].items()}
                        for run, a in alone.items()},
              "per_fold_alone": {run: a["per_fold"] for run, a in alone.items()}}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "fusion.json").write_text(json.dumps(report, indent=2))
    (output_dir / "fusion.md").write_text(fusion_markdown(report))
    return report


def fusion_markdown(report: dict) -> str:
    """Per corpus: each recipe alone and the fusion (UAR of all folds' predictions), and the paired
    difference of each fold's UAR, fusion minus the best recipe alone."""
    runs = report["runs"]
    names = [Path(r).name for r in runs]
    lines = [f"# Late fusion of {', '.join(names)} ({'leave-one-corpus-out' if report['loco'] else 'speaker folds'})",
             "", "| corpus | " + " | ".join(f"{n} alone" for n in names) + " | fusion | fusion − best alone, per fold |",
             "|---|" + "---|" * (len(names) + 2)]
    for group, result in report["pooled"].items():
        alone = [report["alone"][r][group]["macro_recall"] for r in runs]
        best = runs[int(np.argmax(alone))]
        differences = [report["per_fold"][f][group]["macro_recall"] - report["per_fold_alone"][best][f][group]["macro_recall"]
                       for f in report["per_fold"] if group in report["per_fold"][f]]
        lines.append(f"| {group} | " + " | ".join(f"{100 * a:.1f}" for a in alone) +
                     f" | {100 * result['macro_recall']:.1f} | {100 * np.mean(differences):+.1f} ± "
                     f"{100 * np.std(differences):.1f} |")
    fitted = report["fitted_on_all_folds"]
    lines += ["", f"Weights fitted on all folds: {dict(zip(names, fitted['weights']))}, temperature "
                  f"{fitted['temperature']:.2f}; ECE of the fused out-of-fold predictions {report['ece']:.3f}.", ""]
    return "\n".join(lines)


__all__ = ["fit_fusion", "fuse", "fusion_markdown", "simplex_grid"]
