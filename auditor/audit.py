"""Batch audits: read one or many delivery files, score every row (resumably), find
near-duplicates across the whole delivery, and aggregate per vendor and worker.

Nothing in the input is fatal after the column check: unreadable rows, empty texts,
duplicated ids and missing vendors are counted in the report's warnings, and every input
row appears in ``items.parquet`` with its ``status``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from auditor.io import ROW_COLUMN, InputError, describe_format, iter_batches, read_columns, read_table
from auditor.scoring import FLAGGED, PROBABILITY, Scorer, detect_on_worker
from detectors import SKIP_REASON

MISSING_VENDOR = "(missing vendor)"
STATUS = "status"
SCORED, SKIPPED, UNREADABLE = "scored", "skipped", "unreadable"
ITEM_ID = "item_id"

# Behavioural columns recognised by name when not given explicitly (lower-cased).
BEHAVIOUR_NAMES = {
    "time": ("time_on_task", "worktimeinseconds", "timespent", "time_spent", "duration_seconds", "seconds_spent"),
    "paste": ("paste_events", "pastes", "pasted", "copied", "paste_count"),
    "keystrokes": ("keystrokes", "keystroke_count", "key_strokes", "n_keystrokes"),
}


@dataclass
class AuditColumns:
    text: str
    vendor: str
    worker: str | None = None
    id: str | None = None
    batch: str | None = None
    time: str | None = None
    paste: str | None = None
    keystrokes: str | None = None
    autodetected: list[str] = field(default_factory=list)

    def options(self) -> dict[str, str | None]:
        return {
            "--text-col": self.text,
            "--vendor-col": self.vendor,
            "--worker-col": self.worker,
            "--id-col": self.id,
            "--batch-col": self.batch,
            "--time-col": self.time,
            "--paste-col": self.paste,
            "--keystrokes-col": self.keystrokes,
        }

    def behaviour(self) -> dict[str, str]:
        return {role: col for role in ("time", "paste", "keystrokes") if (col := getattr(self, role))}


def validate_inputs(paths: list[Path], columns: AuditColumns) -> tuple[AuditColumns, dict[Path, str]]:
    """Check every file before any scoring. A file that names columns it lacks is a usage
    error (raised, listing the columns it has); a file that cannot be read at all is
    returned with the reason, to be reported while the others are audited. Behavioural
    columns not named are looked up by common names present in all readable files."""
    if not paths:
        raise InputError("no input files given")
    available: list[set[str]] = []
    unreadable: dict[Path, str] = {}
    for path in paths:
        describe_format(path)
        try:
            names = read_columns(path)
        except InputError as exc:
            unreadable[path] = str(exc)
            continue
        missing = {opt: col for opt, col in columns.options().items() if col is not None and col not in names}
        if missing:
            said = "; ".join(f"{opt} {col!r}" for opt, col in missing.items())
            raise InputError(f"{path}: no such column: {said}. Columns in this file: {', '.join(map(repr, names))}")
        available.append(set(names))
    if not available:
        raise InputError("no input file could be read: " + "; ".join(unreadable.values()))
    common = set.intersection(*available)
    for role, names in BEHAVIOUR_NAMES.items():
        if getattr(columns, role) is None:
            match = next((c for c in sorted(common) if c.lower() in names), None)
            if match:
                setattr(columns, role, match)
                columns.autodetected.append(f"{role}: {match}")
    return columns, unreadable


def fingerprint(path: Path) -> dict:
    if not path.is_file():
        return {"path": str(path), "bytes": None, "sha256": None}
    stat = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path.resolve()), "bytes": stat.st_size, "sha256": digest.hexdigest()}


def count_rows(path: Path) -> int:
    """Rows to expect (for progress): Parquet metadata, else a line count."""
    fmt, compression = describe_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except Exception:  # noqa: BLE001 - unreadable files are reported when read
            return 0
    if compression or fmt == "json":
        return 0
    with path.open("rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return max(lines - (1 if fmt in ("csv", "tsv") else 0), 0)


class ScoringWork:
    """Scored chunks on disk under ``OUT/.work``; a rerun with the same inputs, columns and
    model picks up the chunks already done instead of scoring them again."""

    def __init__(self, out: Path, state: dict, resume: bool):
        self.dir = out / ".work"
        state_file = self.dir / "state.json"
        if not resume or not state_file.exists() or json.loads(state_file.read_text()) != state:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state, indent=2, sort_keys=True))
        self.resumed = len(list(self.dir.glob("chunk-*.parquet")))

    def chunk_path(self, file_index: int, chunk_index: int) -> Path:
        return self.dir / f"chunk-{file_index:04d}-{chunk_index:07d}.parquet"

    def done(self, file_index: int, chunk_index: int) -> bool:
        return self.chunk_path(file_index, chunk_index).exists()

    def save(self, frame: pd.DataFrame, file_index: int, chunk_index: int) -> None:
        path = self.chunk_path(file_index, chunk_index)
        tmp = path.with_suffix(".partial")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)  # a chunk is either complete on disk or absent

    def load(self) -> pd.DataFrame:
        chunks = sorted(self.dir.glob("chunk-*.parquet"))
        return pd.concat([pd.read_parquet(p) for p in chunks], ignore_index=True) if chunks else pd.DataFrame()


def _as_str(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


def _chunk_items(frame: pd.DataFrame, problems, path: Path, file_index: int, columns: AuditColumns) -> pd.DataFrame:
    """Input rows of one chunk in the audit's own columns, plus unreadable rows as items."""
    items = pd.DataFrame(
        {
            "file": str(path),
            "row": frame[ROW_COLUMN].astype(int).to_numpy(),
            "text": frame[columns.text].tolist(),
            "vendor": [_as_str(v) for v in frame[columns.vendor]],
        }
    )
    items["source_id"] = [_as_str(v) for v in frame[columns.id]] if columns.id else None
    for role in ("worker", "batch"):
        col = getattr(columns, role)
        items[role] = [_as_str(v) for v in frame[col]] if col else None
    for role, col in columns.behaviour().items():
        items[role] = frame[col].tolist() if col in frame else None
    items[STATUS] = SCORED
    items["problem"] = None
    unreadable = pd.DataFrame(
        {
            "file": str(path),
            "row": [p.row for p in problems if p.kind != "encoding"],
            "text": None,
            STATUS: UNREADABLE,
            "problem": [p.message for p in problems if p.kind != "encoding"],
        }
    )
    encoding = {p.row: p.message for p in problems if p.kind == "encoding"}
    items.loc[items["row"].isin(encoding), "problem"] = items["row"].map(encoding)
    out = pd.concat([items, unreadable], ignore_index=True) if len(unreadable) else items
    out["file_index"] = file_index
    return out


def score_inputs(
    paths: list[Path],
    columns: AuditColumns,
    scorer: Scorer,
    work: ScoringWork,
    chunk_rows: int,
    on_progress: Callable[[int], None] | None = None,
    client: Any = None,
) -> pd.DataFrame:
    """Every input row as an item with its detection columns, scoring only chunks not yet on disk.

    With a dask.distributed ``client`` the chunks are scored on the cluster, a few in flight
    per worker. Each chunk sends exactly the texts this process would have scored for it (the
    ones not seen in earlier chunks), so results equal those of a single-process run."""
    pending: deque = deque()
    in_flight = 2 * len(client.nthreads()) if client is not None else 0

    def finish(job) -> None:
        items, file_index, chunk_index, texts, future, n_rows = job
        detected = scorer.detect(texts) if future is None else scorer.detect(texts, lambda _: future.result())
        chunk = pd.concat([items.reset_index(drop=True), detected.reset_index(drop=True)], axis=1)
        chunk["spans"] = chunk["spans"].map(json.dumps)
        work.save(chunk, file_index, chunk_index)
        if on_progress:
            on_progress(n_rows)

    wanted = [c for c in columns.options().values() if c]
    for file_index, path in enumerate(paths):
        try:
            batches = iter_batches(path, wanted, batch_rows=chunk_rows)
            for chunk_index, (frame, problems) in enumerate(batches):
                if work.done(file_index, chunk_index):
                    if on_progress:
                        on_progress(len(frame))
                    continue
                items = _chunk_items(frame, problems, path, file_index, columns)
                texts = items["text"].tolist()
                future = None
                if client is not None:
                    future = client.submit(
                        detect_on_worker, scorer.unseen(texts), scorer.model_path, scorer.trusted, pure=False
                    )
                    scorer.reserve(texts)
                pending.append((items, file_index, chunk_index, texts, future, len(frame)))
                while len(pending) > in_flight:
                    finish(pending.popleft())
        except InputError as exc:
            # The file became unreadable after validation (e.g. a Parquet footer is corrupt):
            # it is recorded as one unreadable item, and the other files are still audited.
            frame = pd.DataFrame(
                {"file": [str(path)], "row": [None], "text": [None], STATUS: [UNREADABLE], "problem": [str(exc)]}
            )
            frame["file_index"] = file_index
            work.save(frame, file_index, 0)
    while pending:
        finish(pending.popleft())
    items = work.load()
    return items.sort_values(["file_index", "row"], kind="stable", na_position="first").reset_index(drop=True)


def finalise_items(items: pd.DataFrame, scorer: Scorer) -> pd.DataFrame:
    """Statuses, ids, near-duplicates over the whole delivery, and flag decisions."""
    items = items.copy()
    skipped = items[STATUS].eq(SCORED) & items[SKIP_REASON].notna()
    items.loc[skipped, STATUS] = SKIPPED
    items.loc[skipped, "problem"] = items.loc[skipped, SKIP_REASON]
    # Unreadable rows carry no vendor and stay out of every vendor's figures (they are in the warnings).
    no_vendor = items["vendor"].isna() & items[STATUS].ne(UNREADABLE)
    items.loc[no_vendor, "vendor"] = MISSING_VENDOR
    file_names = items["file"].map(lambda p: Path(p).name)
    fallback = file_names + ":" + items["row"].map(lambda r: "?" if pd.isna(r) else str(int(r)))
    items[ITEM_ID] = items["source_id"].where(items["source_id"].notna(), fallback)
    items["duplicate_id"] = items[ITEM_ID].duplicated(keep=False) & items["source_id"].notna()
    scored = items[STATUS].eq(SCORED).to_numpy()
    duplicates = scorer.near_duplicates(items.loc[scored, "text"].tolist())
    nearest = duplicates["dup_nearest"].to_numpy(dtype=float)
    scored_index = np.flatnonzero(scored)
    duplicates["dup_nearest"] = [
        items[ITEM_ID].iat[scored_index[int(j)]] if j >= 0 else None for j in np.nan_to_num(nearest, nan=-1)
    ]
    for column in duplicates.columns:
        items[column] = None
        items.loc[scored, column] = duplicates[column].to_numpy()
    decided = scorer.decide(
        items.loc[scored, [PROBABILITY, "ref_label", "ref_jaccard", "ref_key"]].reset_index(drop=True)
    )
    items[FLAGGED] = False
    items["flag_reason"] = None
    items.loc[scored, FLAGGED] = decided[FLAGGED].to_numpy()
    items.loc[scored, "flag_reason"] = decided["flag_reason"].to_numpy()
    items[FLAGGED] = items[FLAGGED].astype(bool)
    return items


@dataclass
class AuditOptions:
    level: float = 0.9
    resume: bool = True
    top_items: int = 20
    human_reference: Path | None = None
    machine_reference: Path | None = None
    reference_text_col: str = "text"


def audit_state(paths: list[Path], columns: AuditColumns, scorer: Scorer, chunk_rows: int) -> dict:
    """What the scored chunks depend on; a change in any of it invalidates them."""
    calibration = scorer.calibration.model_dump(exclude={"created_at"}) if scorer.calibration else None
    return {
        "inputs": [fingerprint(p) for p in paths],
        "columns": {k: v for k, v in asdict(columns).items() if k != "autodetected"},
        "chunk_rows": chunk_rows,
        "model": str(scorer.model_dir),
        "classifier": scorer.classifier.describe(),
        "calibration_threshold": calibration["threshold"] if calibration else None,
    }


def read_reference_texts(path: Path, text_col: str) -> list[str]:
    frame, _ = read_table(path, [text_col])
    if text_col not in frame:
        raise InputError(
            f"{path}: no such column: {text_col!r}. Columns in this file: {', '.join(map(repr, read_columns(path)))}"
        )
    return [t for t in frame[text_col].tolist() if isinstance(t, str) and t.strip()]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
