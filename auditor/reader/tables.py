"""Rows of deliveries as pandas frames (CSV, TSV, JSON Lines, a JSON array, Parquet), and
writing tables back.

Reading streams in batches and never gives up on a whole file for one bad row: a row that
cannot be parsed becomes a :class:`~auditor.reader.core.Problem` (with its row; kinds in the
core module's table) and is skipped; a line that is not UTF-8 is read as Windows-1252 and
reported, so a delivery with mixed encodings is read, not rejected. Every frame has a
``_row`` column: the 1-based number of the record in its file (a CSV header is not counted;
in JSON Lines it is the line number).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pandas as pd

from auditor.reader.core import (
    READ_AS_CP1252,
    Problem,
    ProblemCounter,
    ReadError,
    describe_format,
    opened,
    parquet_file,
    row_group_batches,
    text_lines,
)
from auditor.reader.documents import JSON_KINDS, iter_json_lines

ROW_COLUMN = "_row"
csv.field_size_limit(1 << 30)

Batch = tuple[pd.DataFrame, list[Problem]]


def read_columns(source: str | Path) -> list[str]:
    """Column names of a table, reading as little as possible."""
    name = str(source)
    fmt, compression = describe_format(name)
    if fmt == "parquet":
        with parquet_file(name) as parquet:
            if parquet is None:
                raise ReadError(name, "not a readable Parquet file: the file is empty")
            return list(parquet.schema_arrow.names)
    counter = ProblemCounter(name, None)
    if fmt in ("csv", "tsv"):
        return _CsvRows(name, compression, "\t" if fmt == "tsv" else ",", counter).header
    if fmt == "json":
        frame, _ = read_table(name)
        return [c for c in frame.columns if c != ROW_COLUMN]
    columns: dict[str, None] = {}
    for number, (_, record) in enumerate(iter_json_lines(name, compression, counter)):
        if number >= 1000:
            break
        columns.update(dict.fromkeys(record))
    return list(columns)


def require_columns(source: str | Path, wanted: dict[str, str | None]) -> list[str]:
    """Fail before any scoring if an option names a column the file does not have; returns the
    columns it has. ``wanted`` maps the option (e.g. ``--text-col``) to the column it names."""
    available = read_columns(source)
    missing = {opt: col for opt, col in wanted.items() if col is not None and col not in available}
    if missing:
        said = "; ".join(f"{opt} {col!r}" for opt, col in missing.items())
        raise ReadError(str(source), f"no such column: {said}. Columns in this file: {', '.join(map(repr, available))}")
    return available


def iter_batches(source: str | Path, columns: Sequence[str] | None = None, batch_rows: int = 10_000) -> Iterator[Batch]:
    """Yield (rows, problems) batches; every frame has a ``_row`` column (1-based record number)."""
    name = str(source)
    fmt, compression = describe_format(name)
    if fmt == "parquet":
        return _parquet_batches(name, columns, batch_rows)
    if fmt == "jsonl":
        return _jsonl_batches(name, compression, columns, batch_rows)
    if fmt == "json":
        return _json_array_batches(name, compression, columns, batch_rows)
    return _csv_batches(name, compression, "\t" if fmt == "tsv" else ",", columns, batch_rows)


def read_table(source: str | Path, columns: Sequence[str] | None = None) -> tuple[pd.DataFrame, list[Problem]]:
    frames, problems = [], []
    for frame, batch_problems in iter_batches(source, columns):
        frames.append(frame)
        problems.extend(batch_problems)
    if not frames:
        return pd.DataFrame(columns=[*(columns or []), ROW_COLUMN]), problems
    return pd.concat(frames, ignore_index=True), problems


def read_texts(source: str | Path, text_col: str) -> list[str]:
    """The non-blank texts of one column (reference texts)."""
    frame, _ = read_table(source, [text_col])
    if text_col not in frame or frame[text_col].isna().all():
        # JSON readers fill a column no record has with nulls: tell that apart from blank texts.
        require_columns(source, {"--reference-text-col": text_col})
    return [t for t in frame[text_col].tolist() if isinstance(t, str) and t.strip()]


def count_records(source: str | Path) -> int:
    """Records to expect (for progress): Parquet metadata, else a line count; 0 when unknown
    (compressed files and JSON arrays are not read twice)."""
    name = str(source)
    fmt, compression = describe_format(name)
    try:
        if fmt == "parquet":
            with parquet_file(name) as parquet:
                return int(parquet.metadata.num_rows) if parquet is not None else 0
        if compression or fmt == "json":
            return 0
        with opened(name) as handle:
            lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    except ReadError:
        return 0  # unreadable sources are reported when they are read
    return max(lines - (1 if fmt in ("csv", "tsv") else 0), 0)


def fingerprint(source: str | Path) -> dict[str, Any]:
    """Path, size and SHA-256 of a source (for reports and for resuming the same work)."""
    name = str(source)
    try:
        with opened(name) as handle:
            digest, size = hashlib.sha256(), 0
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    except ReadError:
        return {"path": name, "bytes": None, "sha256": None}
    local = Path(name)
    return {"path": str(local.resolve()) if local.exists() else name, "bytes": size, "sha256": digest.hexdigest()}


# --------------------------------------------------------------------------- formats


def _frame(records: list[dict[str, Any]], columns: Sequence[str] | None) -> pd.DataFrame:
    if records:
        return pd.DataFrame.from_records(records)
    return pd.DataFrame(columns=[*(columns or []), ROW_COLUMN])


class _CsvRows:
    """The rows of a CSV/TSV source with their numbers. A line that is not UTF-8 is noted on
    the row it belongs to (a quoted field may span lines); a row that cannot be parsed is a
    ``bad_csv`` problem."""

    def __init__(self, source: str, compression: str | None, delimiter: str, counter: ProblemCounter) -> None:
        self.source, self.compression, self.counter = source, compression, counter
        self._notes: list[tuple[int, str]] = []  # of lines not yet assigned to a row
        self._reader = csv.reader(self._lines(), delimiter=delimiter)
        try:
            self.header = next(self._reader)
        except StopIteration:
            raise ReadError(source, "empty file, no header row") from None
        except csv.Error as exc:
            raise ReadError(source, f"header row is not valid CSV: {exc}") from exc
        self._assign_notes(None)

    def _lines(self) -> Iterator[str]:
        for number, line, note in text_lines(self.source, self.compression, self.counter):
            if note is not None:
                self._notes.append((number, note))
            yield line + "\n"

    def _assign_notes(self, row: int | None) -> None:
        for number, note in self._notes:
            self.counter.add("encoding", note + READ_AS_CP1252, line=number, row=row)
        self._notes.clear()

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        row = 0
        while True:
            try:
                values = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                row += 1
                self.counter.add("bad_csv", f"not valid CSV: {exc}", row=row)
                continue
            row += 1
            self._assign_notes(row)
            if values:
                yield row, values


def _csv_batches(
    source: str, compression: str | None, delimiter: str, columns: Sequence[str] | None, batch_rows: int
) -> Iterator[Batch]:
    counter = ProblemCounter(source, None)
    rows = _CsvRows(source, compression, delimiter, counter)
    header = rows.header
    positions = {name: header.index(name) for name in (list(columns) if columns else header) if name in header}
    records: list[dict[str, Any]] = []
    for row, values in rows:
        if len(values) != len(header):
            counter.add("wrong_field_count", f"has {len(values)} fields, the header has {len(header)}", row=row)
            if len(values) < len(header):
                continue
        record: dict[str, Any] = {name: values[i] for name, i in positions.items()}
        record[ROW_COLUMN] = row
        records.append(record)
        if len(records) >= batch_rows:
            yield pd.DataFrame.from_records(records, columns=[*positions, ROW_COLUMN]), counter.take()[0]
            records = []
    yield pd.DataFrame.from_records(records, columns=[*positions, ROW_COLUMN]), counter.take()[0]


def _jsonl_batches(
    source: str, compression: str | None, columns: Sequence[str] | None, batch_rows: int
) -> Iterator[Batch]:
    counter = ProblemCounter(source, None)
    records: list[dict[str, Any]] = []
    for row, record in iter_json_lines(source, compression, counter, position="row"):
        if columns:
            record = {c: record.get(c) for c in columns}
        record[ROW_COLUMN] = row
        records.append(record)
        if len(records) >= batch_rows:
            yield pd.DataFrame.from_records(records), counter.take()[0]
            records = []
    yield _frame(records, columns), counter.take()[0]


def _json_array_batches(
    source: str, compression: str | None, columns: Sequence[str] | None, batch_rows: int
) -> Iterator[Batch]:
    """A JSON document holding an array of objects (read whole: such files are small)."""
    counter = ProblemCounter(source, None)
    text_parts = []
    for number, line, note in text_lines(source, compression, counter):
        if note is not None:
            counter.add("encoding", note + READ_AS_CP1252, line=number)
        text_parts.append(line)
    try:
        document = json.loads("\n".join(text_parts))
    except json.JSONDecodeError as exc:
        raise ReadError(source, f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    if not isinstance(document, list):
        raise ReadError(source, "expected a JSON array of objects (or use JSON Lines, one object per line)")
    records = []
    for row, record in enumerate(document, start=1):
        if not isinstance(record, dict):
            counter.add(
                "not_an_object", f"expected a JSON object, found {JSON_KINDS.get(type(record), 'null')}", row=row
            )
            continue
        if columns:
            record = {c: record.get(c) for c in columns}
        records.append({**record, ROW_COLUMN: row})
    for start in range(0, max(len(records), 1), batch_rows):
        yield _frame(records[start : start + batch_rows], columns), counter.take()[0]


def _parquet_batches(source: str, columns: Sequence[str] | None, batch_rows: int) -> Iterator[Batch]:
    counter = ProblemCounter(source, None)
    with parquet_file(source) as parquet:
        if parquet is None:
            raise ReadError(source, "not a readable Parquet file: the file is empty")
        names = parquet.schema_arrow.names
        wanted = [c for c in columns if c in names] if columns else None
        first_row = 0
        for group in range(parquet.num_row_groups):
            row = first_row
            for chunk in row_group_batches(parquet, group, first_row, batch_rows, wanted, counter):
                frame = chunk.to_pandas()
                frame[ROW_COLUMN] = range(row + 1, row + 1 + len(frame))
                row += len(frame)
                yield frame, counter.take()[0]
            problems = counter.take()[0]
            if problems:  # an unreadable row group: its rows are lost, said once
                yield pd.DataFrame(columns=[*(wanted or names), ROW_COLUMN]), problems
            first_row += parquet.metadata.row_group(group).num_rows


# --------------------------------------------------------------------------- writing


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write by extension; nested values (lists, dicts) become JSON text in CSV/JSONL-safe form."""
    path = Path(path)
    fmt, compression = describe_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = _flatten_nested(frame)
    tmp = path.with_name(path.name + ".partial")
    if fmt == "parquet":
        frame.to_parquet(tmp, index=False)
    elif fmt == "jsonl":
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False, compression=cast(Any, compression))
    elif fmt in ("csv", "tsv"):
        frame.to_csv(tmp, index=False, sep="\t" if fmt == "tsv" else ",", compression=cast(Any, compression))
    else:
        raise ReadError(str(path), f"cannot write {fmt}; write .csv, .tsv, .jsonl or .parquet")
    tmp.replace(path)
    return path


def _flatten_nested(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object and frame[column].map(lambda v: isinstance(v, list | dict)).any():
            frame[column] = frame[column].map(
                lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
            )
    return frame
