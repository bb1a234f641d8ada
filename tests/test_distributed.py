"""Data-parallel training smoke test: the real `train` command under torchrun, 2 CPU processes (gloo)."""

import json
import os
import subprocess
import sys

import pytest

from ser_model import SERForAudioClassification
from ser_model.audio_io import AUDIO_EXTENSIONS
from ser_model.serving.inference import EmotionRecognizer
from ser_model.training.train import weights_digest

from .app_server import free_port
from .conftest import REPO, TINY, data_dir_or_skip



@pytest.mark.needs_corpora
def test_two_processes_train_the_same_model(tmp_path):
    data_dir = data_dir_or_skip()
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master-port={free_port()}",
               "-m", "ser_model", "train", "--data_dir", str(data_dir), "--output_dir", str(out),
               "--model_overrides", json.dumps(TINY), "--branches", "mel", "mfcc", "--max_steps", "6", "--max_clips_per_part", "24",
               "--samples_per_epoch", "24", "--per_device_train_batch_size", "4", "--logging_steps", "2"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]

    best = out / "best"
    record = json.loads((best / "training.json").read_text())
    assert record["processes"] == 2 and record["weights_identical_across_processes"] is True
    # 24 draws an epoch split over 2 processes of 4 clips a step: 3 steps an epoch, so 6 steps are 2 epochs.
    assert record["epochs_run"] == pytest.approx(2.0)
    model = SERForAudioClassification.from_pretrained(best)
    assert weights_digest(model) == record["weights_sha256"]  # the file holds what every process held
    assert done.stderr.count("processes hold the same weights") == 1  # logged by rank 0 only

    clip = next(p for p in sorted((data_dir / "ravdess").rglob("*")) if p.suffix.lower() in AUDIO_EXTENSIONS)
    prediction = EmotionRecognizer.from_pretrained(best).predict_file(clip)
    # best/ serves as it is: one probability per label of the trained config, the label their argmax,
    # windows up to the end of the clip.
    assert list(prediction.probabilities) == list(model.config.label2id)
    assert prediction.label == max(prediction.probabilities, key=prediction.probabilities.get)
    assert prediction.windows[-1].end == pytest.approx(prediction.duration)
