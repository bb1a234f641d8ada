"""Speech emotion recognition demo: record or upload speech and see the emotion.

    python app.py [--model FOLDER_OR_HUB_ID] [--revision SHA] [--host H] [--port P] [--share] [--mcp]

The model loads once, at start-up: `--model`, else `$SER_MODEL` (a folder or Hub id, with
`$SER_MODEL_REVISION` to pin a commit), else the bundled `model/`. All inference lives in
`ser_model.analysis`; this file only declares the page and wires events.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import gradio as gr

from ser_model.analysis import SEGMENT_COLUMNS, analyze_file, draw_pictures
from ser_model.audio_io import AudioError, format_duration
from ser_model.inference import EmotionRecognizer, Prediction, model_source

# Longest recording the app accepts: long enough for a conversation turn or a voice memo, short
# enough that one request cannot hold a worker for long (10 minutes take about 5 s on 2 CPU cores).
MAX_AUDIO_SECONDS = 600
# Uploads are refused before they reach Python above this: 10 minutes of 48 kHz stereo 24-bit WAV.
MAX_FILE_SIZE = "200mb"
# Requests served at the same time; the rest wait in the queue, so one long file never blocks all.
CONCURRENCY = 4
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"


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
RECOGNIZER = EmotionRecognizer.from_pretrained(ARGS.model or _default_model,
                                               revision=ARGS.revision or _default_revision)


def predict(audio_path: str | None, progress=gr.Progress()):
    """Classifies the emotion in a recording.

    Args:
        audio_path: an audio file (WAV, FLAC, MP3, OGG/Opus; m4a/webm where FFmpeg is installed).

    Returns:
        The probability of each of the 7 emotions; the positive/neutral/negative summary; for audio
        longer than one window, a table of segments; and the whole prediction as JSON (overall and
        per-window probabilities with their start and end in seconds).
    """
    if not audio_path:
        raise gr.Error("Record or upload some speech first.", duration=None)
    try:
        analysis = analyze_file(RECOGNIZER, audio_path, max_seconds=MAX_AUDIO_SECONDS,
                                progress=lambda done, total: progress(done / total if total else None,
                                                                      desc="classifying windows"))
    except AudioError as error:
        # duration=None: the sentence stays until dismissed, so nobody misses why nothing appeared.
        raise gr.Error(str(error), duration=None) from None
    return (
        analysis.prediction.probabilities,
        analysis.sentiment,
        gr.update(value=analysis.segments, visible=analysis.is_long),
        analysis.prediction.to_dict(timeline=True),
    )


def draw(audio_path: str, prediction: dict, progress=gr.Progress()):
    """The probability chart, the waveform/spectrogram/MFCC picture and, for long audio, the
    emotion timeline of a recording `predict` has classified."""
    progress(None, desc="drawing")
    pictures = draw_pictures(RECOGNIZER, audio_path, Prediction.from_dict(prediction))
    return pictures.radar, pictures.signal, gr.update(value=pictures.timeline, visible=pictures.timeline is not None)


def predict_and_draw(audio_path: str):
    """Both steps at once, for the examples, whose answers are cached whole."""
    *numbers, prediction = predict(audio_path)
    return *numbers, *draw(audio_path, prediction)


def example_files() -> list[str]:
    return sorted(str(p) for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in {".wav", ".flac", ".mp3", ".ogg"})


DESCRIPTION = f"""
# 🎭 Speech emotion recognition
Record yourself or upload a recording to hear which of seven emotions it carries: angry, disgust,
fear, happy, neutral, sad or surprise. A DenseNet reads the log-mel spectrogram and a small CNN the
MFCCs; their fused decision is shown below. Recordings longer than
{RECOGNIZER.config.window_seconds:g} s are read in overlapping windows and get an emotion timeline.
Up to {format_duration(MAX_AUDIO_SECONDS)} of audio.

*Trained on acted English speech (RAVDESS, TESS): it is less reliable on spontaneous
conversation, other languages and noisy recordings. Not for decisions about people.*
"""

with gr.Blocks(title="Speech emotion recognition") as demo:
    gr.Markdown(DESCRIPTION)
    with gr.Row():
        with gr.Column(scale=1) as input_column:
            audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Speech")
            analyze = gr.Button("Recognise emotion", variant="primary")
        with gr.Column(scale=1):
            emotions = gr.Label(num_top_classes=7, label="Emotion")
            sentiment = gr.Label(num_top_classes=3, label="Sentiment (positive / neutral / negative)")
    with gr.Row():
        radar = gr.Plot(label="Emotion probabilities")
        signal = gr.Plot(label="What the model hears")
    timeline = gr.Plot(label="Emotion over time", visible=False)
    segments = gr.Dataframe(headers=SEGMENT_COLUMNS, label="Segments", visible=False, interactive=False)
    # The prediction travels from the numbers to the pictures through the page (a gr.State output
    # would break Gradio 6.31's MCP tool, which cannot return State); API clients get it as JSON.
    prediction = gr.JSON(visible=False)
    numbers = [emotions, sentiment, segments]
    pictures = [radar, signal, timeline]
    if example_files():
        with input_column:
            # Lazy caching: each example is classified on its first click, not at start-up.
            gr.Examples(examples=example_files(), inputs=audio, outputs=numbers + pictures, fn=predict_and_draw,
                        cache_examples=True, cache_mode="lazy", label="Examples (speakers never seen in training)")
    # The numbers come first and the pictures after (see ser_model.analysis): /predict is what API
    # clients call, and it answers without waiting for matplotlib.
    for trigger, api_name in ((analyze.click, "predict"), (audio.stop_recording, False), (audio.upload, False)):
        trigger(predict, inputs=audio, outputs=numbers + [prediction], api_name=api_name,
                concurrency_limit=CONCURRENCY).success(
            draw, inputs=[audio, prediction], outputs=pictures, api_name=False, concurrency_limit=CONCURRENCY)

demo.queue(max_size=64)

if __name__ == "__main__":
    demo.launch(server_name=ARGS.host, server_port=ARGS.port, share=ARGS.share, max_file_size=MAX_FILE_SIZE,
                mcp_server=ARGS.mcp or None)
