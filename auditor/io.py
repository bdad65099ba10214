"""Reading and writing tables (CSV, JSONL, Parquet; optionally gzip/zstd-compressed).

Reading streams in batches and never gives up on a whole file for one bad row: a row
that cannot be parsed is reported as a :class:`RowProblem` (file, row, column, what was
wrong) and skipped. Bytes that are not UTF-8 are decoded as Windows-1252 for that line
only, and reported, so a delivery with mixed encodings is read, not rejected.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
ROW_COLUMN = "_row"  # 1-based position of the record in its file (data rows; a CSV header is not counted)
csv.field_size_limit(1 << 30)


class InputError(ValueError):
    """An input cannot be used at all; the message names the file and what is wrong."""


@dataclass
class RowProblem:
    path: str
    row: int | None
    column: str | None
    message: str
    kind: str = "unreadable_row"

    def __str__(self) -> str:
        where = (
            self.path
            + (f", row {self.row}" if self.row is not None else "")
            + (f", column {self.column!r}" if self.column else "")
        )
        return f"{where}: {self.message}"


def describe_format(path: str | Path) -> tuple[str, str | None]:
    """(format, compression) from the file name, e.g. ``batch.jsonl.gz`` -> (jsonl, gzip)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InputError(
            f"{path}: cannot tell the format from the file name; use one of "
            f"{', '.join(sorted(FORMATS))} (optionally followed by .gz or .zst)"
        )
    if fmt == "parquet" and compression:
        raise InputError(f"{path}: Parquet files are compressed internally; do not wrap them in {compression}")
    return fmt, compression


def _open_binary(path: Path, compression: str | None):
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(path.open("rb"), read_across_frames=True)
    return path.open("rb")


def _decoded_lines(path: Path, compression: str | None, problems: list[RowProblem]) -> Iterator[str]:
    """Text lines of a file; a line that is not valid UTF-8 is decoded as cp1252 and reported."""
    try:
        handle = _open_binary(path, compression)
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from exc
    with handle:
        stream = io.BufferedReader(handle) if compression == "zstd" else handle
        _refuse_binary(path, stream.peek(4096)[:4096] if hasattr(stream, "peek") else b"")
        line_no = 0
        try:
            for raw in stream:
                line_no += 1
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    problems.append(
                        RowProblem(
                            str(path),
                            line_no,
                            None,
                            f"not valid UTF-8 ({exc.reason} at byte {exc.start}); read as Windows-1252",
                            "encoding",
                        )
                    )
                    yield raw.decode("cp1252", errors="replace")
        except (OSError, EOFError) as exc:  # truncated gzip/zstd stream
            problems.append(
                RowProblem(
                    str(path),
                    line_no + 1,
                    None,
                    f"file ends early or is corrupt after line {line_no}: {exc}",
                    "truncated_file",
                )
            )


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _refuse_binary(path: Path, head: bytes) -> None:
    """Text formats must be UTF-8 (or close to it): say so instead of parsing noise."""
    if head.startswith(_UTF16_BOMS) or (head and head.count(b"\x00") > len(head) // 4):
        kind = "UTF-16 text" if head.startswith(_UTF16_BOMS) or head[1:2] == b"\x00" else "binary data"
        raise InputError(
            f"{path}: this looks like {kind}, not a UTF-8 text file; convert it to UTF-8 (or send Parquet)"
        )


def read_columns(path: str | Path) -> list[str]:
    """Column names of a table, reading as little as possible."""
    path = Path(path)
    fmt, compression = describe_format(path)
    _check_readable(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt files
            raise InputError(f"{path}: not a readable Parquet file: {exc}") from exc
    problems: list[RowProblem] = []
    if fmt in ("csv", "tsv"):
        reader = csv.reader(_decoded_lines(path, compression, problems), delimiter="\t" if fmt == "tsv" else ",")
        header = next(reader, None)
        if not header:
            raise InputError(f"{path}: empty file, no header row")
        return [h.lstrip("\ufeff") for h in header]
    if fmt == "json":
        frame, _ = read_table(path)
        return [c for c in frame.columns if c != ROW_COLUMN]
    columns: dict[str, None] = {}
    for i, line in enumerate(_decoded_lines(path, compression, problems)):
        if i >= 1000:
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            columns.update(dict.fromkeys(record))
    return list(columns)


def require_columns(path: str | Path, wanted: dict[str, str | None]) -> None:
    """Fail before any scoring if an option names a column the file does not have.

    ``wanted`` maps the option (e.g. ``--text-col``) to the column it names.
    """
    available = read_columns(path)
    missing = {opt: col for opt, col in wanted.items() if col is not None and col not in available}
    if missing:
        said = "; ".join(f"{opt} {col!r}" for opt, col in missing.items())
        raise InputError(f"{path}: no such column: {said}. Columns in this file: {', '.join(map(repr, available))}")


def iter_batches(
    path: str | Path, columns: Sequence[str] | None = None, batch_rows: int = 10_000
) -> Iterator[tuple[pd.DataFrame, list[RowProblem]]]:
    """Yield (rows, problems) batches. Every frame has a ``_row`` column (1-based record number)."""
    path = Path(path)
    fmt, compression = describe_format(path)
    _check_readable(path)
    if fmt == "parquet":
        yield from _parquet_batches(path, columns, batch_rows)
    elif fmt == "jsonl":
        yield from _jsonl_batches(path, compression, columns, batch_rows)
    elif fmt == "json":
        yield from _json_array_batches(path, compression, columns, batch_rows)
    else:
        yield from _csv_batches(path, compression, "\t" if fmt == "tsv" else ",", columns, batch_rows)


def read_table(path: str | Path, columns: Sequence[str] | None = None) -> tuple[pd.DataFrame, list[RowProblem]]:
    frames, problems = [], []
    for frame, batch_problems in iter_batches(path, columns):
        frames.append(frame)
        problems.extend(batch_problems)
    if not frames:
        return pd.DataFrame(columns=[*(columns or []), ROW_COLUMN]), problems
    return pd.concat(frames, ignore_index=True), problems


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a table file")


def _csv_batches(path, compression, delimiter, columns, batch_rows):
    problems: list[RowProblem] = []
    reader = csv.reader(_decoded_lines(path, compression, problems), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{path}: empty file, no header row") from None
    except csv.Error as exc:
        raise InputError(f"{path}: header row is not valid CSV: {exc}") from exc
    header = [h.lstrip("\ufeff") for h in header]
    keep = list(columns) if columns else header
    positions = {name: header.index(name) for name in keep if name in header}
    records: list[dict[str, Any]] = []
    row = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            row += 1
            problems.append(RowProblem(str(path), row, None, f"not valid CSV: {exc}"))
            continue
        row += 1
        if not values:
            continue
        if len(values) != len(header):
            problems.append(
                RowProblem(
                    str(path), row, None, f"has {len(values)} fields, the header has {len(header)}", "wrong_field_count"
                )
            )
            if len(values) < len(header):
                continue
        record = {name: values[i] for name, i in positions.items()}
        record[ROW_COLUMN] = row
        records.append(record)
        if len(records) >= batch_rows:
            yield pd.DataFrame.from_records(records, columns=[*positions, ROW_COLUMN]), _take(problems)
            records = []
    yield pd.DataFrame.from_records(records, columns=[*positions, ROW_COLUMN]), _take(problems)


def _jsonl_batches(path, compression, columns, batch_rows):
    problems: list[RowProblem] = []
    records: list[dict[str, Any]] = []
    for row, line in enumerate(_decoded_lines(path, compression, problems), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(RowProblem(str(path), row, None, f"not valid JSON: {exc.msg} at character {exc.pos}"))
            continue
        if not isinstance(record, dict):
            problems.append(RowProblem(str(path), row, None, f"expected a JSON object, found {type(record).__name__}"))
            continue
        if columns:
            record = {c: record.get(c) for c in columns}
        record[ROW_COLUMN] = row
        records.append(record)
        if len(records) >= batch_rows:
            yield pd.DataFrame.from_records(records), _take(problems)
            records = []
    yield (
        pd.DataFrame.from_records(records, columns=[*(columns or []), ROW_COLUMN] if not records else None),
        _take(problems),
    )


def _json_array_batches(path, compression, columns, batch_rows):
    """A JSON document holding an array of objects (read whole: such files are small)."""
    problems: list[RowProblem] = []
    text = "".join(_decoded_lines(path, compression, problems))
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    if not isinstance(document, list):
        raise InputError(f"{path}: expected a JSON array of objects (or use JSON Lines, one object per line)")
    records = []
    for row, record in enumerate(document, start=1):
        if not isinstance(record, dict):
            problems.append(RowProblem(str(path), row, None, f"expected a JSON object, found {type(record).__name__}"))
            continue
        if columns:
            record = {c: record.get(c) for c in columns}
        records.append({**record, ROW_COLUMN: row})
    for start in range(0, max(len(records), 1), batch_rows):
        chunk = records[start : start + batch_rows]
        yield (
            pd.DataFrame.from_records(chunk, columns=None if chunk else [*(columns or []), ROW_COLUMN]),
            _take(problems),
        )


def _parquet_batches(path, columns, batch_rows):
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: not a readable Parquet file: {exc}") from exc
    names = parquet.schema_arrow.names
    wanted = [c for c in columns if c in names] if columns else None
    row = 0
    for group in range(parquet.num_row_groups):
        try:
            table = parquet.read_row_group(group, columns=wanted)
        except Exception as exc:  # noqa: BLE001 - a corrupt row group loses only its rows
            n = parquet.metadata.row_group(group).num_rows
            yield (
                pd.DataFrame(columns=[*(wanted or names), ROW_COLUMN]),
                [
                    RowProblem(
                        str(path),
                        row + 1,
                        None,
                        f"row group {group} ({n} rows from row {row + 1}) unreadable: {exc}",
                        "unreadable_row_group",
                    )
                ],
            )
            row += n
            continue
        for start in range(0, table.num_rows, batch_rows):
            frame = table.slice(start, batch_rows).to_pandas()
            frame[ROW_COLUMN] = range(row + start + 1, row + start + 1 + len(frame))
            yield frame, []
        row += table.num_rows


def _take(problems: list[RowProblem]) -> list[RowProblem]:
    taken = list(problems)
    problems.clear()
    return taken


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
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False, compression=compression)
    else:
        frame.to_csv(tmp, index=False, sep="\t" if fmt == "tsv" else ",", compression=compression)
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
