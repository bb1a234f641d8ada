"""Tests for the corpus readers, on tiny synthetic layouts named like each corpus and on the real data."""

import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_model.data.corpora import (
    AUDIO_EXTENSIONS,
    LABEL_SETS,
    LABELS,
    Record,
    discover,
    normalize_label,
    read_ased,
    read_crema_d,
    read_emodb,
    read_manifest,
    read_nemo,
    read_ravdess,
    read_savee,
    read_tess,
    read_turev,
)

from .conftest import DATA_DIR, data_dir_or_skip, real_data


def write_clip(path):
    """Writes 0.1 s of noise; soundfile picks WAV, FLAC or Ogg Vorbis from the extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).uniform(-0.1, 0.1, 1600).astype(np.float32)
    sf.write(path, noise, 16000)
    return path


def write_bytes(path, data=b"not audio"):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def by_name(records):
    return {Path(r.path).name: r for r in records}


def make_ravdess(root):
    write_clip(root / "Actor_01" / "03-01-01-01-01-01-01.wav")  # neutral
    write_clip(root / "Actor_01" / "03-01-02-01-02-01-01.wav")  # calm -> neutral
    write_clip(root / "Actor_01" / "03-02-03-01-01-01-01.wav")  # song: skipped
    write_clip(root / "Actor_01" / "03-01-08-02-02-02-01.flac")  # surprise
    write_clip(root / "Actor_02" / "03-01-05-01-01-01-02.ogg")  # angry
    write_clip(root / "Actor_02" / "03-01-07-02-02-01-02.wav")  # disgust
    write_clip(root / "Actor_02" / "03-01-09-01-01-01-02.wav")  # emotion 09 does not exist
    write_bytes(root / "Actor_02" / "._03-01-01-01-01-01-02.wav")  # macOS resource fork
    write_bytes(root / "Actor_02" / "notes.txt")
    write_bytes(root / "Actor_02" / "01-01-01-01-01-01-02.mp4")  # video: not audio


def make_tess(root):
    write_clip(root / "OAF_back_angry.wav")
    write_clip(root / "OAF_back_ps.wav")
    write_clip(root / "OA_bite_neutral.wav")
    write_clip(root / "OAF_Fear" / "OAF_back_fear.wav")
    write_clip(root / "YAF_pleasant_surprised" / "YAF_dog_ps.flac")
    write_clip(root / "YAF_pleasant_surprised" / "YAF_dog_pleasant_surprised.wav")
    write_clip(root / "OAF_Pleasant_surprise" / "OAF_bath_pleasant_surprise.ogg")
    write_clip(root / "YAF_sad" / "YAF_dog_sad.wav")
    write_clip(root / "OAF_two_words_angry.wav")  # words have no underscore: skipped
    write_clip(root / "XYZ_back_angry.wav")  # unknown speaker: skipped


def test_normalize_label_accepts_synonyms_and_rejects_unknown():
    assert normalize_label("Calm") == "neutral"
    assert normalize_label(" fearful ") == "fear"
    assert normalize_label("surprised") == "surprise"
    assert normalize_label("anger") == "angry"
    assert normalize_label("happiness") == "happy"
    assert normalize_label("sadness") == "sad"
    assert normalize_label("disgusted") == "disgust"
    assert [normalize_label(label) for label in LABELS] == list(LABELS)
    assert normalize_label("excited") is None


def test_read_ravdess(tmp_path, caplog):
    make_ravdess(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ser_model.data.corpora"):
        records = by_name(read_ravdess(tmp_path))
    assert sorted(records) == [
        "03-01-01-01-01-01-01.wav",
        "03-01-02-01-02-01-01.wav",
        "03-01-05-01-01-01-02.ogg",
        "03-01-07-02-02-01-02.wav",
        "03-01-08-02-02-02-01.flac",
    ]
    calm = records["03-01-02-01-02-01-01.wav"]
    assert calm == Record(
        path=str((tmp_path / "Actor_01" / "03-01-02-01-02-01-01.wav").resolve()),
        corpus="ravdess",
        speaker="ravdess:01",
        label="neutral",
        gender="male",
        utterance="02",
        relpath="Actor_01/03-01-02-01-02-01-01.wav",
    )
    angry = records["03-01-05-01-01-01-02.ogg"]
    assert (angry.label, angry.speaker, angry.gender) == ("angry", "ravdess:02", "female")
    assert records["03-01-08-02-02-02-01.flac"].label == "surprise"
    # Exactly one warning, for the one misnamed clip; the song, hidden, text and video files are silent.
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "skipped 1 audio file" in warnings[0] and "03-01-09" in warnings[0]


def test_read_tess_flat_and_per_emotion_folders(tmp_path, caplog):
    make_tess(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ser_model.data.corpora"):
        records = by_name(read_tess(tmp_path))
    expected = {
        "OAF_back_angry.wav": ("tess:OAF", "back", "angry"),
        "OAF_back_ps.wav": ("tess:OAF", "back", "surprise"),
        "OA_bite_neutral.wav": ("tess:OAF", "bite", "neutral"),
        "OAF_back_fear.wav": ("tess:OAF", "back", "fear"),
        "YAF_dog_ps.flac": ("tess:YAF", "dog", "surprise"),
        "YAF_dog_pleasant_surprised.wav": ("tess:YAF", "dog", "surprise"),
        "OAF_bath_pleasant_surprise.ogg": ("tess:OAF", "bath", "surprise"),
        "YAF_dog_sad.wav": ("tess:YAF", "dog", "sad"),
    }
    assert {name: (r.speaker, r.utterance, r.label) for name, r in records.items()} == expected
    assert {r.gender for r in records.values()} == {"female"}
    assert records["YAF_dog_ps.flac"].relpath == "YAF_pleasant_surprised/YAF_dog_ps.flac"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "skipped 2 audio file" in warnings[0]


def test_read_crema_d_with_demographics_in_audiowav(tmp_path):
    (tmp_path / "VideoDemographics.csv").write_text(
        "\ufeffActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
        "1002,21,Female,Caucasian,Not Hispanic\n"
    )
    write_clip(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    write_clip(tmp_path / "AudioWAV" / "1002_IEO_HAP_HI.wav")
    write_clip(tmp_path / "AudioWAV" / "1003_TIE_SAD_LO.wav")  # not in the demographics
    write_clip(tmp_path / "AudioWAV" / "1001_DFA_CAL_XX.wav")  # no such emotion: skipped
    # The full repository also has MP3 copies, which must not count twice.
    write_bytes(tmp_path / "AudioMP3" / "1001_DFA_ANG_XX.mp3")
    records = by_name(read_crema_d(tmp_path))
    assert {name: (r.speaker, r.utterance, r.label, r.gender) for name, r in records.items()} == {
        "1001_DFA_ANG_XX.wav": ("crema-d:1001", "DFA", "angry", "male"),
        "1002_IEO_HAP_HI.wav": ("crema-d:1002", "IEO", "happy", "female"),
        "1003_TIE_SAD_LO.wav": ("crema-d:1003", "TIE", "sad", None),
    }
    assert records["1001_DFA_ANG_XX.wav"].relpath == "AudioWAV/1001_DFA_ANG_XX.wav"


def test_read_crema_d_flat_without_demographics(tmp_path, caplog):
    for name in ("1001_DFA_DIS_XX.wav", "1001_DFA_FEA_XX.wav", "1091_WSI_NEU_XX.flac"):
        write_clip(tmp_path / name)
    with caplog.at_level(logging.WARNING, logger="ser_model.data.corpora"):
        records = read_crema_d(tmp_path)
    assert [(r.label, r.gender) for r in records] == [("disgust", None), ("fear", None), ("neutral", None)]
    assert any("VideoDemographics.csv" in r.getMessage() for r in caplog.records)


def test_read_crema_d_finds_demographics_in_parent(tmp_path):
    (tmp_path / "VideoDemographics.csv").write_text("ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,x,y\n")
    write_clip(tmp_path / "crema-d" / "1001_DFA_ANG_XX.wav")
    assert read_crema_d(tmp_path / "crema-d")[0].gender == "male"


def test_read_savee_flat(tmp_path):
    for name in ("DC_a01.wav", "DC_sa01.wav", "DC_su02.wav", "JE_n30.wav", "KL_d15.flac", "DC_s03.wav"):
        write_clip(tmp_path / name)
    records = by_name(read_savee(tmp_path))
    assert {name: (r.speaker, r.label, r.utterance) for name, r in records.items()} == {
        "DC_a01.wav": ("savee:DC", "angry", "01"),
        "DC_sa01.wav": ("savee:DC", "sad", "01"),
        "DC_su02.wav": ("savee:DC", "surprise", "02"),
        "JE_n30.wav": ("savee:JE", "neutral", "30"),
        "KL_d15.flac": ("savee:KL", "disgust", "15"),
    }
    assert {r.gender for r in records.values()} == {"male"}


def test_read_savee_nested(tmp_path):
    write_clip(tmp_path / "AudioData" / "DC" / "a01.wav")
    write_clip(tmp_path / "AudioData" / "JK" / "sa03.wav")
    write_clip(tmp_path / "AudioData" / "KL" / "su15.ogg")
    write_clip(tmp_path / "AudioData" / "JE" / "f02.wav")
    write_clip(tmp_path / "AudioData" / "JE" / "h07.wav")
    write_clip(tmp_path / "AudioData" / "JE" / "s07.wav")  # neither sa nor su: skipped
    records = by_name(read_savee(tmp_path))
    assert {r.relpath: (r.speaker, r.label) for r in records.values()} == {
        "AudioData/DC/a01.wav": ("savee:DC", "angry"),
        "AudioData/JK/sa03.wav": ("savee:JK", "sad"),
        "AudioData/KL/su15.ogg": ("savee:KL", "surprise"),
        "AudioData/JE/f02.wav": ("savee:JE", "fear"),
        "AudioData/JE/h07.wav": ("savee:JE", "happy"),
    }


def test_read_manifest_resolves_paths_and_synonyms(tmp_path):
    write_clip(tmp_path / "clips" / "a.wav")
    write_clip(tmp_path / "clips" / "b.flac")
    write_clip(tmp_path / "other" / "c.ogg")
    absolute = (tmp_path / "other" / "c.ogg").resolve()
    (tmp_path / "data.csv").write_text(
        "path,label,speaker,gender\n"
        "clips/a.wav,Calm,spk1,F\n"
        "clips/b.flac,fearful,spk2,male\n"
        f"{absolute},surprised,,\n"
    )
    records = read_manifest(tmp_path / "data.csv")
    assert [(r.label, r.speaker, r.gender, r.relpath) for r in records] == [
        ("neutral", "manifest:spk1", "female", "clips/a.wav"),
        ("fear", "manifest:spk2", "male", "clips/b.flac"),
        ("surprise", "manifest:c", None, "other/c.ogg"),
    ]
    assert records[0].path == str((tmp_path / "clips" / "a.wav").resolve())
    assert {r.corpus for r in records} == {"manifest"}


def test_read_manifest_without_speakers_warns_and_uses_file_stems(tmp_path, caplog):
    write_clip(tmp_path / "x.wav")
    (tmp_path / "m.csv").write_text("path,label\nx.wav,sadness\n")
    with caplog.at_level(logging.WARNING, logger="ser_model.data.corpora"):
        records = read_manifest(tmp_path / "m.csv")
    assert (records[0].speaker, records[0].label, records[0].utterance) == ("manifest:x", "sad", "x")
    assert any("speaker-independent" in r.getMessage() for r in caplog.records)


def test_read_manifest_bad_label_names_the_row(tmp_path):
    write_clip(tmp_path / "a.wav")
    (tmp_path / "m.csv").write_text("path,label\na.wav,angry\na.wav,excited\n")
    with pytest.raises(ValueError, match=r"line 3: label 'excited'"):
        read_manifest(tmp_path / "m.csv")


def test_read_manifest_missing_file_names_the_row(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\nnowhere.wav,angry\n")
    with pytest.raises(ValueError, match=r"line 2: file 'nowhere.wav' does not exist"):
        read_manifest(tmp_path / "m.csv")


def test_read_manifest_needs_path_and_label_columns(tmp_path):
    (tmp_path / "m.csv").write_text("file,emotion\na.wav,angry\n")
    with pytest.raises(ValueError, match="path and label"):
        read_manifest(tmp_path / "m.csv")


def test_readers_reject_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_ravdess(tmp_path / "absent")


def test_discover_reads_every_corpus_present(tmp_path):
    make_ravdess(tmp_path / "RAVDESS")
    make_tess(tmp_path / "tess")
    write_clip(tmp_path / "Crema_D" / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    write_clip(tmp_path / "SAVEE" / "DC_su01.wav")
    write_clip(tmp_path / "mine" / "hello.wav")
    (tmp_path / "manifest.csv").write_text("path,label,speaker\nmine/hello.wav,happy,me\n")
    write_clip(tmp_path / "unrelated" / "OAF_back_angry.wav")  # not a corpus folder: ignored
    records = discover(tmp_path)
    assert Counter(r.corpus for r in records) == {"ravdess": 5, "tess": 8, "crema-d": 1, "savee": 1, "manifest": 1}
    assert [r.path for r in records] == sorted(r.path for r in records)
    assert discover(tmp_path) == records


def test_discover_with_some_corpora_missing(tmp_path):
    make_tess(tmp_path / "TESS")
    assert {r.corpus for r in discover(tmp_path)} == {"tess"}


def test_discover_raises_when_nothing_is_found(tmp_path):
    with pytest.raises(ValueError, match="found no corpus"):
        discover(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        discover(tmp_path / "absent")
    (tmp_path / "ravdess").mkdir()
    with pytest.raises(ValueError, match="found no audio clips"):
        discover(tmp_path)


def test_discover_rejects_two_copies_of_a_corpus(tmp_path):
    write_clip(tmp_path / "crema-d" / "1001_DFA_ANG_XX.wav")
    write_clip(tmp_path / "cremad" / "1001_DFA_ANG_XX.wav")
    with pytest.raises(ValueError, match="two crema-d folders"):
        discover(tmp_path)


# The real-data tests hold for any subset of the actors or speakers, so they pass on the copy here
# (20 of RAVDESS' 24 actors, TESS' OAF only) and on the full corpora alike.


@real_data
def test_real_ravdess():
    records = read_ravdess(DATA_DIR / "ravdess")
    by_actor = defaultdict(list)
    for r in records:
        by_actor[r.speaker].append(r)
    assert by_actor and set(by_actor) <= {f"ravdess:{a:02d}" for a in range(1, 25)}
    # Each actor read 60 speech clips: 8 of each emotion (2 intensities x 2 statements x 2 repetitions)
    # but neutral, which has no strong intensity (4); calm (8) is merged into neutral, giving 12.
    per_actor = {label: 8 for label in LABELS} | {"neutral": 12}
    for speaker, clips in by_actor.items():
        assert Counter(r.label for r in clips) == per_actor, speaker
        # Odd-numbered actors are male, even-numbered female (the corpus' documentation).
        assert {r.gender for r in clips} == {"male" if int(speaker.split(":")[1]) % 2 else "female"}, speaker


@real_data
def test_real_tess():
    records = read_tess(DATA_DIR / "tess")
    by_speaker = defaultdict(list)
    for r in records:
        by_speaker[r.speaker].append(r)
    assert by_speaker and set(by_speaker) <= {"tess:OAF", "tess:YAF"}
    # Each speaker said the same 200 words in each of the 7 emotions.
    for speaker, clips in by_speaker.items():
        assert Counter(r.label for r in clips) == {label: 200 for label in LABELS}, speaker
        assert len({r.utterance for r in clips}) == 200, speaker


@real_data
def test_real_discover():
    counts = Counter(r.corpus for r in discover(DATA_DIR))
    assert counts["ravdess"] == len(read_ravdess(DATA_DIR / "ravdess"))
    assert counts["tess"] == len(read_tess(DATA_DIR / "tess"))


# --- ASED, nEMO, TurEV-DB, EmoDB: synthetic layouts named like each corpus -------------------------


def test_read_ased_parses_emotion_gender_speaker_and_a_capital_letter(tmp_path, caplog):
    write_clip(tmp_path / "01Neutral" / "n1-01-01-01-03.wav")
    write_clip(tmp_path / "04Sad" / "S4-04-02-02-29.wav")  # the one original name with a capital letter
    write_clip(tmp_path / "05Angry" / "a5-07-01-02-65.flac")
    write_clip(tmp_path / "05Angry" / "x5-07-01-02-65.wav")  # unknown emotion letter: skipped
    write_clip(tmp_path / "05Angry" / "a5-07-01-03-65.wav")  # gender 03 does not exist: skipped
    with caplog.at_level(logging.WARNING):
        records = by_name(read_ased(tmp_path))
    assert set(records) == {"n1-01-01-01-03.wav", "S4-04-02-02-29.wav", "a5-07-01-02-65.flac"}
    sad = records["S4-04-02-02-29.wav"]
    assert (sad.label, sad.speaker, sad.gender, sad.utterance) == ("sad", "ased:29", "male", "04")
    assert records["n1-01-01-01-03.wav"].gender == "female"
    assert all(r.label_set == ("angry", "fear", "happy", "neutral", "sad") for r in records.values())
    assert "skipped 2" in caplog.text


def make_nemo(root):
    rows = [("EB0_anger_1.wav", "anger", "        EB0", "female", "ala ma kota"),
            ("EB0_surprised_2.wav", "surprised", "        EB0", "female", "kot ma ale"),
            ("WR0_happiness_3.wav", "happiness", "   WR0", "male", "ala ma kota")]
    (root / "samples").mkdir(parents=True)
    lines = ["file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage"]
    for name, emotion, speaker, gender, text in rows:
        write_clip(root / "samples" / name.replace(".wav", ".ogg"))  # stored in another format than listed
        lines.append(f"{name}\t{emotion}\t{text.capitalize()}.\t{text}\t{speaker}\t{gender}\t30")
    (root / "data.tsv").write_text("\n".join(lines) + "\n")


def test_read_nemo_takes_speakers_labels_and_sentences_from_the_table(tmp_path, caplog):
    make_nemo(tmp_path)
    write_clip(tmp_path / "samples" / "XX0_anger_9.wav")  # not in data.tsv: skipped
    with caplog.at_level(logging.WARNING):
        records = by_name(read_nemo(tmp_path))
    assert set(records) == {"EB0_anger_1.ogg", "EB0_surprised_2.ogg", "WR0_happiness_3.ogg"}
    anger = records["EB0_anger_1.ogg"]
    assert (anger.label, anger.speaker, anger.gender, anger.utterance) == ("angry", "nemo:EB0", "female", "ala ma kota")
    assert records["EB0_surprised_2.ogg"].label == "surprise"
    assert records["WR0_happiness_3.ogg"].speaker == "nemo:WR0"  # the padding is stripped
    assert "disgust" not in anger.label_set and len(anger.label_set) == 6
    assert "skipped 1" in caplog.text


def test_read_nemo_without_its_table_says_so(tmp_path):
    write_clip(tmp_path / "samples" / "EB0_anger_1.wav")
    with pytest.raises(ValueError, match="data.tsv"):
        read_nemo(tmp_path)


def test_read_turev_maps_calm_to_neutral(tmp_path):
    write_clip(tmp_path / "Angry" / "1157_kz_acik.wav")
    write_clip(tmp_path / "Calm" / "1234_sk_beste.wav")
    write_clip(tmp_path / "Happy" / "1358_mt_dere_boyu.wav")  # a word with an underscore
    write_clip(tmp_path / "Sad" / "1984_zz_yol.wav")  # unknown code: skipped
    records = by_name(read_turev(tmp_path))
    assert {n: r.label for n, r in records.items()} == {"1157_kz_acik.wav": "angry", "1234_sk_beste.wav": "neutral",
                                                       "1358_mt_dere_boyu.wav": "happy"}
    assert records["1358_mt_dere_boyu.wav"].utterance == "dere_boyu"
    assert records["1157_kz_acik.wav"].speaker == "turev:1157"
    assert records["1157_kz_acik.wav"].label_set == ("angry", "happy", "neutral", "sad")


def test_read_emodb_skips_boredom_with_a_count(tmp_path, caplog):
    write_clip(tmp_path / "wav" / "03a01Wa.wav")  # speaker 03 (male), angry
    write_clip(tmp_path / "wav" / "08b02Ec.wav")  # speaker 08 (female), disgust
    write_clip(tmp_path / "wav" / "16a05Lb.wav")  # boredom: no class here
    write_clip(tmp_path / "wav" / "10a07Lc.wav")  # boredom
    write_clip(tmp_path / "wav" / "99a01Wa.wav")  # no such speaker: skipped as a misnamed file
    with caplog.at_level(logging.INFO):
        records = by_name(read_emodb(tmp_path))
    assert set(records) == {"03a01Wa.wav", "08b02Ec.wav"}
    angry, disgust = records["03a01Wa.wav"], records["08b02Ec.wav"]
    assert (angry.label, angry.speaker, angry.gender, angry.utterance) == ("angry", "emodb:03", "male", "a01")
    assert (disgust.label, disgust.gender) == ("disgust", "female")
    assert "surprise" not in angry.label_set
    assert "skipped 2 boredom" in caplog.text and "skipped 1 audio" in caplog.text


def test_discover_finds_the_new_corpora_by_folder_name(tmp_path):
    write_clip(tmp_path / "ASED" / "01Neutral" / "n1-01-01-01-01.wav")
    make_nemo(tmp_path / "nEMO")
    write_clip(tmp_path / "TurEV-DB" / "Sad" / "1157_hl_acik.wav")
    write_clip(tmp_path / "EmoDB" / "wav" / "03a01Fa.wav")
    assert Counter(r.corpus for r in discover(tmp_path)) == {"ased": 1, "nemo": 3, "turev": 1, "emodb": 1}


def test_every_record_carries_its_corpus_label_set_and_its_label_is_in_it(tmp_path):
    make_ravdess(tmp_path / "ravdess")
    make_tess(tmp_path / "tess")
    make_nemo(tmp_path / "nemo")
    write_clip(tmp_path / "ased" / "05Angry" / "a5-07-01-02-65.wav")
    for record in discover(tmp_path):
        assert record.label in record.label_set
        assert record.label_set == LABEL_SETS[record.corpus]
        assert list(record.label_set) == [label for label in LABELS if label in record.label_set]  # LABELS order


def test_a_manifest_can_contain_the_labels_it_uses():
    records = [Record(path="a", corpus="manifest", speaker="s", label="sad", gender=None, utterance="u")]
    assert records[0].label_set == LABELS  # the default for records built by hand


@pytest.mark.parametrize("corpus, reader", [("ased", "read_ased"), ("nemo", "read_nemo"), ("turev", "read_turev")])
def test_real_new_corpora_read_every_audio_file(corpus, reader):
    import ser_model.data.corpora as corpora

    root = data_dir_or_skip(corpus)
    records = getattr(corpora, reader)(root)
    audio = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS]
    assert len(records) == len(audio)  # no file of the real corpus is skipped as misnamed
    assert {r.label for r in records} == set(LABEL_SETS[corpus])  # every emotion of the corpus occurs
    assert all(" " not in r.speaker for r in records)
    assert len({r.speaker for r in records}) > 1
