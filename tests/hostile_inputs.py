"""A corpus of hostile inputs, generated in a folder, with the outcome each must give.

Every input must give either a correct prediction or one clear sentence, whichever surface reads
it (the Python API, the CLI, the app); `write_corpus` writes them all and says which. The sentence
patterns are the ones `ser_model.audio_io` and `ser_model.serving.inference` produce: a test that checks a
surface asserts this behaviour, and `check_sentence` what "one clear sentence" means.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .conftest import speechlike

SR = 16_000
# The app's limit (app.MAX_AUDIO_SECONDS), also passed to the API and the CLI so all three refuse
# the three-hour file from its header, before decoding.
MAX_SECONDS = 600
THREE_HOURS = 3 * 3600

PREDICTION, ERROR, WARNING, REFUSED = "prediction", "error", "warning", "refused"

# Anything that is not a sentence for a person: traceback lines, exception class names, reprs,
# numpy/torch types.
NOT_A_SENTENCE = re.compile(
    r"Traceback|File \"|\b[A-Za-z]*(Error|Exception|Warning)\b|<\w+[ >]|object at 0x|\b(array|tensor)\(|"
    r"\bdtype\b|\bnp\.|\btorch\.|\bNone\b"
)

SURFACES = ("api", "analysis", "cli", "app")


def check_sentence(message: str, pattern: str, folder: Path | None = None) -> None:
    """Asserts that `message` is one clear sentence matching the regex `pattern`: a single line
    ending with a full stop, no traceback, no exception class name or repr, and no absolute path
    into `folder` (files are named by their base name)."""
    assert message and message == message.strip(), repr(message)
    assert "\n" not in message, f"more than one line: {message!r}"
    assert message.endswith("."), f"not a sentence: {message!r}"
    assert not NOT_A_SENTENCE.search(message), f"not a sentence for a person: {message!r}"
    if folder is not None:
        assert str(folder) not in message, f"names a full path: {message!r}"
    assert re.search(pattern, message), f"{message!r} does not match {pattern!r}"


def check_probabilities(probabilities: dict[str, float], labels) -> None:
    """A valid prediction: one finite probability in [0, 1] per class, summing to 1."""
    assert set(probabilities) == set(labels)
    values = np.array(list(probabilities.values()))
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all(), probabilities
    assert values.sum() == pytest.approx(1.0, abs=1e-4)


@dataclass(frozen=True)
class Outcome:
    """What a surface must give: a prediction (of a clip lasting `seconds`), an error sentence
    matching the regex `pattern`, or (the CLI only) no result and a warning line matching it, or the
    whole command refused before any file is classified (exit status 2), with the sentence on stderr."""

    kind: str
    pattern: str | None = None
    seconds: float | None = None


def prediction(seconds: float = 1.0) -> Outcome:
    return Outcome(PREDICTION, seconds=seconds)


def error(pattern: str) -> Outcome:
    return Outcome(ERROR, pattern)


def warning(pattern: str) -> Outcome:
    return Outcome(WARNING, pattern)


def refused(pattern: str) -> Outcome:
    return Outcome(REFUSED, pattern)


@dataclass(frozen=True)
class HostileCase:
    """One hostile input and what each surface must give for it.

    `outcome` holds on every surface not named in `overrides`. The surfaces: "api" is
    `EmotionRecognizer.predict_file`, "analysis" `ser_model.serving.analysis.analyze_file` (what the app
    runs), "cli" `python -m ser_model predict`, "app" the running server. `uploadable` is False for
    what a client cannot upload at all (a folder, a missing path).
    """

    name: str
    filename: str
    write: Callable[[Path], None] | None
    outcome: Outcome
    overrides: dict[str, Outcome] = field(default_factory=dict)
    uploadable: bool = True

    def expected(self, surface: str) -> Outcome:
        assert surface in SURFACES, surface
        return self.overrides.get(surface, self.outcome)


@dataclass(frozen=True)
class HostileInput:
    """A case written to disk."""

    case: HostileCase
    path: Path


# --- Writers -------------------------------------------------------------------------------------


def _pcm16(seconds: float = 1.0, rate: int = SR, seed: int = 0) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        sf.write(path, speechlike(seconds, rate, seed=seed), rate, subtype="PCM_16")

    return write


def write_zero_bytes(path: Path) -> None:
    path.touch()


def write_header_only(path: Path) -> None:
    """A 44-byte WAV header whose data chunk promises 1 s of samples that are not there."""
    _pcm16()(path)
    path.write_bytes(path.read_bytes()[:44])


def write_truncated(path: Path) -> None:
    """A 2 s WAV cut off after 1 s and half a sample, as an interrupted download leaves it."""
    _pcm16(2.0)(path)
    path.write_bytes(path.read_bytes()[: 44 + 2 * SR + 1])


def write_random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def write_text(path: Path) -> None:
    path.write_text("This is a shopping list, not a song.\nmilk\neggs\n" * 40)


def write_aiff(path: Path) -> None:
    sf.write(path, speechlike(1.0), SR, format="AIFF", subtype="PCM_16")


def write_10_ms(path: Path) -> None:
    sf.write(path, speechlike(0.01), SR, subtype="PCM_16")


def write_digital_silence(path: Path) -> None:
    sf.write(path, np.zeros(2 * SR, np.int16), SR, subtype="PCM_16")


def write_float_wav(path: Path, value: float, index: int = SR // 2) -> None:
    """1 s of speech as 32-bit float WAV with `value` at sample `index` (NaN, inf, ...)."""
    signal = speechlike(1.0)
    signal[index] = value
    sf.write(path, signal, SR, subtype="FLOAT")


def _float_wav_with(value: float) -> Callable[[Path], None]:
    return lambda path: write_float_wav(path, value)


def write_clipped(path: Path) -> None:
    """Speech driven 26 dB into full-scale clipping: flat tops at +-1."""
    sf.write(path, np.clip(20 * speechlike(1.0), -1.0, 1.0), SR, subtype="PCM_16")


def write_float_overs(path: Path) -> None:
    """A float WAV that goes 12 dB over full scale, as float mixes may (PCM cannot)."""
    sf.write(path, 4 * speechlike(1.0) / np.abs(speechlike(1.0)).max(), SR, subtype="FLOAT")


def write_8_bit(path: Path) -> None:
    sf.write(path, speechlike(1.0), SR, subtype="PCM_U8")


def write_float32(path: Path) -> None:
    sf.write(path, speechlike(1.0), SR, subtype="FLOAT")


def write_6_channels(path: Path) -> None:
    """5.1 at 48 kHz, a different signal in each channel."""
    frames = np.stack([speechlike(1.0, 48_000, seed=channel) for channel in range(6)], axis=1)
    sf.write(path, frames, 48_000, subtype="PCM_16")


def write_directory(path: Path) -> None:
    path.mkdir()


def write_three_hours(path: Path, rate: int = 8000) -> None:
    """A WAV whose header declares 3 h of 8 kHz 16-bit mono: 1 s of speech, then a sparse region
    of zeros (`truncate` extends the file without writing, so it costs no disk space or time)."""
    speech = (speechlike(1.0, rate) * 32767).astype("<i2").tobytes()
    data_bytes = THREE_HOURS * rate * 2
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    # The canonical 44-byte header: a 16-byte fmt chunk (PCM = 1, channels, rate, byte rate, block
    # align, bits per sample), then the data chunk.
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    with open(path, "wb") as f:
        f.write(header + speech)
        f.truncate(len(header) + data_bytes)


# --- The corpus ----------------------------------------------------------------------------------

NOT_AUDIO = r": it is not a supported audio file or it is corrupt\."
NOT_FINITE = r" contains NaN or infinite sample values\."
# The minimum durations in the sentences are the tiny test model's (conftest.TINY: 0.1 s).
CASES = [
    HostileCase("zero_bytes", "empty.wav", write_zero_bytes,
                error(r"^Cannot read 'empty\.wav': the file is empty \(0 bytes\)\.$")),
    # Every surface streams the file through `predict_file`, which reads the duration from the header first.
    HostileCase("header_only", "header_only.wav", write_header_only,
                error(r"^'header_only\.wav' is too short: 0\.000 s, while the minimum is 0\.1 s\.$")),
    # Decision (as in test_audio_io): the samples that are present load.
    HostileCase("truncated", "truncated.wav", write_truncated, prediction(1.0)),
    HostileCase("random_bytes", "random.wav", write_random_bytes, error(r"^Cannot read 'random\.wav'" + NOT_AUDIO)),
    HostileCase("text_as_mp3", "notes.mp3", write_text, error(r"^Cannot read 'notes\.mp3'" + NOT_AUDIO)),
    HostileCase("aiff_as_wav", "really_aiff.wav", write_aiff, prediction(1.0)),
    HostileCase("10_ms", "blip.wav", write_10_ms,
                error(r"'blip\.wav' is too short: 0\.010 s, while the minimum is 0\.1 s\.$")),
    HostileCase("digital_silence", "silence.wav", write_digital_silence,
                error(r"^The audio in 'silence\.wav' is silent or a steady sound such as hum or noise, "
                      r"with no speech in it\.$")),
    HostileCase("nan", "nan.wav", _float_wav_with(np.nan), error(r"^The audio in 'nan\.wav'" + NOT_FINITE)),
    HostileCase("inf", "inf.wav", _float_wav_with(-np.inf), error(r"^The audio in 'inf\.wav'" + NOT_FINITE)),
    HostileCase("huge_float", "huge.wav", _float_wav_with(1e30),
                error(r"^The audio in 'huge\.wav' has samples as large as 1\.0e\+30, far beyond full scale")),
    HostileCase("full_scale_clipping", "clipped.wav", write_clipped, prediction(1.0)),
    HostileCase("float_overs", "overs.wav", write_float_overs, prediction(1.0)),
    HostileCase("8_khz", "8khz.wav", _pcm16(rate=8000), prediction(1.0)),
    HostileCase("96_khz", "96khz.wav", _pcm16(rate=96_000), prediction(1.0)),
    HostileCase("8_bit", "8bit.wav", write_8_bit, prediction(1.0)),
    HostileCase("32_bit_float", "float32.wav", write_float32, prediction(1.0)),
    HostileCase("6_channels", "6ch.wav", write_6_channels, prediction(1.0)),
    # The CLI searches a folder for audio files rather than reading it as one: an empty folder,
    # even one named like a file, is a warning on stderr and gives no result.
    HostileCase("directory", "folder.wav", write_directory,
                error(r"^Cannot read 'folder\.wav': it is a directory, not an audio file\.$"),
                {"cli": warning(r"^warning: no audio files in folder \S*folder\.wav$")}, uploadable=False),
    # The CLI checks its paths before it loads the model: a missing one is a mistyped argument, and the
    # sentence gives it as it was typed.
    HostileCase("missing", "missing.wav", None, error(r"^File not found: 'missing\.wav'\.$"),
                {"cli": refused(r"^error: No such file or folder: '\S*missing\.wav'\.$")}, uploadable=False),
    # Refused from the header, before decoding, with MAX_SECONDS on every surface.
    HostileCase("three_hours", "three_hours.wav", write_three_hours,
                error(r"^'three_hours\.wav' lasts 3 h 00 min, longer than the limit of 10 min\.$")),
]

CASE_NAMES = [case.name for case in CASES]
UPLOADABLE = [case.name for case in CASES if case.uploadable]


def write_corpus(folder: Path) -> dict[str, HostileInput]:
    """Writes every case into `folder` (which must exist) and returns them by case name."""
    written = {}
    for case in CASES:
        path = folder / case.filename
        if case.write is not None:
            case.write(path)
        written[case.name] = HostileInput(case, path)
    return written
