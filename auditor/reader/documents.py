"""Documents of pre-training shards, for the gate: texts in batches with their positions.

:func:`iter_documents` yields the document texts of one shard in batches
(:class:`DocumentBatch`), each text with its 1-based line (JSON Lines) or row (Parquet)
number; :func:`read_records` re-reads chosen records in full, for quarantine output.
A shard is JSON Lines (plain, ``.gz`` or ``.zst``) or Parquet, named by a local path or
any fsspec URL; see :func:`~auditor.reader.core.describe_format` with ``documents=True``.

Plain lists, not pandas frames: million-document shards are read at a few hundred thousand
documents a second. Bounded memory, whatever the shard size: JSON Lines is read,
decompressed and decoded in blocks of about 1 MiB of complete lines; Parquet one record
batch at a time through a 1 MiB buffered stream. What is held at once is one block, one
batch (``batch_size`` texts, plus their records when asked) and at most
:data:`~auditor.reader.core.MAX_EXAMPLES` itemised problems per kind.

A shard that cannot be read at all raises :class:`~auditor.reader.core.ReadError` on the
first ``next()``, before any batch; once a batch has been yielded nothing more is raised.
Everything else is a :class:`~auditor.reader.core.Problem` (kinds in the core module's
table), counted in ``DocumentBatch.problem_counts`` and itemised up to the cap.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from auditor.reader.core import (
    READ_AS_CP1252,
    DamagedStreamError,
    Problem,
    ProblemCounter,
    ReadError,
    damage_message,
    decode_block,
    decode_line,
    describe_format,
    line_blocks,
    parquet_file,
    row_group_batches,
    split_lines,
    text_lines,
)

READ_CHUNK_ROWS = 1 << 14  # rows per record batch when re-reading Parquet records
_FIELDS_SHOWN = 5
JSON_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


@dataclass
class DocumentBatch:
    """Up to ``batch_size`` documents of one shard, in file order, and the problems met reading them."""

    texts: list[str]  # document texts: non-empty, not only whitespace
    positions: list[int]  # 1-based line (JSON Lines) or row (Parquet) of each text
    records: list[dict] | None  # the full records of ``texts`` when keep_records=True, else None
    problems: list[Problem]  # itemised problems (at most MAX_EXAMPLES per kind per shard)
    problem_counts: Counter[str] = field(default_factory=Counter)  # every problem, by kind
    rows_seen: int = 0  # non-blank lines / rows examined, skipped ones included

    def __len__(self) -> int:
        return len(self.texts)


def iter_documents(
    shard: str, text_field: str = "text", batch_size: int = 10_000, keep_records: bool = False
) -> Iterator[DocumentBatch]:
    """Yield the documents of ``shard`` in batches of at most ``batch_size`` texts.

    A batch is yielded when it holds ``batch_size`` texts, and at the end if it holds texts
    or problems. So an empty shard (zero bytes, only blank lines, a Parquet file with no
    rows) yields **no batch at all**, and a shard whose every record is bad yields one batch
    with no texts and the problems; the caller decides what an empty shard means.

    With ``keep_records`` each batch also carries the full records of its texts (parsed
    JSON objects, or Parquet rows as dicts from pyarrow's ``to_pylist``: timestamps come as
    ``datetime``, binary as ``bytes``) for quarantine output.

    Raises :class:`ReadError` when the shard cannot be read at all (see the module
    docstring): at the call for a name whose format it cannot tell, otherwise on the first
    ``next()`` (nothing is opened before iteration starts); never after a batch was yielded.
    So wrap the call and the loop in one ``try``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    fmt, compression = describe_format(shard, documents=True)
    if fmt == "parquet":
        return _parquet_documents(shard, text_field, batch_size, keep_records)
    return _jsonl_documents(shard, compression, text_field, batch_size, keep_records)


def read_records(shard: str, positions: set[int], text_field: str = "text") -> dict[int, dict]:
    """The full records at ``positions`` (1-based lines or rows, as in ``DocumentBatch.positions``).

    Streams the shard and stops after the last wanted position; Parquet reads only the row
    groups holding wanted rows. Positions that do not hold a readable JSON object (past the
    end, bad JSON, in a damaged part) are absent from the result. ``text_field`` is checked
    as by :func:`iter_documents` (a Parquet shard without that column raises
    :class:`ReadError`), so both calls accept and refuse the same shards.
    """
    wanted = sorted(p for p in positions if p >= 1)
    fmt, compression = describe_format(shard, documents=True)
    if not wanted:
        return {}
    if fmt == "parquet":
        return _parquet_records(shard, wanted, text_field)
    return _jsonl_records(shard, compression, wanted)


class _Batch:
    """The batch being filled; the readers append to its lists directly (hot loop)."""

    def __init__(self, keep_records: bool) -> None:
        self.keep_records = keep_records
        self.texts: list[str] = []
        self.positions: list[int] = []
        self.records: list[dict] = []  # filled only when keep_records

    def finish(self, tally: ProblemCounter, rows_seen: int) -> DocumentBatch:
        problems, counts = tally.take()
        records = self.records if self.keep_records else None
        return DocumentBatch(self.texts, self.positions, records, problems, counts, rows_seen)

    def worth_yielding(self, tally: ProblemCounter) -> bool:
        return bool(self.texts or tally.counts)


def _classify_text(record: dict, text: Any, text_field: str) -> tuple[str, str]:
    """(kind, message) for a record whose text was not accepted."""
    if text is None and text_field not in record:
        names = list(record)
        shown = ", ".join(map(repr, names[:_FIELDS_SHOWN]))
        more = f" ... ({len(names)} in all)" if len(names) > _FIELDS_SHOWN else ""
        return "missing_text_field", f"no {text_field!r} field; the record has {shown or 'no fields'}{more}"
    if text is None or isinstance(text, str):
        return "empty_text", f"{text_field!r} is {'null' if text is None else 'empty or only whitespace'}"
    return "text_not_string", f"{text_field!r} holds {JSON_KINDS.get(type(text), type(text).__name__)}, not a string"


def _jsonl_documents(  # noqa: C901 - the hot loop of the gate, kept in one piece for speed
    shard: str, compression: str | None, text_field: str, batch_size: int, keep_records: bool
) -> Iterator[DocumentBatch]:
    tally = ProblemCounter(shard)
    batch = _Batch(keep_records)
    texts, positions, records = batch.texts, batch.positions, batch.records  # hot loop: local names
    loads = json.loads
    line_no = 0
    seen = 0  # non-blank lines since the last batch was yielded
    try:
        for block in line_blocks(shard, compression):
            lines, notes = decode_block(block, line_no + 1)
            for number, note in notes:
                tally.add("encoding", note + READ_AS_CP1252, line=number)
            if line_no == 0 and lines and lines[0].startswith("\ufeff"):
                lines[0] = lines[0][1:]  # byte-order mark
            for line in lines:
                line_no += 1
                try:
                    record = loads(line)
                except (ValueError, RecursionError) as exc:
                    if line and not line.isspace():  # blank lines are skipped silently
                        seen += 1
                        tally.add("bad_json", _json_error(exc), line=line_no)
                    continue
                seen += 1
                if type(record) is not dict:
                    found = JSON_KINDS.get(type(record), "null")
                    tally.add("not_an_object", f"expected a JSON object, found {found}", line=line_no)
                    continue
                text = record.get(text_field)
                if type(text) is str and text and not text.isspace():
                    texts.append(text)
                    positions.append(line_no)
                    if keep_records:
                        records.append(record)
                    if len(texts) >= batch_size:
                        yield batch.finish(tally, seen)
                        batch, seen = _Batch(keep_records), 0
                        texts, positions, records = batch.texts, batch.positions, batch.records
                else:
                    kind, message = _classify_text(record, text, text_field)
                    tally.add(kind, message, line=line_no)
    except DamagedStreamError as exc:
        if line_no == 0:
            raise ReadError(shard, f"damaged before its first complete line: {exc}") from None
        tally.add("truncated", damage_message("shard", exc), line=line_no)
    if batch.worth_yielding(tally):
        yield batch.finish(tally, seen)


def _json_error(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} at character {exc.pos + 1}"
    if isinstance(exc, RecursionError):
        return "not readable JSON: nested too deeply"
    return f"not valid JSON: {exc}"


def _jsonl_records(shard: str, compression: str | None, wanted: list[int]) -> dict[int, dict]:
    found: dict[int, dict] = {}
    next_wanted = 0  # index into the sorted ``wanted``
    line_no = 0
    blocks = line_blocks(shard, compression)
    try:
        for block in blocks:
            count = block.count(b"\n") + (not block.endswith(b"\n"))
            if wanted[next_wanted] <= line_no + count:
                lines = split_lines(block)
                while next_wanted < len(wanted) and wanted[next_wanted] <= line_no + count:
                    position = wanted[next_wanted]
                    record = _parse_record(lines[position - line_no - 1], first=position == 1)
                    if record is not None:
                        found[position] = record
                    next_wanted += 1
                if next_wanted == len(wanted):
                    break
            line_no += count
    except DamagedStreamError:
        pass  # positions in the damaged part are simply not found
    finally:
        blocks.close()
    return found


def _parse_record(raw: bytes, first: bool) -> dict | None:
    line, _ = decode_line(raw)
    if first:
        line = line.removeprefix("\ufeff")
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return record if type(record) is dict else None


def _parquet_documents(shard: str, text_field: str, batch_size: int, keep_records: bool) -> Iterator[DocumentBatch]:
    tally = ProblemCounter(shard)
    batch = _Batch(keep_records)
    examined = flushed = 0  # rows examined in all, and when the last batch was yielded
    with parquet_file(shard, text_field) as parquet:
        if parquet is None:
            return
        columns = None if keep_records else [text_field]
        first_row = 0  # rows before the current row group
        for group in range(parquet.num_row_groups):
            row = first_row  # rows before the current record batch
            for chunk in row_group_batches(parquet, group, first_row, batch_size, columns, tally):
                texts = chunk.column(text_field).to_pylist()
                records = chunk.to_pylist() if keep_records else None
                for i, text in enumerate(texts):
                    if type(text) is str and text and not text.isspace():
                        batch.texts.append(text)
                        batch.positions.append(row + i + 1)
                        if records is not None:
                            batch.records.append(records[i])
                        if len(batch.texts) >= batch_size:
                            yield batch.finish(tally, examined + i + 1 - flushed)
                            batch, flushed = _Batch(keep_records), examined + i + 1
                    else:
                        kind, message = _classify_text({text_field: text}, text, text_field)
                        tally.add(kind, message, row_group=group, row=row + i + 1)
                row += len(texts)
                examined += len(texts)
            first_row += parquet.metadata.row_group(group).num_rows
    if batch.worth_yielding(tally):
        yield batch.finish(tally, examined - flushed)


def _parquet_records(shard: str, wanted: list[int], text_field: str) -> dict[int, dict]:
    found: dict[int, dict] = {}
    with parquet_file(shard, text_field) as parquet:
        if parquet is None:
            return found
        first_row = 0
        for group in range(parquet.num_row_groups):
            total = parquet.metadata.row_group(group).num_rows
            inside = [p for p in wanted if first_row < p <= first_row + total]
            if inside:
                found.update(_records_in_group(parquet, group, first_row, inside))
            first_row += total
    return found


def _records_in_group(parquet: Any, group: int, first_row: int, inside: list[int]) -> dict[int, dict]:
    found: dict[int, dict] = {}
    row = first_row
    try:
        for chunk in parquet.iter_batches(batch_size=READ_CHUNK_ROWS, row_groups=[group], use_threads=False):
            for position in inside:
                if row < position <= row + chunk.num_rows:
                    found[position] = chunk.slice(position - row - 1, 1).to_pylist()[0]
            row += chunk.num_rows
    except Exception:  # noqa: BLE001 - rows of an unreadable group are simply not found
        pass
    return found


def iter_json_lines(
    source: str,
    compression: str | None,
    counter: ProblemCounter,
    *,
    position: str = "line",
    skip_undecodable: bool = False,
) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for every line of a JSON Lines source holding a JSON object.

    Blank lines are skipped silently; the others that hold no object are counted as problems
    (``bad_json``, ``not_an_object``) at ``position`` (``"line"`` or ``"row"``: the keyword
    the problem is placed with). A line that is not UTF-8 is read as Windows-1252 and noted,
    or skipped and noted with ``skip_undecodable``."""
    loads = json.loads
    for line_no, line, note in text_lines(source, compression, counter):
        where = {position: line_no}
        if note is not None:
            if skip_undecodable:
                counter.add("encoding", note + "; the line is skipped", **where)
                continue
            counter.add("encoding", note + READ_AS_CP1252, **where)
        try:
            record = loads(line)
        except (ValueError, RecursionError) as exc:
            if line and not line.isspace():
                counter.add("bad_json", _json_error(exc), **where)
            continue
        if type(record) is not dict:
            counter.add(
                "not_an_object", f"expected a JSON object, found {JSON_KINDS.get(type(record), 'null')}", **where
            )
            continue
        yield line_no, record
