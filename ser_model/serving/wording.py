"""How a result is put into words, the same for the CLI, the app's file and live tabs and the API's text.

Kept apart from the pictures (`plots.py`) and the app's steps (`analysis.py`) so that the CLI can word a
result without importing matplotlib.
"""

from __future__ import annotations

import math

# How a decision is worded (`describe`); two thresholds:
# - a first choice with at least CONFIDENT_FROM (one half) outweighs the six other emotions together,
#   so it is stated plainly: "happy (72%)";
# - when the first choice is less than CLOSE_RATIO times as likely as the second, the two split 60/40
#   or closer between them, near a coin toss, so both are named: "not sure: fear (46%) or sad (45%)";
# - otherwise the first choice clearly leads without being confident: "probably neutral (48%)".
# (Chance level with 7 classes is 14%.)
CONFIDENT_FROM = 0.5
CLOSE_RATIO = 1.5


# The probabilities nearest 0 and 1 that `percent` writes as a plain whole percentage, "1%" and "99%": the
# floats just inside 0.005 and 0.995, since Python rounds half to even, so that 0.005 itself reads "0%" and
# 0.995 "100%".
LOWEST_PLAIN = math.nextafter(0.005, 1.0)
HIGHEST_PLAIN = math.nextafter(0.995, 0.0)


def _beyond_plain(probability: float, decimals: int) -> str | None:
    """'>' where `probability`, written with `decimals`, would read 100%; '<' where it would read 0%; else None."""
    rounded = float(f"{probability:.{decimals}%}"[:-1])
    if rounded >= 100:
        return ">"
    if rounded <= 0:
        return "<"
    return None


def percent(probability: float, decimals: int = 0) -> str:
    """A probability as a percentage that never claims certainty: '72%', and '>99%' or '<1%' where rounding
    would print 100% or 0% (a model's probability is never exactly either).

    Args:
        probability (`float`): from 0 to 1.
        decimals (`int`, *optional*, defaults to 0): digits after the point ('72.4%', '>99.9%', '<0.1%').
    """
    step = 10.0 ** -decimals
    beyond = _beyond_plain(probability, decimals)
    if beyond == ">":
        return f">{100 - step:.{decimals}f}%"
    if beyond == "<":
        return f"<{step:.{decimals}f}%"
    return f"{probability:.{decimals}%}"


def label_value(probabilities: dict[str, float]) -> dict[str, float]:
    """The probabilities as a `gr.Label` on the page is given them, so that it never shows 100% or 0%: each one
    `percent` writes as '>99%' or '<1%' becomes `HIGHEST_PLAIN` or `LOWEST_PLAIN`, the others stay as they are.
    Only the page's labels use it; the API returns the model's probabilities.

    Gradio 6's Label writes `Math.round(confidence * 100)` beside each bar and draws the bar
    `confidence * 100`% wide (`BaseLabel` in gradio/templates/frontend/assets/Index-*.js). Python and JavaScript
    multiply by 100 alike (one float product) and round it alike except at exactly half: there JavaScript goes
    up and Python to even, and the halves that decide 0 and 100 (products of 0.5 and 99.5) are ones `percent`
    already counts as '<1%' and '>99%'. So a probability left as it is reads from 1% to 99% on the page too,
    and a moved one 1% or 99%. A moved bar is off by at most half a percentage point (a '>99%' one, at least
    0.995, is drawn just under 99.5%; a '<1%' one, at most 0.005, just over 0.5%): no more than rounding moves
    the text beside any other bar.

    Gradio sorts the classes by the value given (stably) and heads the label with the first. The values come
    in the order of the true probabilities, so the several classes under 1%, all given `LOWEST_PLAIN`, keep
    theirs; and only one class can be over 99%, so the heading stays the most probable one.

    Args:
        probabilities (`dict[str, float]`): class -> probability from 0 to 1.
    """
    moved = {">": HIGHEST_PLAIN, "<": LOWEST_PLAIN}
    ranked = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)
    return {name: moved.get(_beyond_plain(probability, 0), probability) for name, probability in ranked}


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


__all__ = ["CLOSE_RATIO", "CONFIDENT_FROM", "HIGHEST_PLAIN", "LOWEST_PLAIN", "describe", "describe_rule",
           "describe_voice", "label_value", "percent"]
