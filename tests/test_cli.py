import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from ser_model import cli, model_info
from ser_model.cli import main
from ser_model.serving.prediction import CSV_COLUMNS

from .audio_files import TRUNCATED_SENTENCE, write_truncated_wav
from .conftest import REPO, speechlike

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def write_clips(folder):
    (folder / "nested").mkdir(parents=True)
    sf.write(folder / "a.wav", speechlike(0.8), 16_000)
    sf.write(folder / "nested" / "b.flac", speechlike(2.5, 44_100, seed=1), 44_100)
    (folder / "notes.txt").write_text("not audio, and not picked up from a folder")
    return folder


def test_json_for_a_folder_with_timeline(tiny_model_dir, tmp_path, capsys):
    clips = write_clips(tmp_path / "clips")
    assert main(["predict", str(clips), "--model", str(tiny_model_dir), "--format", "json", "--timeline"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [os.path.basename(r["path"]) for r in records] == ["a.wav", "b.flac"]
    for record in records:
        assert set(record["probabilities"]) == set(LABELS)
        assert abs(sum(record["probabilities"].values()) - 1) < 1e-4
    assert len(records[0]["windows"]) == 1 and len(records[1]["windows"]) > 1  # tiny model: 1 s windows


def test_a_bad_file_is_reported_and_does_not_stop_the_batch(tiny_model_dir, tmp_path, capsys):
    clips = write_clips(tmp_path / "clips")
    (tmp_path / "broken.wav").write_bytes(os.urandom(2000))
    (tmp_path / "silent.wav").write_bytes((clips / "a.wav").read_bytes()[:44])  # a header and no samples
    code = main(["predict", str(clips / "a.wav"), str(tmp_path / "broken.wav"), str(tmp_path / "silent.wav"),
                 "--model", str(tiny_model_dir), "--format", "csv"])
    captured = capsys.readouterr()
    assert code == 1
    rows = captured.out.strip().splitlines()
    assert rows[0].split(",") == [*CSV_COLUMNS, *LABELS, "error"]
    assert rows[1].split(",")[1] == "recording" and rows[1].split(",")[4] in LABELS
    assert "not a supported audio file or it is corrupt" in rows[2]
    assert "silent.wav" in rows[3] and len(rows) == 4
    assert "2 of 3 files failed" in captured.err
    assert "Traceback" not in captured.err


def test_table_output_lists_every_emotion(tiny_model_dir, tmp_path, capsys):
    clips = write_clips(tmp_path / "clips")
    assert main(["predict", str(clips / "nested"), "--model", str(tiny_model_dir), "--timeline"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["file", *LABELS, "emotion"]  # whole names: "surprise" is not cut
    assert "b.flac" in out and out.count("%") >= 7 * 2


@pytest.mark.slow  # a fresh Python process
def test_module_entry_point_end_to_end(tiny_model_dir, tmp_path):
    clips = write_clips(tmp_path / "clips")
    done = subprocess.run([sys.executable, "-m", "ser_model", "predict", str(clips / "a.wav"), "--model",
                           str(tiny_model_dir), "--format", "json", "-o", str(tmp_path / "out.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out.json").read_text())[0]["label"] in LABELS


def test_no_audio_in_arguments_is_one_sentence(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "error: There are no audio files to classify."


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("name, fmt, check", [
    ("out.json", None, lambda text: json.loads(text)[0]["label"] in LABELS),
    ("out.csv", None, lambda text: text.splitlines()[0].startswith("path,part,start,end,label,confidence,angry")),
    ("out.txt", None, lambda text: text.split()[:2] == ["file", "angry"]),
    ("out.json", "csv", lambda text: text.startswith("path,")),  # --format wins over the extension
    ("OUT.CSV", None, lambda text: text.startswith("path,")),
])
def test_the_output_extension_chooses_the_format_unless_format_is_given(tiny_model_dir, tmp_path, workers, name,
                                                                         fmt, check):
    clips = write_clips(tmp_path / "clips")
    out = tmp_path / name
    args = ["predict", str(clips), "--model", str(tiny_model_dir), "--workers", workers, "-o", str(out)]
    assert main(args + (["--format", fmt] if fmt else [])) == 0
    assert check(out.read_text())


def test_a_bug_keeps_its_traceback_while_bad_input_is_one_sentence(tiny_model_dir, tmp_path, monkeypatch, capsys):
    clips = write_clips(tmp_path / "clips")

    def broken(*args, **kwargs):
        raise ValueError("a programming error, not the user's")

    monkeypatch.setattr("ser_model.serving.batch_predict.predict", broken)
    with pytest.raises(ValueError, match="programming error"):
        main(["predict", str(clips), "--model", str(tiny_model_dir)])
    assert main(["predict", str(clips), "--model", str(tmp_path / "no-model")]) == 2
    assert capsys.readouterr().err.startswith("error: No model folder at")


def test_every_error_predict_reports_derives_from_the_project_exception():
    from ser_model.audio_io import AudioError
    from ser_model.errors import InputError

    assert issubclass(AudioError, InputError)
    assert cli.USER_ERRORS == (InputError, OSError)


def test_a_truncated_wav_is_classified_with_a_warning_line(tiny_model_dir, tmp_path, capsys):
    path = write_truncated_wav(tmp_path / "cut.wav")
    assert main(["predict", str(path), "--model", str(tiny_model_dir), "--format", "json"]) == 0
    captured = capsys.readouterr()
    (record,) = json.loads(captured.out)
    assert record["duration"] == 1.5 and "error" not in record
    assert record["warnings"] == [TRUNCATED_SENTENCE]  # the JSON file keeps the notice with the result
    assert f"warning: {TRUNCATED_SENTENCE}" in captured.err.splitlines()
    assert "TruncatedAudioWarning" not in captured.err  # one sentence, not Python's warning format


def test_the_default_model_is_the_bundled_folder_unless_the_environment_names_one(monkeypatch):
    monkeypatch.delenv("SER_MODEL", raising=False)
    monkeypatch.delenv("SER_MODEL_REVISION", raising=False)
    assert model_info.model_source() == (str(REPO / "model"), None) == (str(model_info.BUNDLED_MODEL), None)
    monkeypatch.setenv("SER_MODEL", "org/name")
    monkeypatch.setenv("SER_MODEL_REVISION", "abc123")
    assert model_info.model_source() == ("org/name", "abc123")


@pytest.mark.needs_model  # and a fresh Python process
def test_predict_without_model_uses_the_bundled_model_from_the_repository_root(tmp_path):
    if not (REPO / "model" / "model.safetensors").is_file():
        pytest.skip("the bundled model/ has not been exported")
    env = {k: v for k, v in os.environ.items() if k not in ("SER_MODEL", "SER_MODEL_REVISION")}
    done = subprocess.run([sys.executable, "-m", "ser_model", "predict", "examples/ravdess_actor07_angry.flac",
                           "--format", "json"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["label"] in LABELS



def never_classify(*args, **kwargs):
    raise AssertionError("files were classified before the output was checked")


@pytest.mark.parametrize("name", ["out.xlsx", "out.JSONL", "results.tsv"])
def test_an_output_extension_with_no_known_format_is_refused_with_the_known_ones(tiny_model_dir, tmp_path,
                                                                                 monkeypatch, capsys, name):
    monkeypatch.setattr("ser_model.serving.batch_predict.predict", never_classify)
    clips = write_clips(tmp_path / "clips")
    assert main(["predict", str(clips), "--model", str(tiny_model_dir), "-o", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: Cannot tell the output format from '{name}': the known extensions are .json (json), "
                   ".csv (csv), .txt (table); rename the file or give --format table|json|csv.")
    assert not (tmp_path / name).exists()


def test_format_accepts_any_extension_and_no_extension_is_a_table(tiny_model_dir, tmp_path):
    clips = write_clips(tmp_path / "clips")
    assert main(["predict", str(clips), "--model", str(tiny_model_dir), "--format", "json",
                 "-o", str(tmp_path / "out.xlsx")]) == 0
    assert json.loads((tmp_path / "out.xlsx").read_text())[0]["label"] in LABELS
    assert main(["predict", str(clips), "--model", str(tiny_model_dir), "-o", str(tmp_path / "results")]) == 0
    assert (tmp_path / "results").read_text().split()[:2] == ["file", "angry"]


@pytest.mark.parametrize("where, sentence", [
    ("missing/dir/out.json", "the folder {tmp}/missing/dir does not exist."),
    ("clips", "it is a folder; name a file in it."),
])
def test_an_output_that_cannot_be_written_is_refused_before_any_file_is_classified(tiny_model_dir, tmp_path,
                                                                                  monkeypatch, capsys, where, sentence):
    monkeypatch.setattr("ser_model.serving.batch_predict.predict", never_classify)
    clips = write_clips(tmp_path / "clips")
    output = tmp_path / where
    assert main(["predict", str(clips), "--model", str(tiny_model_dir), "-o", str(output)]) == 2
    expected = f"error: Cannot write the results to {output}: " + sentence.format(tmp=tmp_path)
    assert capsys.readouterr().err.strip() == expected


def test_timeline_rows_read_start_dash_end_seconds(tiny_model_dir, tmp_path, capsys):
    clips = write_clips(tmp_path / "clips")
    assert main(["predict", str(clips / "nested" / "b.flac"), "--model", str(tiny_model_dir), "--timeline"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert rows[0].startswith("  0.0-1.0 s ") and rows[-1].startswith("  1.5-2.5 s ")  # tiny model: 1 s windows
    assert all(re.match(r"^  \d+\.\d-\d+\.\d s +\S", row) for row in rows)


def test_the_loading_progress_bar_shows_only_with_verbose(tiny_model_dir, tmp_path, capsys):
    clips = write_clips(tmp_path / "clips")
    assert main(["predict", str(clips / "a.wav"), "--model", str(tiny_model_dir)]) == 0
    assert capsys.readouterr().err == ""
    assert main(["predict", str(clips / "a.wav"), "--model", str(tiny_model_dir), "--verbose"]) == 0
    assert "Loading weights" in capsys.readouterr().err


def test_help_lists_every_command_though_predict_imports_only_its_own(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "{predict,train,crossval,evaluate,export,publish}" in capsys.readouterr().out


@pytest.mark.slow  # a fresh Python process, where nothing is imported yet
def test_predict_does_not_import_training_evaluation_or_publishing(tiny_model_dir, tmp_path):
    clips = write_clips(tmp_path / "clips")
    code = ("import sys; from ser_model.cli import main; "
            f"code = main(['predict', {str(clips / 'a.wav')!r}, '--model', {str(tiny_model_dir)!r}]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn' or "
            "m.startswith(('ser_model.training', 'ser_model.evaluation', 'ser_model.hub', 'matplotlib'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_predict_runs_torch_on_every_core_unless_omp_num_threads_is_set(tiny_model_dir, tmp_path, monkeypatch):
    import torch

    clips = write_clips(tmp_path / "clips")
    threads = torch.get_num_threads()
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(1)
        assert main(["predict", str(clips / "a.wav"), "--model", str(tiny_model_dir)]) == 0
        assert torch.get_num_threads() == 3
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert main(["predict", str(clips / "a.wav"), "--model", str(tiny_model_dir)]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_a_model_with_a_voice_head_adds_how_the_voice_sounds_to_every_format(tmp_path, capsys):
    from .conftest import save_tiny_model

    model = save_tiny_model(tmp_path / "voice-model", voice_head=True)
    clips = write_clips(tmp_path / "clips")
    assert main(["predict", str(clips / "a.wav"), "--model", str(model)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.endswith("emotion; voice") and re.search(r"; voice sounds (fe)?male \((\d+|>99|<1)%\)$", row)
    assert main(["predict", str(clips / "a.wav"), "--model", str(model), "--format", "csv"]) == 0
    header, row = (line.split(",") for line in capsys.readouterr().out.splitlines()[:2])
    assert header[-3:] == ["voice_sounds_female", "voice_sounds_male", "error"]
    assert float(row[-3]) + float(row[-2]) == pytest.approx(1.0, abs=2e-4)
    assert main(["predict", str(clips / "a.wav"), "--model", str(model), "--format", "json"]) == 0
    assert set(json.loads(capsys.readouterr().out)[0]["voice"]) == {"female", "male"}


@pytest.mark.parametrize("paths, sentence", [
    (["does_not_exist/"], "No such file or folder: 'does_not_exist/'."),  # a folder, with its slash
    (["clips/a.wav", "gone.wav", "none/"], "No such file or folder: 'gone.wav', 'none/'."),
])
def test_a_path_that_does_not_exist_is_one_sentence_before_the_model_loads(tmp_path, monkeypatch, capsys, paths,
                                                                          sentence):
    def never_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the paths were checked")

    monkeypatch.setattr("ser_model.serving.inference.EmotionRecognizer.load_labels", never_load)
    monkeypatch.setattr("ser_model.serving.batch_predict.predict", never_classify)
    write_clips(tmp_path / "clips")
    monkeypatch.chdir(tmp_path)
    assert main(["predict", *paths, "--model", "no-such-model"]) == 2
    assert capsys.readouterr().err == f"error: {sentence}\n"


ARGUMENT_ERRORS = [
    (["-o", "out.xlsx"], "error: Cannot tell the output format from 'out.xlsx': "),
    (["--workers", "0"], "error: --workers must be at least 1, got 0."),
    (["--batch-size", "0"], "error: --batch-size must be at least 1, got 0."),
    (["--max-seconds", "-1"], "error: --max-seconds must be positive, got -1."),
    (["-o", "/nonexistent/out.json"], "error: Cannot write the results to /nonexistent/out.json: the folder "
                                      "/nonexistent does not exist."),
]


@pytest.mark.parametrize("options, start", ARGUMENT_ERRORS)
def test_argument_errors_exit_2_with_one_sentence(tmp_path, monkeypatch, capsys, options, start):
    monkeypatch.setattr("ser_model.serving.batch_predict.predict", never_classify)
    clips = write_clips(tmp_path / "clips")
    assert main(["predict", str(clips), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith(start) and err.count("\n") == 1 and err.endswith(".\n")


@pytest.mark.parametrize("arguments", [["does_not_exist/"], ["examples", "-o", "out.xlsx"],
                                       ["examples", "--workers", "0"], ["examples", "-o", "/nonexistent/out.json"]])
def test_argument_errors_are_answered_before_torch_or_transformers_is_imported(arguments):
    # A fresh process, but a fast one (about 0.1 s): the point is that it imports nothing heavy.
    # `-X importtime` names every module the process imports, on stderr, before the CLI's own sentence.
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "ser_model", "predict", *arguments], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.splitlines()
    imported = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    assert done.returncode == 2 and [line for line in lines if not line.startswith("import time:")][0].startswith(
        "error: ")
    assert "ser_model.cli" in imported  # the check sees the CLI's own imports
    assert not {name for name in imported if name.split(".")[0] in ("torch", "transformers", "numpy")}


@pytest.mark.slow  # a fresh Python process that imports every command
def test_the_command_line_registers_the_model_classes_before_any_command_that_saves_a_model(tmp_path):
    # `python -m ser_model` loads the package lazily (see ser_model/__init__.py), so the commands that save
    # a model register the classes themselves: a saved model must name its code (`auto_map`). A
    # sitecustomize module reports, as the process exits, whether the config is registered.
    from ser_model import SERConfig

    (tmp_path / "sitecustomize.py").write_text(
        "import atexit, sys\n"
        "def report():\n"
        "    auto = sys.modules.get('transformers.models.auto.configuration_auto')\n"
        f"    registered = auto is not None and {SERConfig.model_type!r} in auto.CONFIG_MAPPING\n"
        "    print('registered', registered, file=sys.stderr)\n"
        "atexit.register(report)\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    for command, registered in (["export", "--help"], True), (["predict", "missing.wav"], False):
        done = subprocess.run([sys.executable, "-m", "ser_model", *command], cwd=REPO, capture_output=True, text=True,
                              timeout=300, env=env)
        assert done.stderr.splitlines()[-1] == f"registered {registered}", done.stderr[-2000:]


def test_the_table_words_a_near_tie_as_the_page_does(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from ser_model.serving.prediction import Prediction, WindowPrediction

    near_tie = {"angry": 0.05, "disgust": 0.268, "fear": 0.274, "happy": 0.05, "neutral": 0.05, "sad": 0.258,
                "surprise": 0.05}
    windows = [WindowPrediction(0.0, 1.0, near_tie), WindowPrediction(1.0, 2.0, None)]
    prediction = Prediction("fear", near_tie, 2.0, windows, voice={"female": 0.999, "male": 0.001})
    monkeypatch.setattr("ser_model.serving.batch_predict.predict",
                        lambda files, *args, **kwargs: [(files[0], prediction, None)])
    clips = write_clips(tmp_path / "clips")
    assert main(["predict", str(clips / "a.wav"), "--model", str(tiny_model_dir), "--timeline"]) == 0
    header, whole, spoken, silent = capsys.readouterr().out.splitlines()
    assert whole.endswith("  not sure: fear (27%) or disgust (27%); voice sounds female (>99%)")
    assert "  27.4%   " in whole and spoken.endswith("not sure: fear (27%) or disgust (27%)")
    assert silent.startswith("  1.0-2.0 s") and silent.endswith("  (silent)")
    assert len(silent) == len(spoken) - len(" not sure: fear (27%) or disgust (27%)") + len(" (silent)")


def test_a_long_file_shows_a_progress_bar_only_when_asked_or_on_a_terminal(tiny_model_dir, tmp_path, capsys):
    clips = write_clips(tmp_path / "clips")
    long = ["predict", str(clips / "nested" / "b.flac"), "--model", str(tiny_model_dir)]
    assert main(long) == 0
    assert capsys.readouterr().err == ""  # stderr is no terminal here
    assert main(long + ["--progress"]) == 0
    err = capsys.readouterr().err
    assert "b.flac: 100%" in err and "2.5/2.5" in err  # seconds of audio done, out of the file's length
    assert main([*long[:2], str(clips / "a.wav"), *long[2:], "--progress"]) == 0
    assert "files: 100%" in capsys.readouterr().err  # several files: a bar over the files


def test_quiet_and_progress_cannot_be_given_together(capsys):
    with pytest.raises(SystemExit) as done:
        main(["predict", "x.wav", "--quiet", "--progress"])
    assert done.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.slow  # a fresh Python process on a pseudo-terminal
def test_the_progress_bar_shows_on_a_terminal_unless_quiet(tiny_model_dir, tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    clips = write_clips(tmp_path / "clips")
    # Long enough to take more than the bar's delay (a second) even for the tiny model.
    sf.write(clips / "long.wav", np.tile(speechlike(10.0), 30), 16_000)

    def stderr_on_a_terminal(*options):
        controller, terminal = pty.openpty()
        # A terminal 100 columns wide: a new pseudo-terminal has none, and tqdm would draw a bar of no width.
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        done = subprocess.run([sys.executable, "-m", "ser_model", "predict", str(clips / "long.wav"), "--model",
                               str(tiny_model_dir), "--batch-size", "1", *options], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=terminal, timeout=300)
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        os.close(controller)
        assert done.returncode == 0
        return output.decode(errors="replace")

    assert "long.wav: 100%" in stderr_on_a_terminal()
    assert stderr_on_a_terminal("--quiet") == ""
