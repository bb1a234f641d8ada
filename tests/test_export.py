"""What the model card tells users to install: read from the Hub code files' imports, at the versions
installed here. (That those packages alone load the model is tests/test_fresh_environment.py.)"""

import shutil
from importlib import metadata

import pytest

import ser_model.export as export
from ser_model.export import CODE_FILES, hub_requirements, pip_install_line

from .conftest import REPO


def pinned_in_requirements_txt() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.split("[")[0].lower()] = version
    return pins


def test_the_requirements_are_what_the_code_files_import_at_the_project_pins():
    requirements = dict(line.split("==") for line in hub_requirements())
    # configuration.py, feature_extractor.py and modeling.py import these, and nothing else outside the
    # standard library; gradio, soundfile, scikit-learn (app and training only) must not appear.
    assert sorted(requirements) == ["numpy", "timm", "torch", "torchaudio", "transformers"]
    pins = pinned_in_requirements_txt()
    assert requirements == {name: pins[name] for name in requirements}, "installed versions differ from the pins"
    assert pip_install_line() == "pip install " + " ".join(f"{n}=={v}" for n, v in requirements.items())


def test_a_new_import_in_a_code_file_reaches_the_requirements(tmp_path, monkeypatch):
    for name in CODE_FILES:
        shutil.copy(export.PACKAGE / name, tmp_path / name)
    with open(tmp_path / "modeling.py", "a") as modeling:
        modeling.write("\nimport soundfile  # a new dependency\nfrom . import configuration  # relative: not one\n")
    monkeypatch.setattr(export, "PACKAGE", tmp_path)
    assert f"soundfile=={metadata.version('soundfile')}" in hub_requirements()

    with open(tmp_path / "modeling.py", "a") as modeling:
        modeling.write("import not_an_installed_module\n")
    with pytest.raises(RuntimeError, match="not_an_installed_module, imported by the Hub code files, is not installed"):
        hub_requirements()


def test_the_training_data_sentence_names_languages_and_corpora(tiny_model_dir):
    from ser_model.export import describe_training_data
    from ser_model.inference import EmotionRecognizer

    assert describe_training_data(["ravdess", "ased", "nemo"]) == "acted speech in English, Amharic and Polish " \
                                                                 "(RAVDESS, ASED, nEMO)"
    assert describe_training_data(["tess"]) == "acted speech in English (TESS)"
    assert EmotionRecognizer.load_training_corpora(tiny_model_dir) is None
    (tiny_model_dir / "split.json").write_text('{"corpora": {"tess": {}, "ravdess": {}}}')
    assert EmotionRecognizer.load_training_corpora(tiny_model_dir) == ["ravdess", "tess"]
    (tiny_model_dir / "training.json").write_text('{"corpora": ["turev"]}')  # the record of the run wins
    assert EmotionRecognizer.load_training_corpora(tiny_model_dir) == ["turev"]


def test_the_card_says_how_the_weights_were_started_and_averaged():
    from ser_model.export import _training_description
    from ser_model.training import TrainingConfig

    config = {**TrainingConfig().__dict__, "init_model": None, "weight_average_decay": 0.0}
    record = {"config": config, "epochs_run": 12.0, "wall_seconds": 600.0, "best_validation_selection_macro_recall": 0.5}
    assert _training_description(record).startswith("From scratch with")
    assert "moving average" not in _training_description(record)
    record["config"] = {**config, "init_model": "model-ravdess-tess", "weight_average_decay": 0.995}
    described = _training_description(record)
    assert described.startswith("Continued from the weights of an earlier model of this project (`--init-model "
                                "model-ravdess-tess`)")
    record["init_model_corpora"] = ["ravdess", "tess"]
    assert _training_description(record).startswith("Continued from the weights of an earlier model of this project "
                                                     "trained on RAVDESS and TESS alone")
    assert described.endswith("their moving average (decay 0.995).")
    assert export._training_origin(record) == ("trained on CPU in 10 minutes, continuing from an earlier model of "
                                               "this project (see Training)")
    record["config"]["init_model"] = None
    assert export._training_origin(record) == "trained from scratch on CPU in 10 minutes"
