"""The byte and line layer every reader stands on, and the one way problems are reported.

What is here: :class:`ReadError` (a source cannot be read at all), :class:`Problem` (one
thing wrong inside a source that did not stop the reading) and :class:`ProblemCounter`
(every problem counted by kind, the first ones of each kind kept as examples); naming
(:func:`describe_format`: format and compression from a file name or fsspec URL); opening
through fsspec (local paths and any fsspec URL: ``file://``, ``memory://``, ``s3://`` ...);
and turning bytes into decoded lines with damage detection.

Compression. ``.gz`` and ``.zst`` are decompressed here as a stream (gzip by the standard
library's ``GzipFile``, zstd frame by frame): those codecs are how shards and deliveries
arrive, and a reader must say *where* a stream breaks (a cut-short file, a CRC or checksum
mismatch) and keep every line before the damage; ``zstandard``'s stream reader (what fsspec
uses for zstd here) ends silently at a cut frame. ``.bz2`` and ``.xz`` go through fsspec's own compression
inference (``compression="infer"``), where reporting the damage as an error is enough.
Every stream's first bytes are checked against its name (a plain file named ``.gz``, a
gzip file named ``.jsonl``, UTF-16 or binary data where text is expected): such a source is
refused with a :class:`ReadError` before anything is read from it.

Problems (kinds are shared by all readers; ``line`` is the 1-based line of the file,
``row`` the 1-based record number, ``row_group`` the Parquet row group):

========================  ==================================================  ===============
kind                      what                                                the record
========================  ==================================================  ===============
``bad_json``              the line is not valid JSON                          skipped
``not_an_object``         valid JSON but not an object (array, string ...)    skipped
``bad_csv``               the CSV row cannot be parsed                        skipped
``wrong_field_count``     a CSV row with more or fewer fields than the header kept if longer
``missing_text_field``    no field/column named ``text_field``                skipped
``text_not_string``       the text is a number, list, object or boolean       skipped
``empty_text``            the text is null, empty or only whitespace          skipped
``encoding``              the line is not UTF-8; it was read as Windows-1252  kept (or skipped)
``truncated``             the compressed stream is cut short or corrupt       reading stops
``unreadable_row_group``  a Parquet row group cannot be decoded               its rows skipped
========================  ==================================================  ===============
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, cast

import fsspec

MAX_EXAMPLES = 20  # itemised problems per kind per source, where a reader caps them; the rest are counted
READ_SIZE = 1 << 20  # bytes per read from the (compressed) file, and per decompressed piece
_ZSTD_SLICE = 1 << 14  # compressed bytes fed to zstd at once: it cannot cap its output, and drops it on errors
_PARQUET_BUFFER = 1 << 20

# One table of names. Tables (deliveries): a plain ``.json`` is one JSON array. Documents
# (shards): ``.json`` alone is refused as ambiguous, but ``.json.gz``/``.json.zst`` are JSON
# Lines, as Dolma-style corpora name their shards.
TABLE_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
DOCUMENT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}
ACCEPTED_DOCUMENT_EXTENSIONS = (
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


class ReadError(ValueError):
    """A source cannot be read (or used) at all; ``str()`` names it and says why.

    ``ReadError(source, reason)``; a message about no single source is ``ReadError(message)``.
    """

    def __init__(self, source: str, reason: str | None = None) -> None:
        if reason is None:
            source, reason = "", source
        super().__init__(source, reason)  # both in args, so the error pickles (dask workers)
        self.source = str(source)
        self.reason = reason

    @property
    def shard(self) -> str:
        return self.source

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}" if self.source else self.reason


@dataclass(frozen=True)
class Problem:
    """Something wrong in a source that did not stop it from being read; see the module table."""

    file: str
    kind: str
    reason: str
    line: int | None = None  # 1-based line of the file (text formats)
    row_group: int | None = None  # Parquet row group (0-based, as in Parquet metadata)
    row: int | None = None  # 1-based record number (a CSV data row, a JSON Lines line, a Parquet row)
    column: str | None = None

    @property
    def message(self) -> str:
        return self.reason

    @property
    def position(self) -> int | None:
        """The record's number where known, else its line."""
        return self.row if self.row is not None else self.line

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f", line {self.line}"
        if self.row_group is not None:
            where += f", row group {self.row_group}"
        if self.row is not None:
            where += f", row {self.row}"
        if self.column:
            where += f", column {self.column!r}"
        return f"{where}: {self.reason}"


class ProblemCounter:
    """Counts every problem of a source by kind; keeps the first ``max_examples`` of each kind
    as :class:`Problem` objects (all of them when ``max_examples`` is None)."""

    def __init__(self, source: str, max_examples: int | None = MAX_EXAMPLES) -> None:
        self.source = source
        self.max_examples = max_examples
        self.itemised: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.examples: list[Problem] = []

    def add(self, kind: str, reason: str, **where: Any) -> None:
        self.counts[kind] += 1
        if self.max_examples is None or self.itemised[kind] < self.max_examples:
            self.itemised[kind] += 1
            self.examples.append(Problem(self.source, kind, reason, **where))

    def take(self) -> tuple[list[Problem], Counter[str]]:
        """The problems since the last ``take`` (examples, counts), and start afresh."""
        taken = self.examples, self.counts
        self.examples, self.counts = [], Counter()
        return taken


class DamagedStreamError(Exception):
    """A compressed stream (or a read) failed part-way; raised by the byte layer only."""


# --------------------------------------------------------------------------- names


def describe_format(source: str | Any, documents: bool = False) -> tuple[str, str | None]:
    """``(format, compression)`` from the name, e.g. ``batch.jsonl.gz`` -> ``("jsonl", "gzip")``.

    Tables: csv, tsv, jsonl, json (an array) or parquet. Documents (``documents=True``):
    jsonl or parquet, see :data:`ACCEPTED_DOCUMENT_EXTENSIONS`. Raises :class:`ReadError`.
    """
    name = str(source)
    suffixes = _suffixes(_file_name(name))
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    base_suffixes = suffixes[:-1] if compression else suffixes
    base = base_suffixes[-1] if base_suffixes else None
    formats = DOCUMENT_FORMATS if documents else TABLE_FORMATS
    fmt = formats.get(base) if base else None
    if documents and fmt is None and compression in ("gzip", "zstd") and base == ".json":
        fmt = "jsonl"
    if fmt == "parquet" and compression:
        raise ReadError(name, f"Parquet is compressed internally; do not wrap it in {compression}")
    if fmt is None or (documents and compression not in (None, "gzip", "zstd")):
        accepted = ACCEPTED_DOCUMENT_EXTENSIONS if documents else [*TABLE_FORMATS, "(optionally .gz or .zst)"]
        what = "shard format" if documents else "format"
        raise ReadError(name, f"cannot tell the {what} from its name; accepted extensions: {' '.join(accepted)}")
    return fmt, compression


def compression_of(source: str) -> str | None:
    """The compression a name declares (``.gz``, ``.zst``, ``.zstd``, ``.bz2``, ``.xz``), or None."""
    suffixes = _suffixes(_file_name(str(source)))
    return COMPRESSIONS.get(suffixes[-1]) if suffixes else None


def source_name(source: str) -> str:
    """The file name a path or URL reads, e.g. ``part-0.jsonl.gz``."""
    return _file_name(str(source))


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
    """What a file's first bytes say it is: "gzip", "zstd", "bz2", "xz", "parquet" or None."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd") or (len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and head[0] >> 4 == 5):
        return "zstd"
    if head.startswith(b"BZh") and head[3:4].isdigit():
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"PAR1"):
        return "parquet"
    return None


# --------------------------------------------------------------------------- opening


@contextmanager
def opened(source: str, compression: str | None = None) -> Iterator[IO[bytes]]:
    """The source's bytes through fsspec (decompressed by fsspec when ``compression`` is
    given); opening failures become :class:`ReadError`."""
    try:
        handle = fsspec.open(source, "rb", compression=compression).open()
    except FileNotFoundError:
        raise ReadError(source, "no such file") from None
    except IsADirectoryError:
        raise ReadError(source, "is a directory, not a file to read") from None
    except PermissionError as exc:
        raise ReadError(source, f"permission denied ({exc.strerror or exc})") from None
    except (OSError, ValueError, ImportError) as exc:  # unknown protocol, missing backend, I/O
        raise ReadError(source, f"cannot open: {exc}") from exc
    try:
        yield handle
    finally:
        handle.close()


def line_blocks(source: str, compression: str | None) -> Generator[bytes, None, None]:
    """Decompressed blocks of complete lines (the last may lack its newline).

    Raises ReadError (open, naming, binary content) before the first block, and DamagedStreamError
    where the stream breaks; an incomplete line before the damage is dropped.
    """
    with opened(source) as raw:
        head = _read(raw, source)
        if not head:
            return
        _check_container(source, compression, head)
        if compression in ("bz2", "xz"):
            chunks: Iterable[bytes] = _fsspec_decompressed(source)
        else:
            chunks = _raw_chunks(raw, head, source)
            if compression == "gzip":
                chunks = _gunzip(chunks)
            elif compression == "zstd":
                chunks = _unzstd(chunks)
        for number, block in enumerate(_complete_lines(chunks)):
            if number == 0:
                _refuse_binary(source, block[:4096])
            yield block


def _fsspec_decompressed(source: str) -> Iterator[bytes]:
    """Decompressed bytes by fsspec's compression inference (bz2, xz)."""
    with opened(source, compression="infer") as stream:
        while True:
            try:
                chunk = stream.read(READ_SIZE)
            except (OSError, EOFError, ValueError) as exc:
                raise DamagedStreamError(f"{type(exc).__name__}: {exc}") from None
            if not chunk:
                return
            yield chunk


def _read(raw: IO[bytes], shard: str, size: int | None = None) -> bytes:
    try:
        return raw.read(READ_SIZE if size is None else size)
    except IsADirectoryError:
        raise ReadError(shard, "is a directory, not a shard file") from None
    except OSError as exc:
        raise ReadError(shard, f"cannot read: {exc}") from exc


def _raw_chunks(raw: IO[bytes], head: bytes, shard: str) -> Iterator[bytes]:
    yield head
    while True:
        try:
            chunk = raw.read(READ_SIZE)
        except OSError as exc:
            raise DamagedStreamError(f"read error: {exc}") from exc
        if not chunk:
            return
        yield chunk


def _check_container(shard: str, compression: str | None, head: bytes) -> None:
    found = _sniff(head)
    if compression and found != compression:
        suffix = {"gzip": ".gz", "zstd": ".zst"}.get(compression, "." + compression)
        what = f"it looks like {found} data" if found else f"it starts with {head[:12]!r}"
        raise ReadError(shard, f"named {suffix} but not {compression}-compressed ({what})")
    if not compression and found in ("gzip", "zstd"):
        suffix = ".gz" if found == "gzip" else ".zst"
        raise ReadError(shard, f"is {found}-compressed but its name does not end in {suffix}; rename it")
    if found in ("bz2", "xz") and compression != found:
        raise ReadError(shard, f"is {found}-compressed but its name does not end in .{found}; rename it")
    if found == "parquet":
        raise ReadError(shard, "is a Parquet file but named as a text format; rename it to .parquet")


def _refuse_binary(shard: str, head: bytes) -> None:
    """Text formats must be UTF-8 (or close to it): say so instead of reporting every line."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (head and head.count(b"\x00") > len(head) // 4):
        kind = "UTF-16 text" if head.startswith((b"\xff\xfe", b"\xfe\xff")) or head[1:2] == b"\x00" else "binary data"
        raise ReadError(shard, f"this looks like {kind}, not UTF-8 text; convert it to UTF-8 (or use Parquet)")


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompressed gzip (all members, zero padding allowed), in pieces of about READ_SIZE.

    :class:`gzip.GzipFile` checks a member's CRC and length only on the read *after* its
    data, and reads 8-128 KiB of input per step, so everything before the damage comes out
    before DamagedStreamError is raised (a bare ``zlib`` object would drop its last output with the
    error). Raises DamagedStreamError on corrupt data, a CRC/length mismatch or a cut-short stream.
    """
    stream = gzip.GzipFile(fileobj=cast(IO[bytes], _Replay(chunks)), mode="rb")
    pending: list[bytes] = []
    size = 0
    while True:
        try:
            piece = stream.read1(READ_SIZE)
        except (OSError, EOFError, zlib.error, DamagedStreamError) as exc:
            if pending:
                yield b"".join(pending)
            raise DamagedStreamError(_gzip_damage(exc)) from None
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
    """Decompressed zstd (all frames). Raises DamagedStreamError on corrupt data or a stream that stops
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
                raise DamagedStreamError(f"corrupt zstd data ({exc})") from None
            if out:
                yield out
            if frame.eof:
                pos -= len(frame.unused_data)  # the next frame starts there
                frame = None
    if frame is not None:
        raise DamagedStreamError("the zstd stream stops inside a frame (the file was cut short)")


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


def split_lines(block: bytes) -> list[bytes]:
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    return lines


READ_AS_CP1252 = "; read as Windows-1252"


def decode_line(raw: bytes) -> tuple[str, str | None]:
    """(text, problem or None): UTF-8, else Windows-1252 for this line only; the problem says
    why (``not valid UTF-8 (...)``), the caller says what it did about it."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        note = f"not valid UTF-8 ({exc.reason} at byte {exc.start + 1})"
        return raw.decode("cp1252", errors="replace"), note


def decode_block(block: bytes, first_line: int) -> tuple[list[str], list[tuple[int, str]]]:
    """The lines of a block as text, and (line, note) for each line that was not UTF-8 and was
    decoded as Windows-1252: one decode for the block, line by line only if that fails."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        lines, notes = [], []
        for number, raw in enumerate(split_lines(block), start=first_line):
            line, note = decode_line(raw)
            if note:
                notes.append((number, note))
            lines.append(line)
        return lines, notes
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines, []


def text_lines(
    source: str, compression: str | None, counter: ProblemCounter, noun: str = "file"
) -> Iterator[tuple[int, str, str | None]]:
    """``(line number, text, encoding note or None)`` for every line of a text source (the
    byte-order mark stripped). Damage after the first line ends the lines with a ``truncated``
    problem; damage before it raises :class:`ReadError`."""
    line_no = 0
    try:
        for block in line_blocks(source, compression):
            lines, notes = decode_block(block, line_no + 1)
            noted = dict(notes)
            if line_no == 0 and lines and lines[0].startswith("\ufeff"):
                lines[0] = lines[0][1:]
            for line in lines:
                line_no += 1
                yield line_no, line, noted.get(line_no)
    except DamagedStreamError as exc:
        if line_no == 0:
            raise ReadError(source, f"damaged before its first complete line: {exc}") from None
        counter.add("truncated", damage_message(noun, exc), line=line_no)


def damage_message(noun: str, exc: Exception) -> str:
    return f"the {noun} is damaged after this line: {exc}; the rest is unreadable"


# --------------------------------------------------------------------------- Parquet


@contextmanager
def parquet_file(source: str, text_field: str | None = None) -> Iterator[Any]:
    """An open ``pyarrow.parquet.ParquetFile`` (with a checked text column when ``text_field``
    is given), or None for a zero-byte file. Streams through a buffer instead of pre-loading
    row groups."""
    import pyarrow.parquet as pq

    with opened(source) as handle:
        head = _read(handle, source, 4)
        if not head:
            yield None
            return
        handle.seek(0)
        try:
            parquet = pq.ParquetFile(handle, buffer_size=_PARQUET_BUFFER, pre_buffer=False)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for non-Parquet input
            found = _sniff(head)
            hint = f" (it looks like {found} data)" if found and found != "parquet" else ""
            raise ReadError(source, f"not a readable Parquet file{hint}: {one_line(exc)}") from None
        if text_field is not None:
            _check_text_column(source, parquet.schema_arrow, text_field)
        yield parquet


def _check_text_column(source: str, schema: Any, text_field: str) -> None:
    import pyarrow as pa

    if text_field not in schema.names:
        raise ReadError(
            source, f"no column {text_field!r}; the columns in this file are: {', '.join(map(repr, schema.names))}"
        )
    kind = schema.field(text_field).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    is_string_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or is_string_view(kind)):
        raise ReadError(source, f"column {text_field!r} holds {kind}, not text")


def row_group_batches(
    parquet: Any, group: int, first_row: int, batch_size: int, columns: list[str] | None, counter: ProblemCounter
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
            counter.add(
                "unreadable_row_group",
                f"row group {group} (rows {start}-{end}) cannot be read, its {end - start + 1} rows are skipped: {one_line(exc)}",
                row_group=group,
                row=start,
            )
            return
        done += chunk.num_rows
        yield chunk


def one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
