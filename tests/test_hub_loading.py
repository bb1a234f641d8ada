"""A saved folder must load the way users load it: Auto classes and pipeline(...) with
trust_remote_code=True, in a fresh process that has never imported ser_model, offline. The check is
`ser_model.hub.publish.check_loads`, the one `python -m ser_model publish` runs before any upload."""

import json

import numpy as np
import pytest

from ser_model import EMOTIONS
from ser_model.hub.export import export_model, stale_code_files
from ser_model.hub.publish import check_loads


@pytest.mark.slow  # a fresh Python process importing torch and transformers
def test_saved_folder_loads_through_auto_classes_and_pipeline_offline(tiny_model_dir):
    files = sorted(p.name for p in tiny_model_dir.iterdir())
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "configuration.py",
            "feature_extractor.py", "modeling.py"} <= set(files)
    auto_map = json.loads((tiny_model_dir / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForAudioClassification"] == "modeling.SERForAudioClassification"

    result = check_loads(tiny_model_dir)

    assert result.modules == []  # the folder's own code, not this checkout's package
    assert not result.model_module.startswith("ser_model")
    assert (result.config_class, result.model_class, result.extractor_class) == (
        "SERConfig", "SERForAudioClassification", "SERFeatureExtractor")
    assert result.labels == list(EMOTIONS)
    # The pipeline and the direct call agree: same features, same model.
    direct = np.exp(result.logits) / np.exp(result.logits).sum()
    np.testing.assert_allclose([result.scores[label] for label in result.labels], direct, atol=1e-5)


@pytest.mark.slow  # a fresh Python process importing torch and transformers
def test_an_exported_folder_loads_with_its_generated_code_files(tiny_model_dir, tmp_path):
    # export rewrites the code files under a header; the Auto classes and the pipeline run those copies.
    folder = export_model(tiny_model_dir, tmp_path / "exported")
    assert stale_code_files(folder) == []

    result = check_loads(folder)

    assert result.modules == [] and not result.model_module.startswith("ser_model")
    assert (result.config_class, result.model_class, result.extractor_class) == (
        "SERConfig", "SERForAudioClassification", "SERFeatureExtractor")
    assert result.labels == list(EMOTIONS)
