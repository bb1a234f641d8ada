"""Batch prediction spread over worker processes and over the processes of `accelerate launch`: the
results must not depend on how the files were spread (every format is written from the same merged
results, so comparing the JSON, which holds every figure, covers the table and CSV too)."""

import json
import os
import subprocess
import sys

import pytest
import soundfile as sf

from ser_model.cli import main

from .app_server import free_port
from .conftest import REPO, save_tiny_model, speechlike


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Six clips from 0.6 to 2.6 s (the longer ones span several 1 s windows of the tiny model), one
    corrupt file among them, and the single-process JSON output as the reference."""
    root = tmp_path_factory.mktemp("batch")
    clips = root / "clips"
    clips.mkdir()
    for i in range(6):
        sf.write(clips / f"{i:02d}.wav", speechlike(0.6 + 0.4 * i, seed=i), 16_000)
    (clips / "03_corrupt.wav").write_bytes(os.urandom(2000))
    model = save_tiny_model(root / "model")
    reference = root / "reference.json"
    assert main(["predict", str(clips), "--model", str(model), "--format", "json", "--timeline",
                 "-o", str(reference)]) == 1
    return clips, model, json.loads(reference.read_text())


def assert_same_records(records, reference):
    assert [r["path"] for r in records] == [r["path"] for r in reference]
    for record, expected in zip(records, reference):
        if "error" in expected:
            assert record == expected
            continue
        assert record["label"] == expected["label"] and record["duration"] == expected["duration"]
        assert record["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)
        assert len(record["windows"]) == len(expected["windows"])
        for window, expected_window in zip(record["windows"], expected["windows"]):
            assert (window["start"], window["end"]) == (expected_window["start"], expected_window["end"])
            assert window["probabilities"] == pytest.approx(expected_window["probabilities"], abs=1e-6)


def test_the_reference_keeps_the_corrupt_file_in_place(batch):
    _, _, reference = batch
    assert [os.path.basename(r["path"]) for r in reference] == ["00.wav", "01.wav", "02.wav", "03.wav",
                                                                "03_corrupt.wav", "04.wav", "05.wav"]
    assert "corrupt" in reference[4]["error"] and len(reference[5]["windows"]) > 1


def test_zero_workers_is_one_sentence(batch, capsys):
    clips, model, _ = batch
    assert main(["predict", str(clips / "00.wav"), "--model", str(model), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: --workers must be at least 1, got 0." and "Traceback" not in err


@pytest.mark.slow
def test_two_workers_give_the_same_output_as_one(batch, tmp_path, capsys):
    clips, model, reference = batch
    out = tmp_path / "workers.json"
    assert main(["predict", str(clips), "--model", str(model), "--format", "json", "--timeline",
                 "--workers", "2", "-o", str(out)]) == 1
    assert "1 of 7 files failed" in capsys.readouterr().err
    assert_same_records(json.loads(out.read_text()), reference)



@pytest.mark.slow
def test_accelerate_launch_splits_the_files_and_merges_one_output(batch, tmp_path):
    clips, model, reference = batch
    out = tmp_path / "launched.json"
    # `--cpu` with 2 processes starts only one unless MPI is set up; `--multi_gpu` starts them with
    # torchrun, which also works without a GPU (the processes then run on the CPU).
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()),
               "-m", "ser_model", "predict", str(clips), "--model", str(model), "--format", "json", "--timeline",
               "-o", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                               "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 1, done.stderr[-3000:]  # the corrupt file: a per-file failure, not a crash
    assert done.stderr.count("1 of 7 files failed") == 1  # reported once, by the main process
    assert_same_records(json.loads(out.read_text()), reference)
