"""A saved folder must load the way users load it: Auto classes and pipeline(...) with
trust_remote_code=True, in a fresh process that has never imported ser_model, offline."""

import json
import os
import subprocess
import sys
import textwrap

LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification, pipeline

    folder = sys.argv[1]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    classifier = pipeline("audio-classification", model=folder, trust_remote_code=True)
    t = np.arange(12_000) / 16_000
    clip = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    inputs = extractor(clip, sampling_rate=16_000, return_tensors="pt")
    logits = model(**inputs).logits.detach().numpy()[0].tolist()
    result = classifier(clip, top_k=None)
    print(json.dumps({
        "modules": sorted(m for m in sys.modules if m.startswith("ser_model")),
        "config_class": type(config).__name__,
        "model_class": type(model).__name__,
        "extractor_class": type(extractor).__name__,
        "logits": logits,
        "pipeline": result,
    }))
    """
)


def test_saved_folder_loads_through_auto_classes_and_pipeline_offline(tiny_model_dir, tmp_path):
    files = sorted(p.name for p in tiny_model_dir.iterdir())
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "configuration.py",
            "feature_extractor.py", "modeling.py"} <= set(files)
    auto_map = json.loads((tiny_model_dir / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForAudioClassification"] == "modeling.SERForAudioClassification"

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(tiny_model_dir)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["modules"] == []  # the folder's own code, not this checkout's package
    assert (result["config_class"], result["model_class"], result["extractor_class"]) == (
        "SERConfig", "SERForAudioClassification", "SERFeatureExtractor")
    scores = {item["label"]: item["score"] for item in result["pipeline"]}
    assert set(scores) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
    assert abs(sum(scores.values()) - 1) < 1e-4
    # The pipeline and the direct call agree: same features, same model.
    import numpy as np
    direct = np.exp(result["logits"]) / np.exp(result["logits"]).sum()
    labels = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    np.testing.assert_allclose([scores[label] for label in labels], direct, atol=1e-5)
