"""Speech emotion recognition demo: record or upload speech and see the emotion.

    python app.py [--model FOLDER_OR_HUB_ID] [--revision SHA] [--host H] [--port P] [--share] [--mcp]

The model loads once, at start-up: `--model`, else `$SER_MODEL` (a folder or Hub id, with
`$SER_MODEL_REVISION` to pin a commit), else the bundled `model/`. All inference lives in
`ser_model.serving.analysis`; this file only declares the page and wires events.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import numpy as np
import soundfile as sf
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ser_model.audio_io import AUDIO_EXTENSIONS, AudioError, format_duration, stream_audio
from ser_model.model_info import (accuracy_by_language, clip_status, describe_calibration, describe_training_data,
                                  load_training_corpora, model_source, read_model_json, voice_accuracy)
from ser_model.serving.analysis import (SEGMENT_COLUMNS, analyze_file, draw_pictures, segment_band_html, segment_rows,
                                        sentiment, sentiment_rule, timeline_alt, write_downloads)
from ser_model.serving.inference import EmotionRecognizer, set_inference_threads
from ser_model.serving.live import MAX_HISTORY_SECONDS, LiveSession, read_chunk
from ser_model.serving.page_request import PageRequest
from ser_model.serving.plots import save_png, timeline_figure
from ser_model.serving.prediction import Prediction
from ser_model.serving.wording import describe, describe_rule, describe_voice, label_value

# Longest recording the app accepts: long enough for a conversation turn or a voice memo, short
# enough that one request cannot hold a worker for long (10 minutes take about 5 s on 2 CPU cores).
MAX_AUDIO_SECONDS = 600
# Uploads are refused before they reach Python above this: 10 minutes of 48 kHz stereo 24-bit WAV.
MAX_FILE_SIZE = "200mb"
# Requests served at the same time; the rest wait in the queue, so one long file never blocks all.
CONCURRENCY = 4
# Requests that may wait in the queue; beyond it a request is refused at once rather than left to time out.
QUEUE_SIZE = 64
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
# Live mode: the browser sends the microphone's audio every 0.1 s, and once per second of new audio
# the newest window is classified (see ser_model.serving.live). One live session ends after 10 minutes
# so that a forgotten tab does not hold the Space; its timeline keeps the last MAX_HISTORY_SECONDS.
LIVE_TIME_LIMIT = 600
# Above this share of missed audio the live result says so (the first chunk's upload alone misses a little).
LIVE_SKIP_NOTICE = 0.2
# Seconds an error or warning toast stays: long enough to notice a sentence of about 15 words; it need not
# stay to be read, because the page keeps the sentence beside the input (the status line, the headline).
TOAST_SECONDS = 5
# Every file the app writes (pictures, downloads, live recordings) sits in Gradio's upload folder,
# swept hourly of files older than an hour.
DELETE_CACHE = (3600, 3600)
# Audio and the video containers people record on phones (.mp4, .mov, .webm, .mkv, ...): the file
# tab classifies a video's sound track (decoded by FFmpeg, see ser_model.audio_io).
UPLOAD_TYPES = sorted(AUDIO_EXTENSIONS)

# One line per refused input (which file, and why) in the server's log; a fault in the code still
# gets Gradio's full traceback.
LOG = logging.getLogger("ser_model.app")
if not LOG.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    LOG.addHandler(_handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Speech emotion recognition demo (Gradio).")
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: $SER_MODEL, else model/)")
    parser.add_argument("--revision", default=None, help="Hub commit to pin (default: $SER_MODEL_REVISION)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (0.0.0.0 for all interfaces)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public *.gradio.live link")
    parser.add_argument("--mcp", action="store_true", help="also serve the prediction as an MCP tool")
    return parser.parse_args(argv)


# Arguments are read before the model loads (at import, once), and only when run as a script, so
# that tests and Spaces can import `demo` without command-line parsing.
ARGS = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
if ARGS.mcp and importlib.util.find_spec("mcp") is None:
    sys.exit("--mcp needs Gradio's MCP extra, which is not installed: pip install 'gradio[mcp]==6.31.0'")
_default_model, _default_revision = model_source()
MODEL, REVISION = ARGS.model or _default_model, ARGS.revision or _default_revision
# Every core for each forward pass, one pass at a time (unless OMP_NUM_THREADS says otherwise): see
# ser_model.serving.inference; a long upload gets the whole machine between other requests' passes.
set_inference_threads()
# Gradio answers on a pool of threads: one thread of the recognizer's own keeps torch fast (serving.torch_thread).
RECOGNIZER = EmotionRecognizer.from_pretrained(MODEL, revision=REVISION, one_torch_thread=True)
# Read from the model's own records, so that what the page says of its data and accuracy stays true.
TRAINING_DATA = describe_training_data(load_training_corpora(MODEL, revision=REVISION))
REPORT = read_model_json(MODEL, "evaluation/report.json", revision=REVISION)
VOICE_ACCURACY = voice_accuracy(REPORT)
SPLIT = read_model_json(MODEL, "split.json", revision=REVISION)
TRAINING = read_model_json(MODEL, "training.json", revision=REVISION)


def refuse(audio_path: str | None, error: AudioError | str):
    """One log line, and the sentence as a toast that goes away by itself (no traceback: not a fault)."""
    LOG.info("refused %s: %s", Path(audio_path).name if audio_path else "(no file)", error)
    raise gr.Error(str(error), duration=TOAST_SECONDS, print_exception=False)


class Superseded(Exception):
    """Stops a page's classification once a newer input has replaced the one it classifies."""


def analyze_recording(audio_path: str, progress: gr.Progress, wanted: Callable[[], bool] | None = None):
    """`analyze_file` with the app's limit and its progress bar; raises `Superseded` at the next batch of
    windows once `wanted()` says the answer is no longer wanted, so that a replaced long file stops using the CPU."""
    def report(done: float, total: float | None):
        if wanted is not None and not wanted():
            raise Superseded(audio_path)
        progress(done / total if total else None, desc="classifying windows")

    return analyze_file(RECOGNIZER, audio_path, max_seconds=MAX_AUDIO_SECONDS, progress=report)


# What MCP clients and `view_api` read of /predict (Gradio would otherwise join the docstring's lines with commas).
PREDICT_DESCRIPTION = (
    "Classifies the emotion in a recording of speech (audio, or the sound track of a video). It returns four "
    "things. First, the probability of each of the seven emotions. Second, the sentiment: the probabilities of "
    "positive, neutral and negative, each the sum of the probabilities of its emotions. Third, a table of "
    "segments for audio longer than one model window: the start and end in seconds, the emotion and its mean "
    "probability in percent over each run of windows with the same emotion; it is empty for shorter audio. "
    "Fourth, the whole result as JSON, as the downloads and the command line write it: the label, the "
    "probabilities as fractions, the duration, each window's start, end and probabilities, the segments, how the "
    "voice sounds where the model says it, and warnings about a result that covers less than the file promised, "
    "such as a truncated WAV."
)


def predict(audio_path: str | None, progress=gr.Progress()):
    """Classifies the emotion in a recording.

    Args:
        audio_path: an audio file (WAV, FLAC, MP3, OGG/Opus), or a video or m4a/webm file where FFmpeg is installed.
    """
    if not audio_path:
        refuse(None, "Record or upload some speech first.")
    try:
        analysis = analyze_recording(audio_path, progress)
    except AudioError as error:
        refuse(audio_path, error)
    for notice in analysis.notices:
        gr.Warning(notice, duration=TOAST_SECONDS)
    return (analysis.prediction.probabilities, analysis.sentiment, analysis.segments, analysis.prediction.to_dict())


def skip(count: int) -> tuple:
    """Leaves every output of a step as it is: what it holds belongs to an input the page has replaced."""
    return (gr.skip(),) * count


def begin(audio_path: str | None, request: PageRequest):
    """A new input (or none, when cleared): it becomes the page's request, and every result panel is
    emptied and hidden, so that neither an error nor a slower older request can leave another file's answer."""
    request.start(audio_path)
    return clear_results(f"Classifying '{Path(audio_path).name}'…" if audio_path else "")


def drop(audio_path: str | None) -> tuple:
    """One log line for an input the page replaced before its answer, and nothing shown of it."""
    LOG.info("dropped %s: a newer input replaced it", Path(audio_path).name if audio_path else "(no file)")
    return skip(3)


def classify(audio_path: str | None, request: PageRequest, progress=gr.Progress()):
    """The page's first step: the numbers of the current input (as `predict` gives them to API clients, put as
    the page's labels show them: `label_value`), the prediction kept in `request` for the headline and the
    pictures. A request the page has replaced stops and shows nothing."""
    token = request.token_for(audio_path)
    if token is None:
        return drop(audio_path)
    try:
        if not audio_path:
            raise AudioError("Record or upload some speech first.")
        analysis = analyze_recording(audio_path, progress, wanted=lambda: request.is_current(token))
    except Superseded:
        return drop(audio_path)
    except AudioError as error:
        if not request.refuse(token, str(error)):
            return drop(audio_path)
        refuse(audio_path, error)
    if not request.answer(token, analysis.prediction):
        return drop(audio_path)
    for notice in analysis.notices:
        gr.Warning(notice, duration=TOAST_SECONDS)
    return label_value(analysis.prediction.probabilities), label_value(analysis.sentiment), analysis.segments


def result_folder() -> Path:
    """A fresh folder in Gradio's upload folder for one result's files (`DELETE_CACHE` sweeps it)."""
    root = Path(gr.utils.get_upload_folder())
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="result-", dir=root))


def verdict_markdown(prediction: Prediction, source: str) -> str:
    """The headline: the decision worded by the shared rule (`describe`), then what was heard, then
    any warning. Each a line of its own, so that one more short line can follow under the emotion."""
    lines = [f"## {describe(prediction.probabilities)}"]
    if prediction.voice is not None:
        lines.append(describe_voice(prediction.voice, VOICE_ACCURACY))
    lines.append(f"{source}, {format_duration(prediction.duration)}")
    lines += [f"**Warning:** {notice}" for notice in prediction.notices]
    return "\n\n".join(lines)


def downloads(prediction: Prediction, stem: str):
    json_path, csv_path = write_downloads(prediction, RECOGNIZER.labels, result_folder(), stem)
    return gr.DownloadButton(value=str(json_path), visible=True), gr.DownloadButton(value=str(csv_path), visible=True)


def show_result(request: PageRequest):
    """Opens the result panel with the headline and the downloads, once `classify` has the numbers."""
    answered = request.answered()
    if answered is None:
        return skip(5)
    audio_path, prediction = answered
    name = Path(audio_path).name
    return (gr.Column(visible=True), "", verdict_markdown(prediction, f"'{name}'"),
            *downloads(prediction, Path(name).stem))


def show_refusal(request: PageRequest):
    """The refused file's sentence beside the input, where it stays after the toast has gone."""
    reason = request.refusal()
    return gr.skip() if reason is None else f"**Could not classify this file.** {reason}"


def picture(figure, alt: str, folder: Path, name: str):
    """A figure as the PNG a gr.Image shows, with its alternative text (gr.Plot's is fixed by Gradio)."""
    return gr.Image(value=save_png(figure, folder / f"{name}.png"), alt_text=alt, visible=True)


def heard_audio(audio_path: str, folder: Path) -> str | None:
    """What the model heard, to replay: the file decoded again as a stream to a 16 kHz mono 16-bit WAV, at
    most `MAX_AUDIO_SECONDS` long (19 MB), so that neither memory nor the file grows with the upload."""
    rate = RECOGNIZER.sampling_rate
    room = MAX_AUDIO_SECONDS * rate
    path = folder / "heard.wav"
    try:
        with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as wav:
            for block in stream_audio(audio_path, rate):
                block = block[:room]
                wav.write(np.clip(block, -1.0, 1.0))
                room -= len(block)
                if room <= 0:
                    break
    except AudioError as error:  # classified a moment ago, so not expected; the result stands without a player
        LOG.info("no player for %s: %s", Path(audio_path).name, error)
        return None
    return str(path)


def draw(request: PageRequest, theme: str | None, progress=gr.Progress()):
    """The probability chart, the waveform/spectrogram/MFCC picture, the audio as the model heard it and,
    for long audio, the emotion timeline and the segments table (shown only then) of the current input."""
    drawing = request.take_for_drawing()
    if drawing is None:
        return skip(5)
    token, audio_path, prediction = drawing
    progress(None, desc="drawing")
    folder = result_folder()
    heard_path = heard_audio(audio_path, folder)
    heard = gr.Audio(value=heard_path, visible=heard_path is not None)
    pictures = draw_pictures(prediction, RECOGNIZER.labels, dark=theme == "dark")
    long = pictures.timeline is not None
    timeline = (picture(pictures.timeline, pictures.alt["timeline"], folder, "timeline") if long
                else gr.Image(value=None, visible=False))
    outputs = (picture(pictures.probabilities, pictures.alt["probabilities"], folder, "probabilities"),
               picture(pictures.signal, pictures.alt["signal"], folder, "signal"), timeline,
               gr.Dataframe(visible=long), heard)
    return outputs if request.is_current(token) else skip(5)


def clear_results(status: str = ""):
    """Every result panel emptied and hidden, and `status` under the inputs."""
    hidden_download = gr.DownloadButton(value=None, visible=False)
    return (gr.Column(visible=False), status, "", None, None, gr.Dataframe(value=[], visible=False), None,
            gr.Image(value=None), gr.Image(value=None), gr.Image(value=None, visible=False),
            hidden_download, hidden_download, gr.Audio(value=None, visible=False))


def new_live_session() -> LiveSession:
    return LiveSession.for_recognizer(RECOGNIZER, recording=str(result_folder() / "live.pcm"))


def live_step(chunk: str | None, session: LiveSession | None):
    """Adds one chunk of the microphone's stream (a short WAV file) and, once per second of new
    audio, classifies the newest window."""
    if chunk is None:
        return session, gr.skip(), gr.skip(), gr.skip()
    session = session or new_live_session()
    try:
        samples, sampling_rate = read_chunk(chunk)
        window = session.add_chunk(RECOGNIZER, samples, sampling_rate)
    except AudioError as error:
        refuse(None, error)
    if window is None and session.history:
        return session, gr.skip(), gr.skip(), gr.skip()  # between two decisions: only the buffer grew
    clock = format_duration(session.seconds)
    if window is None:
        now = f"**{clock}**: listening…"
    elif window.probabilities is None:
        now = f"**{clock}**: silence"
    else:
        now = f"**{clock}**: {describe(window.probabilities)}"
    history = list(session.history)
    # The chunk's upload folder names it: bench/live_latency.py matches each update to the chunk it answers.
    band = segment_band_html(history, data={"chunk": Path(chunk).parent.name, "heard": f"{session.seconds:.3f}"})
    rows = segment_rows(history)
    return session, now, band, gr.Dataframe(value=rows, visible=bool(rows))


def live_finish(session: LiveSession | None, theme: str | None):
    """The whole recording when the person stops: the overall emotion, the timeline, the recording
    itself to replay, and the downloads."""
    prediction = session.prediction() if session else None
    if prediction is None:
        return (gr.Label(visible=False), "Nothing was classified: speak for at least a second.",
                gr.Image(visible=False), gr.Audio(visible=False), gr.DownloadButton(visible=False),
                gr.DownloadButton(visible=False))
    folder = result_folder()
    timeline = gr.Image(visible=False)
    if len(prediction.windows) > 1:
        figure = timeline_figure(prediction.windows, RECOGNIZER.labels, dark=theme == "dark")
        timeline = picture(figure, timeline_alt(prediction.windows), folder, "live-timeline")
    summary = (f"**Whole recording ({format_duration(prediction.duration)})**: {describe(prediction.probabilities)}; "
               f"{max(sentiment(prediction.probabilities).items(), key=lambda item: item[1])[0]} overall.")
    if session.skipped_fraction() > LIVE_SKIP_NOTICE:
        summary += (f" The server was busy and missed about {session.skipped_fraction():.0%} of the audio; "
                    "upload the recording for a complete result.")
    recording = session.save_recording(folder / "recording.wav")
    return (gr.Label(value=label_value(prediction.probabilities), visible=True), summary, timeline,
            gr.Audio(value=recording, visible=recording is not None), *downloads(prediction, "live-recording"))


# What the live status line says from Record until the first audio arrives: it never claims to be
# listening before it is, so that without a microphone it agrees with the browser's "could not start".
LIVE_STARTING = ("**Starting the microphone…** If no time appears here, this browser has no microphone it may use: "
                 "allow one, or upload a recording in the first tab.")


def live_reset():
    """A fresh session when recording starts; the status line waits for the first audio to say "listening"."""
    return (None, LIVE_STARTING, "", gr.Dataframe(value=[], visible=False), gr.Label(value=None, visible=False), "",
            gr.Image(value=None, visible=False), gr.Audio(value=None, visible=False),
            gr.DownloadButton(value=None, visible=False), gr.DownloadButton(value=None, visible=False))


def example_rows() -> list[dict]:
    """The examples that are present, as listed in `examples/examples.csv` (file, clip, speaker, emotion, corpus)."""
    table = EXAMPLES_DIR / "examples.csv"
    if not table.is_file():
        return []
    with table.open(newline="") as rows:
        return [row for row in csv.DictReader(rows) if (EXAMPLES_DIR / row["file"]).is_file()]


def example_label(row: dict) -> str:
    """'RAVDESS, acted happy: a speaker never heard in training', from the model's own split."""
    return f"{row['corpus']}, acted {row['emotion']}: {clip_status(SPLIT, row['clip'], row['speaker'])}"


def accuracy_lines() -> str:
    rows = accuracy_by_language(REPORT)
    if not rows:
        return "No evaluation report was saved with this model, so its accuracy is not stated here."
    lines = ["Accuracy on test speakers the model never heard (its own evaluation report):", "",
             "| language | accuracy | clips | speakers |", "|---|---|---|---|"]
    lines += [f"| {language} | {accuracy:.0%} | {clips} | {speakers} |" for language, accuracy, clips, speakers in rows]
    return "\n".join(lines)


# What the branches other than Whisper's read (ser_model.modeling: SERMelEncoder, SERMfccEncoder).
BRANCH_WORDS = {"mel": "a DenseNet reads the log-mel spectrogram", "mfcc": "a small CNN reads the MFCCs"}
NUMBER_WORDS = {1: "One", 2: "Two", 3: "Three"}


def millions(count: int) -> str:
    return f"{count / 1e6:.1f} M"


def whisper_words(model, training: dict | None) -> str:
    """The Whisper branch of the loaded model: which checkpoint (from the model's training record), its
    share of the parameters, whether it was trained, and how its layers are pooled (from the config)."""
    config = model.config
    encoder = sum(p.numel() for m in model.modules() if isinstance(m, WhisperEncoder) for p in m.parameters())
    arguments = (training or {}).get("arguments", {})
    checkpoint = Path(arguments.get("speech_encoder") or "").name
    trained = arguments.get("speech_encoder_trainable_layers")
    state = {None: "", 0: ", kept frozen", -1: ", fine-tuned"}.get(trained, f", its top {trained} layers fine-tuned")
    layers = ("every layer's" if config.speech_encoder_hidden_states is None
              else f"{len(config.speech_encoder_hidden_states)} layers'")
    pooled = (f"the mean and standard deviation of {layers} output are pooled"
              if config.speech_encoder_pooling == "concat"
              else f"{layers} outputs are weighted, then their mean and standard deviation pooled")
    name = f"the pretrained {checkpoint}" if checkpoint else "a pretrained Whisper"
    total = sum(p.numel() for p in model.parameters())
    return (f"the encoder of {name} model ({millions(encoder)} of the {millions(total)} parameters{state}) "
            f"reads the audio, and {pooled}")


def describe_architecture(model, training: dict | None) -> str:
    """'Three branches read each window: ...; their embeddings, joined, give the emotion ...', from the
    loaded model's config, so that the page says what runs."""
    config = model.config
    parts = [whisper_words(model, training) if branch == "whisper" else BRANCH_WORDS[branch]
             for branch in sorted(config.branches, key=lambda branch: branch != "whisper")]
    voice = ", and a second head how the voice sounds" if config.voice_head else ""
    if len(parts) == 1:
        return f"{parts[0][0].upper()}{parts[0][1:]}, and gives the emotion{voice}."
    count = NUMBER_WORDS.get(len(parts), str(len(parts)))
    return f"{count} branches read each window: {'; '.join(parts)}. Their embeddings, joined, give the emotion{voice}."


EXAMPLES = example_rows()

DESCRIPTION = """
# Speech emotion recognition
Upload a recording (audio or video), or record yourself, to hear which of seven emotions it carries:
angry, disgust, fear, happy, neutral, sad or surprise.
"""

ABOUT_NUMBERS = f"""
{describe_calibration(REPORT, RECOGNIZER.config.calibration_temperature)} {describe_rule()}

{accuracy_lines()}

Chance is 14% (one in seven). Trained on {TRAINING_DATA}: it is less reliable on spontaneous conversation,
other languages and noisy recordings. **Not for decisions about people.**

How it works: {describe_architecture(RECOGNIZER.model, TRAINING)}
Recordings longer than {RECOGNIZER.config.window_seconds:g} s are read in overlapping windows and get an emotion
timeline, whose segments give each emotion's mean probability over its windows. Up to
{format_duration(MAX_AUDIO_SECONDS)} of audio. The downloads hold the same result, with probabilities as fractions
(0 to 1), in the layouts the API and the command line use.
"""

LIVE_DESCRIPTION = f"""
Press **Record** and speak: every second the emotion of the last {RECOGNIZER.config.window_seconds:g} s
is shown, worded as in the first tab, and the band below grows with the segments. The band and the table
keep the last {format_duration(MAX_HISTORY_SECONDS)}; the whole-recording result, shown when you stop, counts
everything, and the recording stays to replay and download. A live session stops by itself after
{format_duration(LIVE_TIME_LIMIT)}.
"""

# The segment band of the live mode (ser_model.serving.analysis.segment_band_html); table headers that
# wrap rather than being cut on a phone. The microphone list says "No microphone found" whole (Gradio pads
# it so wide that it was cut at every width). Bold words in the page's font: Gradio 6.31's default theme
# takes Source Sans Pro's weight 600 from a 5 kB file that lacks the Latin letters, so bold words and buttons
# fell back to another, larger font; its complete Bold file (shipped, not declared) serves 600 and 700.
CSS = """
.segment-band { display: flex; height: 2.2em; border-radius: 6px; overflow: hidden; }
.segment { color: white; font-size: 0.85em; line-height: 2.2em; text-align: center; overflow: hidden;
           white-space: nowrap; text-shadow: 0 0 3px rgba(0, 0, 0, 0.6); min-width: 1px; }
.segment-axis { display: flex; justify-content: space-between; font-size: 0.8em; opacity: 0.7; }
#segments th *, #live-segments th * { white-space: normal !important; overflow: visible !important;
                                      text-overflow: clip !important; }
.note { font-size: 0.9em; opacity: 0.85; }
.mic-select { padding: 0 var(--spacing-md) !important; max-width: 100%; min-width: max-content; }
@font-face { font-family: 'Source Sans Pro'; font-weight: 600; font-style: normal;
             src: url('static/fonts/SourceSansPro/SourceSansPro-Bold.woff2') format('woff2'); }
@font-face { font-family: 'Source Sans Pro'; font-weight: 700; font-style: normal;
             src: url('static/fonts/SourceSansPro/SourceSansPro-Bold.woff2') format('woff2'); }
"""

# The toasts' place: at the bottom right on a wide screen, off the title and the inputs; at the top on a
# phone, over the title, where they cover neither the inputs, the sentence beside them nor the examples.
# In the page's head as written: the toasts sit outside the app's container, and Gradio scopes the rules
# of `css` inside @media to that container.
HEAD = """<style>
.toast-wrap { top: auto !important; bottom: 1rem !important; }
@media (max-width: 639px) { .toast-wrap { top: 0.5rem !important; bottom: auto !important; } }
</style>"""

# Which theme the page is in, for the pictures (a transparent picture drawn in the theme's ink).
THEME_JS = "() => document.body.classList.contains('dark') ? 'dark' : 'light'"
# Brings the results into view (on a phone they open below the inputs and the examples).
SCROLL_TO_RESULTS_JS = """() => {
    const results = document.getElementById('results');
    if (results && results.getBoundingClientRect().top > window.innerHeight * 0.5) {
        results.scrollIntoView({behavior: 'smooth', block: 'start'});
    }
}"""

# A toast is about the tab it came from: it closes when the visitor turns to another tab.
CLOSE_TOASTS_JS = "() => document.querySelectorAll('[data-testid=\"toast-close\"]').forEach(button => button.click())"

with gr.Blocks(title="Speech emotion recognition", delete_cache=DELETE_CACHE) as demo:
    gr.Markdown(DESCRIPTION)
    with gr.Accordion("What the percentages mean, and how accurate the model is", open=False, elem_id="about"):
        gr.Markdown(ABOUT_NUMBERS)
    theme = gr.Textbox(visible=False)
    with gr.Tab("Recording or file") as file_tab:
        # Upload and record side by side, the same size: neither is hidden behind the other's icon.
        with gr.Row(equal_height=True):
            upload = gr.File(label="Upload audio or video", file_types=UPLOAD_TYPES, type="filepath", elem_id="upload")
            record = gr.Audio(sources=["microphone"], type="filepath", label="Record", elem_id="record")
        status = gr.Markdown(elem_id="status")
        if EXAMPLES:
            examples = gr.Examples(examples=[str(EXAMPLES_DIR / row["file"]) for row in EXAMPLES], inputs=upload,
                                   example_labels=[example_label(row) for row in EXAMPLES],
                                   label="Examples: acted clips held out of training (each says how)")
        # Nothing of the result shows before there is one, and everything goes when a new file comes.
        with gr.Column(visible=False, elem_id="results") as results:
            with gr.Row():
                with gr.Column():
                    # The decision in words, the same rule as the live tab; room for one more line under it.
                    verdict = gr.Markdown(elem_id="verdict")
                    emotions = gr.Label(num_top_classes=7, label="Emotion", show_heading=False, elem_id="emotions")
                with gr.Column():
                    sentiment_label = gr.Label(num_top_classes=3, label="Sentiment (positive / neutral / negative)",
                                               elem_id="sentiment")
                    gr.Markdown(sentiment_rule(), elem_classes="note")
            # The pictures carry their own titles; Gradio's box labels would cover them on a phone.
            with gr.Row():
                probabilities = gr.Image(label="Emotion probabilities", show_label=False, elem_id="probabilities",
                                         interactive=False, buttons=["fullscreen"])
                signal = gr.Image(label="What the model hears", show_label=False, elem_id="signal",
                                  interactive=False, buttons=["fullscreen"])
            timeline = gr.Image(label="Emotion over time", show_label=False, visible=False, elem_id="timeline",
                                interactive=False, buttons=["fullscreen"])
            segments = gr.Dataframe(headers=SEGMENT_COLUMNS, label="Segments", visible=False, interactive=False,
                                    elem_id="segments")
            heard = gr.Audio(label="What the model heard (16 kHz mono)", visible=False, interactive=False,
                             elem_id="heard")
            with gr.Row():
                download_json = gr.DownloadButton("Download JSON", visible=False, elem_id="download-json")
                download_csv = gr.DownloadButton("Download CSV", visible=False, elem_id="download-csv")
        # What /predict returns to API clients as a whole: the page never shows it (a gr.State output
        # would break Gradio 6.31's MCP tool, which cannot return State).
        prediction = gr.JSON(label="prediction", visible=False)
        # The input this visitor's page answers now (see PageRequest): one object per browser session.
        page_request = gr.State(PageRequest())
    with gr.Tab("Live") as live_tab:
        gr.Markdown(LIVE_DESCRIPTION)
        with gr.Row():
            with gr.Column(scale=1):
                live_audio = gr.Audio(sources=["microphone"], type="filepath", streaming=True, label="Microphone",
                                      elem_id="live-audio")
                live_now = gr.Markdown("Press **Record** to start.", elem_id="live-now")
            with gr.Column(scale=1):
                # No heading: the summary above says "not sure" where the top class alone would overstate.
                live_summary = gr.Markdown(elem_id="live-summary")
                live_overall = gr.Label(num_top_classes=7, label="Whole recording", show_heading=False, visible=False,
                                        elem_id="live-overall")
        live_band = gr.HTML(elem_id="live-band")
        live_timeline = gr.Image(label="Emotion over time (live)", show_label=False, visible=False,
                                 elem_id="live-timeline", interactive=False, buttons=["fullscreen"])
        live_segments = gr.Dataframe(headers=SEGMENT_COLUMNS, label="Segments so far", interactive=False,
                                     visible=False, elem_id="live-segments")
        live_recording = gr.Audio(label="Your recording (as the model heard it: 16 kHz mono)", visible=False,
                                  interactive=False, elem_id="live-recording")
        with gr.Row():
            live_json = gr.DownloadButton("Download JSON", visible=False, elem_id="live-download-json")
            live_csv = gr.DownloadButton("Download CSV", visible=False, elem_id="live-download-csv")
        live_state = gr.State(None)

    demo.load(None, outputs=theme, js=THEME_JS)
    for tab in (file_tab, live_tab):
        tab.select(None, js=CLOSE_TOASTS_JS, api_name=False)
    # API clients and MCP call /predict, the numbers alone, without the page's steps below: the model's
    # probabilities as they are, where the page's labels get `label_value` (never 100% or 0% on screen).
    gr.on([], predict, inputs=record, outputs=[emotions, sentiment_label, segments, prediction], api_name="predict",
          api_description=PREDICT_DESCRIPTION, concurrency_limit=CONCURRENCY, concurrency_id="classify")
    # On the page, each input first becomes the page's request and clears the last result, then is
    # classified; the numbers come first and the pictures after, because matplotlib takes a while. Three
    # sources (recording, upload, example) run the same chain, and an input may come while an older one is
    # still being classified: every step runs whatever else is pending ("multiple": "once" would drop the
    # new input's step while the old one's runs), and checks `page_request`, so only the current input's
    # answer is shown. The progress shows on the status line under the inputs, where the visitor is
    # looking: the result panel stays hidden until there is a result. Examples go through the same steps,
    # uncached: Gradio 6.31's example cache cannot replay the segments table's visibility update.
    result_outputs = [results, status, verdict, emotions, sentiment_label, segments, prediction, probabilities,
                      signal, timeline, download_json, download_csv, heard]
    steps = dict(api_name=False, trigger_mode="multiple")
    sources = [(record.stop_recording, record), (upload.upload, upload)]
    if EXAMPLES:
        sources.append((examples.load_input_event.then, upload))
    for trigger, source in sources:
        classified = trigger(begin, inputs=[source, page_request], outputs=result_outputs, queue=False, **steps).then(
            classify, inputs=[source, page_request], outputs=[emotions, sentiment_label, segments],
            show_progress_on=status, concurrency_limit=CONCURRENCY, concurrency_id="classify", **steps)
        classified.failure(show_refusal, inputs=page_request, outputs=status, queue=False, **steps)
        shown = classified.success(show_result, inputs=page_request,
                                   outputs=[results, status, verdict, download_json, download_csv], **steps)
        shown.success(None, js=SCROLL_TO_RESULTS_JS, **steps)
        shown.success(draw, inputs=[page_request, theme], outputs=[probabilities, signal, timeline, segments, heard],
                      concurrency_limit=CONCURRENCY, concurrency_id="draw", **steps)
    for source in (upload, record):
        source.clear(begin, inputs=[source, page_request], outputs=result_outputs, queue=False, **steps)

    live_outputs = [live_state, live_now, live_band, live_segments]
    live_finished = [live_overall, live_summary, live_timeline, live_recording, live_json, live_csv]
    live_audio.start_recording(live_reset, outputs=live_outputs + live_finished, api_name=False, queue=False)
    # Live chunks have their own queue, apart from uploads, and are handled one at a time, in order:
    # each changes its session, and a chunk costs milliseconds except once a second (one window).
    # stream_every=0.1 is what Gradio 6.31's audio frontend sends anyway; LiveSession decides each second.
    live_audio.stream(live_step, inputs=[live_audio, live_state], outputs=live_outputs, api_name=False,
                      stream_every=0.1, time_limit=LIVE_TIME_LIMIT, concurrency_limit=1,
                      concurrency_id="live", show_progress="hidden")
    live_audio.stop_recording(live_finish, inputs=[live_state, theme], outputs=live_finished, api_name=False,
                              concurrency_id="live")

demo.queue(max_size=QUEUE_SIZE)

if __name__ == "__main__":
    # Quiet: Gradio's own start-up lines say to "set share=True in launch()"; this script's way is --share.
    demo.launch(server_name=ARGS.host, server_port=ARGS.port, share=ARGS.share, max_file_size=MAX_FILE_SIZE,
                mcp_server=ARGS.mcp or None, css=CSS, head=HEAD, quiet=True, prevent_thread_lock=True)
    public = f" and {demo.share_url}" if demo.share_url else "; run `python app.py --share` for a public link"
    print(f"Running on {demo.local_url}{public}", flush=True)
    demo.block_thread()
