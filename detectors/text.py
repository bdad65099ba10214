"""Turning raw cell values into texts a detector can score, with a reason for every text it cannot."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# C0/C1 control characters except tab/newline/carriage return, plus invisible format
# characters that are used to dodge detectors (zero-width space/joiners, BOM, word joiner).
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200c\u200e\u200f\u2060\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0]+")

MISSING = "missing"
EMPTY = "empty"
TOO_SHORT = "too_short"


@dataclass(frozen=True)
class TextLimits:
    """Bounds applied before scoring. Texts shorter than ``min_chars`` visible characters are
    skipped (their statistics would be noise); texts longer than ``max_chars`` are cut."""

    min_chars: int = 3
    max_chars: int = 20_000


@dataclass
class PreparedTexts:
    n_inputs: int
    valid_texts: list[str] = field(default_factory=list)
    valid_index: list[int] = field(default_factory=list)
    skip_reasons: list[str | None] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)


def clean_text(text: str) -> str:
    """NFC-normalise, drop control and zero-width characters, collapse runs of spaces."""
    text = unicodedata.normalize("NFC", text)
    text = _INVISIBLE.sub("", text)
    return _SPACES.sub(" ", text).strip()


def as_text(value: Any) -> str | None:
    """The string held by a table cell, or None when the cell is missing."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def skip_reason(text: str | None, limits: TextLimits) -> str | None:
    if text is None:
        return MISSING
    if not text:
        return EMPTY
    visible = 0
    for ch in text:
        visible += not ch.isspace()
        if visible >= limits.min_chars:
            return None
    if visible < limits.min_chars:
        return f"{TOO_SHORT}: {visible} visible character(s), at least {limits.min_chars} needed"
    return None


def prepare_texts(values: Sequence[Any], limits: TextLimits = TextLimits()) -> PreparedTexts:
    prepared = PreparedTexts(n_inputs=len(values))
    for i, value in enumerate(values):
        raw = as_text(value)
        text = clean_text(raw) if raw is not None else None
        truncated = text is not None and len(text) > limits.max_chars
        if text is not None and truncated:
            text = text[: limits.max_chars]
        reason = skip_reason(text, limits)
        prepared.skip_reasons.append(reason)
        prepared.truncated.append(truncated)
        if reason is None and text is not None:
            prepared.valid_texts.append(text)
            prepared.valid_index.append(i)
    return prepared
