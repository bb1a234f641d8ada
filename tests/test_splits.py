"""Tests for the speaker-independent splits, on synthetic records and on the real corpora."""

import dataclasses
import json
import logging
from collections import defaultdict

import pytest

from ser_model.data.corpora import LABELS, Record, discover
from ser_model.data.splits import (
    PARTS,
    Split,
    SplitPolicy,
    apply_split,
    load_split,
    make_split,
    record_key,
    save_split,
    summarize_split,
)

from .conftest import DATA_DIR, real_data


def record(corpus, speaker, label, utterance, relpath, gender=None):
    """A record whose file need not exist: splitting reads only the metadata."""
    return Record(
        path=f"/data/{corpus}/{relpath}",
        corpus=corpus,
        speaker=f"{corpus}:{speaker}",
        label=label,
        gender=gender,
        utterance=utterance,
        relpath=relpath,
    )


def ravdess(actors=range(1, 21)):
    """Two clips per label and statement for each actor, named like RAVDESS."""
    records = []
    for actor in actors:
        for e, label in enumerate(LABELS, start=1):
            for statement in ("01", "02"):
                name = f"Actor_{actor:02d}/03-01-{e:02d}-01-{statement}-01-{actor:02d}.flac"
                gender = "male" if actor % 2 else "female"
                records.append(record("ravdess", f"{actor:02d}", label, statement, name, gender))
    return records


def tess(speakers=("OAF",), n_words=200):
    return [
        record("tess", speaker, label, f"word{w:03d}", f"{speaker}_word{w:03d}_{label}.wav", "female")
        for speaker in speakers
        for w in range(n_words)
        for label in LABELS
    ]


def crema_d(n_male=48, n_female=43):
    records = []
    for i in range(n_male + n_female):
        actor = str(1001 + i)
        gender = "male" if i < n_male else "female"
        for label in LABELS[:6]:
            records.append(record("crema-d", actor, label, "DFA", f"AudioWAV/{actor}_DFA_{label}_XX.wav", gender))
    return records


def savee():
    return [
        record("savee", speaker, label, f"{n:02d}", f"{speaker}_{label}{n:02d}.wav", "male")
        for speaker in ("DC", "JE", "JK", "KL")
        for label in LABELS
        for n in range(1, 4)
    ]


def parts_of(records, split, attribute):
    """Maps each speaker (or utterance) to the set of parts its clips fall in."""
    parts = defaultdict(set)
    for r in records:
        parts[getattr(r, attribute)].add(split[record_key(r)])
    return parts


def assert_disjoint(records, split, attribute):
    leaks = {unit: parts for unit, parts in parts_of(records, split, attribute).items() if len(parts) > 1}
    assert not leaks, f"{attribute}s in more than one part: {leaks}"


def speakers_in(split, corpus, part):
    return split.corpora[corpus]["speakers"][part]


def test_record_key_is_relative_and_extension_free():
    r = record("ravdess", "01", "angry", "01", "Actor_01/03-01-05-01-01-01-01.flac")
    assert record_key(r) == "ravdess/Actor_01/03-01-05-01-01-01-01"
    wav = dataclasses.replace(r, path="/elsewhere/x.wav", relpath="Actor_01/03-01-05-01-01-01-01.wav")
    assert record_key(wav) == record_key(r)


def test_ravdess_is_split_by_gender_balanced_actors():
    records = ravdess()
    split = make_split(records, seed=0)
    assert_disjoint(records, split, "speaker")
    info = split.corpora["ravdess"]
    assert info["held_out_by"] == "speaker"
    assert [len(info["speakers"][part]) for part in PARTS] == [14, 2, 4]
    for part, per_gender in (("test", 2), ("validation", 1)):
        actors = [int(s.split(":")[1]) for s in info["speakers"][part]]
        assert sum(a % 2 for a in actors) == per_gender, f"{part} actors {actors} are not gender-balanced"


def test_ravdess_chooses_among_the_actors_present():
    present = [1, 2, 3, 5, 6, 8, 9, 12, 13, 15, 16, 19, 20, 22]  # 7 male, 7 female, gaps anywhere
    records = ravdess(present)
    split = make_split(records, seed=3)
    assert_disjoint(records, split, "speaker")
    held_out = speakers_in(split, "ravdess", "test") + speakers_in(split, "ravdess", "validation")
    assert {int(s.split(":")[1]) for s in held_out} <= set(present)
    assert len(speakers_in(split, "ravdess", "test")) == 4


def test_ravdess_test_actors_survive_adding_or_removing_a_training_actor():
    split = make_split(ravdess(), seed=0)
    train_actor = int(speakers_in(split, "ravdess", "train")[0].split(":")[1])
    fewer = make_split(ravdess(a for a in range(1, 21) if a != train_actor), seed=0)
    more = make_split(ravdess(range(1, 25)), seed=0)
    for other in (fewer, more):
        assert speakers_in(other, "ravdess", "test") == speakers_in(split, "ravdess", "test")


def test_tiny_ravdess_keeps_most_actors_for_training():
    split = make_split(ravdess([1, 2, 3, 4]), seed=0)
    assert [len(speakers_in(split, "ravdess", part)) for part in PARTS] == [2, 1, 1]


def test_crema_d_holds_out_about_15_and_10_percent_of_speakers_by_gender():
    records = crema_d()
    split = make_split(records, seed=0)
    assert_disjoint(records, split, "speaker")
    info = split.corpora["crema-d"]
    assert [len(info["speakers"][part]) for part in PARTS] == [68, 9, 14]
    gender = {r.speaker: r.gender for r in records}
    test_genders = [gender[s] for s in info["speakers"]["test"]]
    assert abs(test_genders.count("male") - test_genders.count("female")) <= 1


def test_crema_d_without_gender_still_splits_by_speaker():
    records = [dataclasses.replace(r, gender=None) for r in crema_d()]
    split = make_split(records, seed=0)
    assert_disjoint(records, split, "speaker")
    assert len(speakers_in(split, "crema-d", "test")) == 14


def test_savee_holds_out_one_speaker_each_for_test_and_validation():
    records = savee()
    split = make_split(records, seed=0)
    assert_disjoint(records, split, "speaker")
    assert [len(speakers_in(split, "savee", part)) for part in PARTS] == [2, 1, 1]
    assert split.corpora["savee"]["held_out_by"] == "speaker"


def test_tess_with_two_speakers_holds_out_one_speaker():
    records = tess(("OAF", "YAF"), n_words=10)
    split = make_split(records, seed=0)
    assert split.corpora["tess"]["held_out_by"] == "speaker"
    assert [len(speakers_in(split, "tess", part)) for part in PARTS] == [1, 0, 1]


def test_tess_with_one_speaker_holds_out_words():
    records = tess()
    split = make_split(records, seed=0)
    info = split.corpora["tess"]
    assert info["held_out_by"] == "utterance"
    assert_disjoint(records, split, "utterance")
    assert [len(info["utterances"][part]) for part in PARTS] == [150, 20, 30]
    # Every held-out word brings all seven emotions along.
    for part in ("validation", "test"):
        labels = {r.label for r in records if split[record_key(r)] == part}
        assert labels == set(LABELS)


def test_manifest_with_enough_speakers_splits_by_speaker():
    records = [
        record("manifest", f"s{s}", label, f"u{s}{label}", f"s{s}/{label}.wav")
        for s in range(6)
        for label in LABELS
    ]
    split = make_split(records, seed=0)
    assert split.corpora["manifest"]["held_out_by"] == "speaker"
    assert_disjoint(records, split, "speaker")


def test_manifest_without_speakers_splits_by_file_with_a_warning(caplog):
    # read_manifest gives each file its own speaker when the manifest names none.
    records = [
        record("manifest", f"clip{i}", LABELS[i % 7], f"clip{i}", f"clip{i}.wav") for i in range(70)
    ]
    with caplog.at_level(logging.WARNING, logger="ser_model.data.splits"):
        split = make_split(records, seed=0)
    assert split.corpora["manifest"]["held_out_by"] == "utterance"
    assert any("not speaker-independent" in r.getMessage() for r in caplog.records)
    # Utterances are stratified by label, so each label reaches the test part.
    assert {r.label for r in records if split[record_key(r)] == "test"} == set(LABELS)


@pytest.mark.parametrize("n_clips", [1, 2])
def test_a_corpus_with_too_few_clips_goes_to_train(n_clips):
    records = savee()[:n_clips] + ravdess()
    split = make_split(records, seed=0)
    assert split.corpora["savee"]["held_out_by"] == "none"
    assert {split[record_key(r)] for r in records if r.corpus == "savee"} == {"train"}


def test_same_seed_gives_identical_json(tmp_path):
    records = ravdess() + tess() + crema_d() + savee()
    save_split(make_split(records, seed=7), tmp_path / "a.json")
    save_split(make_split(list(reversed(records)), seed=7), tmp_path / "b.json")
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


def test_different_seeds_usually_differ():
    records = ravdess() + tess()
    chosen = {tuple(speakers_in(make_split(records, seed=seed), "ravdess", "test")) for seed in range(5)}
    assert len(chosen) > 1


def test_save_load_round_trip(tmp_path):
    records = ravdess() + tess() + savee()
    policy = SplitPolicy(test_fraction=0.2)
    split = make_split(records, seed=5, policy=policy)
    save_split(split, tmp_path / "split.json")
    loaded = load_split(tmp_path / "split.json")
    assert isinstance(loaded, Split)
    assert loaded == split
    assert (loaded.seed, loaded.policy, loaded.corpora) == (5, policy, split.corpora)
    saved = json.loads((tmp_path / "split.json").read_text())
    assert saved["corpora"]["tess"]["held_out_by"] == "utterance"
    assert saved["corpora"]["ravdess"]["speakers"]["test"] == speakers_in(split, "ravdess", "test")


def test_load_split_rejects_other_json(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a split file"):
        load_split(tmp_path / "x.json")


def test_duplicate_keys_are_rejected():
    records = savee()
    with pytest.raises(ValueError, match="share the split key"):
        make_split(records + records[:1])


def test_policy_rejects_bad_fractions():
    with pytest.raises(ValueError, match="test_fraction must be in"):
        SplitPolicy(test_fraction=1.5)
    with pytest.raises(ValueError, match="must be below 1"):
        SplitPolicy(test_fraction=0.6, validation_fraction=0.5)


def test_summarize_and_apply_split():
    records = ravdess() + tess()
    split = make_split(records, seed=0)
    summary = summarize_split(records, split)
    assert summary["ravdess"]["held_out_by"] == "speaker"
    assert summary["tess"]["held_out_by"] == "utterance"
    assert summary["ravdess"]["parts"]["test"]["speakers"] == 4
    assert summary["ravdess"]["parts"]["test"]["clips"] == 4 * 14
    assert summary["tess"]["parts"]["test"]["labels"] == {label: 30 for label in LABELS}
    grouped = apply_split(records, split)
    assert sum(len(v) for v in grouped.values()) == len(records)
    with pytest.raises(ValueError, match="not in the split"):
        apply_split(savee(), split)


@real_data
def test_real_data_split():
    records = discover(DATA_DIR)
    split = make_split(records, seed=0)
    ravdess_records = [r for r in records if r.corpus == "ravdess"]
    tess_records = [r for r in records if r.corpus == "tess"]
    assert_disjoint(ravdess_records, split, "speaker")
    # One speaker (here) is split by word, both speakers (the full corpus) by speaker.
    assert_disjoint(tess_records, split, split.corpora["tess"]["held_out_by"])
    summary = summarize_split(records, split)
    for corpus in ("ravdess", "tess"):
        test_labels = summary[corpus]["parts"]["test"]["labels"]
        assert all(test_labels[label] > 0 for label in LABELS), f"{corpus} test lacks a label: {test_labels}"
    genders = {r.speaker: r.gender for r in ravdess_records}
    test_actors = speakers_in(split, "ravdess", "test")
    assert sorted(genders[s] for s in test_actors) == ["female"] * 2 + ["male"] * 2
    assert len(speakers_in(split, "ravdess", "validation")) == 2
    # Seed 0's test actors, which adding or removing other actors leaves alone (see the test above):
    # wherever all four are present, as here and in the full corpus, they are the ones.
    known = ["ravdess:07", "ravdess:10", "ravdess:14", "ravdess:17"]
    if set(known) <= set(genders):
        assert test_actors == known
    # TESS: all seven emotions of a word share its part, so each part holds as many clips of each emotion,
    # whatever the number of words or speakers.
    for part in PARTS:
        counts = summary["tess"]["parts"][part]["labels"]
        assert len(set(counts.values())) == 1, f"TESS {part} holds the emotions unequally: {counts}"


def test_fixed_speaker_counts_apply_to_the_corpora_named():
    records = [record("ased", f"{s:02d}", "angry", "01", f"a{s}.wav", gender="male" if s % 2 else "female")
               for s in range(1, 41)]
    split = make_split(records, policy=SplitPolicy(speaker_counts={"ased": [10, 6]}))
    assert [len(split.corpora["ased"]["speakers"][p]) for p in PARTS] == [24, 6, 10]
    default = make_split(records)  # ASED's counts are in the default policy too
    assert len(default.corpora["ased"]["speakers"]["test"]) == 10


def test_a_split_saved_before_speaker_counts_still_loads(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format_version": 1, "seed": 0, "corpora": {}, "assignments": {},
                                "policy": {"test_fraction": 0.15, "validation_fraction": 0.1,
                                           "ravdess_test_speakers": 4, "ravdess_validation_speakers": 2,
                                           "min_manifest_speakers": 5, "min_clips": 3}}))
    assert load_split(path).policy.speaker_counts == {"ravdess": [4, 2]}


def test_speaker_counts_are_validated():
    with pytest.raises(ValueError, match="speaker_counts"):
        SplitPolicy(speaker_counts={"ased": [10]})


@pytest.mark.skipif(not (DATA_DIR / "ased").is_dir(), reason=f"ASED not found in {DATA_DIR}")
def test_real_multi_corpus_split_is_speaker_independent_and_gives_ased_ten_test_speakers():
    records = discover(DATA_DIR)
    split = make_split(records, seed=0)
    for corpus in {r.corpus for r in records}:
        method = split.corpora[corpus]["held_out_by"]
        assert_disjoint([r for r in records if r.corpus == corpus], split, method)
    assert len(speakers_in(split, "ased", "test")) >= 10
