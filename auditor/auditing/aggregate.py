"""From scored items to the per-vendor sections of the report."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from auditor.auditing.work import ITEM_ID, MISSING_VENDOR, SKIPPED, STATUS, UNREADABLE
from auditor.auditing.work import SCORED_STATUS as SCORED
from auditor.calibration import signals_fired
from auditor.diversity import diversity
from auditor.estimate import Estimator
from auditor.report.models import (
    BehaviourSummary,
    DuplicateCluster,
    ItemEvidence,
    ReferenceMatch,
    ReportWarning,
    VendorReport,
    WorkerReport,
)
from auditor.report.verdict import verdict_for
from auditor.scoring.schema import (
    DUP_CLUSTER,
    DUP_JACCARD,
    DUP_NEAREST,
    FLAG_REASON,
    FLAGGED,
    PROBABILITY,
    REF_JACCARD,
    REF_KEY,
    REF_LABEL,
    REF_SOURCE,
    SPANS,
    TEXT_TRUNCATED,
)
from auditor.stats import Interval, wilson
from detectors import output_columns

FAST_TYPING_CPS = 8.0  # characters per second of whole-task time: faster than people type
SMALL_VENDOR = 30


def _truthy(value: Any) -> float:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "y", "t"):
            return 1.0
        if text in ("false", "no", "n", "f", ""):
            return 0.0
        try:
            return float(float(text) > 0)
        except ValueError:
            return np.nan
    return float(float(value) > 0)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def behaviour_columns(items: pd.DataFrame) -> pd.DataFrame:
    """Per item: time on task, characters per second, pasted, keystrokes per character."""
    out = pd.DataFrame(index=items.index)
    length = items["text"].map(lambda t: len(t) if isinstance(t, str) else np.nan)
    if "time" in items and items["time"].notna().any():
        out["time_on_task_s"] = items["time"].map(_number)
        seconds = out["time_on_task_s"].where(out["time_on_task_s"] > 0)
        out["chars_per_second"] = length / seconds
    if "paste" in items and items["paste"].notna().any():
        out["pasted"] = items["paste"].map(_truthy)
    if "keystrokes" in items and items["keystrokes"].notna().any():
        keys = items["keystrokes"].map(_number)
        out["keystrokes_per_char"] = keys / length.where(length > 0)
    return out


def _median(series: pd.Series) -> float | None:
    series = series.dropna()
    return round(float(series.median()), 3) if len(series) else None


def behaviour_summary(items: pd.DataFrame, behaviour: pd.DataFrame, columns: dict[str, str]) -> BehaviourSummary | None:
    if behaviour.empty or not columns:
        return None
    scored = items[STATUS].eq(SCORED)

    def describe(mask: pd.Series) -> dict[str, float | None]:
        part = behaviour[mask & scored]
        summary: dict[str, float | None] = {"items": int(len(part))}
        if "time_on_task_s" in part:
            summary["median_time_on_task_s"] = _median(part["time_on_task_s"])
            summary["median_chars_per_second"] = _median(part["chars_per_second"])
        if "pasted" in part:
            summary["share_pasted"] = round(float(part["pasted"].mean()), 3) if part["pasted"].notna().any() else None
        if "keystrokes_per_char" in part:
            summary["median_keystrokes_per_char"] = _median(part["keystrokes_per_char"])
        return summary

    notes = []
    if "chars_per_second" in behaviour:
        fast = behaviour["chars_per_second"] > FAST_TYPING_CPS
        if fast.any():
            notes.append(
                f"{int(fast.sum())} item(s) hold more than {FAST_TYPING_CPS:g} characters per second of total task time "
                f"(faster than typing); {int((fast & items[FLAGGED]).sum())} of them are flagged"
            )
    if "keystrokes_per_char" in behaviour:
        few_keys = behaviour["keystrokes_per_char"] < 0.5
        if few_keys.any():
            notes.append(
                f"{int(few_keys.sum())} item(s) were typed with fewer than half a keystroke per character (mostly pasted)"
            )
    return BehaviourSummary(
        columns=columns, flagged=describe(items[FLAGGED]), not_flagged=describe(~items[FLAGGED]), notes=notes
    )


def item_behaviour(behaviour: pd.DataFrame, index) -> dict[str, Any]:
    if behaviour.empty:
        return {}
    row = behaviour.loc[index]
    return {k: (None if pd.isna(v) else round(float(v), 3)) for k, v in row.items()}


def evidence(item: pd.Series, estimator: Estimator, behaviour: pd.DataFrame, max_spans: int = 3) -> ItemEvidence:
    # Every registered detector's signals that say which way is machine-like, by output name.
    signals = {o.name: _number(item.get(column)) for column, o in output_columns().items() if o.machine is not None}
    spans = item[SPANS]
    spans = json.loads(spans) if isinstance(spans, str) else (spans or [])
    text = item["text"] if isinstance(item["text"], str) else ""
    ranked = sorted(spans, key=lambda s: -s.get("fast_detectgpt", 0))[:max_spans]
    highlighted = [dict(s, text=text[s["start"] : s["end"]]) for s in sorted(ranked, key=lambda s: s["start"])]
    nearest = None
    if item.get(REF_KEY):
        nearest = {
            "kind": "reference",
            "key": item[REF_KEY],
            "jaccard": _number(item[REF_JACCARD]),
            "label": item.get(REF_LABEL),
        }
    elif item.get(DUP_NEAREST):
        nearest = {"kind": "same delivery", "item_id": item[DUP_NEAREST], "jaccard": _number(item[DUP_JACCARD])}
    return ItemEvidence(
        item_id=str(item[ITEM_ID]),
        vendor=str(item["vendor"]),
        worker=item.get("worker"),
        llm_probability=round(float(item[PROBABILITY]), 4),
        flag_reason=item.get(FLAG_REASON),
        signals_fired=signals_fired(signals, estimator.calibration.signal_reference),
        highlighted_spans=highlighted,
        nearest_duplicate=nearest,
        behaviour=item_behaviour(behaviour, item.name),
        text=text[:2000],
    )


def duplicate_clusters(items: pd.DataFrame, min_workers: int = 2, min_vendors: int = 1) -> list[DuplicateCluster]:
    clustered = items[items[DUP_CLUSTER].notna() & (pd.to_numeric(items[DUP_CLUSTER], errors="coerce") >= 0)]
    clusters = []
    for cluster, members in clustered.groupby(DUP_CLUSTER):
        workers = sorted({w for w in members["worker"].dropna()}) if "worker" in members else []
        vendors = sorted(set(members["vendor"]))
        enough_workers = len(workers) >= min_workers or (members["worker"].isna().all() and len(members) >= 2)
        if not enough_workers or len(vendors) < min_vendors:
            continue
        clusters.append(
            DuplicateCluster(
                cluster=int(str(cluster)),
                size=len(members),
                workers=workers,
                vendors=vendors,
                mean_probability=round(float(members[PROBABILITY].mean()), 4),
                example=str(members["text"].iloc[0])[:500],
                item_ids=[str(i) for i in members[ITEM_ID].head(50)],
            )
        )
    return sorted(clusters, key=lambda c: (-c.size, c.cluster))


def worker_reports(
    items: pd.DataFrame,
    estimator: Estimator,
    behaviour: pd.DataFrame,
    clusters: list[DuplicateCluster],
    vendor_prevalence: Interval | None,
) -> list[WorkerReport]:
    scored = items[items[STATUS].eq(SCORED) & items["worker"].notna()]
    if scored.empty:
        return []
    grouped = scored.groupby("worker")
    in_cluster: dict[str, int] = {}
    for cluster in clusters:
        for member in cluster.workers:
            in_cluster[member] = in_cluster.get(member, 0) + 1
    estimates = estimator.workers(
        {str(w): part[PROBABILITY].to_numpy(dtype=float) for w, part in grouped},
        {str(w): int(part[FLAGGED].sum()) for w, part in grouped},
        vendor_prevalence,
    )
    reports = []
    for worker, part in grouped:
        estimate = estimates[str(worker)]
        summary = (
            {col: _median(behaviour.loc[part.index, col]) for col in behaviour.columns} if not behaviour.empty else {}
        )
        reports.append(
            WorkerReport(
                worker=str(worker),
                n_items=len(part),
                n_flagged=int(part[FLAGGED].sum()),
                mean_probability=round(float(part[PROBABILITY].mean()), 4),
                prevalence=estimate.prevalence,
                p_uses_llm=round(estimate.p_uses_llm, 4),
                in_duplicate_clusters=in_cluster.get(str(worker), 0),
                behaviour=summary,
                flagged_items=[str(i) for i in part.loc[part[FLAGGED], ITEM_ID].head(20)],
            )
        )
    return sorted(reports, key=lambda r: (-r.p_uses_llm, -r.mean_probability, r.worker))


def vendor_report(
    vendor: str,
    items: pd.DataFrame,
    estimator: Estimator,
    behaviour: pd.DataFrame,
    behaviour_cols: dict[str, str],
    top_items: int,
    with_diversity: bool = True,
    tolerance: float | None = None,
) -> VendorReport:
    scored = items[items[STATUS].eq(SCORED)]
    n_scored, n_flagged = len(scored), int(scored[FLAGGED].sum())
    probabilities = scored[PROBABILITY].to_numpy(dtype=float)
    clusters = duplicate_clusters(items)
    estimates = estimator.vendor(probabilities, n_flagged)
    workers = worker_reports(items, estimator, behaviour, clusters, estimates.score_mixture)
    top = scored[scored[FLAGGED]].sort_values(PROBABILITY, ascending=False).head(top_items)
    references = scored[scored[REF_KEY].notna()] if REF_KEY in scored else scored.iloc[:0]
    report = VendorReport(
        vendor=vendor,
        n_items=len(items),
        n_scored=n_scored,
        n_skipped=int(items[STATUS].eq(SKIPPED).sum()),
        n_flagged=n_flagged,
        flag_rate=estimates.flag_rate,
        prevalence=estimates.prevalence,
        calibration_fit=estimates.fit,
        calibration_advice=estimates.advice,
        prevalence_lower_bound=estimates.lower_bound,
        prevalence_from_flags=estimates.from_flags,
        prevalence_score_mixture=estimates.score_mixture,
        batches=batch_rows(scored, estimator) if scored["batch"].notna().any() else [],
        workers=workers,
        top_workers=[w.worker for w in workers if w.p_uses_llm >= 0.5][:10],
        duplicate_clusters=clusters,
        reference_matches=[
            ReferenceMatch(
                item_id=str(r[ITEM_ID]),
                reference_key=str(r[REF_KEY]),
                jaccard=_number(r[REF_JACCARD]),
                reference_label=r.get(REF_LABEL),
                reference_source=r.get(REF_SOURCE),
            )
            for _, r in references.head(100).iterrows()
        ],
        top_flagged=[evidence(item, estimator, behaviour) for _, item in top.iterrows()],
        diversity=diversity(scored["text"].tolist(), embeddings=with_diversity) if n_scored >= 2 else None,
        behaviour=behaviour_summary(
            items, behaviour.loc[items.index] if not behaviour.empty else behaviour, behaviour_cols
        ),
        score_histogram=np.histogram(probabilities[~np.isnan(probabilities)], bins=20, range=(0, 1))[0].tolist(),
    )
    report.verdict = verdict_for(report, estimator.level, tolerance)
    return report


def batch_rows(scored: pd.DataFrame, estimator: Estimator) -> list[dict[str, Any]]:
    rows = []
    for batch, part in scored.groupby("batch"):
        k, n = int(part[FLAGGED].sum()), len(part)
        rows.append(
            {
                "batch": str(batch),
                "n_scored": n,
                "n_flagged": k,
                "flag_rate": wilson(k, n, estimator.level).model_dump(),
                "prevalence": estimator.batch(part[PROBABILITY].to_numpy(dtype=float), k).model_dump(),
            }
        )
    return rows


def input_warnings(items: pd.DataFrame, unreadable_files: dict, encoding_rows: pd.DataFrame) -> list[ReportWarning]:
    warnings: list[ReportWarning] = []

    def add(kind: str, mask: pd.Series, message: str, describe) -> None:
        if mask.any():
            examples = [describe(row) for _, row in items[mask].head(5).iterrows()]
            warnings.append(ReportWarning(kind=kind, count=int(mask.sum()), message=message, examples=examples))

    where = lambda r: f"{r['file']}, row {'?' if pd.isna(r['row']) else int(r['row'])}"  # noqa: E731
    for reason in unreadable_files.values():
        warnings.append(
            ReportWarning(
                kind="unreadable_file",
                count=1,
                message="file could not be read; its rows are not audited",
                examples=[reason],
            )
        )
    add(
        "unreadable_row",
        items[STATUS].eq(UNREADABLE) & items["row"].notna(),
        "rows that could not be parsed were skipped",
        lambda r: f"{where(r)}: {r['problem']}",
    )
    if len(encoding_rows):
        warnings.append(
            ReportWarning(
                kind="encoding",
                count=len(encoding_rows),
                message="lines that were not valid UTF-8 were read as Windows-1252",
                examples=[
                    f"{r['file']}, row {int(r['row'])}: {r['problem']}" for _, r in encoding_rows.head(5).iterrows()
                ],
            )
        )
    for reason in ("missing", "empty", "too_short"):
        mask = items[STATUS].eq(SKIPPED) & items["problem"].astype(str).str.startswith(reason)
        add(
            f"text_{reason}",
            mask,
            f"texts skipped as {reason.replace('_', ' ')}",
            lambda r: f"{where(r)}: {r['problem']}",
        )
    add(
        "duplicate_id",
        items["duplicate_id"],
        "ids that appear more than once (all rows are kept)",
        lambda r: f"{r[ITEM_ID]} ({where(r)})",
    )
    add(
        "missing_vendor",
        items["vendor"].eq(MISSING_VENDOR),
        f"rows without a vendor are reported as {MISSING_VENDOR!r}",
        where,
    )
    if TEXT_TRUNCATED in items:
        add(
            "text_truncated",
            items[TEXT_TRUNCATED].fillna(False).astype(bool),
            "very long texts were cut before scoring",
            where,
        )
    sizes = items[items[STATUS].eq(SCORED)].groupby("vendor").size()
    small = sizes[sizes < SMALL_VENDOR]
    if len(small):
        warnings.append(
            ReportWarning(
                kind="small_vendor",
                count=len(small),
                message=f"vendors with fewer than {SMALL_VENDOR} scored items: their intervals are wide",
                examples=[f"{vendor}: {n} item(s)" for vendor, n in small.head(10).items()],
            )
        )
    return warnings
