"""The facts about a model that the app states: its training corpora and the sentence naming them."""

from ser_model.model_info import corpus_languages, describe_training_data, load_training_corpora


def test_the_training_data_sentence_names_languages_and_corpora():
    assert describe_training_data(["ravdess", "ased", "nemo"]) == "acted speech in English, Amharic and Polish " \
                                                                 "(RAVDESS, ASED, nEMO)"
    assert describe_training_data(["tess"]) == "acted speech in English (TESS)"
    assert describe_training_data(None) == "acted speech (its training corpora were not recorded with it)"
    assert corpus_languages(["turev", "emodb", "tess", "manifest"]) == ["en", "de", "tr"]


def test_the_training_corpora_come_from_the_model_folders_record(tiny_model_dir):
    assert load_training_corpora(tiny_model_dir) is None
    (tiny_model_dir / "split.json").write_text('{"corpora": {"tess": {}, "ravdess": {}}}')
    assert load_training_corpora(tiny_model_dir) == ["ravdess", "tess"]
    (tiny_model_dir / "training.json").write_text('{"corpora": ["turev"]}')  # the record of the run wins
    assert load_training_corpora(tiny_model_dir) == ["turev"]
