"""The project's one exception for bad input from a person (a file, a folder, an argument).

Commands, the app and the API catch `InputError` and show its message, one sentence, instead of
a traceback; anything else that escapes is a bug and keeps its traceback. It derives from
`ValueError` so that callers written against the earlier `ValueError`s keep working.
"""


class InputError(ValueError):
    """Bad input from the person running the program; `str(error)` is one sentence for them."""


__all__ = ["InputError"]
