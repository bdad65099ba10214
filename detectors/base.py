"""The detector contract shared by every signal source.

A detector follows scikit-learn conventions: settings are the ``__init__`` arguments
(so ``get_params()`` makes them serialisable into a report), anything learned from data
is set in ``fit`` under a name ending in ``_``, and heavy resources (models, indexes) are
loaded once in ``setup()``. ``score(texts)`` returns one row per input text, in input
order: the detector's signals plus ``score`` in [0, 1] (higher means more LLM-like).
Detectors only score; thresholds and policies belong to the auditor.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from detectors.text import PreparedTexts, TextLimits, prepare_texts

SCORE = "score"
SKIP_REASON = "skip_reason"

_REGISTRY: dict[str, type[Detector]] = {}


class Detector(BaseEstimator, abc.ABC):
    """Base class: subclasses set ``name``/``version`` and implement ``_score_valid``."""

    name: ClassVar[str]
    version: ClassVar[str]

    limits: TextLimits = TextLimits()

    @property
    def id(self) -> str:
        """Versioned name, recorded in every report that used this detector."""
        return f"{self.name}-v{self.version}"

    def setup(self) -> Self:
        """Load heavy resources. Idempotent; ``score`` calls it when needed."""
        return self

    def fit(self, texts: Sequence[str], labels: Sequence[int] | None = None) -> Self:
        """Learn from labelled texts (1 = LLM-written). Stateless detectors need not override."""
        return self

    def score(self, texts: Sequence[Any]) -> pd.DataFrame:
        """Score ``texts``; rows that cannot be scored get NaN signals and a ``skip_reason``."""
        prepared = prepare_texts(texts, self.limits)
        frame = self._score_valid(prepared.valid_texts) if prepared.valid_texts else self._empty_frame()
        return expand_to_inputs(frame, prepared)

    @abc.abstractmethod
    def _score_valid(self, texts: list[str]) -> pd.DataFrame:
        """Score cleaned, non-empty texts; must return ``len(texts)`` rows with a ``score`` column."""

    def _empty_frame(self) -> pd.DataFrame:
        return pd.DataFrame({SCORE: pd.Series(dtype=float)})

    def describe(self) -> dict[str, Any]:
        """Identity and settings, for the provenance section of reports."""
        params = {k: _jsonable(v) for k, v in self.get_params(deep=False).items()}
        return {"id": self.id, "name": self.name, "version": self.version, "params": params}


def expand_to_inputs(frame: pd.DataFrame, prepared: PreparedTexts) -> pd.DataFrame:
    """Place the rows scored for valid texts back at their input positions."""
    if len(frame) != len(prepared.valid_index):
        raise RuntimeError(f"detector returned {len(frame)} rows for {len(prepared.valid_index)} texts")
    frame = frame.reset_index(drop=True)
    frame.index = prepared.valid_index
    full = frame.reindex(range(prepared.n_inputs))
    for column, dtype in frame.dtypes.items():
        if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            # Reindexing turned these into floats to hold NaN; keep them integer/boolean.
            full[column] = full[column].astype("Int64" if pd.api.types.is_integer_dtype(dtype) else "boolean")
    full[SKIP_REASON] = pd.Series(prepared.skip_reasons, dtype="object")
    full["truncated_chars"] = np.asarray(prepared.truncated, dtype=bool)
    return full


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: make a detector constructible by name with :func:`create`."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"detector name {cls.name!r} is already registered by {_REGISTRY[cls.name]}")
    _REGISTRY[cls.name] = cls
    return cls


def create(name: str, **params: Any) -> Detector:
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown detector {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None
    return cls(**params)


def registered() -> dict[str, type[Detector]]:
    return dict(_REGISTRY)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Detector):
        return value.describe()
    return repr(value)
