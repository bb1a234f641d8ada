"""The app imports what it runs and nothing more: serving, audio I/O and the model's facts, never the
training, data, evaluation or publishing wings, nor scikit-learn or SciPy (a Space should not pay
for them at start-up, nor need them installed). Checked in a fresh process, as a Space starts it."""

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO, save_tiny_model

pytestmark = pytest.mark.slow  # a fresh process that imports gradio, torch and transformers

WINGS = ("ser_model.training", "ser_model.data", "ser_model.evaluation", "ser_model.hub")
HEAVY = ("sklearn", "scipy")

# Prints the modules that importing the app adds to those `import ser_model` already brings: that
# import is transformers' own, and transformers imports SciPy for its object-detection losses
# wherever SciPy is installed, which no code of ours can change.
ADDED_BY_APP = """
import json, sys
{hide}
import ser_model
before = set(sys.modules)
import app
print(json.dumps(sorted(name for name in set(sys.modules) - before if sys.modules[name] is not None)))
"""
# As on a Space that installs neither: `sys.modules[name] = None` makes `import name` fail and
# `importlib.util.find_spec(name)` answer None, as for a package that is not installed.
HIDE_HEAVY = "sys.modules.update({name: None for name in %r})" % (HEAVY,)


def modules_added_by_app(tmp_path, hide: str = "") -> list[str]:
    model = save_tiny_model(tmp_path / "model")
    env = {**os.environ, "SER_MODEL": str(model), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    env.pop("SER_MODEL_REVISION", None)
    done = subprocess.run([sys.executable, "-c", ADDED_BY_APP.format(hide=hide)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def belongs_to(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def test_importing_the_app_imports_no_training_evaluation_or_publishing_code(tmp_path):
    added = modules_added_by_app(tmp_path)
    assert "app" in added and "ser_model.serving.analysis" in added  # the check sees the app's own imports
    assert [name for name in added if belongs_to(name, WINGS + HEAVY)] == []


def test_the_app_starts_without_scikit_learn_or_scipy_installed(tmp_path):
    added = modules_added_by_app(tmp_path, hide=HIDE_HEAVY)
    assert [name for name in added if belongs_to(name, WINGS)] == []
