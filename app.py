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
from pathlib import Path

import gradio as gr

from ser_model.audio_io import AUDIO_EXTENSIONS, AudioError, format_duration
from ser_model.model_info import (accuracy_by_language, clip_status, describe_calibration, describe_training_data,
                                  load_training_corpora, model_source, read_model_json, voice_accuracy)
from ser_model.serving.analysis import (SEGMENT_COLUMNS, RecentResults, analyze_file, draw_pictures,
                                        segment_band_html, segment_rows, sentiment, sentiment_rule, timeline_alt,
                                        write_downloads)
from ser_model.serving.inference import EmotionRecognizer, set_inference_threads
from ser_model.serving.live import MAX_HISTORY_SECONDS, LiveSession, read_chunk
from ser_model.serving.plots import save_png, timeline_figure
from ser_model.serving.prediction import Prediction
from ser_model.serving.wording import describe, describe_rule, describe_voice

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
# Seconds an error or warning toast stays: long enough to read a sentence, and the page keeps the
# sentence beside the input as well, so a toast that has gone leaves nobody wondering.
TOAST_SECONDS = 12
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
# One torch thread per request (unless OMP_NUM_THREADS says otherwise): requests run side by side.
set_inference_threads()
RECOGNIZER = EmotionRecognizer.from_pretrained(MODEL, revision=REVISION)
# Read from the model's own records, so that what the page says of its data and accuracy stays true.
TRAINING_DATA = describe_training_data(load_training_corpora(MODEL, revision=REVISION))
REPORT = read_model_json(MODEL, "evaluation/report.json", revision=REVISION)
VOICE_ACCURACY = voice_accuracy(REPORT)
SPLIT = read_model_json(MODEL, "split.json", revision=REVISION)
# Each prediction waits here for its pictures (the second step), so the file is decoded once. As many
# as the requests that can be running or queued: API clients take the numbers and never the pictures.
RECENT = RecentResults(capacity=CONCURRENCY + QUEUE_SIZE)
# The sentence each refused file got, until the page shows it beside the input (`show_refusal`).
REFUSALS = RecentResults(capacity=CONCURRENCY + QUEUE_SIZE)


def refuse(audio_path: str | None, error: AudioError | str):
    """One log line, and the sentence as a toast that goes away by itself (no traceback: not a fault)."""
    name = Path(audio_path).name if audio_path else "(no file)"
    LOG.info("refused %s: %s", name, error)
    if audio_path:
        REFUSALS.put(audio_path, str(error))
    raise gr.Error(str(error), duration=TOAST_SECONDS, print_exception=False)


def analyze_recording(audio_path: str, progress: gr.Progress):
    """`analyze_file` with the app's limit, its progress bar, and bad audio as a sentence on the page."""
    try:
        return analyze_file(RECOGNIZER, audio_path, max_seconds=MAX_AUDIO_SECONDS,
                            progress=lambda done, total: progress(done / total if total else None,
                                                                  desc="classifying windows"))
    except AudioError as error:
        refuse(audio_path, error)


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
    analysis = analyze_recording(audio_path, progress)
    RECENT.put(audio_path, analysis.prediction)
    for notice in analysis.notices:
        gr.Warning(notice, duration=TOAST_SECONDS)
    return (analysis.prediction.probabilities, analysis.sentiment, analysis.segments, analysis.prediction.to_dict())


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


def show_result(audio_path: str, prediction: dict):
    """Opens the result panel with the headline and the downloads, once `predict` has the numbers."""
    result = Prediction.from_dict(prediction)
    name = Path(audio_path).name
    return (gr.Column(visible=True), "", verdict_markdown(result, f"'{name}'"), *downloads(result, Path(name).stem))


def show_refusal(audio_path: str | None):
    """The refused file's sentence beside the input, where it stays after the toast has gone."""
    reason = REFUSALS.take(audio_path) if audio_path else None
    return f"**Could not classify this file.** {reason or 'The message on the screen says why.'}"


def picture(figure, alt: str, folder: Path, name: str):
    """A figure as the PNG a gr.Image shows, with its alternative text (gr.Plot's is fixed by Gradio)."""
    return gr.Image(value=save_png(figure, folder / f"{name}.png"), alt_text=alt, visible=True)


def draw(audio_path: str, theme: str | None, progress=gr.Progress()):
    """The probability chart, the waveform/spectrogram/MFCC picture and, for long audio, the
    emotion timeline and the segments table (shown only then) of a recording `predict` has classified."""
    # A prediction pushed out of RECENT by a burst of API requests is made again rather than refused.
    prediction = RECENT.take(audio_path) or analyze_recording(audio_path, progress).prediction
    progress(None, desc="drawing")
    pictures = draw_pictures(prediction, RECOGNIZER.labels, dark=theme == "dark")
    folder = result_folder()
    long = pictures.timeline is not None
    timeline = (picture(pictures.timeline, pictures.alt["timeline"], folder, "timeline") if long
                else gr.Image(value=None, visible=False))
    return (picture(pictures.probabilities, pictures.alt["probabilities"], folder, "probabilities"),
            picture(pictures.signal, pictures.alt["signal"], folder, "signal"), timeline, gr.Dataframe(visible=long))


def clear_results():
    """Empties and hides every result panel before anything new is classified, so that an error can
    never leave the previous file's answer on the page."""
    hidden_download = gr.DownloadButton(value=None, visible=False)
    return (gr.Column(visible=False), "", "", None, None, gr.Dataframe(value=[], visible=False), None,
            gr.Image(value=None), gr.Image(value=None), gr.Image(value=None, visible=False),
            hidden_download, hidden_download)


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
    return (gr.Label(value=prediction.probabilities, visible=True), summary, timeline,
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

How it works: a DenseNet reads the log-mel spectrogram and a small CNN the MFCCs; their fused decision is shown.
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
# wrap rather than being cut on a phone; toasts at the bottom
# of the screen, off the title (on a phone they would cover it).
CSS = """
.segment-band { display: flex; height: 2.2em; border-radius: 6px; overflow: hidden; }
.segment { color: white; font-size: 0.85em; line-height: 2.2em; text-align: center; overflow: hidden;
           white-space: nowrap; text-shadow: 0 0 3px rgba(0, 0, 0, 0.6); min-width: 1px; }
.segment-axis { display: flex; justify-content: space-between; font-size: 0.8em; opacity: 0.7; }
#segments th *, #live-segments th * { white-space: normal !important; overflow: visible !important;
                                      text-overflow: clip !important; }
.note { font-size: 0.9em; opacity: 0.85; }
.toast-wrap { top: auto !important; bottom: 1rem !important; }
"""

# Which theme the page is in, for the pictures (a transparent picture drawn in the theme's ink).
THEME_JS = "() => document.body.classList.contains('dark') ? 'dark' : 'light'"
# Brings the results into view (on a phone they open below the inputs and the examples).
SCROLL_TO_RESULTS_JS = """() => {
    const results = document.getElementById('results');
    if (results && results.getBoundingClientRect().top > window.innerHeight * 0.5) {
        results.scrollIntoView({behavior: 'smooth', block: 'start'});
    }
}"""

with gr.Blocks(title="Speech emotion recognition", delete_cache=DELETE_CACHE) as demo:
    gr.Markdown(DESCRIPTION)
    with gr.Accordion("What the percentages mean, and how accurate the model is", open=False, elem_id="about"):
        gr.Markdown(ABOUT_NUMBERS)
    theme = gr.Textbox(visible=False)
    with gr.Tab("Recording or file"):
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
                    emotions = gr.Label(num_top_classes=7, label="Emotion", show_heading=False)
                with gr.Column():
                    sentiment_label = gr.Label(num_top_classes=3, label="Sentiment (positive / neutral / negative)")
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
            with gr.Row():
                download_json = gr.DownloadButton("Download JSON", visible=False, elem_id="download-json")
                download_csv = gr.DownloadButton("Download CSV", visible=False, elem_id="download-csv")
        # The whole prediction for API clients (a gr.State output would break Gradio 6.31's MCP tool,
        # which cannot return State); the pictures are drawn from the server's copy (RECENT).
        prediction = gr.JSON(label="prediction", visible=False)
    with gr.Tab("Live"):
        gr.Markdown(LIVE_DESCRIPTION)
        with gr.Row():
            with gr.Column(scale=1):
                live_audio = gr.Audio(sources=["microphone"], type="filepath", streaming=True, label="Microphone",
                                      elem_id="live-audio")
                live_now = gr.Markdown("Press **Record** to start.", elem_id="live-now")
            with gr.Column(scale=1):
                # No heading: the summary above says "not sure" where the top class alone would overstate.
                live_summary = gr.Markdown(elem_id="live-summary")
                live_overall = gr.Label(num_top_classes=7, label="Whole recording", show_heading=False, visible=False)
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
    # Each input is first cleared of the last result, then classified: the numbers come first and the
    # pictures after (see ser_model.serving.analysis), because /predict is what API clients call, and it
    # answers without waiting for matplotlib. Examples go through the same steps, uncached: Gradio 6.31's
    # example cache cannot replay the segments table's visibility update.
    result_outputs = [results, status, verdict, emotions, sentiment_label, segments, prediction, probabilities,
                      signal, timeline, download_json, download_csv]
    sources = [(record.stop_recording, record, "predict"), (upload.upload, upload, False)]
    if EXAMPLES:
        sources.append((examples.load_input_event.then, upload, False))
    for trigger, source, api_name in sources:
        classified = trigger(clear_results, outputs=result_outputs, api_name=False, queue=False).then(
            predict, inputs=source, outputs=[emotions, sentiment_label, segments, prediction], api_name=api_name,
            api_description=PREDICT_DESCRIPTION, concurrency_limit=CONCURRENCY)
        classified.failure(show_refusal, inputs=source, outputs=status, api_name=False, queue=False)
        shown = classified.success(show_result, inputs=[source, prediction],
                                   outputs=[results, status, verdict, download_json, download_csv], api_name=False)
        shown.success(None, js=SCROLL_TO_RESULTS_JS)
        shown.success(draw, inputs=[source, theme], outputs=[probabilities, signal, timeline, segments],
                      api_name=False, concurrency_limit=CONCURRENCY)
    for source in (upload, record):
        source.clear(clear_results, outputs=result_outputs, api_name=False, queue=False)

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
    demo.launch(server_name=ARGS.host, server_port=ARGS.port, share=ARGS.share, max_file_size=MAX_FILE_SIZE,
                mcp_server=ARGS.mcp or None, css=CSS)
