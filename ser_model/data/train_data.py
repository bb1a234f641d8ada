"""The data side of training: decoded clips (cached), codec copies, balanced sampling, batches.

Sampling is what keeps pooled corpora honest. nEMO brings 4,481 clips from 9 speakers and RAVDESS
1,200 from 24 actors; drawn in proportion to clips, nEMO's few voices would dominate. So each
epoch is a fixed number of draws: a corpus first (in proportion to its training speakers raised to
`corpus_balance_exponent`: 0 gives every corpus the same share, 1 every speaker), then a speaker
of it uniformly, then one of that speaker's clips.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..audio_io import load_audio
from .augment import CODECS, Augmenter, encode_decode
from .corpora import Record
from ..configuration import VOICE_LABELS
from ..feature_extractor import SERFeatureExtractor
from ..windows import sliding_windows
from .splits import record_key

logger = logging.getLogger(__name__)


def label_mask(label_set, label2id: dict[str, int]) -> np.ndarray:
    """(len(label2id),) booleans indexed by class id, true for the emotions of `label_set` (the ones a
    clip's corpus can contain) among the model's classes (`config.label2id`)."""
    mask = np.zeros(len(label2id), dtype=bool)
    mask[[label2id[label] for label in label_set if label in label2id]] = True
    return mask


def cache_file(cache_dir: str | Path, kind: str, records: list[Record], extra: dict) -> Path:
    """A file name that changes whenever the clips or the settings behind the cached arrays do."""
    digest = hashlib.sha256(json.dumps([[record_key(r) for r in records], extra]).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{kind}-{digest}.npz"


def save_arrays(path: Path, arrays: list[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, samples=np.concatenate(arrays), lengths=np.array([len(a) for a in arrays]))
    partial.replace(path)  # a run killed while writing leaves no half file behind


def load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return np.split(data["samples"], np.cumsum(data["lengths"])[:-1])


def load_clips(records: list[Record], sampling_rate: int, desc: str, cache_dir: str | Path | None = None
               ) -> list[np.ndarray]:
    """Decodes every clip once (mono float32 at `sampling_rate`) with a progress bar; with a
    `cache_dir` the decoded clips are kept there, so the next run with the same clips skips decoding."""
    cache = cache_file(cache_dir, "clips", records, {"rate": sampling_rate}) if cache_dir else None
    if cache and cache.is_file():
        logger.info("%s: %d decoded clips from %s", desc, len(records), cache)
        return load_arrays(cache)
    clips = [load_audio(r.path, sampling_rate=sampling_rate, min_seconds=0.0)
             for r in tqdm(records, desc=desc, unit="clip")]
    if cache:
        save_arrays(cache, clips)
    return clips


def _code_chunk(job: tuple[list[np.ndarray], int, int, list[str]]) -> list[np.ndarray]:
    clips, sampling_rate, seed, codecs = job
    rng = np.random.default_rng(seed)
    return [encode_decode(clip, sampling_rate, codec, rng) for clip, codec in zip(clips, codecs)]


def codec_versions(records: list[Record], clips: list[np.ndarray], sampling_rate: int, seed: int,
                   cache_dir: str | Path | None = None, workers: int = 2) -> list[np.ndarray]:
    """One lossy-coded copy of every clip, through a codec drawn uniformly from `CODECS` at a random
    bitrate, computed in `workers` processes with a progress bar and cached like `load_clips`."""
    cache = cache_file(cache_dir, "coded", records, {"rate": sampling_rate, "seed": seed,
                                                      "codecs": {k: list(v) for k, v in CODECS.items()}}) \
        if cache_dir else None
    if cache and cache.is_file():
        logger.info("%d codec copies from %s", len(records), cache)
        return load_arrays(cache)
    rng = np.random.default_rng(seed)
    codecs = [str(c) for c in rng.choice(sorted(CODECS), len(clips))]
    # Chunks of 64 clips are small enough to share the work evenly and move the progress bar, large
    # enough to make the inter-process traffic cheap. A chunk's seed depends on its position only,
    # so the copies are the same for any number of `workers`.
    size = 64
    jobs = [(clips[i:i + size], sampling_rate, seed * 100_003 + i, codecs[i:i + size])
            for i in range(0, len(clips), size)]
    coded = []
    with ProcessPoolExecutor(max_workers=workers) as pool, tqdm(total=len(clips), desc="codec copies",
                                                                 unit="clip") as bar:
        for chunk in pool.map(_code_chunk, jobs):
            coded.extend(chunk)
            bar.update(len(chunk))
    if cache:
        save_arrays(cache, coded)
    return coded


def sampling_weights(records: list[Record], corpus_balance_exponent: float) -> np.ndarray:
    """Probability of drawing each record: corpus share, then uniform over the corpus' speakers,
    then uniform over the speaker's clips. Sums to 1."""
    speakers = defaultdict(set)
    clips_of_speaker = Counter(r.speaker for r in records)
    for r in records:
        speakers[r.corpus].add(r.speaker)
    share = {c: len(s) ** corpus_balance_exponent for c, s in speakers.items()}
    total = sum(share.values())
    return np.array([share[r.corpus] / total / len(speakers[r.corpus]) / clips_of_speaker[r.speaker]
                     for r in records])


def class_weights(records: list[Record], weights: np.ndarray, label2id: dict[str, int]) -> torch.Tensor:
    """Per-class loss weights under the sampler, for a loss scored over each clip's label set.

    A class is weighed against the draws that could have been it: its frequency among the draws
    whose corpus contains it. Disgust, in 2 of 5 corpora, is then as common as any class where it
    can occur, and is not inflated for the corpora that cannot contain it; what the weights
    correct is the imbalance inside corpora (RAVDESS has twice as much neutral, calm included).
    Inverse of that frequency, scaled to mean 1 over the classes seen; unseen classes get 0. The
    weights are indexed by the model's class ids (`label2id`).
    """
    hits = np.zeros(len(label2id))
    possible = np.zeros(len(label2id))
    for record, weight in zip(records, weights):
        hits[label2id[record.label]] += weight
        possible += weight * label_mask(record.label_set, label2id)
    frequency = np.divide(hits, possible, out=np.zeros(len(label2id)), where=possible > 0)
    inverse = np.divide(1.0, frequency, out=np.zeros(len(label2id)), where=frequency > 0)
    return torch.tensor(inverse / inverse[inverse > 0].mean(), dtype=torch.float32)


class ClipDataset(Dataset):
    """Whole clips with their emotion and label set, unaugmented; `FeatureCollator` turns the names into the
    model's class ids. (The feature extractor keeps the first window of a longer clip: validation scores
    `ClipWindows`.)"""

    def __init__(self, clips: list[np.ndarray], records: list[Record]):
        self.clips = clips
        self.records = records

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        return {"waveform": self.clips[index], "label": record.label, "label_set": record.label_set,
                "gender": record.gender}


class ClipWindows(ClipDataset):
    """Every window of every clip, as serving cuts audio longer than one window (`sliding_windows` with the
    model's window and hop), so that validation and calibration score a clip as it is served: the mean of its
    windows' probabilities (`training.calibration.clip_probabilities`, with `owner`).

    Args:
        clips, records: the clips and their records.
        window (`int`): samples in one window (`config.window_samples`).
        hop (`int`): samples between window starts (`config.window_hop_samples`).

    Attributes:
        owner (`np.ndarray` of shape `(len(self),)`): the index of each item's clip, in item order.
    """

    def __init__(self, clips: list[np.ndarray], records: list[Record], window: int, hop: int):
        super().__init__(clips, records)
        self.spans = [(clip, start, len(samples)) for clip, waveform in enumerate(clips)
                      for start, samples, _ in sliding_windows([waveform], window, hop)]
        self.owner = np.array([clip for clip, _, _ in self.spans], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, index: int) -> dict:
        clip, start, length = self.spans[index]
        item = super().__getitem__(clip)
        item["waveform"] = item["waveform"][start:start + length]
        return item


class BalancedEpochs(ClipDataset):
    """`samples_per_epoch` draws with `sampling_weights`, new ones each epoch (`set_epoch`), each clip
    augmented as it is drawn.

    Item `index` of epoch `epoch` draws everything (its clip, the codec copy or not, its
    augmentation) from a generator seeded with `(seed, epoch, index)` alone. A generator shared by
    the items would be copied into every data-loader worker in the same state, so the workers would
    repeat each other's draws and every epoch would replay the first; seeded per item, the epoch is
    the same whatever the number of workers or the order the sampler asks for the items.

    The epoch lives in shared memory, so `set_epoch` in the main process also reaches persistent
    workers (`dataloader_persistent_workers`), which keep their copy of the dataset across epochs.

    Args:
        clips, records: the training clips and their records.
        weights (`np.ndarray`): from `sampling_weights`.
        samples_per_epoch (`int`): draws per epoch.
        augmenter (`Augmenter`): applied to every drawn clip.
        coded (`list[np.ndarray]`, *optional*): codec copies of the clips (`codec_versions`).
        codec_probability (`float`, *optional*, defaults to 0.0): chance of drawing the codec copy.
        seed (`int`, *optional*, defaults to 0): seeds the draws of every epoch; non-negative.
    """

    def __init__(self, clips, records, weights, samples_per_epoch: int, augmenter: Augmenter,
                 coded: list[np.ndarray] | None = None, codec_probability: float = 0.0, seed: int = 0):
        super().__init__(clips, records)
        self.weights = weights
        self.samples_per_epoch = samples_per_epoch
        self.augmenter = augmenter
        self.coded = coded
        self.codec_probability = codec_probability if coded is not None else 0.0
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Makes the items those of `epoch`; the same seed and epoch always give the same items."""
        self._epoch.fill_(epoch)

    def item_generator(self, index: int) -> np.random.Generator:
        """The generator that item `index` of the current epoch draws from, and only it."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def _draw_clip(self, rng: np.random.Generator) -> int:
        return int(rng.choice(len(self.clips), p=self.weights))

    def drawn_clips(self) -> np.ndarray:
        """The clip index each item of the current epoch draws, `(samples_per_epoch,)`."""
        return np.array([self._draw_clip(self.item_generator(i)) for i in range(len(self))])

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict:
        rng = self.item_generator(index)
        clip = self._draw_clip(rng)
        item = super().__getitem__(clip)
        source = self.coded if rng.random() < self.codec_probability else self.clips
        item["waveform"] = self.augmenter(source[clip], rng)
        return item


class FeatureCollator:
    """Turns a list of clips into a padded feature batch with `labels` (class ids) and `label_mask`.

    Args:
        feature_extractor (`SERFeatureExtractor`): the model's.
        label2id (`dict[str, int]`): the model's classes (`config.label2id`), which number the labels.
        voice (`bool`, *optional*, defaults to `False`): also `voice_labels` from each clip's speaker
            gender (`voice_label`), for a model with a voice head.
    """

    def __init__(self, feature_extractor: SERFeatureExtractor, label2id: dict[str, int], voice: bool = False):
        self.feature_extractor = feature_extractor
        self.label2id = label2id
        self.voice = voice

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        # check_audio=False: a person's silent or too-short clip is refused, but training keeps every
        # item it drew (an augmented copy 40 dB quieter can peak under the silence threshold).
        batch = dict(self.feature_extractor([item["waveform"] for item in items],
                                            sampling_rate=self.feature_extractor.sampling_rate, return_tensors="pt",
                                            check_audio=False))
        batch["labels"] = torch.tensor([self.label2id[item["label"]] for item in items], dtype=torch.long)
        batch["label_mask"] = torch.from_numpy(np.stack([label_mask(item["label_set"], self.label2id)
                                                         for item in items]))
        if self.voice:
            batch["voice_labels"] = torch.tensor([voice_label(item.get("gender")) for item in items], dtype=torch.long)
        return batch


def voice_label(gender: str | None) -> int:
    """The voice head's target for a speaker of `gender` ("female", "male" or None): its index in
    `VOICE_LABELS`, or -100 (no loss) when the corpus does not record it."""
    return VOICE_LABELS.index(gender) if gender in VOICE_LABELS else -100


__all__ = [
    "BalancedEpochs",
    "ClipDataset",
    "ClipWindows",
    "FeatureCollator",
    "cache_file",
    "class_weights",
    "codec_versions",
    "label_mask",
    "load_arrays",
    "load_clips",
    "sampling_weights",
    "save_arrays",
    "voice_label",
]
