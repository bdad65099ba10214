"""Batch audits, the scoring part: check the inputs, score every row (resumably, here or on a
cluster), find near-duplicates across the whole delivery and decide.

Nothing in the input is fatal after the column check: unreadable rows, empty texts,
duplicated ids and missing vendors are counted in the report's warnings, and every input
row appears in ``items.parquet`` with its ``status``.
"""

from __future__ import annotations

import json
import shutil
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from auditor.auditing.options import BEHAVIOUR_NAMES, AuditColumns
from auditor.execution import Executor, LocalExecutor
from auditor.reader import ROW_COLUMN, Problem, ReadError, count_records, describe_format, iter_batches, read_columns
from auditor.reader.tables import fingerprint
from auditor.scoring import FLAG_REASON, FLAGGED, SCORED, SKIP_REASON, Scorer
from auditor.scoring.schema import DUP_NEAREST, SPANS

MISSING_VENDOR = "(missing vendor)"
STATUS = "status"
SCORED_STATUS, SKIPPED, UNREADABLE = "scored", "skipped", "unreadable"
ITEM_ID = "item_id"
# An input: a local path or an fsspec URL (file://, memory://, s3:// ...), as the reader takes it.
Source = str | Path
# What the scorer adds after the whole delivery is read: near-duplicate evidence and the decision.
_EVIDENCE = [*SCORED.role("evidence"), FLAGGED, FLAG_REASON]


def validate_inputs(paths: Sequence[Source], columns: AuditColumns) -> tuple[AuditColumns, dict[Source, str]]:
    """Check every file before any scoring. A file that names columns it lacks is a usage
    error (raised, listing the columns it has); a file that cannot be read at all is
    returned with the reason, to be reported while the others are audited. Behavioural
    columns not named are looked up by common names present in all readable files."""
    if not paths:
        raise ReadError("no input files given")
    available: list[set[str]] = []
    unreadable: dict[Source, str] = {}
    for path in paths:
        describe_format(path)
        try:
            names = read_columns(path)
        except ReadError as exc:
            unreadable[path] = str(exc)
            continue
        missing = {opt: col for opt, col in columns.options().items() if col is not None and col not in names}
        if missing:
            said = "; ".join(f"{opt} {col!r}" for opt, col in missing.items())
            raise ReadError(str(path), f"no such column: {said}. Columns in this file: {', '.join(map(repr, names))}")
        available.append(set(names))
    if not available:
        raise ReadError("no input file could be read: " + "; ".join(unreadable.values()))
    common = set.intersection(*available)
    for role, known in BEHAVIOUR_NAMES.items():
        if getattr(columns, role) is None:
            match = next((c for c in sorted(common) if c.lower() in known), None)
            if match:
                setattr(columns, role, match)
                columns.autodetected.append(f"{role}: {match}")
    return columns, unreadable


def plan(paths: Sequence[Source], columns: AuditColumns) -> tuple[AuditColumns, dict[Source, str], int]:
    """Validate before anything is scored; returns the columns, unreadable files and expected rows."""
    columns, unreadable = validate_inputs(paths, columns)
    expected = sum(count_records(p) for p in paths if p not in unreadable)
    return columns, unreadable, expected


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


def audit_state(paths: Sequence[Source], columns: AuditColumns, scorer: Scorer, chunk_rows: int) -> dict:
    """What the scored chunks depend on; a change in any of it invalidates them."""
    calibration = scorer.calibration.model_dump(exclude={"created_at"}) if scorer.calibration else None
    return {
        "inputs": [fingerprint(p) for p in paths],
        "columns": columns.model_dump(exclude={"autodetected"}),
        "chunk_rows": chunk_rows,
        "model": str(scorer.model_dir),
        "classifier": scorer.classifier.describe(),
        "calibration_threshold": calibration["threshold"] if calibration else None,
    } | ({"detectors": [d.describe() for d in scorer.detectors]} if scorer.detectors else {})


def _as_str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


def _chunk_items(
    frame: pd.DataFrame, problems: list[Problem], path: Source, file_index: int, columns: AuditColumns
) -> pd.DataFrame:
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
    items[STATUS] = SCORED_STATUS
    items["problem"] = None
    lost = [p for p in problems if p.kind != "encoding"]
    unreadable = pd.DataFrame(
        {
            "file": str(path),
            "row": [p.position for p in lost],
            "text": None,
            STATUS: UNREADABLE,
            "problem": [p.reason for p in lost],
        }
    )
    encoding = {p.row: p.reason for p in problems if p.kind == "encoding" and p.row is not None}
    items.loc[items["row"].isin(encoding), "problem"] = items["row"].map(encoding)
    out = pd.concat([items, unreadable], ignore_index=True) if len(unreadable) else items
    out["file_index"] = file_index
    return out


def score_inputs(
    paths: Sequence[Source],
    columns: AuditColumns,
    scorer: Scorer,
    work: ScoringWork,
    chunk_rows: int,
    on_progress: Callable[[int], None] | None = None,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Every input row as an item with its detection columns, scoring only chunks not yet on disk.

    On a cluster the chunks are scored by the workers, a few in flight per worker. Each chunk
    sends exactly the texts this process would have scored for it (the ones not seen in
    earlier chunks), so results equal those of a single-process run."""
    executor = executor or LocalExecutor()
    pending: deque = deque()

    def finish(job: tuple) -> None:
        items, file_index, chunk_index, detected, n_rows = job
        chunk = pd.concat([items.reset_index(drop=True), detected().reset_index(drop=True)], axis=1)
        chunk[SPANS] = chunk[SPANS].map(json.dumps)
        work.save(chunk, file_index, chunk_index)
        if on_progress:
            on_progress(n_rows)

    wanted = [c for c in columns.options().values() if c]
    for file_index, path in enumerate(paths):
        try:
            for chunk_index, (frame, problems) in enumerate(iter_batches(path, wanted, batch_rows=chunk_rows)):
                if work.done(file_index, chunk_index):
                    if on_progress:
                        on_progress(len(frame))
                    continue
                items = _chunk_items(frame, problems, path, file_index, columns)
                texts = items["text"].tolist()
                pending.append((items, file_index, chunk_index, scorer.detect_later(texts, executor), len(frame)))
                while len(pending) > executor.slots:
                    finish(pending.popleft())
        except ReadError as exc:
            # The file became unreadable after validation (e.g. a Parquet footer is corrupt):
            # it is recorded as one unreadable item, and the other files are still audited.
            lost = pd.DataFrame(
                {"file": [str(path)], "row": [None], "text": [None], STATUS: [UNREADABLE], "problem": [str(exc)]}
            )
            lost["file_index"] = file_index
            work.save(lost, file_index, 0)
    while pending:
        finish(pending.popleft())
    items = work.load()
    return items.sort_values(["file_index", "row"], kind="stable", na_position="first").reset_index(drop=True)


def finalise_items(items: pd.DataFrame, scorer: Scorer) -> pd.DataFrame:
    """Statuses, ids, near-duplicates over the whole delivery, and flag decisions."""
    items = items.copy()
    skipped = items[STATUS].eq(SCORED_STATUS) & items[SKIP_REASON].notna()
    items.loc[skipped, STATUS] = SKIPPED
    items.loc[skipped, "problem"] = items.loc[skipped, SKIP_REASON]
    # Unreadable rows carry no vendor and stay out of every vendor's figures (they are in the warnings).
    no_vendor = items["vendor"].isna() & items[STATUS].ne(UNREADABLE)
    items.loc[no_vendor, "vendor"] = MISSING_VENDOR
    file_names = items["file"].map(lambda p: Path(p).name)
    fallback = file_names + ":" + items["row"].map(lambda r: "?" if pd.isna(r) else str(int(r)))
    items[ITEM_ID] = items["source_id"].where(items["source_id"].notna(), fallback)
    items["duplicate_id"] = items[ITEM_ID].duplicated(keep=False) & items["source_id"].notna()
    scored = items[STATUS].eq(SCORED_STATUS).to_numpy()
    detected = items.loc[scored, [c for c in items.columns if c in SCORED.by_name and c not in _EVIDENCE]]
    table = scorer.score(items.loc[scored, "text"].tolist(), detected=detected)
    scored_index = np.flatnonzero(scored)
    nearest = table[DUP_NEAREST].to_numpy(dtype=float, na_value=np.nan)
    table[DUP_NEAREST] = pd.Series(
        [items[ITEM_ID].iat[scored_index[int(j)]] if j >= 0 else None for j in np.nan_to_num(nearest, nan=-1)],
        dtype=object,
    )
    for column in _EVIDENCE:
        items[column] = False if column == FLAGGED else None
        items.loc[scored, column] = table[column].to_numpy()
    items[FLAGGED] = items[FLAGGED].astype(bool)
    return items
