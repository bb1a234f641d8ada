"""How a result is put into words, the same for the CLI, the app's file and live tabs and the API's text.

Kept apart from the pictures (`plots.py`) and the app's steps (`analysis.py`) so that the CLI can word a
result without importing matplotlib.
"""

from __future__ import annotations

# How a decision is worded (`describe`); two thresholds:
# - a first choice with at least CONFIDENT_FROM (one half) outweighs the six other emotions together,
#   so it is stated plainly: "happy (72%)";
# - when the first choice is less than CLOSE_RATIO times as likely as the second, the two split 60/40
#   or closer between them, near a coin toss, so both are named: "not sure: fear (46%) or sad (45%)";
# - otherwise the first choice clearly leads without being confident: "probably neutral (48%)".
# (Chance level with 7 classes is 14%.)
CONFIDENT_FROM = 0.5
CLOSE_RATIO = 1.5


def percent(probability: float, decimals: int = 0) -> str:
    """A probability as a percentage that never claims certainty: '72%', and '>99%' or '<1%' where rounding
    would print 100% or 0% (a model's probability is never exactly either).

    Args:
        probability (`float`): from 0 to 1.
        decimals (`int`, *optional*, defaults to 0): digits after the point ('72.4%', '>99.9%', '<0.1%').
    """
    text = f"{probability:.{decimals}%}"
    step = 10.0 ** -decimals
    if float(text[:-1]) >= 100:
        return f">{100 - step:.{decimals}f}%"
    if float(text[:-1]) <= 0:
        return f"<{step:.{decimals}f}%"
    return text


def describe(probabilities: dict[str, float]) -> str:
    """'happy (72%)', 'probably neutral (48%)' or 'not sure: fear (46%) or sad (45%)': see `CONFIDENT_FROM`
    and `CLOSE_RATIO`."""
    (first, p1), (second, p2) = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)[:2]
    if p1 < CLOSE_RATIO * p2:
        return f"not sure: {first} ({percent(p1)}) or {second} ({percent(p2)})"
    if p1 >= CONFIDENT_FROM:
        return f"{first} ({percent(p1)})"
    return f"probably {first} ({percent(p1)})"


def describe_voice(voice: dict[str, float], accuracy: float | None = None) -> str:
    """'voice sounds female (93%)', worded as a perception of the audio, never as a fact about the person,
    with how often the model was right on speakers it never heard where that was measured."""
    label = max(voice, key=voice.get)
    sentence = f"voice sounds {label} ({percent(voice[label])})"
    if accuracy is not None:
        sentence += f"; right {accuracy:.0%} of the time on test speakers the model never heard"
    return sentence


def describe_rule() -> str:
    """The wording rule in a sentence, for the page."""
    return (f"A first choice of {CONFIDENT_FROM:.0%} or more is stated plainly; below that it reads **probably**; "
            f"when the second choice comes within a factor of {CLOSE_RATIO:g} of the first, the page says "
            "**not sure** and names both.")


__all__ = ["CLOSE_RATIO", "CONFIDENT_FROM", "describe", "describe_rule", "describe_voice", "percent"]
