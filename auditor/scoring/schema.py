"""The scored-items table, defined once: column names, types and nullability.

:data:`SCORED` is what the scorer adds to every text (decision, detector signals,
near-duplicate evidence); ``auditor score`` writes the input columns followed by it, and the
REST ``/v1/score`` results are its rows (decision fields at the top, the rest as
``signals``). :data:`ITEMS` is ``items.parquet`` of an audit: where each row came from and
what became of it, then the same scored columns (``dup_nearest`` names the nearest item
instead of a row of the batch), then the behavioural measures. Both are validated where a
table is written (:meth:`TableSchema.conform`): a missing required column, a value of the
wrong type or a null where none is allowed raises :class:`SchemaError`.

The detectors' signal columns are not listed here: every registered detector declares its
outputs (:class:`detectors.OutputColumn`), and both tables take them from the registry
(:func:`detectors.output_columns`) when they are used, so a detector registered later (a
plug-in, a test's) has its columns in the tables without an edit here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from detectors import output_columns, registered
from detectors.perplexity import PerplexityDetector

PROBABILITY = "llm_probability"
FLAGGED = "flagged"
FLAG_REASON = "flag_reason"
SKIP_REASON = "skip_reason"
# The perplexity detector's signals are ppl_<name> in the tables.
SIGNAL_PREFIX = PerplexityDetector.output_prefix
TEXT_TRUNCATED = "text_truncated"
SPANS = "spans"
DUP_CLUSTER, DUP_CLUSTER_SIZE, DUP_NEAREST, DUP_JACCARD = (
    "dup_cluster",
    "dup_cluster_size",
    "dup_nearest",
    "dup_jaccard",
)
REF_KEY, REF_JACCARD, REF_LABEL, REF_SOURCE = "ref_key", "ref_jaccard", "ref_label", "ref_source"

Role = Literal["decision", "signal", "evidence", "item", "behaviour"]


class SchemaError(ValueError):
    """A table does not match its schema; the message names the column and what is wrong."""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    role: Role
    doc: str
    nullable: bool = True
    required: bool = True  # False: present only when the model computes it (LM signals) or the input has it

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable)


_STRING, _FLOAT, _INT, _BOOL = pa.string(), pa.float64(), pa.int64(), pa.bool_()


class TableSchema:
    """An ordered set of :class:`Column` s; other columns (the input's own) may come first.

    Built from a list of columns, or from a function giving them (:func:`signal_columns`): that
    one is asked again whenever the detector registry has changed, and the schemas made from it
    (``+``, :meth:`replace`) follow."""

    def __init__(self, columns: Sequence[Column] | Callable[[], Sequence[Column]]) -> None:
        self._source: Callable[[], Sequence[Column]] = columns if callable(columns) else _fixed(list(columns))
        self._built: tuple[tuple[object, ...], list[Column], dict[str, Column]] | None = None
        self._resolve()  # column names must be unique from the start

    def _resolve(self) -> tuple[list[Column], dict[str, Column]]:
        key = tuple(registered().values())
        if self._built is None or self._built[0] != key:
            columns = list(self._source())
            by_name = {c.name: c for c in columns}
            if len(by_name) != len(columns):
                raise ValueError("column names must be unique")
            self._built = (key, columns, by_name)
        return self._built[1], self._built[2]

    @property
    def columns(self) -> list[Column]:
        return self._resolve()[0]

    @property
    def by_name(self) -> dict[str, Column]:
        return self._resolve()[1]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def role(self, role: Role) -> list[str]:
        return [c.name for c in self.columns if c.role == role]

    def replace(self, name: str, **changes: object) -> TableSchema:
        return TableSchema(lambda: [replace(c, **changes) if c.name == name else c for c in self.columns])  # type: ignore[arg-type]

    def __add__(self, other: TableSchema) -> TableSchema:
        return TableSchema(lambda: self.columns + other.columns)

    def arrow(self, frame: pd.DataFrame | None = None) -> pa.Schema:
        """The Arrow schema of ``frame`` laid out by this schema: its other columns first (types
        inferred), then this schema's columns that it has."""
        if frame is None:
            return pa.schema([c.field for c in self.columns])
        others = [c for c in frame.columns if c not in self.by_name]
        inferred = pa.Schema.from_pandas(frame[others], preserve_index=False) if others else pa.schema([])
        return pa.schema([*inferred, *(c.field for c in self.columns if c.name in frame)])

    def conform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with its other columns first and this schema's columns after them in schema
        order, after checking every column of the schema it holds; raises :class:`SchemaError`."""
        missing = [c.name for c in self.columns if c.required and c.name not in frame]
        if missing:
            raise SchemaError(f"scored table lacks required column(s): {', '.join(missing)}")
        ordered = frame[[c for c in frame.columns if c not in self.by_name] + [n for n in self.names if n in frame]]
        self.to_arrow(ordered)  # checks types and nulls
        return ordered

    def to_arrow(self, frame: pd.DataFrame) -> pa.Table:
        arrays, fields = [], []
        for field in self.arrow(frame):
            column = self.by_name.get(field.name)
            try:
                array = pa.array(frame[field.name], type=field.type if column else None, from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
                raise SchemaError(f"column {field.name!r} does not hold {field.type}: {exc}") from None
            if column is not None and not column.nullable and array.null_count:
                raise SchemaError(f"column {field.name!r} has {array.null_count} null value(s); it may have none")
            arrays.append(array)
            fields.append(field if column else pa.field(field.name, array.type))
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def write_parquet(self, frame: pd.DataFrame, path: Path) -> Path:
        """Validate and write atomically (a partial file, then renamed)."""
        table = self.to_arrow(self.conform(frame))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        pq.write_table(table, tmp)
        tmp.replace(path)
        return path


def _fixed(columns: list[Column]) -> Callable[[], list[Column]]:
    return lambda: columns


def signal_columns() -> list[Column]:
    """The registered detectors' declared outputs as signal columns (the perplexity signals,
    the classifier's parts, then any other detector's), optional: a model computes only its own."""
    return [
        Column(name, output.type, "signal", output.description + "; null when not scored", required=False)
        for name, output in output_columns().items()
    ]


_DECISION = TableSchema(
    [
        Column(PROBABILITY, _FLOAT, "decision", "calibrated P(LLM-written); null when the text was skipped"),
        Column(FLAGGED, _BOOL, "decision", "above the calibrated threshold, or a near-copy of known LLM output", False),
        Column(FLAG_REASON, _STRING, "decision", "why it is flagged"),
        Column(SKIP_REASON, _STRING, "decision", "why the text was not scored (missing, empty, too_short)"),
    ]
)
_TEXT_AND_EVIDENCE = TableSchema(
    [
        Column(TEXT_TRUNCATED, _BOOL, "signal", "the text was cut to the detector's character limit", False),
        Column(SPANS, _STRING, "signal", "JSON list of sentences with their scores (null: not scored)"),
        Column(DUP_CLUSTER, _INT, "evidence", "near-duplicate cluster within the table, -1 none"),
        Column(DUP_CLUSTER_SIZE, _INT, "evidence", "texts in that cluster (1: none)"),
        Column(DUP_NEAREST, _INT, "evidence", "row (0-based) of the most similar other text, -1 none"),
        Column(DUP_JACCARD, _FLOAT, "evidence", "Jaccard similarity to it"),
        Column(REF_KEY, _STRING, "evidence", "best reference-index match"),
        Column(REF_JACCARD, _FLOAT, "evidence", "its Jaccard similarity"),
        Column(REF_LABEL, _STRING, "evidence", "its label (machine, human, eval ...)"),
        Column(REF_SOURCE, _STRING, "evidence", "its source"),
    ]
)
SCORED = _DECISION + TableSchema(signal_columns) + _TEXT_AND_EVIDENCE

_ITEM = TableSchema(
    [
        Column("item_id", _STRING, "item", "the id column's value, else file name:row", False),
        Column("file", _STRING, "item", "input file", False),
        Column("row", _INT, "item", "1-based record number in the file (null: the whole file)"),
        Column("status", _STRING, "item", "scored, skipped or unreadable", False),
        Column("problem", _STRING, "item", "what was wrong with the row, if anything"),
        Column("vendor", _STRING, "item", "vendor (null only for unreadable rows)"),
        Column("worker", _STRING, "item", "worker, when a worker column was given"),
        Column("batch", _STRING, "item", "batch, when a batch column was given"),
        Column("source_id", _STRING, "item", "the id column's value"),
        Column("duplicate_id", _BOOL, "item", "the id appears more than once in the delivery", False),
        Column("text", _STRING, "item", "the text as read"),
    ]
)

_BEHAVIOUR = TableSchema(
    [
        Column(name, _FLOAT, "behaviour", doc, required=False)
        for name, doc in (
            ("time_on_task_s", "time on task, seconds"),
            ("chars_per_second", "characters per second of time on task"),
            ("pasted", "1 if the row reports paste events, else 0"),
            ("keystrokes_per_char", "keystrokes per character of text"),
        )
    ]
)

ITEMS = _ITEM + SCORED.replace("dup_nearest", type=_STRING, doc="item_id of the most similar other item") + _BEHAVIOUR
