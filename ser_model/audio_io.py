"""Reading audio files and arrays into float32 mono waveforms at a fixed sampling rate.

soundfile (libsndfile, bundled in its wheel) decodes WAV, AIFF, FLAC, Ogg Vorbis/Opus and MP3 with
no system packages and detects the format from the file's content, so a misnamed file still loads.
Everything else (m4a/AAC, webm, ...) goes through the `ffmpeg` binary when it is installed.
Resampling uses soxr: `torchaudio.functional.resample` takes about a second per clip for awkward
rate pairs such as TESS's 24,414 Hz, soxr about 5 ms (`bench/front_end.py` times decoding and resampling).

Every failure is an `AudioError` whose message is one sentence naming the file by its base name.
"""

import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import soundfile as sf
import soxr

from .audio_formats import AUDIO_EXTENSIONS, FFMPEG_EXTENSIONS
from .configuration import silence_message, too_short_message
from .errors import InputError

__all__ = [
    "AUDIO_EXTENSIONS",
    "FFMPEG_EXTENSIONS",
    "AudioError",
    "AudioSource",
    "StreamConverter",
    "audio_duration",
    "check_duration",
    "format_duration",
    "load_audio",
    "open_audio",
    "silence_error",
    "stream_audio",
    "to_mono_16k",
    "validate_waveform",
]

# The no-speech and too-short sentences come from `configuration.py`, a Hub file, so
# that the feature extractor of a model loaded from the Hub refuses the same audio in the same words.
# Samples beyond this magnitude are garbage, not audio (a corrupt float file): full scale is 1.0,
# and even 32-bit integer PCM stored as float stays below 2.2e9. They are refused before any
# arithmetic: float32 resampling (soxr) turns samples from about 1e37 up into NaN, and a float32
# downmix overflows to inf near 3.4e38, so audio whose samples are all finite would otherwise be
# reported as containing NaN or infinite values.
MAX_SAMPLE_MAGNITUDE = 1e20

_FFMPEG_INSTALL_HINT = "apt-get install ffmpeg"


class AudioError(InputError):
    """Bad or unreadable audio; `str(err)` is one sentence a person understands."""


def load_audio(path, sampling_rate=16000, max_seconds=None, min_seconds=0.25) -> np.ndarray:
    """
    Reads a whole audio file as a validated float32 mono waveform.

    Args:
        path (`str` or `os.PathLike`):
            The audio file; any format soundfile reads, or any format FFmpeg reads when installed.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Sampling rate of the returned waveform, in Hz.
        max_seconds (`float`, *optional*):
            Longest accepted duration. Checked from the header before decoding when the format
            records it, so a multi-hour file is refused at once. No limit when `None`.
        min_seconds (`float`, *optional*, defaults to 0.25):
            Shortest accepted duration.

    Returns:
        `np.ndarray` of shape `(num_samples,)`, float32, contiguous.

    Raises:
        `AudioError`: the file is missing, unreadable, too long, too short or not finite. Whether it holds
            speech is the classifier's question (`has_speech`), asked of what the model would hear.
    """
    with open_audio(path, sampling_rate, max_seconds=max_seconds) as audio:
        blocks = list(audio.blocks)
    waveform = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    return _validate(waveform, sampling_rate, min_seconds, subject=f"The audio in '{audio.name}'")


class AudioSource:
    """
    An audio file opened once: what its header says, and its samples as a stream of blocks.

    Decoding, downmixing and resampling are all incremental, so memory stays bounded whatever the
    file's length; the concatenated blocks match `load_audio` (without its silence check, which is
    the caller's job here). Close it (or use it in a `with` block) when done with the blocks early.

    Attributes:
        name (`str`): the file's base name, as the error sentences name it.
        duration (`float` or `None`): its length in seconds from the header; `None` where the
            format records none (FFmpeg formats without a container duration).
        notice (`str` or `None`): the sentence for a WAV that holds less audio than its header
            promises (`_truncation_notice`), else `None`.
        blocks (`Iterator[np.ndarray]`): float32 mono blocks at the requested rate, each of the
            block length but the last, which is shorter.
    """

    def __init__(self, name: str, duration: Optional[float], notice: Optional[str], blocks: Iterator[np.ndarray],
                 resources=()):
        self.name, self.duration, self.notice, self.blocks = name, duration, notice, blocks
        self._resources = resources

    def close(self) -> None:
        self.blocks.close()
        for resource in self._resources:
            resource.close()

    def __enter__(self) -> "AudioSource":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_audio(path, sampling_rate=16000, max_seconds=None, block_seconds=30.0) -> AudioSource:
    """
    Opens an audio file once for everything a prediction needs of it: its duration, a truncation
    notice and its samples, decoded block by block.

    Args:
        path (`str` or `os.PathLike`):
            The audio file; any format soundfile reads, or any format FFmpeg reads when installed.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Sampling rate of the blocks, in Hz.
        max_seconds (`float`, *optional*):
            Longest accepted duration: checked here from the header when the format records it, else
            while the blocks are decoded. No limit when `None`.
        block_seconds (`float`, *optional*, defaults to 30.0):
            Length of each block; every block has `round(block_seconds * sampling_rate)` samples
            except the last, which is shorter.

    Returns:
        `AudioSource`.

    Raises:
        `AudioError`: the file is missing, unreadable or too long here; NaN or infinite samples (or
        a length beyond `max_seconds` that the header did not tell) when the bad block is reached.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    path = _checked_path(path)
    block_samples = max(1, round(block_seconds * sampling_rate))
    # One open file serves the WAV header's promise, libsndfile's header and the decoding.
    raw = open(path, "rb")
    sound = None
    try:
        promised = _wav_promised_frames(raw)
        raw.seek(0)
        sound = _open_soundfile(raw)
        if sound is None:
            duration, notice, ffmpeg = _ffprobe_duration(path), None, _require_ffmpeg(path)
        else:
            duration, notice = sound.frames / sound.samplerate, _truncation_notice(path, sound, promised)
        if max_seconds is not None and duration is not None:
            check_duration(duration, max_seconds=max_seconds, subject=f"'{path.name}'")
    except BaseException:
        for resource in (sound, raw):
            if resource is not None:
                resource.close()
        raise
    if sound is None:
        raw.close()
        chunks, resources = _ffmpeg_chunks(ffmpeg, path, sampling_rate, block_samples), ()
    else:
        chunks, resources = _soundfile_chunks(sound, raw, path, sampling_rate, block_samples), (sound, raw)
    blocks = _reblock(chunks, block_samples)
    if max_seconds is not None and duration is None:
        # Formats without a duration in the header are bounded while decoding instead.
        blocks = _bounded(blocks, max_seconds, sampling_rate, path)
    return AudioSource(path.name, duration, notice, blocks, resources)


def stream_audio(path, sampling_rate=16000, block_seconds=30.0) -> Iterator[np.ndarray]:
    """
    The blocks of `open_audio` alone: the file decoded block by block at `sampling_rate`.

    Raises:
        `AudioError`: the file is missing or unreadable (at the call), or contains NaN or infinite
        samples (when the bad block is reached).
    """
    return open_audio(path, sampling_rate, block_seconds=block_seconds).blocks


def audio_duration(path) -> float:
    """
    Duration of an audio file in seconds, read from the header where the format records it.

    Args:
        path (`str` or `os.PathLike`):
            The audio file.

    Returns:
        `float`: the duration in seconds. Files whose header gives none are decoded to count.

    Raises:
        `AudioError`: the file is missing or unreadable.
    """
    with open_audio(path) as audio:
        if audio.duration is not None:
            return audio.duration
        return sum(len(block) for block in audio.blocks) / 16000


def to_mono_16k(samples: np.ndarray, orig_sampling_rate: int, sampling_rate=16000) -> np.ndarray:
    """
    Converts an in-memory array (e.g. Gradio's `(rate, int16 array)`) to a float32 mono waveform.

    Args:
        samples (`np.ndarray` of shape `(num_samples,)` or `(num_samples, num_channels)`):
            Integer PCM (scaled to [-1, 1]) or floating-point samples, channels last.
        orig_sampling_rate (`int`):
            Sampling rate of `samples`, in Hz.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Sampling rate of the returned waveform, in Hz.

    Returns:
        `np.ndarray` of shape `(num_samples_out,)`, float32, contiguous; channels are averaged.

    Raises:
        `AudioError`: the array has an unsupported dtype or shape, a rate is not positive, or the
        samples are not finite or far beyond full scale.
    """
    waveform = _mono_float32(samples, orig_sampling_rate, sampling_rate)
    if orig_sampling_rate != sampling_rate:
        waveform = soxr.resample(waveform, orig_sampling_rate, sampling_rate, quality="HQ")
    return np.ascontiguousarray(waveform, dtype=np.float32)


class StreamConverter:
    """
    `to_mono_16k` for consecutive chunks of one stream (a microphone's), with one resampler for the
    whole stream: resampling each chunk on its own restarts the filter at every boundary, an error
    of about 0.01 there on a 48 kHz tone; the stream's filter state carries across, so the chunks
    come out as the whole audio resampled at once, about 30 ms later (the filter's delay).

    Args:
        sampling_rate (`int`, *optional*, defaults to 16000): the rate of the converted chunks, in Hz.
    """

    def __init__(self, sampling_rate: int = 16000):
        self.sampling_rate = sampling_rate
        self._orig_sampling_rate: Optional[int] = None
        self._resampler: Optional[soxr.ResampleStream] = None

    def convert(self, samples: np.ndarray, orig_sampling_rate: int) -> np.ndarray:
        """The next chunk as float32 mono at `sampling_rate`; a chunk at another rate than the last
        one's starts a new stream.

        Raises:
            `AudioError`: as `to_mono_16k`.
        """
        waveform = _mono_float32(samples, orig_sampling_rate, self.sampling_rate)
        if orig_sampling_rate != self._orig_sampling_rate:
            self._orig_sampling_rate = orig_sampling_rate
            self._resampler = None if orig_sampling_rate == self.sampling_rate else soxr.ResampleStream(
                orig_sampling_rate, self.sampling_rate, num_channels=1, dtype="float32", quality="HQ")
        if self._resampler is not None:
            waveform = self._resampler.resample_chunk(waveform)
        return np.ascontiguousarray(waveform, dtype=np.float32)

    def flush(self) -> np.ndarray:
        """What the resampler still holds (its delay's worth of samples), once the stream has ended."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        return np.ascontiguousarray(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))


def _mono_float32(samples, orig_sampling_rate, sampling_rate) -> np.ndarray:
    """Checks an in-memory array and its rates, and gives it as float32 mono at its own rate."""
    if not orig_sampling_rate > 0 or not sampling_rate > 0:
        raise AudioError(
            f"Sampling rates must be positive, got {orig_sampling_rate} Hz and {sampling_rate} Hz."
        )
    samples = np.asarray(samples)
    if samples.ndim not in (1, 2):
        raise AudioError(
            f"Audio must be shaped (samples,) or (samples, channels), got shape {samples.shape}."
        )
    if samples.dtype.kind == "f":
        # Before the cast, which would turn float64 values beyond 3.4e38 into inf; integer PCM is
        # always finite and within range.
        _check_samples(samples, subject="The audio")
    return _downmix(_to_float32(samples))


def validate_waveform(waveform: np.ndarray, sampling_rate: int, min_seconds=0.25) -> np.ndarray:
    """
    Checks that a mono waveform is usable: not empty, finite and long enough. Whether it holds speech is
    the classifier's question (`has_speech`), asked of each window the model would hear.

    Args:
        waveform (`np.ndarray` of shape `(num_samples,)`):
            Mono samples in [-1, 1].
        sampling_rate (`int`):
            Sampling rate of `waveform`, in Hz.
        min_seconds (`float`, *optional*, defaults to 0.25):
            Shortest accepted duration.

    Returns:
        `np.ndarray`: `waveform`, unchanged.

    Raises:
        `AudioError`: one sentence saying which check failed.
    """
    return _validate(np.asarray(waveform), sampling_rate, min_seconds, subject="The audio")


def check_duration(seconds, min_seconds=0.0, max_seconds=None, subject="The audio") -> None:
    """
    Raises `AudioError` when a duration is outside the accepted range.

    Args:
        seconds (`float`): the duration to check.
        min_seconds (`float`, *optional*, defaults to 0.0): shortest accepted duration.
        max_seconds (`float`, *optional*): longest accepted duration; no limit when `None`.
        subject (`str`, *optional*, defaults to `"The audio"`): how the sentence names the audio.
    """
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError(
            f"{subject} lasts {format_duration(seconds)}, longer than the limit of {format_duration(max_seconds)}."
        )
    if seconds < min_seconds:
        raise AudioError(too_short_message(subject, seconds, min_seconds))


def format_duration(seconds) -> str:
    """'2 h 05 min', '12 min 03 s', '10 min' or '4.2 s': a duration as a person reads it."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        minutes, rest = divmod(int(seconds), 60)
        return f"{minutes} min" if rest == 0 else f"{minutes} min {rest:02d} s"
    return f"{seconds:.1f} s"


def _validate(waveform, sampling_rate, min_seconds, subject):
    """`validate_waveform` with the sentences starting with `subject` (e.g. naming the file)."""
    if waveform.ndim != 1:
        raise AudioError(f"{subject} must be a mono 1-D waveform, got shape {waveform.shape}.")
    if waveform.size == 0:
        raise AudioError(f"{subject} is empty: it contains no samples.")
    if not np.isfinite(waveform).all():
        raise AudioError(f"{subject} contains NaN or infinite sample values.")
    check_duration(waveform.size / sampling_rate, min_seconds, subject=subject)
    return waveform


def silence_error(subject: str = "The audio") -> AudioError:
    """The one sentence for audio without speech (`has_speech`), whichever check finds it."""
    return AudioError(silence_message(subject))


def _checked_path(path) -> Path:
    """Refuses paths that cannot be an audio file, before any decoder sees them."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"File not found: '{path.name}'.")
    if path.is_dir():
        raise AudioError(f"Cannot read '{path.name}': it is a directory, not an audio file.")
    if not path.is_file():
        raise AudioError(f"Cannot read '{path.name}': it is not a regular file.")
    if path.stat().st_size == 0:
        raise AudioError(f"Cannot read '{path.name}': the file is empty (0 bytes).")
    return path


def _corrupt_error(path) -> AudioError:
    return AudioError(
        f"Cannot read '{path.name}': it is not a supported audio file or it is corrupt."
    )


def _open_soundfile(file) -> Optional[sf.SoundFile]:
    """Opens `file` (a binary file object) with libsndfile, or returns `None` when libsndfile does not
    know the format."""
    try:
        return sf.SoundFile(file)
    except sf.SoundFileError:
        return None


def _truncation_notice(path, sound, promised) -> Optional[str]:
    """The sentence for a WAV that holds less audio than its header promises (`promised` frames), else None.

    libsndfile quietly clamps such a file's frame count to the data present, so a cut-off recording
    would pass as a shorter clip without anyone knowing. The samples present are still used (an
    interrupted recording is worth classifying), and the sentence travels with the result
    (`Prediction.notices`), so that the person learns it covers only part of what they sent.
    """
    if sound.format not in ("WAV", "WAVEX") or promised is None or promised <= sound.frames:
        return None
    rate, frames = sound.samplerate, sound.frames
    return (f"'{path.name}' is truncated: its header promises {format_duration(promised / rate)} of audio "
            f"but the file holds only {format_duration(frames / rate)}, which is what was classified.")


def _wav_promised_frames(f) -> Optional[int]:
    """Frames a RIFF WAV's `data` chunk declares, from its `fmt ` block size, read from the binary file
    object `f` at its start; `None` for any other format, or when the header does not say (no data chunk
    found, or the 0 / 0xFFFFFFFF "unknown size" that recorders write while streaming)."""
    block_align = None
    if f.read(4) != b"RIFF" or len(f.read(4)) < 4 or f.read(4) not in (b"WAVE",):
        return None
    while len(header := f.read(8)) == 8:
        chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk == b"fmt " and size >= 14:
            block_align = struct.unpack("<H", f.read(14)[12:14])[0]
            f.seek(size - 14 + size % 2, 1)
        elif chunk == b"data":
            if block_align in (None, 0) or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        else:
            f.seek(size + size % 2, 1)  # chunks are padded to an even size
    return None


def _bounded(blocks, max_seconds, sampling_rate, path) -> Iterator[np.ndarray]:
    """`blocks`, refused as soon as they hold more than `max_seconds` of audio."""
    num_samples = 0
    for block in blocks:
        num_samples += len(block)
        if num_samples > max_seconds * sampling_rate:
            raise AudioError(f"'{path.name}' is longer than the limit of {format_duration(max_seconds)}.")
        yield block


def _soundfile_chunks(sound, raw, path, sampling_rate, block_samples) -> Iterator[np.ndarray]:
    """Reads, downmixes and resamples with libsndfile + soxr, one block at a time, and closes `sound`
    and the file `raw` it reads from at the end."""
    with raw, sound:
        read_frames = max(1, round(block_samples * sound.samplerate / sampling_rate))
        resampler = None
        if sound.samplerate != sampling_rate:
            resampler = soxr.ResampleStream(
                sound.samplerate, sampling_rate, num_channels=1, dtype="float32", quality="HQ"
            )
        while True:
            try:
                frames = sound.read(read_frames, dtype="float32", always_2d=True)
            except sf.SoundFileError as error:
                raise _corrupt_error(path) from error
            _check_samples(frames, subject=f"The audio in '{path.name}'")
            is_last = len(frames) < read_frames
            mono = _downmix(frames)
            if resampler is not None:
                # The stream keeps filter state across blocks, so boundaries leave no seams.
                mono = resampler.resample_chunk(mono, last=is_last)
            yield mono
            if is_last:
                return


def _ffmpeg_executable(tool="ffmpeg") -> Optional[str]:
    """Looked up at each use, so installing FFmpeg needs no restart (and tests can hide it)."""
    return shutil.which(tool)


def _ffmpeg_input(path) -> str:
    # The `file:` protocol stops FFmpeg from reading a name such as `pipe:0` or `http://...`
    # as anything but a local file.
    return f"file:{path.resolve()}"


def _require_ffmpeg(path) -> str:
    """The FFmpeg executable, or the error explaining why `path` cannot be decoded without it."""
    ffmpeg = _ffmpeg_executable()
    if ffmpeg is not None:
        return ffmpeg
    if path.suffix.lower() in FFMPEG_EXTENSIONS:
        raise AudioError(
            f"Cannot decode '{path.name}': this format needs FFmpeg, which is not installed "
            f"({_FFMPEG_INSTALL_HINT})."
        )
    raise _corrupt_error(path)


def _ffmpeg_chunks(ffmpeg, path, sampling_rate, block_samples) -> Iterator[np.ndarray]:
    """Decodes through an FFmpeg pipe to float32 mono at `sampling_rate` (FFmpeg's own downmix)."""
    command = [ffmpeg, "-nostdin", "-v", "error", "-i", _ffmpeg_input(path), "-map", "0:a:0",
               "-f", "f32le", "-ac", "1", "-ar", str(sampling_rate), "-"]
    # FFmpeg's messages go to a file rather than a pipe, which could fill up and stall it.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
        try:
            while chunk := process.stdout.read(4 * block_samples):
                # A partial trailing float is dropped; FFmpeg only writes one when killed.
                samples = np.frombuffer(chunk[: len(chunk) // 4 * 4], dtype="<f4").astype(np.float32)
                yield _check_samples(samples, subject=f"The audio in '{path.name}'")
            if process.wait() != 0:
                log.seek(0)
                details = log.read().decode(errors="replace").strip()
                raise _corrupt_error(path) from RuntimeError(f"ffmpeg failed: {details}")
        finally:
            # Reached early when the caller stops iterating: do not leave FFmpeg running.
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stdout.close()


def _ffprobe_duration(path) -> Optional[float]:
    """Container duration from ffprobe, or `None` when ffprobe is absent or the file has none."""
    ffprobe = _ffmpeg_executable("ffprobe")
    if ffprobe is None:
        return None
    command = [ffprobe, "-v", "error", "-show_entries", "format=duration",
               "-of", "default=noprint_wrappers=1:nokey=1", _ffmpeg_input(path)]
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    try:
        return float(result.stdout.strip())
    except ValueError:
        return None


def _reblock(chunks, block_samples) -> Iterator[np.ndarray]:
    """Regroups variable-size chunks into blocks of exactly `block_samples`, the last shorter."""
    pending = np.zeros(0, dtype=np.float32)
    for chunk in chunks:
        pending = np.concatenate([pending, chunk])
        while len(pending) >= block_samples:
            yield pending[:block_samples]
            pending = pending[block_samples:]
    if len(pending):
        yield pending


def _check_samples(samples, subject) -> np.ndarray:
    """Refuses decoded samples that are not finite or far beyond full scale, before any arithmetic."""
    if not np.isfinite(samples).all():
        raise AudioError(f"{subject} contains NaN or infinite sample values.")
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak > MAX_SAMPLE_MAGNITUDE:
        raise AudioError(
            f"{subject} has samples as large as {peak:.1e}, far beyond full scale (1.0): it is probably corrupt."
        )
    return samples


def _to_float32(samples) -> np.ndarray:
    """Casts to float32, scaling integer PCM to [-1, 1] (unsigned PCM centred on its midpoint)."""
    kind = samples.dtype.kind
    if kind == "f":
        return samples.astype(np.float32, copy=False)
    if kind in "iu":
        half_range = float(2 ** (8 * samples.dtype.itemsize - 1))
        scaled = samples.astype(np.float32)
        if kind == "u":
            scaled -= np.float32(half_range)
        return scaled / np.float32(half_range)
    raise AudioError(
        f"Audio samples must be integer PCM or floating point, got dtype {samples.dtype}."
    )


def _downmix(samples) -> np.ndarray:
    """Averages the channels of a `(num_samples, num_channels)` array; 1-D input is already mono."""
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)
