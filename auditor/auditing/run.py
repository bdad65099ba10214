"""``auditor audit`` end to end, the same function wherever it runs (the command line, the
service's job workers, on one machine or a Dask cluster): validate, score (resumably),
aggregate, write ``items.parquet``, and return the report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from auditor.auditing.aggregate import (
    behaviour_columns,
    duplicate_clusters,
    input_warnings,
    vendor_report,
)
from auditor.auditing.options import AuditOptions
from auditor.auditing.work import (
    STATUS,
    UNREADABLE,
    ScoringWork,
    Source,
    audit_state,
    finalise_items,
    score_inputs,
)
from auditor.config import Settings
from auditor.diversity import diversity
from auditor.estimate import Estimator
from auditor.execution import Executor, LocalExecutor
from auditor.reader import fingerprint, read_texts
from auditor.report.models import InputFile, Methods, Report, ReportWarning
from auditor.scoring import ITEMS, Scorer
from auditor.tasks.store import FEW_TEXTS, MIN_TEXTS, TaskInfo, TaskStore, scorer_identity


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class AuditReferences:
    """Reference scores of the vendor's task, per role, and where each came from."""

    human: np.ndarray | None = None
    machine: np.ndarray | None = None
    human_texts: list[str] | None = None
    origins: dict[str, str] = field(default_factory=dict)
    task: TaskInfo | None = None

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"task": self.task.name if self.task else None}
        for role in ("human", "machine"):
            scores = getattr(self, role)
            stored = getattr(self.task, role) if self.task else None
            described[role] = (
                None
                if scores is None
                else {
                    "n_texts": len(scores),
                    "origin": self.origins.get(role),
                    "generator": stored.generator if stored and role == "machine" else None,
                }
            )
        return described


def audit_references(options: AuditOptions, scorer: Scorer, tasks: TaskStore | None) -> AuditReferences:
    """The task's stored references (``options.task``), with any role given as a file
    (``human_reference`` / ``machine_reference``) taking its place."""
    references = AuditReferences()
    if options.task:
        if tasks is None:
            raise ValueError(f"task {options.task!r}: no task store is configured")
        loaded = tasks.load(options.task, scorer.probabilities, scorer_identity(scorer.classifier.describe()))
        references.task = loaded.info
        references.human, references.machine, references.human_texts = loaded.human, loaded.machine, loaded.human_texts
        for role in ("human", "machine"):
            if getattr(loaded, role) is not None:
                references.origins[role] = f"task {options.task}"
    for role, path in (("human", options.human_reference), ("machine", options.machine_reference)):
        if path:
            texts = read_texts(path, options.reference_text_col)
            if len(texts) < MIN_TEXTS:
                raise ValueError(
                    f"{path}: the {role} reference holds {len(texts)} non-blank text(s) in column "
                    f"{options.reference_text_col!r}; at least {MIN_TEXTS} are needed"
                )
            scores = scorer.probabilities(texts)
            setattr(references, role, scores[~np.isnan(scores)])
            references.origins[role] = str(path)
            if role == "human":
                references.human_texts = texts
    return references


def estimator_for(scorer: Scorer, level: float, references: AuditReferences) -> Estimator:
    return Estimator.build(
        scorer.require_calibration(),
        level,
        human=references.human,
        machine=references.machine,
        origins=references.origins,
        model=scorer.model_dir.name,
    )


def reference_warnings(references: AuditReferences) -> list[ReportWarning]:
    warnings = []
    for role in ("human", "machine"):
        scores = getattr(references, role)
        if scores is not None and len(scores) < FEW_TEXTS:
            warnings.append(
                ReportWarning(
                    kind="few_reference_texts",
                    count=len(scores),
                    message=f"the {role} reference ({references.origins[role]}) holds only {len(scores)} scored texts: "
                    f"error rates measured on it are loose; {FEW_TEXTS} or more are advised",
                )
            )
    stored = references.task.machine if references.task else None
    generator = stored.generator if stored and references.origins.get("machine", "").startswith("task ") else None
    if generator and generator.get("small_local_model"):
        warnings.append(
            ReportWarning(
                kind="small_generator",
                count=stored.n_texts if stored else 0,
                message=f"the machine references were written by a small local model ({generator.get('model')}); its "
                "style is not that of the LLMs crowd workers use, so true-positive rates measured on them may be "
                "optimistic or pessimistic; prefer answers from the LLMs your vendors may use (--generator openai:MODEL)",
            )
        )
    return warnings


def run_audit(
    paths: Sequence[Source],
    options: AuditOptions,
    out: Path,
    scorer: Scorer,
    settings: Settings,
    unreadable: dict[Source, str] | None = None,
    on_progress: Callable[[int], None] | None = None,
    embeddings: bool = True,
    executor: Executor | None = None,
    tasks: TaskStore | None = None,
) -> Report:
    """Audit ``paths`` (validated by :func:`~auditor.auditing.work.plan`; ``unreadable`` holds the
    files it could not open) into ``out``: writes ``items.parquet`` and returns the report."""
    executor = executor or LocalExecutor()
    columns = options.columns
    unreadable = unreadable or {}
    readable = [p for p in paths if p not in unreadable]
    out.mkdir(parents=True, exist_ok=True)
    references = audit_references(options, scorer, tasks)
    estimator = estimator_for(scorer, options.level, references)
    work = ScoringWork(out, audit_state(readable, columns, scorer, settings.chunk_rows), options.resume)
    items = score_inputs(readable, columns, scorer, work, settings.chunk_rows, on_progress, executor)
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
        vendor_report(
            str(vendor), part, estimator, behaviour, behaviour_cols, options.top_items, embeddings, options.tolerance
        )
        for vendor, part in items.groupby("vendor", sort=True)
    ]
    human_reference = (
        diversity(references.human_texts, embeddings=embeddings) if references.human_texts is not None else None
    )
    encoding_rows = items[
        items["problem"].astype(str).str.contains("not valid UTF-8", na=False) & items[STATUS].ne("unreadable")
    ]
    report = Report(
        created_at=now_iso(),
        inputs=[_input_file(p, items) for p in paths],
        columns=columns.model_dump(),
        configuration={
            "interval_level": options.level,
            "tolerance": options.tolerance,
            "human_reference": str(options.human_reference) if options.human_reference else None,
            "machine_reference": str(options.machine_reference) if options.machine_reference else None,
            "task": options.task,
            "references": references.describe(),
            "chunk_rows": settings.chunk_rows,
            "max_tokens": settings.max_tokens,
            "dedup_threshold": settings.dedup_threshold,
            "resumed_chunks": work.resumed,
            "scoring": str(executor),
        },
        models=scorer.describe(),
        methods=_methods(estimator),
        totals=_totals(items),
        vendors=vendors,
        cross_vendor_duplicate_clusters=duplicate_clusters(items, min_workers=1, min_vendors=2),
        human_reference=human_reference,
        warnings=input_warnings(items, {str(p): r for p, r in unreadable.items()}, encoding_rows)
        + reference_warnings(references),
    )
    write_items(items, behaviour, out / "items.parquet")
    return report


def _input_file(path: Source, items: pd.DataFrame) -> InputFile:
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


def _methods(estimator: Estimator) -> Methods:
    rates = estimator.rates
    return Methods(
        interval_level=estimator.level,
        primary="score_mixture" if estimator.primary == "mixture" else "flags",
        flag_rate="share of scored items with llm_probability above the calibrated threshold; Wilson interval",
        prevalence=(
            "flag count corrected for the detector's false- and true-positive rates: flat prior on prevalence, error "
            "rates integrated over their Beta posteriors, posterior mode with highest-density interval"
            + (
                f"; rates not measured on the vendor's task may differ on it as between kinds of text (SD of logit "
                f"FPR {rates.fpr_spread:.2f}, of logit TPR {rates.tpr_spread:.2f}, at least the floors chosen on the "
                "calibration split), and the interval allows for that: give --human-reference and "
                "--machine-reference texts of the vendor's task to narrow it"
                if rates.heterogeneous
                else ""
            )
        ),
        prevalence_score_mixture=(
            "maximum-likelihood mixture weight of the human and LLM reference score histograms (logit bins), "
            "interval joining the profile-likelihood interval (the vendor's sampling) and a bootstrap resampling items "
            "and both references (Liang et al. 2024 style); calibration_fit tests whether the vendor's scores fit the "
            "mixture at all, and when they do not, `prevalence` is widened to error rates that vary as much as they do "
            "between kinds of text"
        ),
        workers=(
            "per-worker flag rates shrunk towards the vendor's with a beta-binomial prior fitted by moments, then "
            "corrected like the vendor estimate; p_uses_llm = posterior probability that at least half of a worker's "
            "items are LLM-written"
        ),
        error_rates=estimator.error_rates(),
    )


def write_items(items: pd.DataFrame, behaviour: pd.DataFrame, path: Path) -> None:
    """``items.parquet``: every input row, in the columns of the :data:`~auditor.scoring.ITEMS` schema."""
    frame = pd.concat([items, behaviour], axis=1)
    frame = frame[[c for c in ITEMS.names if c in frame]].copy()
    frame["text_truncated"] = frame["text_truncated"].astype("boolean").fillna(False)
    ITEMS.write_parquet(frame, path)
