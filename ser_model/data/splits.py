"""Deterministic train/validation/test splits that keep each speaker in one part.

A model that has heard a speaker in training scores higher on that speaker's other clips, which
measures speaker recognition as much as emotion recognition. So every corpus is split by
speaker wherever it has enough of them, and the few corpora that do not are split by what was
said instead, and marked as such so reports can show them apart.

Policy, per corpus (defaults of `SplitPolicy`):

- Corpora with fixed counts (`SplitPolicy.speaker_counts`): RAVDESS 4 test actors and 2
  validation actors, gender-balanced (2 male + 2 female, 1 + 1); with seed 0 the test actors are
  07, 10, 14 and 17, those of every RAVDESS figure in docs/experiments.md, and a change of policy
  must keep them so that the figures stay comparable. ASED 10 test and 6 validation speakers of
  its 65, enough for a stable figure; nEMO 2 test and 1 validation speaker of its 9.
- Any other corpus with several speakers (CREMA-D, SAVEE, TurEV-DB, EmoDB, TESS with both
  speakers, a manifest with at least 5 speakers): 15% of the speakers test and 10% validation, at
  least one each, apportioned across genders so each part keeps the corpus' gender mix. SAVEE's 4
  speakers give 1 test, 1 validation, 2 train; two speakers give 1 test, 1 train.
- Held-out parts never take more than half of a corpus' speakers, so training keeps the majority.
- A corpus with one speaker (e.g. a TESS copy holding OAF only) is split by utterance: 15% of
  the words test, 10% validation, with all clips of a word in the same part, so test words are
  never heard in training. This is NOT speaker-independent; the split records `"held_out_by": "utterance"`.
  A manifest with fewer than 5 speakers, or one where every clip is its own speaker (no speaker
  column), is split the same way, with a warning.
- A corpus with fewer than 3 clips goes to train (`"held_out_by": "none"`).

Choices are stable: each speaker (or utterance) is ranked by a SHA-256 hash of the seed, the
corpus and its own id, so the same seed always gives the same split on any machine and Python
version, and adding or removing other speakers changes who is held out as little as possible.

Clips are named by `record_key` (`"<corpus>/<path in the corpus without extension>"`), so a saved
split applies to the same corpora on another machine, also after transcoding WAV to FLAC.
"""

import dataclasses
import hashlib
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from .corpora import LABELS
from ..errors import InputError


logger = logging.getLogger(__name__)

PARTS = ("train", "validation", "test")
SPLIT_FORMAT_VERSION = 1

# Test and validation speakers of the corpora that get fixed counts rather than fractions.
DEFAULT_SPEAKER_COUNTS = {"ravdess": [4, 2], "ased": [10, 6], "nemo": [2, 1]}


@dataclass
class SplitPolicy:
    """How many speakers or utterances each part receives.

    Args:
        test_fraction (`float`, *optional*, defaults to 0.15):
            share of a corpus' speakers (or utterances) held out for test, at least one.
        validation_fraction (`float`, *optional*, defaults to 0.10):
            share held out for validation, at least one.
        speaker_counts (`dict[str, list[int]]`, *optional*, defaults to `DEFAULT_SPEAKER_COUNTS`):
            `[test, validation]` speakers of the corpora named, instead of the fractions; apportioned
            across genders like the fractions.
        min_manifest_speakers (`int`, *optional*, defaults to 5):
            a manifest with fewer speakers is split by utterance.
        min_clips (`int`, *optional*, defaults to 3):
            a corpus with fewer clips goes entirely to train.
    """

    test_fraction: float = 0.15
    validation_fraction: float = 0.10
    speaker_counts: dict[str, list[int]] = dataclasses.field(
        default_factory=lambda: {c: list(n) for c, n in DEFAULT_SPEAKER_COUNTS.items()})
    min_manifest_speakers: int = 5
    min_clips: int = 3

    def __post_init__(self):
        for name in ("test_fraction", "validation_fraction"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise InputError(f"{name} must be in [0, 1), got {value}")
        if self.test_fraction + self.validation_fraction >= 1:
            raise InputError(
                f"test_fraction + validation_fraction must be below 1, got "
                f"{self.test_fraction + self.validation_fraction}"
            )
        for name in ("min_manifest_speakers", "min_clips"):
            value = getattr(self, name)
            if value < 0:
                raise InputError(f"{name} must be non-negative, got {value}")
        for corpus, counts in self.speaker_counts.items():
            if len(counts) != 2 or any(not isinstance(n, int) or n < 0 for n in counts):
                raise InputError(f"speaker_counts[{corpus!r}] must be [test, validation] counts >= 0, got {counts!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "SplitPolicy":
        """The policy saved with a split; splits saved before `speaker_counts` existed name RAVDESS's
        counts in fields of their own, which mean the same."""
        values = dict(values)
        legacy = [values.pop(f"ravdess_{part}_speakers", None) for part in ("test", "validation")]
        if "speaker_counts" not in values and None not in legacy:
            values["speaker_counts"] = {"ravdess": legacy}
        return cls(**values)


class Split(dict):
    """A split: maps `record_key(record)` to `"train"`, `"validation"` or `"test"`.

    It is a plain `dict` for lookups; equality compares only the assignments. The attributes say
    how it was made, and `save_split` writes them next to the assignments.

    Args:
        assignments (`dict[str, str]`, *optional*): key to part.
        seed (`int`, *optional*, defaults to 0): the seed it was made with.
        policy (`SplitPolicy`, *optional*): the policy it was made with; defaults to `SplitPolicy()`.
        corpora (`dict`, *optional*): per corpus, `held_out_by` (`"speaker"`, `"utterance"` or
            `"none"`), `clips`, and the sorted `speakers` (and for utterance splits `utterances`)
            in each part.
    """

    def __init__(self, assignments=(), *, seed=0, policy=None, corpora=None):
        super().__init__(assignments)
        self.seed = seed
        self.policy = policy if policy is not None else SplitPolicy()
        self.corpora = corpora if corpora is not None else {}


def record_key(record):
    """Names a clip independently of where the data lives: `"<corpus>/<relpath without extension>"`.

    The extension is dropped so that a split made on the FLAC copies applies to the original WAVs.
    A record without `relpath` falls back to its absolute path, which only works on this machine.
    """
    relpath = record.relpath or Path(record.path).as_posix()
    stem = relpath.rsplit(".", 1)[0] if "." in relpath.rsplit("/", 1)[-1] else relpath
    return f"{record.corpus}/{stem}"


def _rank(seed, corpus, unit):
    """A sort key that depends only on the seed, the corpus and the unit itself (stable, portable)."""
    return hashlib.sha256(f"{seed}/{corpus}/{unit}".encode()).hexdigest()


def _part_sizes(n_units, n_test, n_validation):
    """Caps the held-out counts so that training keeps at least half of `n_units`.

    When the targets exceed half, they shrink in proportion, keeping at least one test unit; with
    fewer than two units nothing can be held out.
    """
    if n_units < 2:
        return 0, 0
    limit = n_units // 2
    if n_test + n_validation <= limit:
        return n_test, n_validation
    test = max(1, n_test * limit // (n_test + n_validation))
    return test, limit - test


def _fraction_sizes(n_units, policy):
    test = max(1, round(policy.test_fraction * n_units)) if policy.test_fraction > 0 else 0
    validation = max(1, round(policy.validation_fraction * n_units)) if policy.validation_fraction > 0 else 0
    return _part_sizes(n_units, test, validation)


def _apportion(total, sizes):
    """Splits `total` across groups in proportion to `sizes` (largest remainder, capped by size)."""
    size_sum = sum(sizes.values())
    if total <= 0 or size_sum == 0:
        return {group: 0 for group in sizes}
    quotas = {group: total * size / size_sum for group, size in sizes.items()}
    counts = {group: min(int(q), sizes[group]) for group, q in quotas.items()}
    # Ties go to the group named first, so the result never depends on dict order.
    by_remainder = sorted(sizes, key=lambda g: (-(quotas[g] - int(quotas[g])), g))
    while sum(counts.values()) < total:
        progressed = False
        for group in by_remainder:
            if sum(counts.values()) < total and counts[group] < sizes[group]:
                counts[group] += 1
                progressed = True
        if not progressed:
            break
    return counts


def _assign_units(units_by_group, n_test, n_validation, seed, corpus):
    """Assigns each unit to a part: per group, the best-ranked go to test, then validation.

    Args:
        units_by_group (`dict[str, list[str]]`): units (speakers or utterances) per stratum
            (gender, or label set for utterances).
        n_test (`int`): units for test, apportioned across groups.
        n_validation (`int`): units for validation, apportioned across what test left.

    Returns:
        `dict[str, str]`: unit to part.
    """
    ranked = {g: sorted(units, key=lambda u: _rank(seed, corpus, u)) for g, units in units_by_group.items()}
    test_counts = _apportion(n_test, {g: len(units) for g, units in ranked.items()})
    validation_counts = _apportion(n_validation, {g: len(ranked[g]) - test_counts[g] for g in ranked})
    parts = {}
    for group, units in ranked.items():
        n_t, n_v = test_counts[group], validation_counts[group]
        for i, unit in enumerate(units):
            parts[unit] = "test" if i < n_t else "validation" if i < n_t + n_v else "train"
    return parts


def _speaker_genders(records):
    """Returns `{speaker: gender or "unknown"}`; a speaker with conflicting genders is unknown."""
    genders = defaultdict(set)
    for record in records:
        genders[record.speaker].add(record.gender or "unknown")
    return {s: g.pop() if len(g) == 1 else "unknown" for s, g in genders.items()}


def _split_by_speaker(corpus, records, seed, policy):
    genders = _speaker_genders(records)
    if corpus in policy.speaker_counts:
        n_test, n_validation = _part_sizes(len(genders), *policy.speaker_counts[corpus])
    else:
        n_test, n_validation = _fraction_sizes(len(genders), policy)
    by_gender = defaultdict(list)
    for speaker, gender in sorted(genders.items()):
        by_gender[gender].append(speaker)
    return _assign_units(dict(by_gender), n_test, n_validation, seed, corpus)


def _split_by_utterance(corpus, records, seed, policy):
    # Stratify by the set of labels an utterance carries: a TESS word carries all seven, so this is
    # one stratum there, while a per-file manifest gets one stratum per label (label-balanced).
    labels = defaultdict(set)
    for record in records:
        labels[record.utterance].add(record.label)
    by_labels = defaultdict(list)
    for utterance, label_set in sorted(labels.items()):
        by_labels[",".join(sorted(label_set))].append(utterance)
    n_test, n_validation = _fraction_sizes(len(labels), policy)
    return _assign_units(dict(by_labels), n_test, n_validation, seed, corpus)


def _choose_method(corpus, records, policy):
    """Returns `"speaker"`, `"utterance"` or `"none"` for one corpus, following the module policy."""
    speakers = {r.speaker for r in records}
    if len(records) < policy.min_clips:
        return "none"
    if corpus == "manifest":
        per_file = len(speakers) == len(records)
        if len(speakers) >= policy.min_manifest_speakers and not per_file:
            return "speaker"
        logger.warning(
            "manifest has %d speaker(s) for %d clips: splitting by utterance/file, so its results are "
            "not speaker-independent",
            len(speakers),
            len(records),
        )
        return "utterance" if len({r.utterance for r in records}) >= 2 else "none"
    if len(speakers) >= 2:
        return "speaker"
    logger.info("%s has a single speaker: splitting by utterance, which is not speaker-independent", corpus)
    return "utterance" if len({r.utterance for r in records}) >= 2 else "none"


def _describe(records, parts, method):
    """The per-corpus summary stored with the split: sorted speakers (and utterances) per part."""
    speakers = {part: set() for part in PARTS}
    utterances = {part: set() for part in PARTS}
    for record, part in zip(records, parts):
        speakers[part].add(record.speaker)
        utterances[part].add(record.utterance)
    info = {
        "held_out_by": method,
        "clips": len(records),
        "speakers": {part: sorted(speakers[part]) for part in PARTS},
    }
    if method == "utterance":
        info["utterances"] = {part: sorted(utterances[part]) for part in PARTS}
    return info


def make_split(records, seed=0, policy=None):
    """Splits records into train, validation and test, per corpus, following the module policy.

    Args:
        records (`Iterable[Record]`): clips from `corpora.discover` or the readers.
        seed (`int`, *optional*, defaults to 0): picks which speakers (or utterances) are held out.
        policy (`SplitPolicy`, *optional*): part sizes; defaults to `SplitPolicy()`.

    Returns:
        `Split`: a `dict` from `record_key(record)` to part, with `seed`, `policy` and `corpora`.

    Raises:
        `ValueError`: when two records share a key (the same clip read twice).
    """
    policy = policy if policy is not None else SplitPolicy()
    by_corpus = defaultdict(list)
    seen = set()
    for record in records:
        key = record_key(record)
        if key in seen:
            raise InputError(f"two records share the split key {key!r}; is a clip listed twice?")
        seen.add(key)
        by_corpus[record.corpus].append(record)

    split = Split(seed=seed, policy=policy)
    for corpus in sorted(by_corpus):
        corpus_records = by_corpus[corpus]
        method = _choose_method(corpus, corpus_records, policy)
        if method == "speaker":
            unit_parts = _split_by_speaker(corpus, corpus_records, seed, policy)
            parts = [unit_parts[r.speaker] for r in corpus_records]
        elif method == "utterance":
            unit_parts = _split_by_utterance(corpus, corpus_records, seed, policy)
            parts = [unit_parts[r.utterance] for r in corpus_records]
        else:
            parts = ["train"] * len(corpus_records)
        for record, part in zip(corpus_records, parts):
            split[record_key(record)] = part
        split.corpora[corpus] = _describe(corpus_records, parts, method)
    return split


def save_split(split, path):
    """Writes a split as JSON with sorted keys, so that equal splits give identical files.

    Args:
        split (`Split`): from `make_split` or `load_split`.
        path (`str` or `os.PathLike`): the JSON file to write.
    """
    payload = {
        "format_version": SPLIT_FORMAT_VERSION,
        "seed": split.seed,
        "policy": dataclasses.asdict(split.policy),
        "corpora": split.corpora,
        "assignments": dict(split),
    }
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_split(path):
    """Reads a split written by `save_split`.

    Raises:
        `ValueError`: when the file is not a split of a known format or names an unknown part.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != SPLIT_FORMAT_VERSION:
        raise InputError(f"{path} is not a split file of format {SPLIT_FORMAT_VERSION}, got format {version!r}")
    bad = sorted({part for part in data["assignments"].values() if part not in PARTS})
    if bad:
        raise InputError(f"{path} assigns clips to unknown parts {bad}; expected {PARTS}")
    return Split(
        data["assignments"],
        seed=data["seed"],
        policy=SplitPolicy.from_dict(data["policy"]),
        corpora=data["corpora"],
    )


def apply_split(records, split):
    """Groups records by part.

    Returns:
        `dict[str, list[Record]]`: `"train"`, `"validation"` and `"test"` to their records, in input order.

    Raises:
        `ValueError`: when a record is not in the split (the split was made on other data).
    """
    parts = {part: [] for part in PARTS}
    missing = []
    for record in records:
        key = record_key(record)
        if key in split:
            parts[split[key]].append(record)
        else:
            missing.append(key)
    if missing:
        raise InputError(f"{len(missing)} clip(s) are not in the split, e.g. {missing[0]!r}; make a new split")
    return parts


def summarize_split(records, split):
    """Counts clips, speakers and labels per corpus and part.

    Returns:
        `dict`: `{corpus: {"held_out_by": str, "parts": {part: {"clips": int, "speakers": int,
        "labels": {label: int, for every label in LABELS}}}}}`.

    Raises:
        `ValueError`: when a record is not in the split.
    """
    grouped = apply_split(records, split)
    clips = Counter()
    speakers = defaultdict(set)
    labels = defaultdict(Counter)
    corpora = set()
    for part, part_records in grouped.items():
        for record in part_records:
            corpora.add(record.corpus)
            clips[record.corpus, part] += 1
            speakers[record.corpus, part].add(record.speaker)
            labels[record.corpus, part][record.label] += 1
    summary = {}
    for corpus in sorted(corpora):
        summary[corpus] = {
            "held_out_by": split.corpora.get(corpus, {}).get("held_out_by", "unknown"),
            "parts": {
                part: {
                    "clips": clips[corpus, part],
                    "speakers": len(speakers[corpus, part]),
                    "labels": {label: labels[corpus, part][label] for label in LABELS},
                }
                for part in PARTS
            },
        }
    return summary


def subsample_parts(parts, max_clips):
    """At most `max_clips` records of each part, spread over the part rather than its first
    speakers (for smoke runs on a handful of real clips)."""
    return {name: records[:: max(1, len(records) // max_clips)][:max_clips] for name, records in parts.items()}


__all__ = [
    "PARTS",
    "Split",
    "SplitPolicy",
    "apply_split",
    "load_split",
    "make_split",
    "record_key",
    "save_split",
    "subsample_parts",
    "summarize_split",
]
