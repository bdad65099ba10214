"""The detector contract shared by every signal source.

A detector follows scikit-learn conventions: settings are the ``__init__`` arguments
(so ``get_params()`` makes them serialisable into a report), anything learned from data
is set in ``fit`` under a name ending in ``_``, and heavy resources (models, indexes) are
loaded once in ``setup()``. ``detect(texts)`` returns one row per input text, in input
order: the detector's signals plus ``score`` in [0, 1] (higher means more LLM-like).
Detectors only score; thresholds and policies belong to the auditor.

The method is ``detect``, not ``score``: detectors that are scikit-learn classifiers
(``ClassifierMixin``) keep ``score(X, y)`` with scikit-learn's meaning (accuracy).

Outputs: a detector declares the columns it adds to the auditor's tables in ``outputs``
(:class:`OutputColumn`: name, Arrow type, which way is machine-like, what it means), and
``output_prefix`` says how they are named there (the perplexity signals are ``ppl_<name>``).
The auditor builds its scored-items schema from these declarations (:func:`output_columns`)
and reads directions from :func:`machine_directions`; which value is "too machine-like" is
still the auditor's call.

Registry: ``@register`` makes a detector constructible by name (:func:`create`) and, when
it has a saved form (a ``load`` classmethod), loadable by name (:func:`load`). Adding a
detector is one class and one registration; the auditor asks for detectors by name.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.base import BaseEstimator

from detectors.text import PreparedTexts, TextLimits, prepare_texts

SCORE = "score"
SKIP_REASON = "skip_reason"

_REGISTRY: dict[str, type[Detector]] = {}
_LOADERS: dict[str, Callable[..., Detector]] = {}
# Modules whose detectors register themselves on import; loaded on the first registry look-up.
_BUILTIN = ("detectors.perplexity", "detectors.classifier", "detectors.duplicates", "detectors.ngram")


@dataclass(frozen=True)
class OutputColumn:
    """One column a detector adds to every scored text.

    ``name`` is the column of the detector's ``detect`` frame, ``type`` its Arrow type in the
    auditor's tables (always nullable: texts that are not scored have no value). ``machine``
    says which way the value moves for LLM-written text (``1``: higher, ``-1``: lower) for a
    signal, and is ``None`` for a column that is not one (a length, a flag)."""

    name: str
    type: pa.DataType
    machine: Literal[1, -1] | None
    description: str

    def __post_init__(self) -> None:
        if self.machine not in (1, -1, None):
            raise ValueError(f"output {self.name!r}: machine must be 1, -1 or None, not {self.machine!r}")


class Detector(BaseEstimator, abc.ABC):
    """Base class: subclasses set ``name``/``version`` and implement ``_score_valid``."""

    name: ClassVar[str]
    version: ClassVar[str]
    # The columns ``detect`` adds besides ``score`` and ``skip_reason``, and the prefix they
    # carry in the auditor's tables.
    outputs: ClassVar[tuple[OutputColumn, ...]] = ()
    output_prefix: ClassVar[str] = ""

    limits: TextLimits = TextLimits()

    @property
    def id(self) -> str:
        """Versioned name, recorded in every report that used this detector."""
        return f"{self.name}-v{self.version}"

    def setup(self) -> Self:
        """Load heavy resources. Idempotent; ``detect`` calls it when needed."""
        return self

    def fit(self, texts: Sequence[str], labels: Sequence[int] | None = None) -> Self:
        """Learn from labelled texts (1 = LLM-written). Stateless detectors need not override."""
        return self

    def detect(self, texts: Sequence[Any]) -> pd.DataFrame:
        """Signals and ``score`` per text; rows that cannot be scored get NaN signals and a ``skip_reason``."""
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
    if len(frame) == prepared.n_inputs:  # every text was scored: nothing to place
        full = frame.copy()
    else:
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
    """Class decorator: make a detector constructible by name with :func:`create`. Its declared
    outputs may not share a name, or a table column, with another registered detector's."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"detector name {cls.name!r} is already registered by {_REGISTRY[cls.name]}")
    names = [o.name for o in cls.outputs]
    if len(set(names)) != len(names):
        raise ValueError(f"detector {cls.name!r} declares an output twice: {names}")
    for other in _REGISTRY.values():
        if other is cls:
            continue
        clash = {o.name for o in other.outputs} & set(names)
        clash |= {other.output_prefix + o.name for o in other.outputs} & {cls.output_prefix + n for n in names}
        if clash:
            raise ValueError(
                f"detector {cls.name!r} declares output(s) {sorted(clash)} already declared by {other.name!r}"
            )
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Forget a registered detector (a test's own, or a plugin's); its outputs leave the tables."""
    _REGISTRY.pop(name, None)
    _LOADERS.pop(name, None)


def register_loader(name: str, loader: Callable[..., Detector]) -> None:
    """Say how a registered detector with a saved form is loaded, when its class has no ``load``."""
    _LOADERS[name] = loader


def _lookup(name: str) -> type[Detector]:
    if name not in _REGISTRY:
        for module in _BUILTIN:
            importlib.import_module(module)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown detector {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def create(name: str, **params: Any) -> Detector:
    """A new detector of the registered kind ``name`` with these settings."""
    return _lookup(name)(**params)


def load(name: str, directory: Path | None = None, trust: bool = False, **runtime: Any) -> Detector:
    """A trained detector of the registered kind ``name`` from its saved directory (its default
    one when ``directory`` is None); ``runtime`` settings do not change what it computes."""
    cls = _lookup(name)
    loader = _LOADERS.get(name) or getattr(cls, "load", None)
    if loader is None:
        raise ValueError(f"detector {name!r} has no saved form; construct it with create({name!r}, ...)")
    detector: Detector = loader(directory, trust=trust, **runtime)
    return detector


def registered() -> dict[str, type[Detector]]:
    for module in _BUILTIN:
        importlib.import_module(module)
    return dict(_REGISTRY)


def _declaration_order(cls: type[Detector]) -> tuple[int, int]:
    # The built-in detectors first, in _BUILTIN's order, then the others as they registered:
    # the columns' order does not depend on which module happened to be imported first.
    order = list(_REGISTRY.values()).index(cls)
    return (_BUILTIN.index(cls.__module__), order) if cls.__module__ in _BUILTIN else (len(_BUILTIN), order)


def output_columns() -> dict[str, OutputColumn]:
    """Every registered detector's declared outputs, by their column in the auditor's tables
    (``output_prefix`` + name): the built-in detectors' first, then the others' in the order
    they registered."""
    detectors = sorted(registered().values(), key=_declaration_order)
    return {cls.output_prefix + output.name: output for cls in detectors for output in cls.outputs}


def machine_directions() -> dict[str, int]:
    """Which way each registered signal moves for LLM-written text (+1: higher, -1: lower), by
    output name; outputs that are not signals (``machine`` is None) are left out."""
    return {o.name: o.machine for o in output_columns().values() if o.machine is not None}


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
