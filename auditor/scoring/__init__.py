"""Scoring: the one scorer (texts -> the scored-items table) and the table's schema."""

from auditor.scoring.schema import (
    FLAG_REASON,
    FLAGGED,
    ITEMS,
    PROBABILITY,
    SCORED,
    SIGNAL_PREFIX,
    SKIP_REASON,
    SchemaError,
    TableSchema,
)
from auditor.scoring.scorer import MODELS, NotCalibratedError, Scorer, cached_scorer, score_table

__all__ = [
    "FLAGGED",
    "FLAG_REASON",
    "ITEMS",
    "MODELS",
    "PROBABILITY",
    "SCORED",
    "SIGNAL_PREFIX",
    "SKIP_REASON",
    "NotCalibratedError",
    "SchemaError",
    "Scorer",
    "TableSchema",
    "cached_scorer",
    "score_table",
]
