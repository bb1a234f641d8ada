"""What the model card tells users to install: read from the Hub code files' imports, at the versions
installed here. (That those packages alone load the model is tests/test_fresh_environment.py.)"""

import json
import shutil
from importlib import metadata

import pytest

import ser_model.hub.export as export
from ser_model.hub.export import CODE_FILES, hub_requirements, pip_install_line

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


def test_the_card_says_how_the_weights_were_started_and_averaged():
    from ser_model.hub.export import _training_description
    from ser_model.training.arguments import parse_arguments, recipe

    arguments = recipe(*parse_arguments({"output_dir": "run", "weight_average_decay": 0.0}))
    record = {"arguments": arguments, "epochs_run": 12.0, "wall_seconds": 600.0,
              "best_validation_selection_macro_recall": 0.5}
    assert _training_description(record).startswith("From scratch with")
    assert "moving average" not in _training_description(record)
    record["arguments"] = {**arguments, "init_model": "model-ravdess-tess", "weight_average_decay": 0.995}
    described = _training_description(record)
    assert described.startswith("Continued from the weights of an earlier model of this project (`--init_model "
                                "model-ravdess-tess`)")
    record["init_model_corpora"] = ["ravdess", "tess"]
    assert _training_description(record).startswith("Continued from the weights of an earlier model of this project "
                                                     "trained on RAVDESS and TESS alone")
    assert described.endswith("their moving average (decay 0.995).")
    assert export._training_origin(record) == ("trained on CPU in 10 minutes, continuing from an earlier model of "
                                               "this project (see Training)")
    record["arguments"]["init_model"] = None
    assert export._training_origin(record) == "trained from scratch on CPU in 10 minutes"


def test_the_card_states_the_recipe_the_arguments_record():
    from ser_model.hub.export import _training_description
    from ser_model.training.arguments import TRAINING_DEFAULTS, parse_arguments, recipe

    arguments = recipe(*parse_arguments({"output_dir": "run", "learning_rate": 1e-3, "num_train_epochs": 12,
                                         "early_stopping_patience": 5, "mixup_probability": 0.5}))
    described = _training_description({"arguments": arguments, "epochs_run": 12.0, "wall_seconds": 60.0,
                                       "best_validation_selection_macro_recall": 0.5})
    batch = TRAINING_DEFAULTS["per_device_train_batch_size"]
    assert f"learning rate 0.001, batch {batch}, cosine schedule, label smoothing 0.1," in described
    assert "(patience 5)" in described and "mixup (p=0.5)" in described


def test_the_bundled_training_records_are_read_by_the_one_reader():
    from ser_model.hub.export import _training_description
    from ser_model.training.arguments import parse_arguments

    for folder in ("model", "model-ravdess-tess"):
        record = json.loads((REPO / folder / "training.json").read_text())
        parse_arguments(record["arguments"])  # each record's arguments are a recipe train reads
        assert _training_description(record).endswith((".", ")."))
    first_stage = json.loads((REPO / "model-ravdess-tess" / "training.json").read_text())
    assert "a plain 7-way loss; clips drawn uniformly. Augmentation: speed [0.9, 1.1] (p=0.5), white noise " \
           "(p=0.5), random crops, SpecAugment." in _training_description(first_stage)


def left_out_report(held_out_by: dict[str, str]) -> dict:
    """The parts of an evaluation report the card reads for a model trained without TurEV-DB."""
    def scores(recall):
        return {"turev": {"clips": 1735, "speakers": 6, "accuracy": recall + 0.01, "macro_recall": recall}}
    return {"held_out_by": held_out_by, "results": {"fusion": scores(0.45), "mfcc_svm_baseline": scores(0.30)}}


def test_a_leave_one_corpus_out_report_is_read_and_tabled_for_the_card(tmp_path):
    import json

    from ser_model.errors import InputError

    (tmp_path / "report.json").write_text(json.dumps(left_out_report({"ravdess": "speaker", "turev": "corpus"})))
    corpus, report = export._left_out_corpus(tmp_path / "report.json")
    assert corpus == "turev"
    assert export._left_out_table({corpus: report}).splitlines()[2] == \
        "| TurEV-DB | 1735 | 6 | 46.0% | 45.0% | 30.0% | +15.0 pts |"
    assert export._left_out_table({}) == "(not measured for this model)"

    (tmp_path / "report.json").write_text(json.dumps(left_out_report({"ravdess": "speaker", "turev": "speaker"})))
    with pytest.raises(InputError, match="not of a model trained without exactly one corpus"):
        export._left_out_corpus(tmp_path / "report.json")
    with pytest.raises(InputError, match="has no report.json"):
        export._left_out_corpus(tmp_path / "absent" / "report.json")


def test_the_card_shows_the_recipe_comparison_without_the_report_headings():
    channel = {"clips": 3, "conditions": {"clean": {"agreement_with_clean": 1.0, "accuracy": 0.5, "refused": 0}}}
    validation = {"held_out_by": {"ravdess": "speaker"},
                  "validation": {"fusion": {"ravdess": {"macro_recall": 0.6}},
                                 "plain": {"ravdess": {"macro_recall": 0.5}}},
                  "robustness": {"fusion": channel, "plain": channel}}
    tables = export._validation_tables(validation)
    assert "#" not in tables and "\n\n\n" not in tables
    assert "| plain | 50.0% | 50.0% |" in tables and "| clean | 100.0% (50.0%) | 100.0% (50.0%) |" in tables
    assert export._validation_tables(None) == "(no comparison was exported with this model)"


def test_re_exporting_an_exported_folder_keeps_its_reports_and_renders_them_as_the_card_does(tiny_model_dir, tmp_path):
    """`export --model model` (and `publish`, which exports the folder it uploads) starts from an exported
    folder: the leave-one-corpus-out report kept there must stay on the card, and the Markdown reports
    are rendered from the JSON with the card's own tables."""
    import json

    from ser_model.evaluation.report import markdown_report, validation_markdown

    from .test_evaluation import small_report

    evaluation, left_out = tmp_path / "evaluation", tmp_path / "without-turev"
    evaluation.mkdir()
    left_out.mkdir()
    channel = {"clips": 3, "conditions": {"clean": {"agreement_with_clean": 1.0, "accuracy": 0.5, "refused": 0}}}
    validation = {"held_out_by": {"ravdess": "speaker"}, "validation": {"fusion": {"ravdess": {"macro_recall": 0.6}}},
                  "robustness": {"fusion": channel}}
    (evaluation / "report.json").write_text(json.dumps(small_report()))
    (evaluation / "report.md").write_text("an older rendering")
    (evaluation / "validation.json").write_text(json.dumps(validation))
    (left_out / "report.json").write_text(json.dumps(left_out_report({"ravdess": "speaker", "turev": "corpus"})))

    first = export.export_model(tiny_model_dir, tmp_path / "first", evaluation, left_out_reports=[left_out])
    second = export.export_model(first, tmp_path / "second")
    for folder in (first, second):
        assert (folder / "evaluation" / "report.md").read_text() == markdown_report(small_report())
        assert (folder / "evaluation" / "validation.md").read_text() == validation_markdown(validation)
        assert json.loads((folder / "evaluation" / "left_out_turev.json").read_text())["held_out_by"]["turev"] == "corpus"
    card = (second / "README.md").read_text()
    assert card == (first / "README.md").read_text()
    assert "| TurEV-DB | 1735 | 6 | 46.0% | 45.0% | 30.0% | +15.0 pts |" in card
    assert "| level_minus_30db | 50.0% | 75.0% | 3 |" in card and "| clean | 100.0% (50.0%) |" in card


def bundled_card(repo_id):
    from ser_model import SERForAudioClassification
    from ser_model.model_info import BUNDLED_MODEL

    if not (BUNDLED_MODEL / "model.safetensors").is_file():
        pytest.skip("the bundled model/ has not been exported")
    read = lambda name: json.loads((BUNDLED_MODEL / name).read_text())  # noqa: E731
    return export.model_card(SERForAudioClassification.from_pretrained(BUNDLED_MODEL),
                             read("evaluation/report.json"), read("training.json"), repo_id)


def test_the_card_names_the_given_hub_id_or_a_placeholder_that_says_so():
    assert 'model="alice/ser", trust_remote_code=True' in bundled_card("alice/ser").text
    card = bundled_card(None)
    assert f'model="{export.PLACEHOLDER_REPO_ID}", trust_remote_code=True' in card.text
    assert "your-username" not in card.text and card.data.model_name == "ser-densenet-fusion"


def test_the_card_lists_every_training_corpus_as_a_dataset():
    # The bundled model learnt from five corpora; ASED and TurEV-DB have no Hub dataset of their own.
    assert sorted(bundled_card(None).data.datasets) == ["amu-cai/nEMO", "ased", "ravdess", "tess", "turev-db"]


def test_the_card_says_why_the_temperature_is_or_is_not_applied():
    fit = {"temperature": 1.0, "fitted_temperature": 0.976, "applied": False, "clips": 1216,
           "ece_before": 0.0487, "ece_after": 0.0497}
    assert export._temperature_decision(fit) == (
        "A temperature of 0.98 fitted on the validation speakers would have raised the expected calibration error "
        "of the 1216 validation clips it was fitted on from 0.049 to 0.050, so none is applied.")
    applied = {**fit, "temperature": 1.5, "fitted_temperature": 1.5, "applied": True, "ece_after": 0.02}
    assert export._temperature_decision(applied).startswith("On the validation speakers the temperature lowered")
    # The bundled model's temperature lowered the validation error, so it is applied and its card says why.
    assert "On the validation speakers the temperature lowered the expected calibration error of the 1216" in \
        bundled_card(None).text


def test_the_report_says_when_no_temperature_is_applied():
    from ser_model.evaluation.report import calibration_sentence

    none = {"temperature": 1.0, "clips": 40, "with_temperature": {"ece": 0.031}, "without_temperature": {"ece": 0.031}}
    assert calibration_sentence(none) == ("No temperature is applied: the probabilities are the model's own, and their "
                                          "expected calibration error on the 40 held-out test clips is 0.031.")
