"""Streaming reader of pre-training data shards, for the pre-training gate.

What: :func:`iter_documents` yields the document texts of one shard in batches
(:class:`DocumentBatch`), each text with its 1-based line (JSON Lines) or row (Parquet)
number; :func:`read_records` re-reads chosen records in full, for quarantine output.
A shard is JSON Lines (plain, ``.gz`` or ``.zst``) or Parquet, named by a local path or
any fsspec URL (``file:///...``, ``memory://...``, ``s3://...``); see :func:`shard_format`.

Why not :mod:`auditor.io`: that module reads user deliveries from local files into pandas
frames, which is too slow for million-document shards. This one yields plain lists.

Bounded memory, whatever the shard size: nothing reads a whole shard. JSON Lines is
read, decompressed and decoded in blocks of about 1 MiB of complete lines; Parquet one
record batch at a time through a 1 MiB buffered stream (no pre-buffering of row groups).
What is held at once is one block, one batch (``batch_size`` texts, plus their records
when asked) and at most :data:`MAX_EXAMPLES` itemised problems per kind. Only a single
line longer than the block size makes a block longer.

Problems. A shard that cannot be read at all raises :class:`ShardError`: missing,
unopenable (permission, directory, unknown protocol), not compressed as its name says,
UTF-16 or binary where JSON Lines is expected, damaged before its first line, not a
Parquet file, no such Parquet column. It is raised by the first ``next()``, before any
batch; once a batch has been yielded, nothing more is raised. Everything else is a
:class:`ShardProblem` and reading goes on:

========================  ==================================================  ===============
kind                      what                                                the record
========================  ==================================================  ===============
``bad_json``              the line is not valid JSON                          skipped
``not_an_object``         valid JSON but not an object (array, string ...)    skipped
``missing_text_field``    no field/column named ``text_field``                skipped
``text_not_string``       the text is a number, list, object or boolean       skipped
``empty_text``            the text is null, empty or only whitespace          skipped
``encoding``              the line is not UTF-8; it was read as Windows-1252  kept
``truncated``             the compressed stream is cut short or corrupt       reading stops
``unreadable_row_group``  a Parquet row group cannot be decoded               its rows skipped
========================  ==================================================  ===============

Aggregation: every problem is counted in ``DocumentBatch.problem_counts`` (a
:class:`~collections.Counter` by kind, for the lines/rows of that batch), but only the first
:data:`MAX_EXAMPLES` problems of each kind in a shard are itemised as :class:`ShardProblem`
objects in ``DocumentBatch.problems``. A shard with a million empty texts costs a counter,
not a million objects. Shard totals are the sums over its batches; ``problem_counts[kind]``
minus the itemised problems of that kind is how many were counted but not listed.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import fsspec

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "MAX_EXAMPLES",
    "DocumentBatch",
    "ShardError",
    "ShardProblem",
    "iter_documents",
    "read_records",
    "shard_format",
]

MAX_EXAMPLES = 20  # itemised problems per kind per shard; the rest are only counted
READ_SIZE = 1 << 20  # bytes per read from the (compressed) file, and per decompressed piece
_ZSTD_SLICE = 1 << 14  # compressed bytes fed to zstd at once: it cannot cap its output, and drops it on errors
_PARQUET_BUFFER = 1 << 20
_FIELDS_SHOWN = 5

_JSONL_NAMES = (".jsonl", ".ndjson")
_JSON_NAMES_COMPRESSED = (".json",)  # Dolma-style ``*.json.gz`` shards are JSON Lines too
_PARQUET_NAMES = (".parquet", ".pq")
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
ACCEPTED_EXTENSIONS = (
    ".jsonl",
    ".ndjson",
    ".jsonl.gz",
    ".jsonl.zst",
    ".ndjson.gz",
    ".ndjson.zst",
    ".json.gz",
    ".json.zst",
    ".parquet",
    ".pq",
)
_BARE_PROTOCOL = re.compile(r"[a-z][a-z0-9+.-]*", re.I)  # e.g. "simplecache" in simplecache::s3://...
_JSON_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


@dataclass(frozen=True)
class ShardProblem:
    """Something wrong in a shard that did not stop it from being read; see the module table."""

    shard: str
    kind: str
    message: str
    line: int | None = None  # 1-based line number (JSON Lines)
    row_group: int | None = None  # Parquet row group index (0-based, as in Parquet metadata)
    row: int | None = None  # 1-based row within the file (Parquet)

    def __str__(self) -> str:
        where = self.shard
        if self.line is not None:
            where += f", line {self.line}"
        if self.row_group is not None:
            where += f", row group {self.row_group}"
        if self.row is not None:
            where += f", row {self.row}"
        return f"{where}: {self.message}"


class ShardError(Exception):
    """The shard cannot be read at all; ``str()`` names the shard and says why."""

    def __init__(self, shard: str, reason: str) -> None:
        super().__init__(shard, reason)  # both in args, so the error pickles (dask workers)
        self.shard = shard
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.shard}: {self.reason}"


@dataclass
class DocumentBatch:
    """Up to ``batch_size`` documents of one shard, in file order, and the problems met reading them."""

    texts: list[str]  # document texts: non-empty, not only whitespace
    positions: list[int]  # 1-based line (JSON Lines) or row (Parquet) of each text
    records: list[dict] | None  # the full records of ``texts`` when keep_records=True, else None
    problems: list[ShardProblem]  # itemised problems (at most MAX_EXAMPLES per kind per shard)
    problem_counts: Counter[str] = field(default_factory=Counter)  # every problem, by kind
    rows_seen: int = 0  # non-blank lines / rows examined, skipped ones included

    def __len__(self) -> int:
        return len(self.texts)


class _Damaged(Exception):
    """A compressed stream (or a read) failed part-way; raised by the byte layer only."""


# --------------------------------------------------------------------------- formats


def shard_format(shard: str) -> tuple[str, str | None]:
    """``("jsonl" | "parquet", "gzip" | "zstd" | None)`` from the shard's name.

    Accepted: see :data:`ACCEPTED_EXTENSIONS` (any case). A plain ``.json`` is refused: it
    may be one JSON array rather than JSON Lines; ``.json.gz``/``.json.zst`` are accepted
    because Dolma-style corpora name their JSON Lines shards so. Raises :class:`ShardError`.
    """
    suffixes = _suffixes(_file_name(shard))
    compression = _COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    base_suffixes = suffixes[:-1] if compression else suffixes
    base = base_suffixes[-1] if base_suffixes else None
    if base in _PARQUET_NAMES:
        if compression:
            raise ShardError(shard, f"Parquet is compressed internally; do not wrap it in {compression}")
        return "parquet", None
    if base in _JSONL_NAMES or (compression and base in _JSON_NAMES_COMPRESSED):
        return "jsonl", compression
    raise ShardError(
        shard, f"cannot tell the shard format from its name; accepted extensions: {' '.join(ACCEPTED_EXTENSIONS)}"
    )


def _file_name(shard: str) -> str:
    """Last path component of the file the URL reads (the first segment of a ``::`` chain
    that has a path), without a ``?query`` on URLs."""
    segments = [s for s in shard.split("::") if not _BARE_PROTOCOL.fullmatch(s)] or [shard]
    target = segments[0]
    if "://" in target:
        target = target.split("?", 1)[0].split("#", 1)[0]
    return re.split(r"[/\\]", target.rstrip("/\\"))[-1]


def _suffixes(name: str) -> list[str]:
    parts = name.lower().split(".")[1:]
    return ["." + p for p in parts[-2:]]


def _sniff(head: bytes) -> str | None:
    """What a file's first bytes say it is: "gzip", "zstd", "parquet" or None."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd") or (len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and head[0] >> 4 == 5):
        return "zstd"
    if head.startswith(b"PAR1"):
        return "parquet"
    return None


# --------------------------------------------------------------------------- public readers


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

    Raises :class:`ShardError` when the shard cannot be read at all (see the module
    docstring): at the call for a name whose format it cannot tell, otherwise on the first
    ``next()`` (nothing is opened before iteration starts); never after a batch was yielded.
    So wrap the call and the loop in one ``try``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    fmt, compression = shard_format(shard)
    if fmt == "parquet":
        return _parquet_documents(shard, text_field, batch_size, keep_records)
    return _jsonl_documents(shard, compression, text_field, batch_size, keep_records)


def read_records(shard: str, positions: set[int], text_field: str = "text") -> dict[int, dict]:
    """The full records at ``positions`` (1-based lines or rows, as in ``DocumentBatch.positions``).

    Streams the shard and stops after the last wanted position; Parquet reads only the row
    groups holding wanted rows. Positions that do not hold a readable JSON object (past the
    end, bad JSON, in a damaged part) are absent from the result. ``text_field`` is checked
    as by :func:`iter_documents` (a Parquet shard without that column raises
    :class:`ShardError`), so both calls accept and refuse the same shards.
    """
    wanted = sorted(p for p in positions if p >= 1)
    fmt, compression = shard_format(shard)
    if not wanted:
        return {}
    if fmt == "parquet":
        return _parquet_records(shard, wanted, text_field)
    return _jsonl_records(shard, compression, wanted)


# --------------------------------------------------------------------------- shared plumbing


class _Tally:
    """Counts every problem of a shard; keeps the first MAX_EXAMPLES of each kind."""

    def __init__(self, shard: str) -> None:
        self.shard = shard
        self.itemised: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.examples: list[ShardProblem] = []

    def add(self, kind: str, message: str, **where: int | None) -> None:
        self.counts[kind] += 1
        if self.itemised[kind] < MAX_EXAMPLES:
            self.itemised[kind] += 1
            self.examples.append(ShardProblem(self.shard, kind, message, **where))

    def take(self) -> tuple[list[ShardProblem], Counter[str]]:
        taken = self.examples, self.counts
        self.examples, self.counts = [], Counter()
        return taken


class _Batch:
    """The batch being filled; the readers append to its lists directly (hot loop)."""

    def __init__(self, keep_records: bool) -> None:
        self.texts: list[str] = []
        self.positions: list[int] = []
        self.records: list[dict] | None = [] if keep_records else None

    def finish(self, tally: _Tally, rows_seen: int) -> DocumentBatch:
        problems, counts = tally.take()
        return DocumentBatch(self.texts, self.positions, self.records, problems, counts, rows_seen)

    def worth_yielding(self, tally: _Tally) -> bool:
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
    return "text_not_string", f"{text_field!r} holds {_JSON_KINDS.get(type(text), type(text).__name__)}, not a string"


@contextmanager
def _opened(shard: str) -> Iterator[IO[bytes]]:
    """The shard's raw bytes through fsspec; opening failures become ShardError."""
    try:
        handle = fsspec.open(shard, "rb").open()
    except FileNotFoundError:
        raise ShardError(shard, "no such file") from None
    except IsADirectoryError:
        raise ShardError(shard, "is a directory, not a shard file") from None
    except PermissionError as exc:
        raise ShardError(shard, f"permission denied ({exc.strerror or exc})") from None
    except (OSError, ValueError, ImportError) as exc:  # unknown protocol, missing backend, I/O
        raise ShardError(shard, f"cannot open: {exc}") from exc
    try:
        yield handle
    finally:
        handle.close()


# --------------------------------------------------------------------------- JSON Lines bytes


def _line_blocks(shard: str, compression: str | None) -> Iterator[bytes]:
    """Decompressed blocks of complete lines (the last may lack its newline).

    Raises ShardError (open, naming, binary content) before the first block, and _Damaged
    where the stream breaks; an incomplete line before the damage is dropped.
    """
    with _opened(shard) as raw:
        head = _read(raw, shard)
        if not head:
            return
        _check_container(shard, compression, head)
        chunks = _raw_chunks(raw, head, shard)
        if compression == "gzip":
            chunks = _gunzip(chunks)
        elif compression == "zstd":
            chunks = _unzstd(chunks)
        for number, block in enumerate(_complete_lines(chunks)):
            if number == 0:
                _refuse_binary(shard, block[:4096])
            yield block


def _read(raw: IO[bytes], shard: str, size: int | None = None) -> bytes:
    try:
        return raw.read(READ_SIZE if size is None else size)
    except IsADirectoryError:
        raise ShardError(shard, "is a directory, not a shard file") from None
    except OSError as exc:
        raise ShardError(shard, f"cannot read: {exc}") from exc


def _raw_chunks(raw: IO[bytes], head: bytes, shard: str) -> Iterator[bytes]:
    yield head
    while True:
        try:
            chunk = raw.read(READ_SIZE)
        except OSError as exc:
            raise _Damaged(f"read error: {exc}") from exc
        if not chunk:
            return
        yield chunk


def _check_container(shard: str, compression: str | None, head: bytes) -> None:
    found = _sniff(head)
    if compression and found != compression:
        suffix = ".gz" if compression == "gzip" else ".zst"
        what = f"it looks like {found} data" if found else f"it starts with {head[:12]!r}"
        raise ShardError(shard, f"named {suffix} but not {compression}-compressed ({what})")
    if not compression and found in ("gzip", "zstd"):
        suffix = ".gz" if found == "gzip" else ".zst"
        raise ShardError(shard, f"is {found}-compressed but its name does not end in {suffix}; rename it")
    if found == "parquet":
        raise ShardError(shard, "is a Parquet file but named as JSON Lines; rename it to .parquet")


def _refuse_binary(shard: str, head: bytes) -> None:
    """JSON Lines must be UTF-8 (or close to it): say so instead of reporting every line."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (head and head.count(b"\x00") > len(head) // 4):
        kind = "UTF-16 text" if head.startswith((b"\xff\xfe", b"\xfe\xff")) or head[1:2] == b"\x00" else "binary data"
        raise ShardError(shard, f"this looks like {kind}, not UTF-8 JSON Lines")


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompressed gzip (all members, zero padding allowed), in pieces of about READ_SIZE.

    :class:`gzip.GzipFile` checks a member's CRC and length only on the read *after* its
    data, and reads 8-128 KiB of input per step, so everything before the damage comes out
    before _Damaged is raised (a bare ``zlib`` object would drop its last output with the
    error). Raises _Damaged on corrupt data, a CRC/length mismatch or a cut-short stream.
    """
    stream = gzip.GzipFile(fileobj=_Replay(chunks), mode="rb")
    pending: list[bytes] = []
    size = 0
    while True:
        try:
            piece = stream.read1(READ_SIZE)
        except (OSError, EOFError, zlib.error, _Damaged) as exc:
            if pending:
                yield b"".join(pending)
            raise _Damaged(_gzip_damage(exc)) from None
        if not piece:
            break
        pending.append(piece)
        size += len(piece)
        if size >= READ_SIZE:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _gzip_damage(exc: Exception) -> str:
    if isinstance(exc, EOFError):
        return "the gzip stream stops before its end (the file was cut short)"
    if isinstance(exc, zlib.error):
        return f"corrupt gzip data ({exc})"
    return f"gzip: {exc}"  # CRC check failed, incorrect length, trailing garbage, read errors


class _Replay:
    """A read-only file over byte chunks: lets gzip read from the start what was already sniffed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._chunk = b""
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        if self._pos >= len(self._chunk):
            self._chunk, self._pos = next(self._chunks, b""), 0
        if size < 0:
            size = len(self._chunk)
        piece = self._chunk[self._pos : self._pos + size]
        self._pos += len(piece)
        return piece


def _unzstd(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompressed zstd (all frames). Raises _Damaged on corrupt data or a stream that stops
    inside a frame (``zstandard``'s stream reader would end silently there).

    A failing ``decompress`` call drops its output, so input goes in small slices, and the
    last 4 bytes of the file (a frame's content checksum) in a call of their own: a checksum
    mismatch then loses no line.
    """
    import zstandard

    context = zstandard.ZstdDecompressor()
    frame = None
    for chunk in _hold_back(chunks, 4):
        view, pos = memoryview(chunk), 0
        while pos < len(view):
            if frame is None:
                frame = context.decompressobj()
            piece = view[pos : pos + _ZSTD_SLICE]
            pos += len(piece)
            try:
                out = frame.decompress(piece)
            except zstandard.ZstdError as exc:
                raise _Damaged(f"corrupt zstd data ({exc})") from None
            if out:
                yield out
            if frame.eof:
                pos -= len(frame.unused_data)  # the next frame starts there
                frame = None
    if frame is not None:
        raise _Damaged("the zstd stream stops inside a frame (the file was cut short)")


def _hold_back(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The same bytes, re-chunked so that the last ``size`` bytes come as a chunk of their own."""
    held = b""
    for chunk in chunks:
        data = held + chunk if held else chunk
        held = data[-size:]
        if len(data) > size:
            yield data[:-size]
    if held:
        yield held


def _complete_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Regroup byte chunks into blocks that end at a newline (the final block may not)."""
    parts: list[bytes] = []
    for chunk in chunks:
        cut = chunk.rfind(b"\n") + 1
        if not cut:
            parts.append(chunk)
            continue
        if parts:
            parts.append(chunk[:cut])
            yield b"".join(parts)
        else:
            yield chunk if cut == len(chunk) else chunk[:cut]
        parts = [chunk[cut:]] if cut < len(chunk) else []
    tail = b"".join(parts)
    if tail:
        yield tail


def _split_lines(block: bytes) -> list[bytes]:
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    return lines


def _decode_line(raw: bytes) -> tuple[str, str | None]:
    """(text, problem message or None): UTF-8, else Windows-1252 for this line only."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        note = f"not valid UTF-8 ({exc.reason} at byte {exc.start + 1}); read as Windows-1252"
        return raw.decode("cp1252", errors="replace"), note


def _decode_block(block: bytes, first_line: int, tally: _Tally) -> list[str]:
    """The lines of a block as text: one decode for the block, line by line only if it fails."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        lines = []
        for number, raw in enumerate(_split_lines(block), start=first_line):
            line, note = _decode_line(raw)
            if note:
                tally.add("encoding", note, line=number)
            lines.append(line)
        return lines
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines


# --------------------------------------------------------------------------- JSON Lines documents


def _jsonl_documents(
    shard: str, compression: str | None, text_field: str, batch_size: int, keep_records: bool
) -> Iterator[DocumentBatch]:
    tally = _Tally(shard)
    batch = _Batch(keep_records)
    texts, positions, records = batch.texts, batch.positions, batch.records  # hot loop: local names
    loads = json.loads
    line_no = 0
    seen = 0  # non-blank lines since the last batch was yielded
    try:
        for block in _line_blocks(shard, compression):
            lines = _decode_block(block, line_no + 1, tally)
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
                    found = _JSON_KINDS.get(type(record), "null")
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
    except _Damaged as exc:
        if line_no == 0:
            raise ShardError(shard, f"damaged before its first complete line: {exc}") from None
        tally.add("truncated", f"the shard is damaged after this line: {exc}; the rest is unreadable", line=line_no)
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
    blocks = _line_blocks(shard, compression)
    try:
        for block in blocks:
            count = block.count(b"\n") + (not block.endswith(b"\n"))
            if wanted[next_wanted] <= line_no + count:
                lines = _split_lines(block)
                while next_wanted < len(wanted) and wanted[next_wanted] <= line_no + count:
                    position = wanted[next_wanted]
                    record = _parse_record(lines[position - line_no - 1], first=position == 1)
                    if record is not None:
                        found[position] = record
                    next_wanted += 1
                if next_wanted == len(wanted):
                    break
            line_no += count
    except _Damaged:
        pass  # positions in the damaged part are simply not found
    finally:
        blocks.close()
    return found


def _parse_record(raw: bytes, first: bool) -> dict | None:
    line, _ = _decode_line(raw)
    if first:
        line = line.removeprefix("\ufeff")
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return record if type(record) is dict else None


# --------------------------------------------------------------------------- Parquet


@contextmanager
def _parquet_file(shard: str, text_field: str) -> Iterator[Any]:
    """An open ``pyarrow.parquet.ParquetFile`` with a checked text column, or None for a
    zero-byte file. Streams through a buffer instead of pre-loading row groups."""
    import pyarrow.parquet as pq

    with _opened(shard) as handle:
        head = _read(handle, shard, 4)
        if not head:
            yield None
            return
        handle.seek(0)
        try:
            parquet = pq.ParquetFile(handle, buffer_size=_PARQUET_BUFFER, pre_buffer=False)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for non-Parquet input
            found = _sniff(head)
            hint = f" (it looks like {found} data)" if found and found != "parquet" else ""
            raise ShardError(shard, f"not a readable Parquet file{hint}: {_one_line(exc)}") from None
        _check_text_column(shard, parquet.schema_arrow, text_field)
        yield parquet


def _check_text_column(shard: str, schema: Any, text_field: str) -> None:
    import pyarrow as pa

    if text_field not in schema.names:
        raise ShardError(
            shard, f"no column {text_field!r}; the columns in this file are: {', '.join(map(repr, schema.names))}"
        )
    kind = schema.field(text_field).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    is_string_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or is_string_view(kind)):
        raise ShardError(shard, f"column {text_field!r} holds {kind}, not text")


def _parquet_documents(shard: str, text_field: str, batch_size: int, keep_records: bool) -> Iterator[DocumentBatch]:
    tally = _Tally(shard)
    batch = _Batch(keep_records)
    examined = flushed = 0  # rows examined in all, and when the last batch was yielded
    with _parquet_file(shard, text_field) as parquet:
        if parquet is None:
            return
        columns = None if keep_records else [text_field]
        first_row = 0  # rows before the current row group
        for group in range(parquet.num_row_groups):
            row = first_row  # rows before the current record batch
            for chunk in _row_group_batches(parquet, group, first_row, batch_size, columns, tally):
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


def _row_group_batches(
    parquet: Any, group: int, first_row: int, batch_size: int, columns: list[str] | None, tally: _Tally
) -> Iterator[Any]:
    """Record batches of one row group; if it cannot be decoded, report the rows lost and stop."""
    total = parquet.metadata.row_group(group).num_rows
    done = 0
    batches = parquet.iter_batches(batch_size=batch_size, row_groups=[group], columns=columns, use_threads=False)
    while True:
        try:
            chunk = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - a corrupt row group loses only its rows
            start, end = first_row + done + 1, first_row + total
            tally.add(
                "unreadable_row_group",
                f"row group {group} (rows {start}-{end}) cannot be read, its {end - start + 1} rows are skipped: {_one_line(exc)}",
                row_group=group,
                row=start,
            )
            return
        done += chunk.num_rows
        yield chunk


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _parquet_records(shard: str, wanted: list[int], text_field: str) -> dict[int, dict]:
    found: dict[int, dict] = {}
    with _parquet_file(shard, text_field) as parquet:
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
        for chunk in parquet.iter_batches(batch_size=READ_SIZE // 64, row_groups=[group], use_threads=False):
            for position in inside:
                if row < position <= row + chunk.num_rows:
                    found[position] = chunk.slice(position - row - 1, 1).to_pylist()[0]
            row += chunk.num_rows
    except Exception:  # noqa: BLE001 - rows of an unreadable group are simply not found
        pass
    return found
