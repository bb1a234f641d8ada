"""Balanced sampling, class weights under it, the epoch draws, batches and the clip caches."""

import hashlib
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ser_model import SERFeatureExtractor
from ser_model.data.augment import AugmentationSettings, Augmenter
from ser_model.data.corpora import LABEL_SETS, LABELS, Record
from ser_model.data.train_data import (BalancedEpochs, ClipDataset, ClipWindows, FeatureCollator, class_weights,
                                  codec_versions, label_mask, load_clips, sampling_weights)
from ser_model.windows import sliding_windows

from .conftest import speechlike, tiny_config

LABEL2ID = {label: i for i, label in enumerate(LABELS)}


def corpus(name, speakers, clips_per_speaker, labels=None):
    labels = labels or LABEL_SETS[name]
    return [Record(path=f"/{name}/{s}/{i}.wav", corpus=name, speaker=f"{name}:{s}", label=labels[i % len(labels)],
                   gender=None, utterance=str(i), relpath=f"{s}/{i}.wav", label_set=LABEL_SETS[name])
            for s in range(speakers) for i in range(clips_per_speaker[s] if isinstance(clips_per_speaker, list)
                                                      else clips_per_speaker)]


# A small RAVDESS-like corpus and a nEMO-like one with few speakers but many clips each.
RECORDS = corpus("ravdess", 16, 6) + corpus("nemo", 4, 60) + corpus("ased", 9, [2, 4, 6, 8, 10, 12, 14, 16, 18])


@pytest.mark.parametrize("exponent", [0.0, 0.5, 1.0])
def test_balanced_draws_give_each_corpus_its_share(exponent):
    weights = sampling_weights(RECORDS, exponent)
    assert weights.sum() == pytest.approx(1.0)
    speakers = {"ravdess": 16, "nemo": 4, "ased": 9}
    expected = {c: n ** exponent / sum(m ** exponent for m in speakers.values()) for c, n in speakers.items()}
    draws = np.random.default_rng(0).choice(len(RECORDS), size=40_000, p=weights)
    counts = Counter(RECORDS[i].corpus for i in draws)
    for name, share in expected.items():
        assert counts[name] / len(draws) == pytest.approx(share, abs=0.01)


def test_within_a_corpus_every_speaker_is_drawn_equally_often():
    weights = sampling_weights(RECORDS, 0.5)
    per_speaker = Counter()
    for record, weight in zip(RECORDS, weights):
        if record.corpus == "ased":
            per_speaker[record.speaker] += weight
    assert max(per_speaker.values()) == pytest.approx(min(per_speaker.values()))  # 2 clips or 18, the same share


def test_class_weights_compare_a_class_with_the_draws_that_could_be_it():
    # Corpus A (all 7 classes) has twice as much neutral; corpus B can only be angry or sad.
    a = [Record(path=f"a{i}", corpus="a", speaker="a:1", label=label, gender=None, utterance="u")
         for i, label in enumerate(LABELS + ("neutral",))]
    b = [Record(path=f"b{i}", corpus="b", speaker="b:1", label=label, gender=None, utterance="u",
                label_set=("angry", "sad")) for i, label in enumerate(("angry", "sad"))]
    records = a + b
    weights = np.full(len(records), 1.0 / len(records))
    w = class_weights(records, weights, LABEL2ID).numpy()
    # Among draws that could be neutral (corpus A, 8 clips) 2 are: 1/4; disgust 1/8; angry (A and B: 10) 2/10.
    inverse = {"neutral": 4.0, "disgust": 8.0, "angry": 5.0, "sad": 5.0}
    assert w[LABELS.index("neutral")] / w[LABELS.index("disgust")] == pytest.approx(inverse["neutral"] / 8.0)
    assert w[LABELS.index("angry")] / w[LABELS.index("disgust")] == pytest.approx(inverse["angry"] / 8.0)
    assert w.mean() == pytest.approx(1.0)


def test_a_class_no_corpus_contains_gets_no_weight():
    records = corpus("turev", 2, 4)
    w = class_weights(records, sampling_weights(records, 0.5), LABEL2ID).numpy()
    assert all(w[LABELS.index(label)] == 0 for label in ("disgust", "fear", "surprise"))
    assert all(w[LABELS.index(label)] > 0 for label in LABEL_SETS["turev"])


def test_label_mask_follows_the_label_set():
    record = corpus("turev", 1, 1)[0]
    assert [label for label, on in zip(LABELS, label_mask(record.label_set, LABEL2ID)) if on] == \
        list(LABEL_SETS["turev"])


# A model with three classes in another order than `LABELS`: its config's label2id numbers them.
OTHER_LABELS = {"sad": 0, "angry": 1, "happy": 2}


def test_class_ids_masks_and_weights_follow_the_model_labels_not_the_module_constant():
    records = [Record(path=f"c{i}", corpus="c", speaker="c:1", label=label, gender=None, utterance="u",
                      label_set=("angry", "sad", "neutral"))
               for i, label in enumerate(("angry", "sad", "sad"))]
    assert label_mask(records[0].label_set, OTHER_LABELS).tolist() == [True, True, False]  # neutral: no class
    collate = FeatureCollator(SERFeatureExtractor.from_config(tiny_config(id2label={0: "sad", 1: "angry",
                                                                                  2: "happy"})), OTHER_LABELS)
    batch = collate(list(ClipDataset([speechlike(0.3, seed=i) for i in range(3)], records)))
    assert batch["labels"].tolist() == [1, 0, 0]
    assert batch["label_mask"].tolist() == [[True, True, False]] * 3
    weights = class_weights(records, np.full(3, 1 / 3), OTHER_LABELS).numpy()
    assert weights.shape == (3,) and weights[2] == 0  # happy: in no clip's set
    assert weights[1] == pytest.approx(2 * weights[0])  # angry is half as frequent as sad


CLIPS = [speechlike(0.3, seed=i) for i in range(5)]
PLAIN = AugmentationSettings(window=16_000, sampling_rate=16_000, speed_probability=0.0, noise_probability=0.0)
# Every draw of an item shows in its waveform: which clip, whether sped up, at what speed, which noise.
RANDOM = AugmentationSettings(window=16_000, sampling_rate=16_000, speed_probability=0.5, noise_probability=1.0)


def epochs(records, samples=50, seed=0, settings=PLAIN):
    clips = [CLIPS[i % 5] for i in range(len(records))]
    return BalancedEpochs(clips, records, sampling_weights(records, 0.5), samples, Augmenter(settings, []), seed=seed)


def test_each_epoch_draws_anew_and_the_same_seed_draws_the_same():
    dataset = epochs(RECORDS)
    assert len(dataset) == 50
    first = dataset.drawn_clips()
    dataset.set_epoch(1)
    assert not np.array_equal(first, dataset.drawn_clips())
    dataset.set_epoch(0)
    assert np.array_equal(first, dataset.drawn_clips())
    assert np.array_equal(epochs(RECORDS).drawn_clips(), first)
    assert not np.array_equal(epochs(RECORDS, seed=1).drawn_clips(), first)


def test_the_same_seed_epoch_and_index_give_the_same_item():
    dataset, again = epochs(RECORDS, settings=RANDOM), epochs(RECORDS, settings=RANDOM)
    again.set_epoch(3)
    items = [dataset[i]["waveform"] for i in range(4)]  # fetched first, so the order of fetching cannot matter
    dataset.set_epoch(3)
    assert [digest(dataset[i]) for i in reversed(range(4))] == [digest(again[i]) for i in reversed(range(4))]
    dataset.set_epoch(0)
    assert all(np.array_equal(dataset[i]["waveform"], items[i]) for i in range(4))


def test_items_carry_their_label_and_label_set():
    dataset = epochs(RECORDS)
    drawn = dataset.drawn_clips()
    for index in range(5):
        item = dataset[index]
        record = RECORDS[drawn[index]]
        assert (item["label"], item["label_set"]) == (record.label, record.label_set)


def test_codec_copies_come_from_the_coded_clips():
    records = corpus("ravdess", 1, 3)
    clips = [speechlike(0.5, seed=i) for i in range(3)]
    coded = [-c for c in clips]  # recognisable stand-ins
    always = BalancedEpochs(clips, records, np.full(3, 1 / 3), 10, Augmenter(PLAIN, []), coded, 1.0)
    drawn = always.drawn_clips()
    assert all(np.array_equal(always[i]["waveform"], coded[drawn[i]]) for i in range(10))
    never = BalancedEpochs(clips, records, np.full(3, 1 / 3), 10, Augmenter(PLAIN, []), coded, 0.0)
    drawn = never.drawn_clips()
    assert all(np.array_equal(never[i]["waveform"], clips[drawn[i]]) for i in range(10))


def digest(item):
    return item["label"], hashlib.sha256(item["waveform"].tobytes()).hexdigest()


def epoch_through_loader(loader):
    return Counter(digest(item) for batch in loader for item in batch)


def loader(dataset, workers, persistent=False):
    return DataLoader(dataset, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(workers),
                      num_workers=workers, persistent_workers=persistent, collate_fn=list)


def test_an_epoch_is_the_same_set_of_draws_with_or_without_workers():
    dataset = epochs(RECORDS, samples=24, settings=RANDOM)
    alone = epoch_through_loader(loader(dataset, 0))
    assert len(alone) == 24  # no two items repeat each other's draws
    assert epoch_through_loader(loader(dataset, 2)) == alone


@pytest.mark.parametrize("persistent", [False, True])
def test_workers_draw_anew_each_epoch(persistent):
    dataset = epochs(RECORDS, samples=24, settings=RANDOM)
    workers = loader(dataset, 2, persistent)
    first = epoch_through_loader(workers)
    dataset.set_epoch(1)  # as the `EpochDraws` callback does, in the main process
    second = epoch_through_loader(workers)
    assert not set(first) & set(second)
    assert second == epoch_through_loader(loader(dataset, 0))


def test_the_collator_pads_and_stacks_labels_and_masks():
    collate = FeatureCollator(SERFeatureExtractor.from_config(tiny_config()), LABEL2ID)
    records = corpus("turev", 1, 2)
    items = ClipDataset([speechlike(0.3), speechlike(0.5)], records)
    batch = collate([items[0], items[1]])
    assert batch["input_values"].shape[0] == 2 and batch["label_mask"].dtype == torch.bool
    assert batch["label_mask"].shape == (2, len(LABELS))
    assert batch["labels"].tolist() == [LABELS.index(r.label) for r in records]
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()


def test_validation_items_are_every_window_serving_cuts_each_clip_into():
    config = tiny_config()  # 1 s windows every 0.5 s
    records = corpus("turev", 1, 3)
    clips = [speechlike(0.3), speechlike(2.3, seed=1), speechlike(1.0, seed=2)]
    dataset = ClipWindows(clips, records, config.window_samples, config.window_hop_samples)
    served = [(clip, window) for clip, waveform in enumerate(clips)
              for _, window, _ in sliding_windows([waveform], config.window_samples, config.window_hop_samples)]
    assert dataset.owner.tolist() == [0, 1, 1, 1, 1, 2] == [clip for clip, _ in served]
    for item, (clip, window) in zip(dataset, served):
        np.testing.assert_array_equal(item["waveform"], window)
        assert (item["label"], item["label_set"]) == (records[clip].label, records[clip].label_set)
    batch = FeatureCollator(SERFeatureExtractor.from_config(config), LABEL2ID)(list(dataset))
    assert batch["labels"].tolist() == [LABEL2ID[records[clip].label] for clip, _ in served]


def test_decoded_and_coded_clips_are_cached_and_read_back(tmp_path):
    import soundfile as sf

    records = []
    for i in range(3):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, speechlike(0.4 + 0.1 * i, seed=i), 16_000)
        records.append(Record(path=str(path), corpus="manifest", speaker=f"manifest:{i}", label="sad", gender=None,
                              utterance=str(i), relpath=path.name))
    cache = tmp_path / "cache"
    clips = load_clips(records, 16_000, "test", cache)
    assert len(list(cache.glob("clips-*.npz"))) == 1
    for path in tmp_path.glob("clip*.wav"):
        path.unlink()  # read back from the cache alone
    again = load_clips(records, 16_000, "test", cache)
    assert all(np.array_equal(a, b) for a, b in zip(clips, again))
    coded = codec_versions(records, clips, 16_000, seed=0, cache_dir=cache, workers=1)
    assert [len(c) for c in coded] == [len(c) for c in clips]
    assert all(np.array_equal(a, b) for a, b in zip(coded, codec_versions(records, clips, 16_000, 0, cache, 1)))
