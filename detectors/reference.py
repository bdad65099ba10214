"""A persistent index of reference texts (known LLM outputs, earlier batches, evaluation
sets) for near-duplicate lookup. It survives restarts: a local SQLite file by default,
or Redis (datasketch's Redis storage) when several processes or machines share it.

Entries keep their text and shingle hashes so that every LSH candidate is verified
with exact Jaccard similarity, and so that a report can show the matched text.
"""

from __future__ import annotations

import abc
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasketch import MinHashLSH

from detectors.minhash import MinHasher, Signatures, jaccard, lsh_params
from detectors.text import clean_text

_SETTINGS_KEYS = ("num_perm", "seed", "scheme", "shingle", "n", "normalisation")


@dataclass
class ReferenceEntry:
    key: str
    text: str
    label: str = "unknown"  # "machine", "human", "eval", ... as the caller states it
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReferenceMatch:
    key: str
    jaccard: float
    label: str
    source: str
    text: str


class IndexMismatch(ValueError):  # noqa: N818 - public name, raised to and caught by callers
    """The index was built with other MinHash settings than the ones asked for."""


class ReferenceIndex(abc.ABC):
    """Common query logic; backends store entries and LSH buckets."""

    backend: str

    def __init__(self, hasher: MinHasher, threshold: float):
        self.hasher = hasher
        self.threshold = threshold
        self._lsh_params = lsh_params(threshold, hasher.num_perm)

    def settings(self) -> dict[str, Any]:
        return {**{k: self.hasher.describe()[k] for k in _SETTINGS_KEYS}, "threshold": self.threshold}

    def _check_settings(self, stored: dict[str, Any] | None) -> None:
        if stored is not None and stored != self.settings():
            raise IndexMismatch(
                f"{self.describe()['location']} was built with {stored}, not {self.settings()}; "
                "open it with the settings it was built with"
            )

    def add(self, entries: Sequence[ReferenceEntry]) -> int:
        """Add entries whose key is new; returns how many were added."""
        fresh = [e for e in _dedupe_keys(entries) if not self.contains(e.key)]
        if not fresh:
            return 0
        # Shingle what queries will be shingled from: the same cleaning the detectors apply.
        signatures = self.hasher.signatures([clean_text(e.text) for e in fresh])
        self._store(fresh, signatures)
        return len(fresh)

    def query(self, signatures: Signatures) -> list[ReferenceMatch | None]:
        """Best verified match (Jaccard >= threshold) for each signature, or None."""
        self._refresh()
        matches: list[ReferenceMatch | None] = []
        for i in range(len(signatures)):
            if len(signatures.shingles[i]) == 0:
                matches.append(None)
                continue
            candidates = self._candidates(signatures.lean(i))
            best: tuple[float, str] | None = None
            for key, shingles in self._shingles(candidates).items():
                score = jaccard(signatures.shingles[i], shingles)
                if score >= self.threshold and (best is None or score > best[0]):
                    best = (score, key)
            matches.append(self._match(*best[::-1]) if best else None)
        return matches

    def _match(self, key: str, score: float) -> ReferenceMatch:
        entry = self.get(key)
        return ReferenceMatch(key=key, jaccard=round(score, 4), label=entry.label, source=entry.source, text=entry.text)

    def _refresh(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Pick up entries other processes added (backends that cache state override this)."""

    @abc.abstractmethod
    def contains(self, key: str) -> bool: ...

    @abc.abstractmethod
    def get(self, key: str) -> ReferenceEntry: ...

    @abc.abstractmethod
    def _store(self, entries: list[ReferenceEntry], signatures: Signatures) -> None: ...

    @abc.abstractmethod
    def _candidates(self, minhash) -> list[str]: ...

    @abc.abstractmethod
    def _shingles(self, keys: list[str]) -> dict[str, np.ndarray]: ...

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]: ...


class LocalReferenceIndex(ReferenceIndex):
    """SQLite file holding entries and signatures; the LSH buckets are rebuilt in memory
    on open and topped up with rows other processes add."""

    backend = "sqlite"

    def __init__(self, path: str | Path, hasher: MinHasher | None = None, threshold: float = 0.4):
        super().__init__(hasher or MinHasher(), threshold)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS settings (id INTEGER PRIMARY KEY CHECK (id = 1), value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS entries (
                rowid INTEGER PRIMARY KEY AUTOINCREMENT,
                key TEXT UNIQUE NOT NULL, text TEXT NOT NULL, label TEXT NOT NULL, source TEXT NOT NULL,
                metadata TEXT NOT NULL, signature BLOB NOT NULL, shingles BLOB NOT NULL, added_at REAL NOT NULL
            );
            """
        )
        # Claim the settings if the index is new (another process may race us), then check.
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO settings VALUES (1, ?)", (json.dumps(self.settings()),))
        row = self._db.execute("SELECT value FROM settings WHERE id = 1").fetchone()
        self._check_settings(json.loads(row[0]))
        self._lsh = MinHashLSH(num_perm=self.hasher.num_perm, params=self._lsh_params)
        self._loaded_rowid = 0
        self._refresh()

    def _refresh(self) -> None:
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, key, signature FROM entries WHERE rowid > ? ORDER BY rowid", (self._loaded_rowid,)
            ).fetchall()
            if not rows:
                return
            values = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.uint32).reshape(len(rows), -1)
            signatures = Signatures(values, [], self.hasher.seed)
            with self._lsh.insertion_session() as session:
                for i, (_, key, _) in enumerate(rows):
                    session.insert(key, signatures.lean(i), check_duplication=False)
            self._loaded_rowid = rows[-1][0]

    def contains(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone() is not None

    def get(self, key: str) -> ReferenceEntry:
        row = self._db.execute(
            "SELECT key, text, label, source, metadata FROM entries WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            raise KeyError(key)
        return ReferenceEntry(row[0], row[1], row[2], row[3], json.loads(row[4]))

    def _store(self, entries: list[ReferenceEntry], signatures: Signatures) -> None:
        now = time.time()
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO entries (key, text, label, source, metadata, signature, shingles, added_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.key,
                        e.text,
                        e.label,
                        e.source,
                        json.dumps(e.metadata),
                        signatures.hashvalues[i].tobytes(),
                        signatures.shingles[i].tobytes(),
                        now,
                    )
                    for i, e in enumerate(entries)
                ],
            )
        self._refresh()

    def _candidates(self, minhash) -> list[str]:
        return self._lsh.query(minhash)

    def _shingles(self, keys: list[str]) -> dict[str, np.ndarray]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = self._db.execute(f"SELECT key, shingles FROM entries WHERE key IN ({marks})", keys).fetchall()
        return {k: np.frombuffer(blob, dtype=np.uint32) for k, blob in rows}

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "location": str(self.path), "entries": len(self), **self.settings()}

    def close(self) -> None:
        self._db.close()


class RedisReferenceIndex(ReferenceIndex):
    """LSH buckets in datasketch's Redis storage; entries and shingles in Redis hashes.

    Keys are stored as bytes with ``prepickle=False``, so nothing read back from Redis
    is unpickled.
    """

    backend = "redis"

    def __init__(self, url: str, name: str = "reference", hasher: MinHasher | None = None, threshold: float = 0.4):
        import redis

        super().__init__(hasher or MinHasher(), threshold)
        self.url, self.name = url, name
        self._redis = redis.Redis.from_url(url)
        self._prefix = f"auditor:refindex:{name}"
        self._redis.set(f"{self._prefix}:settings", json.dumps(self.settings()), nx=True)
        stored = self._redis.get(f"{self._prefix}:settings")
        self._check_settings(json.loads(stored) if stored is not None else None)
        kwargs = self._redis.connection_pool.connection_kwargs
        connection = {k: kwargs[k] for k in ("host", "port", "db", "password", "username") if kwargs.get(k) is not None}
        self._lsh = MinHashLSH(
            num_perm=self.hasher.num_perm,
            params=self._lsh_params,
            storage_config={"type": "redis", "basename": f"{self._prefix}:lsh".encode(), "redis": connection},
            prepickle=False,
        )

    def contains(self, key: str) -> bool:
        return bool(self._redis.hexists(f"{self._prefix}:entries", key))

    def get(self, key: str) -> ReferenceEntry:
        raw = self._redis.hget(f"{self._prefix}:entries", key)
        if raw is None:
            raise KeyError(key)
        data = json.loads(raw)
        return ReferenceEntry(key, data["text"], data["label"], data["source"], data["metadata"])

    def _store(self, entries: list[ReferenceEntry], signatures: Signatures) -> None:
        with self._lsh.insertion_session() as session:
            for i, e in enumerate(entries):
                session.insert(e.key.encode(), signatures.lean(i), check_duplication=False)
        pipe = self._redis.pipeline()
        for i, e in enumerate(entries):
            record = {
                "text": e.text,
                "label": e.label,
                "source": e.source,
                "metadata": e.metadata,
                "added_at": time.time(),
            }
            pipe.hset(f"{self._prefix}:entries", e.key, json.dumps(record))
            pipe.hset(f"{self._prefix}:shingles", e.key, signatures.shingles[i].tobytes())
        pipe.execute()

    def _candidates(self, minhash) -> list[str]:
        return [k.decode() for k in self._lsh.query(minhash)]

    def _shingles(self, keys: list[str]) -> dict[str, np.ndarray]:
        if not keys:
            return {}
        blobs = self._redis.hmget(f"{self._prefix}:shingles", keys)
        return {k: np.frombuffer(b, dtype=np.uint32) for k, b in zip(keys, blobs, strict=True) if isinstance(b, bytes)}

    def __len__(self) -> int:
        return int(self._redis.hlen(f"{self._prefix}:entries"))

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "location": f"{self.url}#{self.name}", "entries": len(self), **self.settings()}

    def drop(self) -> None:
        """Delete every key of this index from Redis.

        Only this index's own key names are matched: ``{prefix}:*`` would also delete an
        index whose name extends this one (dropping "acme" would wipe "acme:2024").
        """
        own = [f"{self._prefix}:{part}" for part in ("settings", "entries", "shingles")]
        for lsh_part in ("lsh_bucket_", "lsh_keys"):  # datasketch's names under basename ":lsh"
            own.extend(self._redis.scan_iter(match=f"{_glob_escape(self._prefix)}:{lsh_part}*"))
        self._redis.delete(*own)


def open_reference_index(
    location: str | Path, hasher: MinHasher | None = None, threshold: float = 0.4
) -> ReferenceIndex:
    """``redis://host:port/db#name`` for Redis, anything else is a local SQLite file path."""
    location = str(location)
    if location.startswith(("redis://", "rediss://", "unix://")):
        url, _, name = location.partition("#")
        return RedisReferenceIndex(url, name or "reference", hasher, threshold)
    return LocalReferenceIndex(location, hasher, threshold)


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a Redis SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _dedupe_keys(entries: Sequence[ReferenceEntry]) -> list[ReferenceEntry]:
    seen: dict[str, ReferenceEntry] = {}
    for e in entries:
        seen.setdefault(e.key, e)
    return list(seen.values())


__all__ = [
    "IndexMismatch",
    "LocalReferenceIndex",
    "RedisReferenceIndex",
    "ReferenceEntry",
    "ReferenceIndex",
    "ReferenceMatch",
    "open_reference_index",
]
