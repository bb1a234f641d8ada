"""The Hub code path without a network: the folder `publish` uploads, placed in a Hugging Face cache
laid out as a download leaves it (`hub/models--org--name/snapshots/<sha>/` and `refs/main`), loads by
Hub id and pinned revision with `HF_HUB_OFFLINE=1` through the Auto classes and pipeline, the CLI and
the app."""

import json
import os
import subprocess
import sys

import pytest
import soundfile as sf
from gradio_client import Client, handle_file

from ser_model.serving.inference import EmotionRecognizer
from ser_model.hub.publish import PublishError, build_folder, check_loads

from .app_server import running_app
from .conftest import REPO, save_tiny_model, speechlike

pytestmark = pytest.mark.slow

REPO_ID = "org/name"
SHA = "3f786850e387550fdab836ed7e6dc881de23001b"  # any 40 hex digits: the commit the cache claims to hold


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """(HF_HOME, snapshot folder) with the folder `publish --dry-run` writes for a tiny model."""
    root = tmp_path_factory.mktemp("hub")
    repo = root / "hf_home" / "hub" / "models--org--name"
    snapshot = build_folder(save_tiny_model(root / "trained"), repo / "snapshots" / SHA, REPO_ID)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    return root / "hf_home", snapshot


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "clip.wav"
    sf.write(path, speechlike(1.5), 16_000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def expected(hub_cache, clip):
    """The prediction of the snapshot loaded as a plain folder, in this process."""
    return EmotionRecognizer.from_pretrained(hub_cache[1]).predict_file(clip)


def test_auto_classes_and_pipeline_load_the_pinned_commit(hub_cache):
    hf_home, _ = hub_cache
    result = check_loads(REPO_ID, revision=SHA, hf_home=hf_home)
    assert result.modules == []
    assert (result.model_class, result.extractor_class) == ("SERForAudioClassification", "SERFeatureExtractor")
    # The revision is really resolved: a commit the cache does not hold fails offline.
    with pytest.raises(PublishError, match=f"The model {REPO_ID} at revision {'0' * 40} does not load"):
        check_loads(REPO_ID, revision="0" * 40, hf_home=hf_home)


def test_cli_predicts_with_the_hub_id_and_revision(hub_cache, clip, expected):
    hf_home, _ = hub_cache
    env = {key: value for key, value in os.environ.items() if key not in ("SER_MODEL", "SER_MODEL_REVISION")}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "ser_model", "predict", str(clip), "--model", REPO_ID,
                           "--revision", SHA, "--format", "json"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    [record] = json.loads(done.stdout)
    assert record["label"] == expected.label
    assert record["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)


@pytest.mark.needs_server
def test_app_serves_the_hub_id_and_revision(hub_cache, clip, expected, tmp_path):
    hf_home, _ = hub_cache
    with running_app(tmp_path, model=REPO_ID, revision=SHA, env={"HF_HOME": str(hf_home)}) as url:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False,
                        httpx_kwargs={"trust_env": False})
        try:
            emotions, *_ = client.predict(handle_file(str(clip)), api_name="/predict")
        finally:
            client.close()
    confidences = {item["label"]: item["confidence"] for item in emotions["confidences"]}
    assert emotions["label"] == expected.label
    assert confidences == pytest.approx(expected.probabilities, abs=1e-4)
