"""Cross-validation folds that keep each speaker in one fold, and leave-one-corpus-out folds.

One or two validation speakers per corpus are too few to choose a recipe by: a difference of a few
points is within what another choice of speakers would give. Folds put every speaker in a held-out
part once, so a recipe is judged on all of them and the spread over folds shows how far to trust a
difference.

Policy, per corpus:
- With at least two speakers, the speakers are dealt to the K folds, each gender's in turn, in the
  order of a SHA-256 rank of the seed, the corpus and the speaker (as `splits` ranks them), so the
  folds keep the corpus' gender mix and the assignment is the same on every machine. A corpus with
  fewer speakers than folds leaves some folds without it.
- With one speaker (the TESS copy here holds OAF only), its clips are folded by what was said
  (`Record.utterance`, the TESS word): a word is never heard in training and in its fold. These folds
  are not speaker-independent, and `held_out_by` says so, as the splits do.

Leave-one-corpus-out folds hold out one whole corpus per fold: the figure for recordings unlike
anything in training (another language, studio, microphone and set of actors).
"""

from __future__ import annotations

from collections import defaultdict

from .corpora import Record
from .splits import _rank, _speaker_genders, record_key

DEFAULT_FOLDS = 5


def _deal(units_by_group: dict[str, list[str]], k: int, seed: int, corpus: str) -> dict[str, int]:
    """Unit to fold: each group's units in rank order, dealt round-robin, the next group continuing
    where the last one stopped so that the folds' sizes differ by at most one unit."""
    folds, turn = {}, int(_rank(seed, corpus, "start"), 16) % k
    for group in sorted(units_by_group):
        for unit in sorted(units_by_group[group], key=lambda u: _rank(seed, corpus, u)):
            folds[unit] = turn
            turn = (turn + 1) % k
    return folds


def speaker_folds(records: list[Record], k: int = DEFAULT_FOLDS, seed: int = 0) -> tuple[list[int], dict]:
    """The fold (0 .. k-1) of each record, and per corpus how it was folded.

    Args:
        records (`list[Record]`): the clips, from `corpora.discover`.
        k (`int`, *optional*, defaults to `DEFAULT_FOLDS`): number of folds, at least 2.
        seed (`int`, *optional*, defaults to 0): picks which speakers share a fold.

    Returns:
        `(folds, corpora)`: `folds[i]` is record i's fold; `corpora[c]` has `held_out_by` (`"speaker"` or
        `"utterance"`) and the sorted speakers (or utterances) of each fold.
    """
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    by_corpus = defaultdict(list)
    for i, record in enumerate(records):
        by_corpus[record.corpus].append(i)
    folds, corpora = [0] * len(records), {}
    for corpus, members in sorted(by_corpus.items()):
        chosen = [records[i] for i in members]
        genders = _speaker_genders(chosen)
        if len(genders) >= 2:
            method, unit_of = "speaker", (lambda r: r.speaker)
            groups = defaultdict(list)
            for speaker, gender in genders.items():
                groups[gender].append(speaker)
        else:
            method, unit_of = "utterance", (lambda r: r.utterance)
            groups = {"all": sorted({r.utterance for r in chosen})}
        unit_folds = _deal(dict(groups), k, seed, corpus)
        for i, record in zip(members, chosen):
            folds[i] = unit_folds[unit_of(record)]
        corpora[corpus] = {"held_out_by": method,
                           "folds": [sorted(u for u, f in unit_folds.items() if f == fold) for fold in range(k)]}
    return folds, corpora


def corpus_folds(records: list[Record]) -> tuple[list[int], list[str]]:
    """Leave-one-corpus-out: the fold of each record is its corpus' index in the sorted corpus names,
    returned with those names."""
    names = sorted({r.corpus for r in records})
    return [names.index(r.corpus) for r in records], names


def fold_keys(records: list[Record], folds: list[int]) -> dict[str, int]:
    """`record_key` to fold, the form saved with a cross-validation run."""
    return {record_key(r): f for r, f in zip(records, folds)}


__all__ = ["DEFAULT_FOLDS", "corpus_folds", "fold_keys", "speaker_folds"]
