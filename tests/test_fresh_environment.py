"""The model card's `pip install` line is all a user needs: a new virtual environment holding exactly
what pip installs from that line loads the model through the Auto classes and
pipeline(trust_remote_code=True), offline, and scores audio as this environment does.

Why a real `python -m venv` and `pip install`, and not `--system-site-packages` or packages linked in
from this environment: the claim is that nothing else is needed, and only pip resolving the card's
own line into an empty environment shows that. Anything borrowed from here (gradio, scikit-learn,
soundfile, this checkout) could hide a missing requirement. The price is 2.5 to 5 minutes and 6 GB
of temporary disk on 2 cores (torch's CUDA build brings its nvidia-* wheels), hence `slow`; pip
installs from the package index and wheel store configured on the machine, as a user's pip would.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from huggingface_hub import ModelCard

from ser_model.hub.export import pip_install_line
from ser_model.cli import BUNDLED_MODEL
from ser_model.hub.publish import build_folder, check_loads

pytestmark = pytest.mark.slow

PIP_TIMEOUT = 1800  # seconds; about 150 s here, far more with a cold cache or a busy machine
# Packages the app, training, tests or this checkout use but the Hub code files must not need.
NOT_NEEDED = {"ser-model", "gradio", "scikit-learn", "soundfile", "soxr", "accelerate", "matplotlib", "librosa"}


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory):
    """The interpreter of a new virtual environment after `pip install` of the card's line."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    command = pip_install_line().split()  # "pip install a==1 b==2", run as `python -m pip ...`
    done = subprocess.run([str(python), "-m", *command, "--quiet", "--disable-pip-version-check"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-3000:]}"
    return python


def test_the_card_line_installs_no_more_than_it_names(fresh_python):
    listed = subprocess.run([str(fresh_python), "-m", "pip", "list", "--format", "json"], capture_output=True,
                            text=True, check=True, timeout=120)
    installed = {package["name"].lower(): package["version"] for package in json.loads(listed.stdout)}
    for requirement in pip_install_line().split()[2:]:
        name, version = requirement.split("==")
        assert installed.get(name) == version, f"{requirement} but the environment has {installed.get(name)}"
    assert not NOT_NEEDED & set(installed)


@pytest.mark.needs_model
def test_the_card_line_alone_loads_the_model_and_gives_the_same_scores(fresh_python, tmp_path):
    if not (BUNDLED_MODEL / "model.safetensors").is_file():
        pytest.skip(f"{BUNDLED_MODEL} has not been exported")
    # The folder `publish` would upload (model/ with a freshly generated card), and model/ as it is.
    upload = build_folder(BUNDLED_MODEL, tmp_path / "upload", "alice/ser-densenet")
    assert f"```bash\n{pip_install_line()}\n```" in ModelCard.load(upload / "README.md").text

    here = check_loads(BUNDLED_MODEL)  # this environment, for reference
    for folder in (BUNDLED_MODEL, upload):
        fresh = check_loads(folder, python=fresh_python)
        assert fresh.modules == [] and fresh.model_module.startswith("transformers_modules.")
        assert (fresh.model_class, fresh.extractor_class) == ("SERForAudioClassification", "SERFeatureExtractor")
        assert fresh.labels == here.labels
        np.testing.assert_allclose(fresh.logits, here.logits, atol=1e-4)
        np.testing.assert_allclose([fresh.scores[label] for label in here.labels],
                                   [here.scores[label] for label in here.labels], atol=1e-5)
