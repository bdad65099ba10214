"""Evaluation-set leakage index: find benchmark items inside training documents by n-gram
*containment*.

Method. Text is normalised with NFKC and case folding; words are maximal runs of
alphanumeric characters (``str.isalnum``, i.e. the regex ``[^\\W_]+``), so punctuation,
spacing and case never matter. Every benchmark item is reduced to the set of 64-bit hashes
of its word 13-grams (``n``; GPT-3-style decontamination). A document *contains* an item
when it holds at least ``min_containment`` (default 0.5) of the item's distinct n-grams.

Why containment, not Jaccard: the question is "is this item inside the document", and the
documents are much longer than the items. An item pasted verbatim into a 400-word page has
containment 1.0 but a Jaccard similarity near 0.1, so Jaccard would have to be tuned per
length and still miss embedded copies; containment is length-independent on the document
side. Requiring a fraction of the item (not one shared n-gram) keeps a stray common phrase
from flagging a document.

Short items. An item with fewer than ``n`` words but at least ``min_words`` (8) is indexed
as one shingle: the hash of the whole item, found by exact match. To keep scans fast this
uses a second, small prefilter on the hashes of the *first* ``min_words`` words of those
items; only the rare positions that pass are hashed at the item lengths and looked up.
A match has containment 1.0 and ``matched_ngrams`` 1. Items under ``min_words`` words are
not indexed and are counted in ``describe()["too_short"]``.

Speed. A batch of documents is encoded once as one UTF-8 buffer; case folding of ASCII text
and the word/non-word split are a byte translation. Only non-ASCII documents go through
``unicodedata.normalize``, and only those holding a character that case folding changes
through ``str.casefold`` (both are per-character in C, but slow: ~10 ns a character); the
multi-byte characters are then decoded with numpy and classified with a table. Words are hashed from their bytes read as 8-byte integers
(one gather per word, longer words folded in 8-byte steps), and all n-gram hashes of the
batch come from one prefix sum of a polynomial hash mod 2**64, so each further n-gram length
costs two array operations. Each n-gram is tested against a bitmap over the top bits of the
index hashes (16 bits per hash: ~6% false positives); only those candidates are checked exactly with
``searchsorted`` against the sorted hash array and mapped to documents, rejecting windows
that run across two documents.

Storage is one ``.npz`` (numpy arrays only, loaded with ``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

from auditor.reader import Problem, ProblemCounter, ReadError, compression_of, iter_json_lines, source_name

SCHEMA_VERSION = 1
DEFAULT_N = 13
DEFAULT_MIN_WORDS = 8
DEFAULT_MIN_CONTAINMENT = 0.5
NORMALISATION = "nfkc+casefold; words=runs of str.isalnum chars; word=utf8 8-byte fold+fmix64; ngram=poly mod 2^64 v1"
MAX_STORED_PROBLEMS = 1000
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_SCAN_CHUNK_DOCS = 4096  # measured: 2k-4k documents per internal chunk scan ~8% faster than 1k or 10k

_U64 = np.uint64
_R = _U64(0x9E3779B97F4A7C15)  # odd, so invertible mod 2**64: windows can be cut out of prefix sums
_R_INV = _U64(pow(int(_R), -1, 1 << 64))
_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
# ASCII letters -> lower case, other ASCII alphanumerics kept, the rest of ASCII -> 0;
# bytes >= 0x80 are left for the UTF-8 pass.
_ASCII_FOLD = bytes((ord(chr(c).lower()) if chr(c).isalnum() else 0) if c < 0x80 else c for c in range(256))
_SEPARATOR = b"\n"  # maps to 0 like all non-word bytes, so no word runs from one text into the next


class LeakageIndexError(ValueError):
    """The index cannot be built, opened or loaded; the message names the file and why."""


@dataclass(frozen=True)
class LeakageMatch:
    """One benchmark item found in one document."""

    item_id: str
    containment: float  # share of the item's distinct n-grams present in the document
    matched_ngrams: int


# ---------------------------------------------------------------- hashing


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place."""
    h ^= h >> _U64(33)
    h *= _U64(0xFF51AFD7ED558CCD)
    h ^= h >> _U64(33)
    h *= _U64(0xC4CEB9FE1A85EC53)
    h ^= h >> _U64(33)
    return h


class _Powers:
    """Cached R**i and R**-i mod 2**64, grown on demand (shared by all indexes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pow = np.ones(1, dtype=np.uint64)
        self._inv = np.ones(1, dtype=np.uint64)

    def get(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        pow_, inv = self._pow, self._inv
        if len(pow_) < size:
            with self._lock:
                if len(self._pow) < size:
                    grown = max(size, 2 * len(self._pow), 1 << 16)
                    self._pow, self._inv = _geometric(_R, grown), _geometric(_R_INV, grown)
                pow_, inv = self._pow, self._inv
        return pow_[:size], inv[:size]


def _geometric(base: np.uint64, size: int) -> np.ndarray:
    values = np.full(size, base, dtype=np.uint64)
    values[0] = 1
    return np.multiply.accumulate(values)


_POWERS = _Powers()
_ALNUM, _FOLDS = np.uint8(1), np.uint8(2)
_BMP_FLAGS: np.ndarray | None = None


def _char_flags(code_points: np.ndarray) -> np.ndarray:
    """Per code point: _ALNUM if ``str.isalnum``, _FOLDS if ``str.casefold`` changes it."""
    global _BMP_FLAGS
    if _BMP_FLAGS is None:
        _BMP_FLAGS = np.array([_flags_of(chr(c)) for c in range(0x10000)], dtype=np.uint8)
    flags = _BMP_FLAGS[np.minimum(code_points, 0xFFFF)]
    astral = np.flatnonzero(code_points > 0xFFFF)
    if len(astral):
        unique, inverse = np.unique(code_points[astral], return_inverse=True)
        flags[astral] = np.array([_flags_of(chr(c)) for c in unique.tolist()], dtype=np.uint8)[inverse]
    return flags


def _flags_of(char: str) -> int:
    return int(char.isalnum()) | (2 if char.casefold() != char else 0)


@dataclass
class _Words:
    """Word hashes of a batch of texts, as a run of *slots*: one per text in order, then
    the texts that had to be re-tokenised after ``str.casefold`` (their first slot is empty)."""

    hashes: np.ndarray  # [W] uint64
    offsets: np.ndarray  # [slots + 1] int64: words of slot s are hashes[offsets[s]:offsets[s+1]]
    slot_text: np.ndarray  # [slots] int64: the text each slot belongs to

    def prefix_sums(self) -> np.ndarray:
        """G[j] = sum_{t<j} w_t R**t, so a window's hash is (G[i+k] - G[i]) * R**-i."""
        powers, _ = _POWERS.get(len(self.hashes))
        sums = np.zeros(len(self.hashes) + 1, dtype=np.uint64)
        np.cumsum(self.hashes * powers, out=sums[1:])
        return sums

    def slot_of(self, positions: np.ndarray) -> np.ndarray:
        """Slot holding each word position (empty slots never match)."""
        return np.searchsorted(self.offsets, positions, side="right") - 1

    def then(self, other: _Words, texts: Sequence[int]) -> _Words:
        """These slots followed by ``other``'s, whose texts are ``texts``."""
        return _Words(
            np.concatenate([self.hashes, other.hashes]),
            np.concatenate([self.offsets[:-1], other.offsets + len(self.hashes)]),
            np.concatenate([self.slot_text, np.asarray(texts, dtype=np.int64)[other.slot_text]]),
        )

    def by_text(self, count: int) -> list[np.ndarray]:
        """Word hashes of each text, in text order."""
        result = [np.empty(0, dtype=np.uint64)] * count
        for slot, text in enumerate(self.slot_text.tolist()):
            if self.offsets[slot + 1] > self.offsets[slot]:
                result[text] = self.hashes[self.offsets[slot] : self.offsets[slot + 1]]
        return result


class _Utf8Batch:
    """Texts as one UTF-8 buffer with ASCII case folded and ASCII non-word bytes zeroed."""

    def __init__(self, encoded: list[bytes]) -> None:
        joined = _SEPARATOR.join(encoded)
        self.size = len(joined)
        self.buffer = bytearray(joined.translate(_ASCII_FOLD))
        self.buffer.extend(bytes(16))  # 8-byte reads past the last word stay inside the buffer
        self.codes = np.frombuffer(self.buffer, dtype=np.uint8)
        self.text_starts = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.array(list(map(len, encoded)), dtype=np.int64) + 1, out=self.text_starts[1:])

    def decode_non_ascii(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions of bytes >= 0x80, which of them lead a character, code point of
        each lead), decoding only those bytes."""
        high = np.flatnonzero(self.codes[: self.size] >= 0x80)
        is_lead = self.codes[high] >= 0xC0
        leads = high[is_lead]
        b0, b1, b2, b3 = (self.codes[leads + k].astype(np.int32) for k in range(4))
        c1, c2, c3 = b1 & 0x3F, b2 & 0x3F, b3 & 0x3F
        code_points = np.where(
            b0 < 0xE0,
            ((b0 & 0x1F) << 6) | c1,
            np.where(
                b0 < 0xF0, ((b0 & 0x0F) << 12) | (c1 << 6) | c2, ((b0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3
            ),
        )
        return high, is_lead, code_points

    def texts_at(self, positions: np.ndarray) -> np.ndarray:
        return np.unique(np.searchsorted(self.text_starts, positions, side="right") - 1)

    def blank(self, text: int) -> None:
        self.codes[self.text_starts[text] : self.text_starts[text + 1]] = 0


def _tokenise(texts: Sequence[str], *, folded: bool = False) -> _Words:
    """Hash every word of every text at once (see the module docstring). ``folded``: the
    texts are already NFKC-normalised and case-folded."""
    # NFKC is the identity on ASCII, and the byte translation folds ASCII case. Texts with a
    # non-ASCII character that case folding changes are blanked here and tokenised again,
    # after str.casefold, as a small second batch: cheaper than rebuilding this one.
    is_ascii = list(map(str.isascii, texts))
    normalised = list(texts)
    if not folded:
        normalised = [t if a else unicodedata.normalize("NFKC", t) for t, a in zip(texts, is_ascii, strict=True)]
    batch = _Utf8Batch([t.encode("utf-8", "surrogatepass") for t in normalised])
    to_fold: list[int] = []
    if not all(is_ascii):
        high, is_lead, code_points = batch.decode_non_ascii()
        flags = _char_flags(code_points)
        if not folded:
            to_fold = batch.texts_at(high[is_lead][(flags & _FOLDS) != 0]).tolist()
        # zero every byte of the multi-byte characters that are not alphanumeric
        batch.codes[high[(flags[np.cumsum(is_lead) - 1] & _ALNUM) == 0]] = 0
        for text in to_fold:
            batch.blank(text)
    starts, lengths = _word_spans(batch.codes[: batch.size])
    offsets = np.searchsorted(starts, batch.text_starts).astype(np.int64)
    words = _Words(_hash_words(batch.buffer, starts, lengths), offsets, np.arange(len(texts), dtype=np.int64))
    if to_fold:
        refolded = _tokenise([normalised[t].casefold() for t in to_fold], folded=True)
        words = words.then(refolded, to_fold)
    return words


def _word_spans(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    in_word = np.zeros(len(codes) + 2, dtype=bool)
    np.not_equal(codes, 0, out=in_word[1:-1])
    edges = np.flatnonzero(in_word[1:] != in_word[:-1])
    starts = edges[0::2]
    return starts, edges[1::2] - starts


def _hash_words(buffer: bytearray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """fmix64 of the word's UTF-8 bytes read as little-endian 8-byte integers, each
    further 8 bytes folded in as h = fmix64(h) ^ chunk."""
    # An unaligned 8-byte view at every byte offset: one gather reads a whole short word.
    windows = np.ndarray((len(buffer) - 8,), dtype="<u8", buffer=buffer, strides=(1,))
    hashes = windows[starts]
    hashes &= _BYTE_MASKS[np.minimum(lengths, 8)]
    longer = np.flatnonzero(lengths > 8)
    offset = 8
    while len(longer):
        chunk = windows[starts[longer] + offset] & _BYTE_MASKS[np.minimum(lengths[longer] - offset, 8)]
        hashes[longer] = _fmix64(hashes[longer]) ^ chunk
        offset += 8
        longer = longer[lengths[longer] > offset]
    return _fmix64(hashes)


def _window_hashes(sums: np.ndarray, k: int) -> np.ndarray:
    """Hash of every k-word window starting at word 0 .. W-k."""
    count = len(sums) - k
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    _, inverse = _POWERS.get(count)
    return (sums[k:] - sums[:count]) * inverse


def _windows_at(sums: np.ndarray, starts: np.ndarray, k: int | np.ndarray) -> np.ndarray:
    """Hash of the k-word windows starting at words ``starts`` (k: one length or one each)."""
    _, inverse = _POWERS.get(len(sums))
    return (sums[starts + k] - sums[starts]) * inverse[starts]


class _Bitmap:
    """Membership prefilter on the top bits of 64-bit hashes: no false negatives."""

    def __init__(self, hashes: np.ndarray, bits_per_hash: int = 16, max_bits: int = 28) -> None:
        unique = _sorted_unique(np.sort(hashes))
        self.bits = int(min(max(math.ceil(math.log2(max(len(unique), 1) * bits_per_hash)), 16), max_bits))
        self._shift = _U64(64 - self.bits)
        table = np.zeros(1 << (self.bits - 3), dtype=np.uint8)
        if len(unique):
            slots = unique >> self._shift  # sorted, because the hashes are
            byte = slots >> _U64(3)
            flags = np.left_shift(np.uint8(1), (slots & _U64(7)).astype(np.uint8))
            first = np.flatnonzero(np.concatenate([[True], byte[1:] != byte[:-1]]))
            table[byte[first]] = np.bitwise_or.reduceat(flags, first)
        self._table = table

    def candidates(self, hashes: np.ndarray) -> np.ndarray:
        """Positions of ``hashes`` that may be in the set."""
        slots = (hashes >> self._shift).astype(np.uint32)
        found = self._table[slots >> np.uint32(3)] >> (slots & np.uint32(7)).astype(np.uint8)
        return np.flatnonzero(found & np.uint8(1))


# ---------------------------------------------------------------- reading benchmark files


def _is_jsonl(path: str) -> bool:
    """JSON Lines by name (the reader's compressions; a plain ``.json`` too: benchmark files are often named so)."""
    name = source_name(path).lower()
    stem = name.rsplit(".", 1)[0] if compression_of(name) else name
    return stem.endswith(JSONL_SUFFIXES)


def _item_text(record: dict, text_field: str | None, id_key: str | None) -> tuple[str | None, str]:
    """(text, why-not) for one record."""
    if text_field is not None or "text" in record:
        field = text_field or "text"
        if field not in record:
            return None, f"no field {field!r}"
        value = record[field]
        if not isinstance(value, str):
            return None, f"field {field!r} is {type(value).__name__}, not a string"
        return value, f"field {field!r} is empty"
    parts = [v for k, v in record.items() if k != id_key and isinstance(v, str)]
    return " ".join(parts), "no string fields"


def _item_id(record: dict, id_field: str | None, fallback: str) -> tuple[str, str | None]:
    keys = [id_field] if id_field else ["id", "item_id"]
    for key in keys:
        if key in record and record[key] is not None:
            return str(record[key]), key
    return fallback, keys[0] if id_field else None


def _read_items(
    path: str, text_field: str | None, id_field: str | None, counter: ProblemCounter
) -> Iterator[tuple[str, str]]:
    """(id, text) of each usable line; the others go to ``counter`` (lines that are not UTF-8
    are skipped: an item's words must be its own)."""
    name = source_name(path)
    try:
        for line_no, record in iter_json_lines(path, compression_of(path), counter, skip_undecodable=True):
            item_id, id_key = _item_id(record, id_field, f"{name}:{line_no}")
            text, why = _item_text(record, text_field, id_key)
            if not text or not text.strip():
                counter.add("unusable_item", why, line=line_no)
                continue
            yield item_id, text
    except ReadError as exc:
        raise LeakageIndexError(f"cannot read benchmark file {path}: {exc.reason}") from exc


def _file_signature(path: str) -> dict[str, Any]:
    """Resolved name, size and modification time of a (possibly remote) file."""
    try:
        fs, inner = fsspec.core.url_to_fs(path)
        info = fs.info(inner)
    except Exception as exc:  # noqa: BLE001 - fsspec backends raise many types
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
        raise LeakageIndexError(f"cannot open benchmark file {path}: {why}") from exc
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("created")
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    resolved = str(Path(inner).resolve()) if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(inner)
    return {"path": resolved, "size": info.get("size"), "mtime": float(mtime) if mtime is not None else None}


# ---------------------------------------------------------------- the index


class LeakageIndex:
    """Benchmark items as sorted 64-bit n-gram hashes; scans batches of documents for them.

    Build with :meth:`build`, :meth:`load` or :meth:`open`; the constructor takes the
    arrays as stored.
    """

    def __init__(
        self,
        ngram_hashes: np.ndarray,
        ngram_items: np.ndarray,
        item_ngrams: np.ndarray,
        item_ids: np.ndarray,
        item_words: np.ndarray,
        item_prefixes: np.ndarray,
        *,
        n: int = DEFAULT_N,
        min_words: int = DEFAULT_MIN_WORDS,
        min_containment: float = DEFAULT_MIN_CONTAINMENT,
        files: Sequence[dict[str, Any]] = (),
        problems: Sequence[Problem] = (),
        problem_count: int | None = None,
    ) -> None:
        self.n, self.min_words = int(n), int(min_words)
        self.min_containment = _check_containment(min_containment)
        self.files = [dict(f) for f in files]
        self.problems = list(problems)
        self.problem_count = len(self.problems) if problem_count is None else int(problem_count)
        self._hashes = np.ascontiguousarray(ngram_hashes, dtype=np.uint64)
        self._items = np.ascontiguousarray(ngram_items, dtype=np.int32)
        self._item_ngrams = np.ascontiguousarray(item_ngrams, dtype=np.int32)
        self._ids = np.asarray(item_ids, dtype=str)
        self._item_words = np.ascontiguousarray(item_words, dtype=np.int32)
        self._item_prefixes = np.ascontiguousarray(item_prefixes, dtype=np.uint64)
        self._check_shapes()
        self._item_shingle = np.minimum(self._item_words, self.n)  # words per shingle of each item
        self._bitmap = _Bitmap(self._hashes[self._item_words[self._items] >= self.n])
        short = np.flatnonzero((self._item_words < self.n) & (self._item_ngrams > 0))
        self._short_prefixes = _sorted_unique(np.sort(self._item_prefixes[short]))
        self._short_lengths = np.unique(self._item_words[short]).tolist()
        self._short_bitmap = _Bitmap(self._short_prefixes) if len(short) else None

    def _check_shapes(self) -> None:
        items = len(self._ids)
        if len(self._items) != len(self._hashes) or not (
            len(self._item_ngrams) == len(self._item_words) == len(self._item_prefixes) == items
        ):
            raise LeakageIndexError("inconsistent index arrays (lengths differ)")
        if len(self._hashes) and (np.any(self._hashes[1:] < self._hashes[:-1]) or self._items.max() >= items):
            raise LeakageIndexError("inconsistent index arrays (hashes unsorted or item numbers out of range)")

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"LeakageIndex(n={self.n}, items={len(self)}, ngrams={len(self._hashes)})"

    @property
    def item_ids(self) -> list[str]:
        return self._ids.tolist()

    # -------------------------------------------------------------- building

    @classmethod
    def build(
        cls,
        paths: str | os.PathLike | Iterable[str | os.PathLike],
        text_field: str | None = None,
        id_field: str | None = None,
        n: int = DEFAULT_N,
        *,
        min_words: int = DEFAULT_MIN_WORDS,
        min_containment: float = DEFAULT_MIN_CONTAINMENT,
        batch_items: int = 20_000,
    ) -> LeakageIndex:
        """Index the items of JSONL benchmark files (plain, .gz, .zst; local or fsspec URLs)."""
        if not 1 <= min_words <= n:
            raise ValueError(f"need 1 <= min_words <= n, got min_words={min_words}, n={n}")
        names = [str(paths)] if isinstance(paths, str | os.PathLike) else [str(p) for p in paths]
        if not names:
            raise LeakageIndexError("no benchmark files given")
        problems: list[Problem] = []
        ids: list[str] = []
        texts: list[str] = []
        files = []
        for path in names:
            files.append(_file_signature(path))
            counter = ProblemCounter(path, max_examples=None)
            for item_id, text in _read_items(path, text_field, id_field, counter):
                ids.append(item_id)
                texts.append(text)
            problems.extend(counter.examples)
        index = cls(
            **_shingle_items(texts, n, min_words, batch_items),
            item_ids=np.array(ids, dtype=str),
            n=n,
            min_words=min_words,
            min_containment=min_containment,
            files=files,
            problems=problems,
        )
        if not index.describe()["indexed_items"]:
            raise LeakageIndexError(
                f"no benchmark item could be indexed from {', '.join(names)}: {len(ids)} items read, "
                f"{len(problems)} unusable lines, items need at least {min_words} words"
                + (f"; first problem: {problems[0]}" if problems else "")
            )
        return index

    # -------------------------------------------------------------- storage

    def metadata(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "n": self.n,
            "min_words": self.min_words,
            "min_containment": self.min_containment,
            "normalisation": NORMALISATION,
            "files": self.files,
            "counts": {k: v for k, v in self.describe().items() if k not in ("files", "n", "min_words")},
            "problem_count": self.problem_count,
            "problems": [[p.file, p.line, p.reason, p.kind] for p in self.problems[:MAX_STORED_PROBLEMS]],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index as one ``.npz`` (atomically: a temporary file, then renamed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with tmp.open("wb") as handle:
                np.savez(
                    handle,
                    ngram_hashes=self._hashes,
                    ngram_items=self._items,
                    item_ngrams=self._item_ngrams,
                    item_ids=self._ids,
                    item_words=self._item_words,
                    item_prefixes=self._item_prefixes,
                    metadata=np.array(json.dumps(self.metadata())),
                )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, min_containment: float | None = None) -> LeakageIndex:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as exc:
            raise LeakageIndexError(f"cannot load leakage index {path}: {type(exc).__name__}: {exc}") from exc
        try:
            meta = json.loads(str(arrays.pop("metadata")))
        except (KeyError, ValueError) as exc:
            raise LeakageIndexError(f"{path} is not a leakage index (no readable metadata)") from exc
        if meta.get("schema_version") != SCHEMA_VERSION or meta.get("normalisation") != NORMALISATION:
            raise LeakageIndexError(
                f"{path} was written with schema {meta.get('schema_version')} / normalisation "
                f"{meta.get('normalisation')!r}; this version reads schema {SCHEMA_VERSION}: rebuild it"
            )
        try:
            return cls(
                **arrays,
                n=meta["n"],
                min_words=meta["min_words"],
                min_containment=meta["min_containment"] if min_containment is None else min_containment,
                files=meta["files"],
                problems=[_stored_problem(p) for p in meta["problems"]],
                problem_count=meta["problem_count"],
            )
        except (KeyError, TypeError) as exc:
            raise LeakageIndexError(f"{path} is not a complete leakage index: {exc}") from exc

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        cache_dir: str | os.PathLike | None = None,
        *,
        text_field: str | None = None,
        id_field: str | None = None,
        n: int = DEFAULT_N,
        min_words: int = DEFAULT_MIN_WORDS,
        min_containment: float = DEFAULT_MIN_CONTAINMENT,
    ) -> LeakageIndex:
        """Load a saved ``.npz`` index, or build one from a JSONL benchmark file and cache it
        under ``cache_dir`` (default ``$AUDITOR_CACHE_DIR/leakage``) so later runs load it.

        The cache key is the file's resolved name, size and mtime plus every build setting,
        so an edited benchmark file is rebuilt. A ``.npz`` keeps the settings it was built with.
        """
        name = str(path)
        if name.lower().endswith(".npz"):
            return cls.load(name, min_containment=min_containment)
        if not _is_jsonl(name):
            raise LeakageIndexError(
                f"{name}: cannot tell the index format from the name; give a saved index (.npz) or "
                f"a JSON-lines benchmark file ({', '.join(JSONL_SUFFIXES)}, optionally .gz or .zst)"
            )
        signature = _file_signature(name)
        key = json.dumps([signature, n, min_words, text_field, id_field, SCHEMA_VERSION, NORMALISATION])
        cached = _cache_root(cache_dir) / f"leakage-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
        if cached.exists():
            try:
                return cls.load(cached, min_containment=min_containment)
            except LeakageIndexError:
                pass  # a damaged cache entry is rebuilt below
        index = cls.build([name], text_field, id_field, n, min_words=min_words, min_containment=min_containment)
        index.save(cached)
        return index

    # -------------------------------------------------------------- scanning

    def scan(self, texts: Sequence[str | None], min_containment: float | None = None) -> list[list[LeakageMatch]]:
        """Benchmark items found in each text, highest containment first. Give whole batches
        (thousands of texts): the work is vectorised over the batch. Non-strings (None, NaN)
        have no text."""
        threshold = self.min_containment if min_containment is None else _check_containment(min_containment)
        texts = list(texts)  # positional slicing, whatever the sequence (a pandas Series, say)
        results: list[list[LeakageMatch]] = [[] for _ in range(len(texts))]
        for lo in range(0, len(texts), _SCAN_CHUNK_DOCS):
            chunk = [t if isinstance(t, str) else "" for t in texts[lo : lo + _SCAN_CHUNK_DOCS]]
            docs, items, matched = self._scan_chunk(chunk, threshold)
            totals = self._item_ngrams[items].tolist()
            for doc, item, count, total in zip(docs.tolist(), items.tolist(), matched.tolist(), totals, strict=True):
                results[lo + doc].append(LeakageMatch(str(self._ids[item]), count / total, count))
        for found in results:
            if len(found) > 1:
                found.sort(key=lambda m: (-m.containment, m.item_id))
        return results

    def _scan_chunk(self, texts: list[str], threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(document, item, matched n-grams) for every pair at or above ``threshold``."""
        words = _tokenise(texts)
        sums = words.prefix_sums()
        hits = [self._ngram_hits(words, sums)]
        if self._short_bitmap is not None:
            hits += self._short_item_hits(words, sums)
        docs, hashes, shingle = (np.concatenate(parts) for parts in zip(*hits, strict=True))
        return self._count_items(docs, hashes, shingle, threshold)

    def _ngram_hits(self, words: _Words, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        starts = self._bitmap.candidates(_window_hashes(sums, self.n))
        return self._confirm(words, sums, starts, self.n)

    def _short_item_hits(self, words: _Words, sums: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        prefixes = _window_hashes(sums, self.min_words)
        assert self._short_bitmap is not None  # called only when short items are indexed
        starts = self._short_bitmap.candidates(prefixes)
        starts = starts[_contains(self._short_prefixes, prefixes[starts])]
        return [self._confirm(words, sums, starts, k) for k in self._short_lengths]

    def _confirm(
        self, words: _Words, sums: np.ndarray, starts: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(document, hash, k) of the k-word windows at ``starts`` that lie inside one
        document and whose hash is in the index."""
        slots = words.slot_of(starts)
        inside = starts + k <= words.offsets[slots + 1]
        starts, slots = starts[inside], slots[inside]
        hashes = _windows_at(sums, starts, k)
        found = _contains(self._hashes, hashes)
        return words.slot_text[slots[found]], hashes[found], np.full(int(found.sum()), k, dtype=np.int32)

    def _count_items(
        self, docs: np.ndarray, hashes: np.ndarray, shingle: np.ndarray, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Distinct (document, n-gram) pairs, then every item holding each n-gram.
        order = np.lexsort((hashes, docs))
        docs, hashes, shingle = docs[order], hashes[order], shingle[order]
        first = np.ones(len(docs), dtype=bool)
        first[1:] = (docs[1:] != docs[:-1]) | (hashes[1:] != hashes[:-1])
        docs, hashes, shingle = docs[first], hashes[first], shingle[first]
        lo = np.searchsorted(self._hashes, hashes, side="left")
        per_hash = np.searchsorted(self._hashes, hashes, side="right") - lo
        positions = np.repeat(lo - np.cumsum(per_hash) + per_hash, per_hash) + np.arange(per_hash.sum())
        items = self._items[positions]
        docs = np.repeat(docs, per_hash)
        # A k-word window counts only for items whose shingles are k words long.
        keep = self._item_shingle[items] == np.repeat(shingle, per_hash)
        pairs, matched = np.unique(docs[keep] * len(self._ids) + items[keep], return_counts=True)
        docs, items = np.divmod(pairs, len(self._ids))
        enough = matched >= threshold * self._item_ngrams[items] - 1e-9
        return docs[enough], items[enough], matched[enough]

    # -------------------------------------------------------------- reporting

    def describe(self) -> dict[str, Any]:
        indexed = int(np.count_nonzero(self._item_ngrams))
        return {
            "n": self.n,
            "min_words": self.min_words,
            "items": len(self._ids),
            "indexed_items": indexed,
            "too_short": int(np.count_nonzero(self._item_words < self.min_words)),
            "ngrams": int(len(self._hashes)),
            "files": [f["path"] for f in self.files],
            "problems": self.problem_count,
        }


def _stored_problem(stored: list) -> Problem:
    """A problem as kept in an index's metadata: [file, line, reason(, kind)]."""
    kind = stored[3] if len(stored) > 3 else "unusable_item"
    return Problem(stored[0], kind, stored[2], line=stored[1])


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Distinct values of a sorted array (``np.unique`` hashes first: far slower here)."""
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _contains(sorted_values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    if not len(sorted_values):
        return np.zeros(len(queries), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_values, queries), len(sorted_values) - 1)
    return sorted_values[at] == queries


def _check_containment(value: float) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"min_containment must be in (0, 1], got {value}")
    return value


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from detectors.store import default_cache_dir

    return default_cache_dir() / "leakage"


def _shingle_items(texts: list[str], n: int, min_words: int, batch_items: int) -> dict[str, Any]:
    """The index arrays (see ``LeakageIndex.__init__``) for the items' texts."""
    parts = [_shingle_batch(texts[lo : lo + batch_items], n, min_words) for lo in range(0, len(texts), batch_items)]
    hashes = np.concatenate([p[0] for p in parts] or [np.empty(0)]).astype(np.uint64)
    items = np.concatenate(
        [p[1] + lo for p, lo in zip(parts, range(0, len(texts), batch_items), strict=True)] or [np.empty(0)]
    )
    items = items.astype(np.int32)
    order = np.lexsort((items, hashes))
    hashes, items = hashes[order], items[order]
    distinct = np.ones(len(hashes), dtype=bool)
    distinct[1:] = (hashes[1:] != hashes[:-1]) | (items[1:] != items[:-1])
    hashes, items = hashes[distinct], items[distinct]
    return {
        "ngram_hashes": hashes,
        "ngram_items": items,
        "item_ngrams": np.bincount(items, minlength=len(texts)).astype(np.int32),
        "item_words": np.concatenate([p[2] for p in parts] or [np.empty(0)]).astype(np.int32),
        "item_prefixes": np.concatenate([p[3] for p in parts] or [np.empty(0)]).astype(np.uint64),
    }


def _shingle_batch(texts: list[str], n: int, min_words: int) -> tuple[np.ndarray, ...]:
    """(shingle hashes, their item, words per item, prefix hash per item) of some items."""
    words = _tokenise(texts)
    sums = words.prefix_sums()
    first, count = words.offsets[:-1], np.diff(words.offsets)
    # n-grams of items with >= n words: every window that ends inside its own slot
    starts = np.arange(max(len(words.hashes) - n + 1, 0))
    slots = words.slot_of(starts)
    inside = starts + n <= words.offsets[slots + 1]
    long_hashes, long_items = _window_hashes(sums, n)[inside], words.slot_text[slots[inside]]
    # items of min_words..n-1 words: one shingle of the whole item, plus its prefix hash
    short = np.flatnonzero((count >= min_words) & (count < n))
    short_items = words.slot_text[short]
    prefixes = np.zeros(len(texts), dtype=np.uint64)
    prefixes[short_items] = _windows_at(sums, first[short], min_words)
    item_words = np.bincount(words.slot_text, weights=count, minlength=len(texts)).astype(np.int64)
    return (
        np.concatenate([long_hashes, _windows_at(sums, first[short], count[short])]),
        np.concatenate([long_items, short_items]),
        item_words,
        prefixes,
    )
