"""Scoring of the search benchmark's answers, as LLMCompiler and HotpotQA score them.

Lower-case, drop punctuation and articles, exact match; numbers match within ±10%; list and dict answers
(FanOutQA) score the fraction of their items the prediction states.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping, Sequence

from agentdag.toolsets import JsonValue

__all__ = ["normalize_answer", "parse_number", "score_answer"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "billion": 1e9, "bn": 1e9, "trillion": 1e12}
_NUMBER = re.compile(
    r"(?<![\w.])[-+]?[$€£]?\s?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s*(%|thousand|million|billion|trillion|bn|k|m)?(?![\w])",
    re.IGNORECASE,
)
_WHOLE_NUMBER = re.compile(r"\s*[-+]?[$€£]?\s?[\d,]*\d(\.\d+)?\s*(%|[a-z]+)?(\s+[a-z]+){0,2}\s*\.?\s*", re.IGNORECASE)
_TOLERANCE = 0.10


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse white space (LLMCompiler's and HotpotQA's rule)."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def parse_number(text: str) -> float | None:
    """The number a short answer states (`"$1.2 billion"`, `"1,590,152"`, `"49.7 minutes"`), or None.

    Only answers that are a number, optionally with a currency, a scale word and up to two unit words,
    count; a sentence that mentions a number is not a number.
    """
    if not _WHOLE_NUMBER.fullmatch(text):
        return None
    numbers = _numbers_in(text)
    return numbers[0] if len(numbers) == 1 else None


def _numbers_in(text: str) -> list[float]:
    return [value for value, _ in _number_spans(text)]


def _number_spans(text: str) -> list[tuple[float, tuple[int, int]]]:
    found = []
    for match in _NUMBER.finditer(text):
        digits, fraction, scale = match.group(1), match.group(2) or "", (match.group(3) or "").lower()
        value = float(digits.replace(",", "") + fraction)
        if match.group(0).lstrip().startswith("-"):
            value = -value
        found.append((value * _SCALES.get(scale, 1.0), match.span()))
    return found


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _TOLERANCE * abs(b) if b else abs(a) <= _TOLERANCE


def _to_text(value: JsonValue) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "\n".join(f"{key}: {_to_text(item)}" for key, item in value.items())
    if isinstance(value, list):
        return "\n".join(_to_text(item) for item in value)
    return json.dumps(value)


def _parse_prediction(prediction: JsonValue) -> JsonValue:
    """A string that holds JSON (as a joiner's answer often does) is scored as the JSON value."""
    if isinstance(prediction, str) and prediction.strip()[:1] in ("{", "["):
        try:
            parsed: JsonValue = json.loads(prediction)
        except ValueError:
            return prediction
        return parsed
    return prediction


def _matches(prediction: str, gold: JsonValue) -> bool:
    """Exact match after normalisation; numbers within ±10%; booleans as yes/no or true/false."""
    if isinstance(gold, bool):
        return normalize_answer(prediction) in (("yes", "true") if gold else ("no", "false"))
    gold_number = float(gold) if isinstance(gold, int | float) else parse_number(str(gold))
    if gold_number is not None:
        predicted = parse_number(prediction)
        if predicted is not None:
            return _close(predicted, gold_number)
    return normalize_answer(prediction) == normalize_answer(_to_text(gold))


def _found_in(text: str, gold: JsonValue) -> bool:
    """Whether `text` states the gold item: as a phrase, or as a number within ±10%."""
    return bool(_spans_of(text, gold))


def _spans_of(text: str, gold: JsonValue) -> list[tuple[int, int]]:
    """Where `text` states the gold item: its words in order (case, punctuation and articles aside), a
    number within ±10% of a numeric item, or yes/true (no/false) for a boolean."""
    if isinstance(gold, bool):
        words = r"\b(yes|true)\b" if gold else r"\b(no|false)\b"
        return [match.span() for match in re.finditer(words, text, re.IGNORECASE)]
    gold_number = float(gold) if isinstance(gold, int | float) else parse_number(str(gold))
    spans = []
    if gold_number is not None:
        spans = [span for value, span in _number_spans(text) if _close(value, gold_number)]
    return spans + [match.span() for match in _phrase_pattern(_to_text(gold)).finditer(text)]


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    words = [word for word in re.findall(r"[^\W_]+", phrase) if word.lower() not in ("a", "an", "the")]
    if not words:
        return re.compile(r"(?!x)x")  # matches nothing
    separator = r"[\W_]*(?:(?:a|an|the)[\W_]+)?"
    return re.compile(r"(?<![^\W_])" + separator.join(map(re.escape, words)) + r"(?![^\W_])", re.IGNORECASE)


def score_answer(prediction: JsonValue, gold: JsonValue) -> float:
    """Score a prediction against the gold answer, from 0 to 1.

    A scalar gold answer scores 1 on an exact match after normalisation (lower-case, no punctuation, no
    articles), numbers matching within ±10%. A list or dict gold answer (FanOutQA) scores the fraction of its
    items the prediction states: a list item anywhere in it; a dict value only after a mention of its key, with
    no other gold key mentioned in between (a value stated without its key does not count). A prediction that is a JSON
    string is read as JSON first.
    """
    if prediction is None:
        return 0.0
    predicted = _parse_prediction(prediction)
    if isinstance(gold, list):
        text = _to_text(predicted)
        return sum(_found_in(text, item) for item in gold) / len(gold) if gold else float(not text.strip())
    if isinstance(gold, Mapping):
        return _score_mapping(_to_text(predicted), gold)
    if isinstance(predicted, list | Mapping):
        return 0.0
    return float(_matches(_to_text(predicted), gold))


def _score_mapping(text: str, gold: Mapping[str, JsonValue]) -> float:
    if not gold:
        return 1.0
    mentions = {key: [match.span() for match in _phrase_pattern(key).finditer(text)] for key in gold}
    found = 0
    for key, value in gold.items():
        values = _spans_of(text, value)
        others = [span for other, spans in mentions.items() if other != key for span in spans]
        found += any(_stated_for(mention, stated, others) for mention in mentions[key] for stated in values)
    return found / len(gold)


def _stated_for(mention: tuple[int, int], value: tuple[int, int], others: Sequence[tuple[int, int]]) -> bool:
    """Whether a value follows a key's mention with no other key mentioned in between (outside the value)."""
    if value[0] < mention[0]:
        return False
    return not any(mention[1] <= start < value[0] for start, _ in others)
