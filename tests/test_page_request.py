import copy

from ser_model.serving.page_request import PageRequest
from ser_model.serving.prediction import Prediction


def prediction(label: str) -> Prediction:
    return Prediction(label, {label: 1.0}, 1.0)


def test_an_answer_for_a_replaced_input_is_dropped_and_the_current_one_kept():
    request = PageRequest()
    request.start("long.wav")
    long_token = request.token_for("long.wav")
    request.start("angry.flac")  # an example clicked while the long file is classified
    assert request.token_for("long.wav") is None and not request.is_current(long_token)
    angry_token = request.token_for("angry.flac")
    assert request.answer(angry_token, prediction("angry"))
    assert not request.answer(long_token, prediction("fear"))  # the long file's late answer
    assert not request.refuse(long_token, "too long")
    path, kept = request.answered()
    assert path == "angry.flac" and kept.label == "angry" and request.refusal() is None


def test_pictures_are_drawn_once_and_a_clear_forgets_the_answer():
    request = PageRequest()
    request.start("a.wav")
    token = request.token_for("a.wav")
    request.answer(token, prediction("sad"))
    assert request.take_for_drawing()[1:] == ("a.wav", request.answered()[1])
    assert request.take_for_drawing() is None
    request.start(None)  # the upload was cleared
    assert request.answered() is None and request.token_for("a.wav") is None


def test_each_session_gets_a_fresh_request():
    request = PageRequest()
    request.start("a.wav")
    copied = copy.deepcopy(request)  # what Gradio does to a gr.State's value for each session
    assert copied.answered() is None and copied.token_for("a.wav") is None and copied.token_for(None) == 0
