"""The benchmark scripts stay runnable: they import nothing from tests/ (so they need neither pytest nor
the fixtures), and each one answers `--help`."""

import ast
import os
import subprocess
import sys

import pytest
import torch

from ser_model import SERForAudioClassification

from .conftest import REPO
from .test_whisper_branch import whisper_config, whisper_features

BENCH = REPO / "bench"
SCRIPTS = sorted(path.name for path in BENCH.glob("*.py") if not path.name.startswith("_"))


def imported_modules(path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("name", sorted(path.name for path in BENCH.glob("*.py")))
def test_bench_never_imports_tests(name):
    modules = imported_modules(BENCH / name)
    assert not {m for m in modules if m == "tests" or m.startswith("tests.")}, f"bench/{name} imports from tests/"


@pytest.mark.slow  # each script imports torch in a fresh process
@pytest.mark.parametrize("name", SCRIPTS)
def test_every_benchmark_answers_help(name):
    completed = subprocess.run([sys.executable, str(BENCH / name), "--help"], cwd=REPO, capture_output=True,
                               text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: "), completed.stdout[:200]


def test_the_padding_comparison_gives_the_models_own_logits_when_the_input_is_not_padded():
    sys.path.insert(0, str(BENCH))  # the scripts import their neighbours as top-level modules
    import whisper_padding

    torch.manual_seed(0)
    model = SERForAudioClassification(whisper_config(calibration_temperature=2.0)).eval()
    inputs = whisper_features(model.config, model.config.window_seconds)  # one full window: nothing padded
    longer = torch.nn.functional.pad(inputs["input_features"], (0, 200), value=-1.0)
    with torch.no_grad():
        expected = model(**inputs).logits
        same = whisper_padding.padded_logits(model, inputs, inputs["input_features"])
        windowed = model.ser.whisper_encoder(inputs["input_features"], inputs["whisper_attention_mask"])
        padded = whisper_padding.padded_whisper_embedding(model.ser.whisper_encoder, inputs, longer)
    assert torch.allclose(same, expected, atol=1e-6)
    # 100 more positions that every real one attends to, as in Whisper's 30 s inputs, change the embedding
    assert padded.shape == windowed.shape and (padded - windowed).abs().max() > 1e-3  # rounding: about 1e-7
