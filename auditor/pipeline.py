"""``auditor audit`` end to end: validate, score (resumably), aggregate, write the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from auditor.aggregate import Estimation, behaviour_columns, duplicate_clusters, input_warnings, vendor_report
from auditor.audit import (
    ITEM_ID,
    STATUS,
    UNREADABLE,
    AuditColumns,
    AuditOptions,
    ScoringWork,
    audit_state,
    count_rows,
    finalise_items,
    fingerprint,
    now_iso,
    read_reference_texts,
    score_inputs,
    validate_inputs,
)
from auditor.config import Settings
from auditor.diversity import diversity
from auditor.report import InputFile, Methods, Report
from auditor.scoring import PROBABILITY, Scorer
from auditor.stats import ScoreReference

ITEM_COLUMNS = [
    ITEM_ID,
    "file",
    "row",
    STATUS,
    "problem",
    "vendor",
    "worker",
    "batch",
    "source_id",
    "duplicate_id",
    PROBABILITY,
    "flagged",
    "flag_reason",
]


def plan(paths: list[Path], columns: AuditColumns) -> tuple[AuditColumns, dict[Path, str], int]:
    """Validate before anything is scored; returns the columns, unreadable files and expected rows."""
    columns, unreadable = validate_inputs(paths, columns)
    expected = sum(count_rows(p) for p in paths if p not in unreadable)
    return columns, unreadable, expected


def estimation_for(
    scorer: Scorer, options: AuditOptions, on_progress: Callable[[int], None] | None = None
) -> Estimation:
    """Error rates for prevalence: the model's calibration, or rates re-measured on the
    user's domain-matched reference texts (human, and optionally LLM-written)."""
    calibration = scorer.require_calibration()
    rates = calibration.error_rates()
    if rates is None:
        raise ValueError(
            f"{scorer.model_dir}: the calibration has no measured true-positive rate; recalibrate with --machine texts"
        )
    reference = calibration.reference()
    source = f"calibration of {scorer.model_dir.name}: {calibration.data}"
    human_scores = machine_scores = None
    if options.human_reference:
        texts = read_reference_texts(options.human_reference, options.reference_text_col)
        human_scores = scorer.detect(texts)[PROBABILITY].dropna().to_numpy()
        fp = int(calibration.flags(human_scores).sum())
        # Measured on the vendor's own kind of text: no between-source spread to allow for.
        rates = replace(rates, false_positives=fp, n_human=len(human_scores), fpr_spread=0.0)
        source = f"false positives measured on {len(human_scores)} texts of {options.human_reference}; true positives from the model's calibration"
    if options.machine_reference:
        texts = read_reference_texts(options.machine_reference, options.reference_text_col)
        machine_scores = scorer.detect(texts)[PROBABILITY].dropna().to_numpy()
        tp = int(calibration.flags(machine_scores).sum())
        rates = replace(rates, true_positives=tp, n_machine=len(machine_scores), tpr_spread=0.0)
        source += f"; true positives measured on {len(machine_scores)} texts of {options.machine_reference}"
    primary = "flags"
    if human_scores is not None and machine_scores is not None:
        # Domain-matched references of both kinds: their full score distributions carry more
        # information than one threshold does, so the score mixture becomes the primary estimate.
        reference = ScoreReference.from_scores(human_scores, machine_scores)
        primary = "mixture"
    return Estimation(calibration, rates, reference, options.level, source, primary)


def run_audit(
    paths: list[Path],
    columns: AuditColumns,
    out: Path,
    scorer: Scorer,
    settings: Settings,
    options: AuditOptions,
    unreadable: dict[Path, str] | None = None,
    on_progress: Callable[[int], None] | None = None,
    embeddings: bool = True,
    client: Any = None,
) -> Report:
    unreadable = unreadable or {}
    readable = [p for p in paths if p not in unreadable]
    out.mkdir(parents=True, exist_ok=True)
    estimation = estimation_for(scorer, options)
    work = ScoringWork(out, audit_state(readable, columns, scorer, settings.chunk_rows), options.resume)
    items = score_inputs(readable, columns, scorer, work, settings.chunk_rows, on_progress, client)
    if unreadable:  # a file that could not be opened is one unreadable item, so it is not lost from view
        lost = pd.DataFrame(
            {
                "file": [str(p) for p in unreadable],
                "row": None,
                "text": None,
                STATUS: UNREADABLE,
                "problem": list(unreadable.values()),
            }
        )
        items = pd.concat([items, lost], ignore_index=True)
    items = finalise_items(items, scorer)
    behaviour = behaviour_columns(items)
    behaviour_cols = columns.behaviour()

    vendors = [
        vendor_report(vendor, part, estimation, behaviour, behaviour_cols, options.top_items, embeddings)
        for vendor, part in items.groupby("vendor", sort=True)
    ]
    human_reference = None
    if options.human_reference:
        human_reference = diversity(
            read_reference_texts(options.human_reference, options.reference_text_col), embeddings=embeddings
        )
    encoding_rows = items[
        items["problem"].astype(str).str.contains("not valid UTF-8", na=False) & items[STATUS].ne("unreadable")
    ]
    report = Report(
        created_at=now_iso(),
        inputs=[_input_file(p, items) for p in paths],
        columns={
            **{k: v for k, v in asdict(columns).items() if k != "autodetected"},
            "autodetected": columns.autodetected,
        },
        configuration={
            "interval_level": options.level,
            "human_reference": str(options.human_reference) if options.human_reference else None,
            "machine_reference": str(options.machine_reference) if options.machine_reference else None,
            "chunk_rows": settings.chunk_rows,
            "max_tokens": settings.max_tokens,
            "dedup_threshold": settings.dedup_threshold,
            "resumed_chunks": work.resumed,
            "scoring": "local process"
            if client is None
            else f"dask.distributed, {len(client.nthreads())} workers at {client.scheduler.address}",
        },
        models=scorer.describe(),
        methods=_methods(estimation),
        totals=_totals(items),
        vendors=vendors,
        cross_vendor_duplicate_clusters=duplicate_clusters(items, min_workers=1, min_vendors=2),
        human_reference=human_reference,
        warnings=input_warnings(items, {str(p): r for p, r in unreadable.items()}, encoding_rows),
    )
    write_items(items, behaviour, out / "items.parquet")
    return report


def _input_file(path: Path, items: pd.DataFrame) -> InputFile:
    identity = fingerprint(path)
    return InputFile(
        path=str(path),
        rows_read=int((items["file"] == str(path)).sum()),
        bytes=identity["bytes"] or 0,
        sha256=identity["sha256"] or "",
    )


def _totals(items: pd.DataFrame) -> dict:
    counts = items[STATUS].value_counts().to_dict()
    return {
        "rows": len(items),
        "by_status": {k: int(v) for k, v in counts.items()},
        "flagged": int(items["flagged"].sum()),
        "vendors": int(items["vendor"].nunique()),
        "workers": int(items["worker"].nunique()) if items["worker"].notna().any() else None,
    }


def _methods(estimation: Estimation) -> Methods:
    rates = estimation.rates
    return Methods(
        interval_level=estimation.level,
        primary="score_mixture" if estimation.primary == "mixture" else "flags",
        flag_rate="share of scored items with llm_probability above the calibrated threshold; Wilson interval",
        prevalence=(
            "flag count corrected for the detector's false- and true-positive rates: flat prior on prevalence, error "
            "rates integrated over their Beta posteriors, posterior mode with highest-density interval"
            + (
                f"; the interval also allows for how the rates vary between kinds of text (between-source SD of logit "
                f"FPR {rates.fpr_spread:.2f}, of logit TPR {rates.tpr_spread:.2f}): give --human-reference and "
                "--machine-reference texts of the vendor's task to narrow it"
                if rates.heterogeneous
                else ""
            )
        ),
        prevalence_score_mixture=(
            "maximum-likelihood mixture weight of the human and LLM reference score histograms (logit bins), "
            "bootstrap interval resampling items and both references (Liang et al. 2024 style)"
        ),
        workers=(
            "per-worker flag rates shrunk towards the vendor's with a beta-binomial prior fitted by moments, then "
            "corrected like the vendor estimate; p_uses_llm = posterior probability that at least half of a worker's "
            "items are LLM-written"
        ),
        error_rates={
            "threshold": estimation.calibration.threshold,
            "false_positives": rates.false_positives,
            "n_human": rates.n_human,
            "true_positives": rates.true_positives,
            "n_machine": rates.n_machine,
            "fpr_spread_between_sources": rates.fpr_spread,
            "tpr_spread_between_sources": rates.tpr_spread,
            "source": estimation.rates_source,
        },
    )


def write_items(items: pd.DataFrame, behaviour: pd.DataFrame, path: Path) -> None:
    signal_columns = [c for c in items.columns if c.startswith("ppl_") or c.startswith("dup_") or c.startswith("ref_")]
    keep = [c for c in ITEM_COLUMNS if c in items] + ["text", "spans", *signal_columns]
    frame = pd.concat([items[keep], behaviour], axis=1)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(
                lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            )
    frame.to_parquet(path, index=False)
