"""Speech emotion recognition demo: record or upload speech and see the emotion.

    python app.py [--model FOLDER_OR_HUB_ID] [--revision SHA] [--host H] [--port P] [--share] [--mcp]

The model loads once, at start-up: `--model`, else `$SER_MODEL` (a folder or Hub id, with
`$SER_MODEL_REVISION` to pin a commit), else the bundled `model/`. All inference lives in
`ser_model.serving.analysis`; this file only declares the page and wires events.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import gradio as gr

from ser_model.audio_io import AudioError, format_duration
from ser_model.cli import model_source
from ser_model.model_info import describe_training_data, load_training_corpora
from ser_model.serving.analysis import (NOT_SURE_BELOW, SEGMENT_COLUMNS, RecentPredictions, analyze_file, describe,
                                        draw_pictures, segment_band_html, segment_rows, sentiment)
from ser_model.serving.inference import EmotionRecognizer, set_inference_threads
from ser_model.serving.live import MAX_HISTORY_SECONDS, LiveSession, read_chunk
from ser_model.serving.plots import timeline_figure

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
# Read from the model's own training record, so the page's sentence about its data stays true.
TRAINING_DATA = describe_training_data(load_training_corpora(MODEL, revision=REVISION))
# Each prediction waits here for its pictures (the second step), so the file is decoded once. As many
# as the requests that can be running or queued: API clients take the numbers and never the pictures.
RECENT = RecentPredictions(capacity=CONCURRENCY + QUEUE_SIZE)


def analyze_recording(audio_path: str, progress: gr.Progress):
    """`analyze_file` with the app's limit, its progress bar, and bad audio as a sentence on the page."""
    try:
        return analyze_file(RECOGNIZER, audio_path, max_seconds=MAX_AUDIO_SECONDS,
                            progress=lambda done, total: progress(done / total if total else None,
                                                                  desc="classifying windows"))
    except AudioError as error:
        # duration=None: the sentence stays until dismissed, so nobody misses why nothing appeared.
        raise gr.Error(str(error), duration=None) from None


def predict(audio_path: str | None, progress=gr.Progress()):
    """Classifies the emotion in a recording.

    Args:
        audio_path: an audio file (WAV, FLAC, MP3, OGG/Opus; m4a/webm where FFmpeg is installed).

    Returns:
        emotions: the top emotion and the probability of each of the 7; sentiment: the positive /
        neutral / negative summary; segments: start (s), end (s), emotion and mean confidence of each
        run of windows with the same emotion (empty for audio of one window); prediction: the whole
        result as JSON (label, probabilities, duration, each window's start, end and probabilities, and
        warnings: sentences about a result that covers less than the file promised, e.g. a truncated WAV).
    """
    if not audio_path:
        raise gr.Error("Record or upload some speech first.", duration=None)
    analysis = analyze_recording(audio_path, progress)
    RECENT.put(audio_path, analysis.prediction)
    for notice in analysis.notices:
        gr.Warning(notice, duration=None)
    return (analysis.prediction.probabilities, analysis.sentiment, analysis.segments,
            analysis.prediction.to_dict(timeline=True))


def draw(audio_path: str, progress=gr.Progress()):
    """The probability chart, the waveform/spectrogram/MFCC picture and, for long audio, the
    emotion timeline and the segments table (shown only then) of a recording `predict` has classified."""
    # A prediction pushed out of RECENT by a burst of API requests is made again rather than refused.
    prediction = RECENT.take(audio_path) or analyze_recording(audio_path, progress).prediction
    progress(None, desc="drawing")
    pictures = draw_pictures(prediction, RECOGNIZER.labels)
    long = pictures.timeline is not None
    return (pictures.probabilities, pictures.signal, gr.update(value=pictures.timeline, visible=long),
            gr.update(visible=long))


def live_step(chunk: str | None, session: LiveSession | None):
    """Adds one chunk of the microphone's stream (a short WAV file) and, once per second of new
    audio, classifies the newest window."""
    if chunk is None:
        return session, gr.skip(), gr.skip(), gr.skip()
    session = session or LiveSession.for_recognizer(RECOGNIZER)
    try:
        samples, sampling_rate = read_chunk(chunk)
        window = session.add_chunk(RECOGNIZER, samples, sampling_rate)
    except AudioError as error:
        raise gr.Error(str(error)) from None
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
    return session, now, band, segment_rows(history)


def live_finish(session: LiveSession | None):
    """The whole recording when the person stops: the overall emotion and the timeline."""
    prediction = session.prediction() if session else None
    if prediction is None:
        return {}, "Nothing was classified: speak for at least a second.", gr.update(visible=False)
    figure = timeline_figure(prediction.windows, RECOGNIZER.labels) if len(prediction.windows) > 1 else None
    summary = (f"**Whole recording ({format_duration(prediction.duration)})**: {describe(prediction.probabilities)}; "
               f"{max(sentiment(prediction.probabilities).items(), key=lambda item: item[1])[0]} overall.")
    if session.skipped_fraction() > LIVE_SKIP_NOTICE:
        summary += (f" The server was busy and missed about {session.skipped_fraction():.0%} of the audio; "
                    "upload the recording for a complete result.")
    return prediction.probabilities, summary, gr.update(value=figure, visible=figure is not None)


def live_reset():
    """A fresh session when recording starts again."""
    return None, "**0.0 s**: listening…", "", [], {}, "", gr.update(value=None, visible=False)


def example_files() -> list[str]:
    return sorted(str(p) for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in {".wav", ".flac", ".mp3", ".ogg"})


DESCRIPTION = f"""
# 🎭 Speech emotion recognition
Record yourself or upload a recording to hear which of seven emotions it carries: angry, disgust,
fear, happy, neutral, sad or surprise. A DenseNet reads the log-mel spectrogram and a small CNN the
MFCCs; their fused decision is shown below. Recordings longer than
{RECOGNIZER.config.window_seconds:g} s are read in overlapping windows and get an emotion timeline.
Up to {format_duration(MAX_AUDIO_SECONDS)} of audio.

*Trained on {TRAINING_DATA}: it is less reliable on spontaneous conversation, other languages
and noisy recordings. Not for decisions about people.*
"""

LIVE_DESCRIPTION = f"""
Press **Record** and speak: every second the emotion of the last {RECOGNIZER.config.window_seconds:g} s
is shown, and the band below grows with the segments. When the top emotion has less than
{NOT_SURE_BELOW:.0%} probability the page says **not sure** and names the two likeliest. The band and
the table keep the last {format_duration(MAX_HISTORY_SECONDS)}; the whole-recording result, shown when you
stop, counts everything. A live session stops by itself after {format_duration(LIVE_TIME_LIMIT)}.
"""

# The segment band of the live mode (ser_model.serving.analysis.segment_band_html).
CSS = """
.segment-band { display: flex; height: 2.2em; border-radius: 6px; overflow: hidden; }
.segment { color: white; font-size: 0.85em; line-height: 2.2em; text-align: center; overflow: hidden;
           white-space: nowrap; text-shadow: 0 0 3px rgba(0, 0, 0, 0.6); min-width: 1px; }
.segment-axis { display: flex; justify-content: space-between; font-size: 0.8em; opacity: 0.7; }
"""

with gr.Blocks(title="Speech emotion recognition") as demo:
    gr.Markdown(DESCRIPTION)
    with gr.Tab("Recording or file"):
        with gr.Row():
            with gr.Column(scale=1) as input_column:
                audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Speech")
                analyze = gr.Button("Recognise emotion", variant="primary")
            with gr.Column(scale=1):
                emotions = gr.Label(num_top_classes=7, label="Emotion")
                sentiment_label = gr.Label(num_top_classes=3, label="Sentiment (positive / neutral / negative)")
        # The figures carry their own titles; Gradio's box labels would cover them on a phone.
        with gr.Row():
            probabilities = gr.Plot(label="Emotion probabilities", show_label=False, elem_id="probabilities")
            signal = gr.Plot(label="What the model hears", show_label=False, elem_id="signal")
        timeline = gr.Plot(label="Emotion over time", show_label=False, visible=False, elem_id="timeline")
        segments = gr.Dataframe(headers=SEGMENT_COLUMNS, label="Segments", visible=False, interactive=False,
                                elem_id="segments")
        # The whole prediction for API clients (a gr.State output would break Gradio 6.31's MCP tool,
        # which cannot return State); the pictures are drawn from the server's copy (RECENT).
        prediction = gr.JSON(label="prediction", visible=False)
        if example_files():
            with input_column:
                examples = gr.Examples(examples=example_files(), inputs=audio,
                                       label="Examples (speakers never seen in training)")
    with gr.Tab("Live"):
        gr.Markdown(LIVE_DESCRIPTION)
        with gr.Row():
            with gr.Column(scale=1):
                live_audio = gr.Audio(sources=["microphone"], type="filepath", streaming=True, label="Microphone")
                live_now = gr.Markdown("Press Record to start.", elem_id="live-now")
            with gr.Column(scale=1):
                # No heading: the summary above says "not sure" where the top class alone would overstate.
                live_summary = gr.Markdown(elem_id="live-summary")
                live_overall = gr.Label(num_top_classes=7, label="Whole recording", show_heading=False)
        live_band = gr.HTML(elem_id="live-band")
        live_timeline = gr.Plot(label="Emotion over time (live)", show_label=False, visible=False,
                                elem_id="live-timeline")
        live_segments = gr.Dataframe(headers=SEGMENT_COLUMNS, label="Segments so far", interactive=False)
        live_state = gr.State(None)

    # The numbers come first and the pictures after (see ser_model.serving.analysis): /predict is what API
    # clients call, and it answers without waiting for matplotlib. Examples go through the same two
    # steps, uncached: Gradio 6.31's example cache cannot replay the segments table's visibility update.
    triggers = [(analyze.click, "predict"), (audio.stop_recording, False), (audio.upload, False)]
    if example_files():
        triggers.append((examples.load_input_event.then, False))
    for trigger, api_name in triggers:
        trigger(predict, inputs=audio, outputs=[emotions, sentiment_label, segments, prediction], api_name=api_name,
                concurrency_limit=CONCURRENCY).success(
            draw, inputs=audio, outputs=[probabilities, signal, timeline, segments], api_name=False,
            concurrency_limit=CONCURRENCY)

    live_outputs = [live_state, live_now, live_band, live_segments]
    live_audio.start_recording(live_reset, outputs=live_outputs + [live_overall, live_summary, live_timeline],
                               api_name=False, queue=False)
    # Live chunks have their own queue, apart from uploads, and are handled one at a time, in order:
    # each changes its session, and a chunk costs milliseconds except once a second (one window).
    # stream_every=0.1 is what Gradio 6.31's audio frontend sends anyway; LiveSession decides each second.
    live_audio.stream(live_step, inputs=[live_audio, live_state], outputs=live_outputs, api_name=False,
                      stream_every=0.1, time_limit=LIVE_TIME_LIMIT, concurrency_limit=1,
                      concurrency_id="live", show_progress="hidden")
    live_audio.stop_recording(live_finish, inputs=live_state, outputs=[live_overall, live_summary, live_timeline],
                              api_name=False, concurrency_id="live")

demo.queue(max_size=QUEUE_SIZE)

if __name__ == "__main__":
    demo.launch(server_name=ARGS.host, server_port=ARGS.port, share=ARGS.share, max_file_size=MAX_FILE_SIZE,
                mcp_server=ARGS.mcp or None, css=CSS)
