"""Facts about a trained model that the app, the model card and training all state: which corpora it
learnt from, in which languages, and how to say so in a sentence.

Kept apart from `hub/export.py` (which builds the model card) so that the app can name its training
data without importing the export, evaluation and training code behind the card; it also says which
model the app and the CLI load by default (`model_source`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# The trained model this repository ships, in model/ beside the package: there in a checkout and in an
# editable install (`make app`, `pip install -e .`), absent from a wheel, which holds the package alone.
BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "model"

# What the card says of each corpus a split can hold: its Hub dataset tag (None: no canonical one),
# its language (ISO 639-1), what it contains, and its licence and citation.
CORPORA = {
    "ravdess": ("ravdess", "en", "two English sentences read by professional actors",
                "RAVDESS (CC BY-NC-SA 4.0): Livingstone SR, Russo FA (2018) The Ryerson Audio-Visual Database of "
                "Emotional Speech and Song (RAVDESS). PLoS ONE 13(5): e0196391."),
    "tess": ("tess", "en", "single English words in a carrier phrase",
             "TESS (CC BY-NC-ND 4.0): Dupuis K, Pichora-Fuller MK (2010) Toronto emotional speech set (TESS). "
             "University of Toronto."),
    "crema-d": ("crema-d", "en", "twelve English sentences read by actors of varied age and ethnicity",
                "CREMA-D (ODbL 1.0): Cao H, Cooper DG, Keutmann MK, Gur RC, Nenkova A, Verma R (2014) CREMA-D: "
                "Crowd-sourced emotional multimodal actors dataset. IEEE Trans. Affective Computing 5(4)."),
    "savee": ("savee", "en", "sentences read by four male British English speakers",
              "SAVEE (free for research): Haq S, Jackson PJB (2009) Speaker-dependent audio-visual emotion "
              "recognition. AVSP 2009."),
    "ased": (None, "am", "Amharic sentences read by 65 speakers, each clip accepted by at least 5 of 8 listeners",
             "ASED (no licence stated by its authors; non-commercial research use): Retta EA, Almekhlafi E, "
             "Sutcliffe R, Mhamed M, Ali H, Feng J (2022) A New Amharic Speech Emotion Dataset and Classification "
             "Benchmark. ACM Trans. Asian Low-Resour. Lang. Inf. Process. https://doi.org/10.1145/3529759."),
    "nemo": ("amu-cai/nEMO", "pl", "Polish sentences read by 9 speakers",
             "nEMO (CC BY-NC-SA 4.0): Christop I (2024) nEMO: Dataset of Emotional Speech in Polish. "
             "LREC-COLING 2024."),
    "turev": (None, "tr", "Turkish single words spoken by 6 speakers",
              "TurEV-DB (CC BY-NC-ND 4.0): Canpolat SF, Ormanoğlu Z, Zeyrek D (2020) Turkish Emotion Voice "
              "Database (TurEV-DB). SLTU-CCURL 2020, pp. 368-375."),
    "emodb": (None, "de", "ten German sentences read by ten actors",
              "EmoDB (free for research): Burkhardt F, Paeschke A, Rolfes M, Sendlmeier W, Weiss B (2005) A "
              "database of German emotional speech. Interspeech 2005."),
    "manifest": (None, None, "the user's own recordings listed in a manifest", "Own data: see its owner's terms."),
}
LANGUAGE_NAMES = {"en": "English", "am": "Amharic", "pl": "Polish", "tr": "Turkish", "de": "German"}
DISPLAY_NAMES = {"ravdess": "RAVDESS", "tess": "TESS", "crema-d": "CREMA-D", "savee": "SAVEE", "ased": "ASED",
                 "nemo": "nEMO", "turev": "TurEV-DB", "emodb": "EmoDB", "manifest": "your own recordings"}


def bundled_model() -> str:
    """The folder of the model bundled with this repository, as `from_pretrained` and `pipeline(model=...)`
    take it, wherever the caller runs from.

    Raises:
        `OSError`: one sentence, where this copy of `ser_model` was installed without the repository.
    """
    if not (BUNDLED_MODEL / "config.json").is_file():
        raise OSError(f"This installation of ser_model has no bundled model ({BUNDLED_MODEL} does not exist): "
                      f"install the repository with `pip install -e /path/to/repository`, or name a model folder "
                      f"or Hub id.")
    return str(BUNDLED_MODEL)


def model_source() -> tuple[str, str | None]:
    """The model the CLI and the app load when none is named, and its revision: `$SER_MODEL` (a folder or
    Hub id) with `$SER_MODEL_REVISION`, else the bundled model (`BUNDLED_MODEL`), so that both run offline
    on a fresh clone."""
    return os.environ.get("SER_MODEL") or bundled_model(), os.environ.get("SER_MODEL_REVISION") or None


def corpus_languages(corpora: list[str]) -> list[str]:
    """ISO 639-1 codes of the languages of `corpora`, English first, then alphabetical."""
    codes = {CORPORA[c][1] for c in corpora if CORPORA.get(c, (None, None))[1]}
    return sorted(codes, key=lambda code: (code != "en", code))


def describe_training_data(corpora: list[str] | None) -> str:
    """'acted speech in English, Amharic, ... (RAVDESS, TESS, ASED, ...)', what the app tells people."""
    if not corpora:
        return "acted speech (its training corpora were not recorded with it)"
    named = [LANGUAGE_NAMES[code] for code in corpus_languages(corpora)]
    spoken = " and ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named) or "several languages"
    return f"acted speech in {spoken} ({', '.join(DISPLAY_NAMES.get(c, c) for c in corpora)})"


def read_model_json(name_or_path: str | os.PathLike, filename: str, revision: str | None = None) -> dict | None:
    """A JSON file saved with a model (a folder or a Hub repository), e.g. `split.json` or
    `evaluation/report.json`; None when it holds no such file."""
    # Imported here: the CLI reads this module's facts while checking its arguments, before transformers loads.
    from transformers.utils import cached_file

    path = cached_file(str(name_or_path), filename, revision=revision, _raise_exceptions_for_missing_entries=False,
                       _raise_exceptions_for_connection_errors=False)
    return json.loads(Path(path).read_text()) if path else None


def load_training_corpora(name_or_path: str | os.PathLike, revision: str | None = None) -> list[str] | None:
    """The corpora a saved model was trained on, from the `training.json` saved with it (or, for models
    saved before it named them, the corpora of its `split.json`); `None` when the folder or Hub
    repository holds neither."""
    for name, read in (("training.json", lambda data: data.get("corpora")),
                       ("split.json", lambda data: sorted(data.get("corpora", {})) or None)):
        data = read_model_json(name_or_path, name, revision)
        corpora = read(data) if data else None
        if corpora:
            return corpora
    return None


# The key of the shipped model's figures in `evaluation/report.json` (`ser_model.evaluation.report.FUSION`,
# which this module cannot import: the app must not load the evaluation code).
EVALUATED_MODEL = "fusion"
# How a test group was held out, as `report.json` and `split.json` say it; "speaker" and "corpus"
# groups are speakers the model never heard.
UNHEARD_SPEAKERS = ("speaker", "corpus")


def accuracy_by_language(report: dict | None) -> list[tuple[str, float, int, int]]:
    """(language, accuracy, clips, speakers) of the model on test speakers it never heard, per language:
    the corpora of one language pooled, weighted by their clips. Empty without a report."""
    pooled: dict[str, list[float]] = {}
    for corpus, result in ((report or {}).get("results", {}).get(EVALUATED_MODEL) or {}).items():
        language = CORPORA.get(corpus, (None, None))[1]
        if language is None or result.get("held_out_by") not in UNHEARD_SPEAKERS:
            continue
        right, clips, speakers = pooled.setdefault(language, [0.0, 0, 0])
        pooled[language] = [right + result["accuracy"] * result["clips"], clips + result["clips"],
                            speakers + result["speakers"]]
    return [(LANGUAGE_NAMES[code], right / clips, clips, speakers)
            for code, (right, clips, speakers) in sorted(pooled.items(), key=lambda item: (item[0] != "en", item[0]))]


def describe_calibration(report: dict | None, temperature: float) -> str:
    """What the percentages are: probabilities, calibrated or not (`temperature`, the model's
    `calibration_temperature`), and how far they were from the truth on the held-out test clips."""
    calibration = (report or {}).get("calibration")
    calibrated = temperature != 1.0
    how = ("calibrated by a temperature fitted on the validation speakers, so that" if calibrated
           else "not calibrated; ideally")
    sentence = (f"The percentages are the model's probabilities, {how} of all the clips given 70%, about 70% "
                "are right.")
    if calibration:
        ece = calibration["with_temperature" if calibrated else "without_temperature"]["ece"]
        sentence += (f" On the {calibration['clips']} held-out test clips the stated probability and the real "
                     f"accuracy differ by {100 * ece:.1f} percentage points on average (the expected calibration "
                     "error).")
    return sentence


# What an example clip is, by how its corpus was split (`clip_status`).
_CLIP_STATUS = {"speaker": "a speaker never heard in training",
                "corpus": "a corpus never heard in training",
                "utterance": "a new word from the training speaker"}


def voice_accuracy(report: dict | None) -> float | None:
    """How often the model's "voice sounds female/male" matched the recorded gender of test speakers it
    never heard (`evaluation/report.json`), or None where it was not measured."""
    pooled = ((report or {}).get("voice") or {}).get("speaker_held_out")
    return None if pooled is None else pooled["accuracy"]


def clip_status(split: dict | None, clip: str, speaker: str) -> str:
    """What a clip is to the model, from its `split.json`: "heard in training", or which held-out part
    it belongs to ("a speaker never heard in training", ...).

    Args:
        split (`dict`): the model's `split.json`.
        clip (`str`): the clip's key in the split's `assignments` ("ravdess/Actor_10/03-01-03-02-01-01-10").
        speaker (`str`): its speaker as the split names speakers ("ravdess:10").
    """
    part = (split or {}).get("assignments", {}).get(clip)
    if part is None:
        return "not in the model's data split"
    if part == "train":
        return "heard in training"
    corpus = split["corpora"][clip.split("/")[0]]
    if speaker not in corpus.get("speakers", {}).get("train", []):
        return _CLIP_STATUS["corpus" if corpus.get("held_out_by") == "corpus" else "speaker"]
    return _CLIP_STATUS.get(corpus.get("held_out_by"), f"held out from training by {corpus.get('held_out_by')}")


__all__ = ["BUNDLED_MODEL", "CORPORA", "DISPLAY_NAMES", "EVALUATED_MODEL", "LANGUAGE_NAMES", "accuracy_by_language",
           "bundled_model", "clip_status", "corpus_languages", "describe_calibration", "describe_training_data",
           "load_training_corpora", "model_source", "read_model_json", "voice_accuracy"]
