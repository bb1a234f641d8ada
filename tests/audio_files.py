"""Audio files with a known defect, shared by the tests of the CLI, the API and the app."""

from pathlib import Path

import soundfile as sf

from .conftest import speechlike


def write_truncated_wav(path: Path, seconds: float = 3.0, kept: float = 0.5) -> Path:
    """A 16-bit WAV whose header promises `seconds` of audio, cut after `kept` of its data: what a
    recorder that crashed, or a partial download, leaves behind."""
    sf.write(path, speechlike(seconds), 16_000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: 44 + int((len(data) - 44) * kept) // 2 * 2])
    return path


TRUNCATED_SENTENCE = ("'cut.wav' is truncated: its header promises 3.0 s of audio but the file holds only 1.5 s, "
                      "which is what was classified.")
