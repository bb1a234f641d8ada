"""The channels people's audio comes through, applied to held-out clips to measure robustness.

Each condition turns a clean 16 kHz clip into what a listener's device would deliver: a lossy
codec at a bitrate browsers and phones use, a telephone band, other people talking, a room, or a
quiet microphone. `evaluation` classifies every clip clean and under each condition and reports
accuracy and top-1 agreement with the clean clip (how often the decision survives the channel).

The codecs are encoded and decoded by FFmpeg with the encoders real files are made with (LAME for
MP3, libopus in WebM as browsers record, AAC in MP4 as phones do); without FFmpeg those rows are
left out with a note. Reverberation uses the same statistical room model as training augmentation
(`augment.synthetic_room_response`), since no measured room responses are available offline;
the babble talkers come from another corpus than the clips under test, never from training.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr

from ..audio_io import load_audio
from ..data.augment import babble, change_level, mix_at_snr, reverberate

SAMPLING_RATE = 16_000
# name: (FFmpeg arguments, file suffix)
FFMPEG_CODECS = {
    "mp3_64k": (["-c:a", "libmp3lame", "-b:a", "64k"], ".mp3"),
    "opus_24k_webm": (["-c:a", "libopus", "-b:a", "24k"], ".webm"),
    "aac_64k": (["-c:a", "aac", "-b:a", "64k"], ".m4a"),
}


def ffmpeg_round_trip(waveform: np.ndarray, arguments: list[str], suffix: str) -> np.ndarray:
    """Encodes a 16 kHz clip with FFmpeg and decodes it back through the project's own loader."""
    with tempfile.TemporaryDirectory() as folder:
        raw, coded = Path(folder) / "clip.f32", Path(folder) / f"clip{suffix}"
        np.clip(waveform, -1.0, 1.0).astype("<f4").tofile(raw)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "f32le", "-ar", str(SAMPLING_RATE), "-ac", "1",
                        "-i", str(raw), *arguments, str(coded)], check=True)
        return load_audio(coded, sampling_rate=SAMPLING_RATE, min_seconds=0.0)


def telephone(waveform: np.ndarray) -> np.ndarray:
    """The 8 kHz telephone band: resampled to 8 kHz and back, nothing left above 4 kHz."""
    narrow = soxr.resample(waveform, SAMPLING_RATE, 8_000, quality="VHQ")
    return soxr.resample(narrow, 8_000, SAMPLING_RATE, quality="VHQ").astype(np.float32)


def conditions(babble_clips: list[np.ndarray], seed: int = 0) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Every condition the report measures, name to function; a fixed seed per condition and clip
    order makes the table reproducible. The codec conditions are present only where FFmpeg is."""
    rng = {name: np.random.default_rng([seed, i]) for i, name in enumerate(("babble", "reverb"))}

    def talkers(clip):
        picks = rng["babble"].choice(len(babble_clips), size=5, replace=False)
        return mix_at_snr(clip, babble(len(clip), [babble_clips[i] for i in picks], rng["babble"]), 10.0)

    table = {"clean": lambda clip: clip}
    if shutil.which("ffmpeg"):
        table.update({name: (lambda clip, a=a, s=s: ffmpeg_round_trip(clip, a, s))
                      for name, (a, s) in FFMPEG_CODECS.items()})
    table.update({
        "telephone_8k": telephone,
        "babble_10db": talkers,
        "reverb_rt60_0.5s": lambda clip: reverberate(clip, SAMPLING_RATE, 0.5, rng["reverb"]),
        # A 16-bit recording 30 and 40 dB quieter than the original: a phone on a table, a distant or
        # quiet microphone. 40 dB down, RAVDESS's quietest clips peak about ten 16-bit steps high.
        "level_minus_30db": lambda clip: change_level(clip, -30.0),
        "level_minus_40db": lambda clip: change_level(clip, -40.0),
    })
    return table


def missing_conditions() -> list[str]:
    """The codec conditions that cannot be measured on this machine (no FFmpeg)."""
    return [] if shutil.which("ffmpeg") else sorted(FFMPEG_CODECS)


__all__ = ["FFMPEG_CODECS", "conditions", "ffmpeg_round_trip", "missing_conditions", "telephone"]
