"""The audit report: pydantic models, versioned. ``report.json`` is the canonical output;
the HTML and Markdown renderings are made from it and nothing else."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from auditor.stats import CalibrationFit, Interval, LowerBound

REPORT_SCHEMA_VERSION = "1.3"

Decision = Literal["above", "within", "undetermined"]
"""A vendor's LLM share against the user's tolerance (rule: auditor/report/verdict.py)."""


class ReportWarning(BaseModel):
    """Something in the input that was repaired, skipped or looks wrong; never fatal."""

    kind: str
    count: int
    message: str
    examples: list[str] = Field(default_factory=list)


class ItemEvidence(BaseModel):
    item_id: str
    vendor: str
    worker: str | None = None
    llm_probability: float
    flag_reason: str | None = None
    signals_fired: list[str] = Field(
        default_factory=list, description="signals beyond the 95th percentile of human reference texts"
    )
    highlighted_spans: list[dict[str, Any]] = Field(
        default_factory=list, description="sentences that score most machine-like"
    )
    nearest_duplicate: dict[str, Any] | None = None
    behaviour: dict[str, Any] = Field(default_factory=dict)
    text: str


class WorkerReport(BaseModel):
    worker: str
    n_items: int
    n_flagged: int
    mean_probability: float
    prevalence: Interval = Field(description="shrunk towards the vendor's rate; corrected for detector error rates")
    p_uses_llm: float = Field(
        description="posterior probability that at least half of this worker's items are LLM-written"
    )
    in_duplicate_clusters: int = 0
    behaviour: dict[str, Any] = Field(default_factory=dict)
    flagged_items: list[str] = Field(default_factory=list)


class DuplicateCluster(BaseModel):
    cluster: int
    size: int
    workers: list[str]
    vendors: list[str]
    mean_probability: float
    example: str
    item_ids: list[str]


class ReferenceMatch(BaseModel):
    item_id: str
    reference_key: str
    jaccard: float
    reference_label: str | None
    reference_source: str | None


class Diversity(BaseModel):
    n_texts: int
    distinct_1: float
    distinct_2: float
    compression_ratio: float = Field(
        description="raw / zlib-compressed size of the sampled texts; higher = more repetitive"
    )
    mean_pairwise_similarity: float = Field(
        description="mean cosine similarity of sentence embeddings (all-MiniLM-L6-v2)"
    )


class BehaviourSummary(BaseModel):
    columns: dict[str, str] = Field(description="role -> input column used")
    flagged: dict[str, float | None]
    not_flagged: dict[str, float | None]
    notes: list[str] = Field(default_factory=list)


class Verdict(BaseModel):
    """What a reader must take away about one vendor (rule: auditor/report/verdict.py)."""

    status: Literal["no_llm_text_detected", "llm_text_present", "cannot_tell", "above_tolerance", "within_tolerance"]
    headline: str = Field(description="one plain sentence, e.g. 'LLM text present: at least 12% of items'")
    reason: str = Field(description="the evidence the status rests on")
    next_action: str = Field(description="what to do about it")
    tolerance: float | None = Field(
        None, description="the user's largest acceptable LLM share (--tolerance), if one was given (schema 1.3 on)"
    )
    decision: Decision | None = Field(
        None,
        description="against the tolerance: above (at_least > tolerance), within (at_most <= tolerance) or "
        "undetermined; None without a tolerance (schema 1.3 on)",
    )
    at_least: float | None = Field(
        None,
        description="the LLM share is at least this: the larger of prevalence.ci_low and "
        "prevalence_lower_bound.bound (0 with too few scored items; schema 1.3 on)",
    )
    at_most: float | None = Field(
        None,
        description="the LLM share is at most this: prevalence.ci_high (1 with too few scored items; schema 1.3 on)",
    )


class VendorReport(BaseModel):
    vendor: str
    n_items: int = Field(description="rows attributed to this vendor")
    n_scored: int
    n_skipped: int
    n_flagged: int
    flag_rate: Interval
    prevalence: Interval = Field(
        description="the primary estimate (see methods.primary), widened when calibration_fit is not consistent"
    )
    calibration_fit: CalibrationFit | None = Field(
        None, description="whether the vendor's scores fit a mixture of the human and LLM reference scores in use"
    )
    calibration_advice: str | None = Field(None, description="in plain words, when the calibration does not fit")
    prevalence_lower_bound: LowerBound | None = Field(
        None, description="one-sided lower bound on the LLM share from a human reference of the task alone"
    )
    prevalence_from_flags: Interval | None = None
    prevalence_score_mixture: Interval | None = None
    batches: list[dict[str, Any]] = Field(default_factory=list)
    workers: list[WorkerReport] = Field(default_factory=list)
    top_workers: list[str] = Field(
        default_factory=list, description="workers most likely to use an LLM, best evidence first"
    )
    duplicate_clusters: list[DuplicateCluster] = Field(default_factory=list)
    reference_matches: list[ReferenceMatch] = Field(default_factory=list)
    top_flagged: list[ItemEvidence] = Field(default_factory=list)
    diversity: Diversity | None = None
    behaviour: BehaviourSummary | None = None
    score_histogram: list[int] = Field(default_factory=list, description="counts of llm_probability in 20 equal bins")
    verdict: Verdict | None = Field(None, description="the verdict the reports lead with (schema 1.2 on)")


class Methods(BaseModel):
    interval_level: float
    primary: str = Field(description="which estimate `prevalence` reports: flags or score_mixture")
    flag_rate: str
    prevalence: str
    prevalence_score_mixture: str
    workers: str
    error_rates: dict[str, Any]


class InputFile(BaseModel):
    path: str
    rows_read: int
    bytes: int
    sha256: str


class Report(BaseModel):
    schema_version: str = REPORT_SCHEMA_VERSION
    created_at: str
    inputs: list[InputFile]
    columns: dict[str, Any]
    configuration: dict[str, Any]
    models: dict[str, Any]
    methods: Methods
    totals: dict[str, Any]
    vendors: list[VendorReport]
    cross_vendor_duplicate_clusters: list[DuplicateCluster] = Field(default_factory=list)
    human_reference: Diversity | None = None
    warnings: list[ReportWarning] = Field(default_factory=list)

    def vendor(self, name: str) -> VendorReport:
        for vendor in self.vendors:
            if vendor.vendor == name:
                return vendor
        raise KeyError(name)
