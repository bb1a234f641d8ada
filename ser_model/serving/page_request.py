"""Which input a visitor's page is answering now: one request per page, so that a replaced input's late
answer is dropped instead of landing under another file's name. Kept apart from `app.py` because it
needs no Gradio and is tested on its own."""

from __future__ import annotations

import threading

from .prediction import Prediction


class PageRequest:
    """The input one visitor's page is answering now, and its answer or refusal once there is one.

    One per browser session, kept in a `gr.State`: Gradio hands every event of the session this same
    object, so each step of the page's chain (`classify`, `show_result`, `draw`) can tell whether what it
    holds still belongs to the input on the page. An upload, an example, a recording or a clear starts a new
    request (`start`); the steps of an older one, still running or queued (they run concurrently and finish
    in any order), then give way with `gr.skip()` instead of writing one file's answer under another's name.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._token = 0
        self._path: str | None = None
        self._prediction: Prediction | None = None
        self._refusal: str | None = None
        self._drawn = False

    def __deepcopy__(self, memo: dict) -> "PageRequest":
        # Gradio gives each session a deep copy of the State's value: a fresh request, with a lock of its own.
        return PageRequest()

    def start(self, audio_path: str | None) -> None:
        with self._lock:
            self._token += 1
            self._path, self._prediction, self._refusal, self._drawn = audio_path, None, None, False

    def token_for(self, audio_path: str | None) -> int | None:
        """The current request's token when it is for `audio_path`; None once a newer input has come."""
        with self._lock:
            return self._token if audio_path == self._path else None

    def is_current(self, token: int) -> bool:
        with self._lock:
            return token == self._token

    def answer(self, token: int, prediction: Prediction) -> bool:
        """Keeps the prediction of request `token` for the next steps; False (nothing kept) when it is stale."""
        with self._lock:
            if token != self._token:
                return False
            self._prediction = prediction
            return True

    def refuse(self, token: int, sentence: str) -> bool:
        """Keeps the sentence that refused request `token`; False (nothing kept) when it is stale."""
        with self._lock:
            if token != self._token:
                return False
            self._refusal = sentence
            return True

    def answered(self) -> tuple[str, Prediction] | None:
        """The current input's path and prediction, once it has one."""
        with self._lock:
            return None if self._prediction is None else (self._path, self._prediction)

    def refusal(self) -> str | None:
        with self._lock:
            return self._refusal

    def take_for_drawing(self) -> tuple[int, str, Prediction] | None:
        """The current request's token, path and prediction, the first time it is asked: the pictures are
        drawn once, whichever chain gets there first."""
        with self._lock:
            if self._prediction is None or self._drawn:
                return None
            self._drawn = True
            return self._token, self._path, self._prediction


__all__ = ["PageRequest"]
