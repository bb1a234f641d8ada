"""Loads a model the way its users will, for `publish`'s check before an upload.

`ser_model.hub.publish.check_loads` runs this file in a fresh process, from an empty folder and without
PYTHONPATH, as `python -P ser_model/load_check.py SOURCE [REVISION]`: by path, with `-P` keeping this
file's folder off `sys.path`, and never as `python -m ser_model.hub.load_check`, which would import the
`ser_model` package, while the point is to show that the model folder works with its own code files
and nothing from this checkout. So this module imports nothing from `ser_model`, and only what the
model card tells users to install (numpy and transformers here).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass

import numpy as np

# Marks the result line in the process' output; anything else printed there is the libraries' chatter.
RESULT_PREFIX = "SER_LOAD_CHECK "


@dataclass
class LoadCheck:
    """What a process saw when it loaded a model the way users load it.

    Args:
        modules (`list[str]`): `ser_model` modules it imported (empty: the model's own code was used).
        config_class, model_class, model_module, extractor_class (`str`): what the Auto classes returned.
        labels (`list[str]`): `config.id2label` in index order.
        logits (`list[float]`): the model's direct output for one second of synthetic audio, shape (num_labels,).
        scores (`dict[str, float]`): `pipeline("audio-classification")(..., top_k=None)` on the same audio.
    """

    modules: list[str]
    config_class: str
    model_class: str
    model_module: str
    extractor_class: str
    labels: list[str]
    logits: list[float]
    scores: dict[str, float]


def probe_clip(sampling_rate: int) -> np.ndarray:
    """One second of a 180 Hz tone with a 3 Hz envelope, shape (sampling_rate,): voiced-like and far from
    silent, so no part of the front end sees an edge case."""
    t = np.arange(sampling_rate) / sampling_rate
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def load_and_classify(source: str, revision: str | None = None) -> LoadCheck:
    """Loads `source` (a folder or Hub id) through `AutoConfig`, `AutoModelForAudioClassification`,
    `AutoFeatureExtractor` and `pipeline("audio-classification")` with `trust_remote_code=True`, and
    classifies `probe_clip` both through the pipeline and by calling the model and feature extractor."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification, pipeline

    kwargs = {"revision": revision, "trust_remote_code": True}
    config = AutoConfig.from_pretrained(source, **kwargs)
    model = AutoModelForAudioClassification.from_pretrained(source, **kwargs).eval()
    extractor = AutoFeatureExtractor.from_pretrained(source, **kwargs)
    classifier = pipeline("audio-classification", model=source, **kwargs)
    clip = probe_clip(extractor.sampling_rate)
    logits = model(**extractor(clip, sampling_rate=extractor.sampling_rate, return_tensors="pt")).logits
    return LoadCheck(
        modules=sorted(m for m in sys.modules if m == "ser_model" or m.startswith("ser_model.")),
        config_class=type(config).__name__,
        model_class=type(model).__name__,
        model_module=type(model).__module__,
        extractor_class=type(extractor).__name__,
        labels=[config.id2label[i] for i in range(config.num_labels)],
        logits=logits.detach().numpy()[0].tolist(),
        scores={item["label"]: item["score"] for item in classifier(clip, top_k=None)},
    )


def main(argv: list[str] | None = None) -> None:
    """`SOURCE [REVISION]`: prints the `LoadCheck` as one JSON line after `RESULT_PREFIX`."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2):
        raise SystemExit("usage: python -P load_check.py SOURCE [REVISION]")
    check = load_and_classify(argv[0], argv[1] if len(argv) == 2 and argv[1] else None)
    print(RESULT_PREFIX + json.dumps(dataclasses.asdict(check)))


if __name__ == "__main__":
    main()
