"""The pre-training gate: judge each shard ``pass``, ``reject`` or ``error`` before it enters a
training mix, with the evidence behind the decision.

One streaming pass reads every document of a shard (memory bounded by the batch size and
the sample size): every document is checked for evaluation-set items (n-gram containment,
:mod:`auditor.gate.leakage`), and a uniform random sample is kept (reservoir sampling). The
sample is then scored in a random order, a step at a time, and after every step an
anytime-valid confidence sequence for the flag rate (:func:`auditor.stats.flag_rate_sequence`)
is turned into an interval for the synthetic share with the detector's measured error rates.
Scoring stops as soon as that interval lies wholly above or below ``max_synthetic``, so clean
and heavily contaminated shards cost a few hundred documents and only borderline ones use the
whole sample. When the sample runs out first the decision is made on the point estimate and
marked inconclusive.

Scoring is the auditor's; deciding is this module's: the scorer supplies probabilities and
its calibration (threshold, held-out error rates), the policy says what is acceptable.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from auditor.calibration import Rate
from auditor.config import get_settings
from auditor.estimate import Estimator
from auditor.execution import Executor, LocalExecutor
from auditor.gate.leakage import LeakageIndex
from auditor.reader import Problem, ReadError, iter_documents, read_records
from auditor.scoring import MODELS, Scorer, cached_scorer

GATE_SCHEMA_VERSION = "1.0"
Decision = Literal["pass", "reject", "error"]
SCORERS = tuple(sorted(MODELS))  # "fast", "lm"
_EXCERPT_CHARS = 300
_KEPT_PROBLEMS = 20


class GatePolicy(BaseModel):
    max_synthetic: float = Field(ge=0, le=1, description="largest acceptable share of LLM-written documents")
    max_benchmark_hits: int = Field(0, ge=0, description="documents containing evaluation items that are tolerated")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="coverage of the synthetic-share interval")
    max_scored: int = Field(5000, ge=10, description="size of the random sample; scoring never goes beyond it")
    step: int = Field(100, ge=1, description="documents scored between two looks at the interval")
    max_chars: int = Field(4000, ge=100, description="characters of each sampled document that are scored")
    seed: int = 0
    on_inconclusive: Literal["estimate", "pass", "reject"] = Field(
        "estimate",
        description="a shard whose interval still contains max_synthetic after the whole sample: decide on the "
        "point estimate, pass it, or reject it",
    )


class SyntheticShare(BaseModel):
    estimate: float | None
    ci_low: float
    ci_high: float


class BenchmarkHit(BaseModel):
    item_id: str
    documents: int
    positions: list[int] = Field(description="line (JSONL) or row (Parquet) of the first documents containing it")
    max_containment: float


class FlaggedExample(BaseModel):
    position: int
    llm_probability: float
    excerpt: str


UNKNOWN_SHARE = SyntheticShare(estimate=None, ci_low=0.0, ci_high=1.0)


class ShardResult(BaseModel):
    shard: str
    decision: Decision
    synthetic: SyntheticShare | None = None
    documents_scored: int = 0
    documents_read: int = 0
    reasons: list[str] = Field(default_factory=list)
    rejected_for: list[Literal["synthetic_share", "evaluation_items"]] = Field(default_factory=list)
    conclusive: bool = Field(True, description="False when the sample ran out before the interval left the threshold")
    flagged: int = Field(0, description="scored documents above the calibrated threshold")
    documents_with_benchmark_items: int = 0
    benchmark_hits: list[BenchmarkHit] = Field(default_factory=list)
    examples: list[FlaggedExample] = Field(default_factory=list, description="most LLM-like flagged documents")
    problems: list[str] = Field(default_factory=list, description="first problems met while reading, with lines")
    problem_counts: dict[str, int] = Field(default_factory=dict)
    quarantine: str | None = None
    seconds: float = 0.0


class GateManifest(BaseModel):
    schema_version: str = GATE_SCHEMA_VERSION
    created_at: str
    policy: GatePolicy
    scorer: dict[str, Any]
    benchmark_index: dict[str, Any] | None = None
    execution: dict[str, Any] = Field(default_factory=dict)
    shards: list[ShardResult]

    def exit_code(self) -> int:
        """3 if any shard could not be judged, else 1 if any was rejected, else 0."""
        decisions = {s.decision for s in self.shards}
        return 3 if "error" in decisions else 1 if "reject" in decisions else 0


# ---------------------------------------------------------------------- scorers
class ErrorRatesUsed(BaseModel):
    """The false- and true-positive rates that turn flag rates into synthetic shares."""

    fpr: Rate
    tpr: Rate
    source: str


def load_scorer(kind: str = "fast", model_dir: str | None = None, trust_model: bool = False) -> Scorer:
    """The scorer for ``--scorer`` (loaded once per process, so once per Dask worker). ``fast``:
    the n-gram classifier trained by `auditor setup`; ``lm``: the LM classifier bundle."""
    scorer = cached_scorer(model_dir, trust_model, False, kind)
    calibration = scorer.calibration
    if calibration is None or calibration.heldout_tpr is None:
        raise ValueError(f"{scorer.model_dir}: no calibration with measured error rates; run `auditor calibrate`")
    return scorer


def gate_estimator(
    scorer: Scorer, confidence: float, human: Sequence[str] | None = None, machine: Sequence[str] | None = None
) -> Estimator:
    """The gate's estimates: the calibration's error rates, re-measured on reference texts of
    the corpus's own kind where given."""
    return Estimator.build(
        scorer.require_calibration(),
        confidence,
        human=scorer.probabilities(list(human)) if human else None,
        machine=scorer.probabilities(list(machine)) if machine else None,
        origins={"human": "the human reference texts", "machine": "the machine reference texts"},
        model=scorer.model_dir.name,
    )


def rates_used(estimator: Estimator) -> ErrorRatesUsed:
    rates = estimator.rates
    return ErrorRatesUsed(
        fpr=Rate.of(rates.false_positives, rates.n_human),
        tpr=Rate.of(rates.true_positives, rates.n_machine),
        source=estimator.rates_source,
    )


def describe_scorer(scorer: Scorer, estimator: Estimator) -> dict[str, Any]:
    return {
        "kind": scorer.kind,
        "model_dir": str(scorer.model_dir),
        "detector": scorer.classifier.describe(),
        "threshold": scorer.require_calibration().threshold,
        "rates": rates_used(estimator).model_dump(),
    }


@lru_cache(maxsize=4)
def load_index(path: str) -> LeakageIndex:
    return LeakageIndex.open(path, get_settings().cache_dir / "benchmark-index")


# ----------------------------------------------------------------- one shard
class _Reservoir:
    """Uniform random sample of fixed size from a stream (Algorithm R, vectorised per batch)."""

    def __init__(self, capacity: int, rng: np.random.Generator, max_chars: int):
        self.capacity, self.rng, self.max_chars = capacity, rng, max_chars
        self.texts: list[str] = []
        self.positions: list[int] = []
        self.seen = 0

    def offer(self, texts: Sequence[str], positions: Sequence[int]) -> None:
        fill = min(len(texts), max(self.capacity - self.seen, 0))
        self.texts.extend(t[: self.max_chars] for t in texts[:fill])
        self.positions.extend(positions[:fill])
        rest = len(texts) - fill
        if rest:
            seen_before = np.arange(self.seen + fill, self.seen + len(texts)) + 1
            slots = np.floor(self.rng.random(rest) * seen_before).astype(np.int64)
            for j in np.flatnonzero(slots < self.capacity).tolist():
                self.texts[slots[j]] = texts[fill + j][: self.max_chars]
                self.positions[slots[j]] = positions[fill + j]
        self.seen += len(texts)


class _LeakageTally:
    def __init__(self) -> None:
        self.documents: dict[int, list[str]] = {}
        self.items: dict[str, BenchmarkHit] = {}

    def add(self, positions: Sequence[int], matches: Sequence[Sequence[Any]]) -> None:
        for position, found in zip(positions, matches, strict=True):
            if not found:
                continue
            self.documents[position] = [m.item_id for m in found]
            for m in found:
                hit = self.items.setdefault(
                    m.item_id, BenchmarkHit(item_id=m.item_id, documents=0, positions=[], max_containment=0)
                )
                hit.documents += 1
                if len(hit.positions) < 10:
                    hit.positions.append(position)
                hit.max_containment = max(hit.max_containment, round(float(m.containment), 4))


class _Problems:
    """The first problems of a shard as examples, counts of all of them, and the damage if any."""

    def __init__(self) -> None:
        self.kept: list[Problem] = []
        self.counts: Counter[str] = Counter()
        self.damage: Problem | None = None

    def add(self, problems: Sequence[Problem], counts: dict[str, int]) -> None:
        self.kept.extend(problems[: max(_KEPT_PROBLEMS - len(self.kept), 0)])
        self.counts.update(counts)
        self.damage = self.damage or next((p for p in problems if p.kind == "truncated"), None)


def shard_seed(shard: str, seed: int) -> list[int]:
    """The sample of a shard depends on its name and the seed only: the same on any worker."""
    return [seed, int.from_bytes(hashlib.sha256(shard.encode()).digest()[:8], "little")]


def judge_shard(
    shard: str,
    policy: GatePolicy,
    scorer: Scorer,
    index: LeakageIndex | None = None,
    text_field: str = "text",
    quarantine: Path | None = None,
    batch_size: int = 10_000,
    estimator: Estimator | None = None,
) -> ShardResult:
    """Read, scan and sample one shard, then decide; ``estimator`` defaults to the calibration's
    error rates."""
    started = time.perf_counter()
    estimator = estimator or gate_estimator(scorer, policy.confidence)
    rng = np.random.default_rng(shard_seed(shard, policy.seed))
    reservoir = _Reservoir(policy.max_scored, rng, policy.max_chars)
    leakage = _LeakageTally()
    problems = _Problems()
    try:
        for batch in iter_documents(shard, text_field, batch_size=batch_size):
            problems.add(batch.problems, batch.problem_counts)
            if index is not None and batch.texts:
                leakage.add(batch.positions, index.scan(batch.texts))
            reservoir.offer(batch.texts, batch.positions)
    except ReadError as exc:
        return ShardResult(
            shard=shard,
            decision="error",
            synthetic=UNKNOWN_SHARE,
            reasons=[str(exc)],
            seconds=round(time.perf_counter() - started, 3),
        )
    result, flagged = _decide(shard, policy, scorer, estimator, reservoir, leakage, rng)
    result.problems = [str(p) for p in problems.kept]
    result.problem_counts = dict(problems.counts)
    damage = problems.damage
    if reservoir.seen == 0:
        result.decision = "error"
        result.synthetic = UNKNOWN_SHARE
        result.reasons = [f"no documents with a {text_field!r} text could be read"]
    elif damage is not None:
        result.decision = "error"
        result.reasons.insert(0, f"shard is damaged, only the documents before the damage were judged: {damage}")
    if quarantine is not None and result.decision == "reject":
        result.quarantine = str(write_quarantine(shard, result, leakage, flagged, quarantine, text_field))
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _decide(
    shard: str,
    policy: GatePolicy,
    scorer: Scorer,
    estimator: Estimator,
    reservoir: _Reservoir,
    leakage: _LeakageTally,
    rng: np.random.Generator,
) -> tuple[ShardResult, dict[int, float]]:
    """The decision, and the flagged sampled documents (position -> probability)."""
    result = ShardResult(shard=shard, decision="pass", documents_read=reservoir.seen)
    flagged = _sequential_estimate(policy, scorer, estimator, reservoir, rng, result)
    share = result.synthetic
    if share is not None and share.estimate is not None:
        said = f"synthetic share {share.estimate:.3f} [{share.ci_low:.3f}, {share.ci_high:.3f}] from {result.documents_scored} scored documents"
        over = _over_threshold(share, result.conclusive, policy)
        if over:
            result.decision = "reject"
            result.rejected_for.append("synthetic_share")
        if result.conclusive or policy.on_inconclusive == "estimate":
            result.reasons.append(f"{said} is {'above' if over else 'within'} --max-synthetic {policy.max_synthetic:g}")
        else:
            result.reasons.append(said)
        if not result.conclusive:
            result.reasons.append(_inconclusive_reason(result.documents_scored, policy))
    result.documents_with_benchmark_items = len(leakage.documents)
    result.benchmark_hits = sorted(leakage.items.values(), key=lambda h: (-h.documents, h.item_id))
    if len(leakage.documents) > policy.max_benchmark_hits:
        result.decision = "reject"
        result.rejected_for.append("evaluation_items")
        ids = ", ".join(h.item_id for h in result.benchmark_hits[:10])
        more = f" and {len(result.benchmark_hits) - 10} more" if len(result.benchmark_hits) > 10 else ""
        result.reasons.append(
            f"{len(leakage.documents)} documents contain evaluation items (allowed: {policy.max_benchmark_hits}): {ids}{more}"
        )
    return result, flagged


def _over_threshold(share: SyntheticShare, conclusive: bool, policy: GatePolicy) -> bool:
    if conclusive:
        return share.ci_low > policy.max_synthetic
    if policy.on_inconclusive == "estimate":
        return share.estimate is not None and share.estimate > policy.max_synthetic
    return policy.on_inconclusive == "reject"


def _inconclusive_reason(scored: int, policy: GatePolicy) -> str:
    settled = {
        "estimate": "decided on the point estimate",
        "pass": "passed by --on-inconclusive pass",
        "reject": "rejected by --on-inconclusive reject",
    }[policy.on_inconclusive]
    return (
        f"inconclusive: after the whole sample ({scored} documents) the interval still contains "
        f"{policy.max_synthetic:g}; {settled}"
    )


def _sequential_estimate(
    policy: GatePolicy,
    scorer: Scorer,
    estimator: Estimator,
    reservoir: _Reservoir,
    rng: np.random.Generator,
    result: ShardResult,
) -> dict[int, float]:
    """Score the sample in random order until the interval is clear of the threshold; sets the
    result's estimate and returns the flagged documents (position -> probability)."""
    if not reservoir.texts:
        return {}
    calibration = scorer.require_calibration()
    order = rng.permutation(len(reservoir.texts))
    probabilities = np.full(len(order), np.nan)
    k = n = looked = 0
    result.conclusive = False
    while looked < len(order):
        chunk = order[looked : looked + policy.step]
        probabilities[chunk] = scorer.probabilities([reservoir.texts[i] for i in chunk])
        looked += len(chunk)
        scored = probabilities[order[:looked]]
        scored = scored[~np.isnan(scored)]
        n, k = len(scored), int(calibration.flags(scored).sum())
        low, high = estimator.sequential(k, n, policy.max_synthetic)
        if low > policy.max_synthetic or high <= policy.max_synthetic:
            result.conclusive = True
            break
    estimate = estimator.point_share(k, n)
    result.synthetic = SyntheticShare(estimate=estimate, ci_low=low if n else 0.0, ci_high=high if n else 1.0)
    result.documents_scored = n
    result.flagged = k
    flagged = [i for i in order[:looked] if calibration.flags(probabilities[i : i + 1])[0]]
    flagged.sort(key=lambda i: -probabilities[i])
    result.examples = [
        FlaggedExample(
            position=reservoir.positions[i],
            llm_probability=round(float(probabilities[i]), 4),
            excerpt=reservoir.texts[i][:_EXCERPT_CHARS],
        )
        for i in flagged[:5]
    ]
    return {reservoir.positions[i]: float(probabilities[i]) for i in flagged}


# ----------------------------------------------------------------- quarantine
def write_quarantine(
    shard: str,
    result: ShardResult,
    leakage: _LeakageTally,
    flagged: dict[int, float],
    directory: Path,
    text_field: str,
) -> Path:
    """Write the documents a rejection rests on, full records with their reasons: every document
    holding an evaluation item, and the sampled documents that were flagged as LLM-written."""
    synthetic_rejection = "synthetic_share" in result.rejected_for
    offending = set(leakage.documents) | (set(flagged) if synthetic_rejection else set())
    records = read_records(shard, offending, text_field) if offending else {}
    directory.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(shard.encode()).hexdigest()[:8] + "-" + Path(shard.split("::")[0]).name.split(".")[0]
    path = directory / f"{name}.quarantine.jsonl"
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"shard": shard, "decision": result.decision, "reasons": result.reasons}) + "\n")
        for position in sorted(offending):
            why = []
            if position in leakage.documents:
                why.append("contains evaluation items: " + ", ".join(leakage.documents[position]))
            if position in flagged and synthetic_rejection:
                why.append(f"flagged as LLM-written (llm_probability {flagged[position]:.3f})")
            entry = {"shard": shard, "position": position, "reasons": why, "record": records.get(position)}
            out.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
    return path


# ----------------------------------------------------------------- many shards
def run_gate(
    shards: Sequence[str],
    policy: GatePolicy,
    scorer_kind: str = "fast",
    model_dir: str | None = None,
    index_path: str | None = None,
    text_field: str = "text",
    quarantine: Path | None = None,
    executor: Executor | None = None,
    on_shard: Callable[[ShardResult], None] | None = None,
    human_reference: Sequence[str] | None = None,
    machine_reference: Sequence[str] | None = None,
) -> GateManifest:
    """Judge every shard, one task per shard, in this process or on a Dask cluster (the same
    function; results do not depend on where a shard ran). Reference texts of the corpus's
    own kind re-measure the error rates before any shard."""
    executor = executor or LocalExecutor()
    scorer = load_scorer(scorer_kind, model_dir)
    estimator = gate_estimator(scorer, policy.confidence, human_reference, machine_reference)
    index = load_index(index_path) if index_path else None
    results: list[ShardResult | None] = [None] * len(shards)
    tasks = executor.map_unordered(
        judge_shard_task,
        list(shards),
        policy=policy,
        scorer_kind=scorer_kind,
        model_dir=model_dir,
        index_path=index_path,
        text_field=text_field,
        quarantine=quarantine,
        estimator=estimator,
    )
    for position, result in tasks:
        results[position] = result
        if on_shard:
            on_shard(result)
    return GateManifest(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        policy=policy,
        scorer=describe_scorer(scorer, estimator),
        benchmark_index=index.describe() if index is not None else None,
        execution=executor.describe(),
        shards=[r for r in results if r is not None],
    )


def judge_shard_task(
    shard: str,
    policy: GatePolicy,
    scorer_kind: str,
    model_dir: str | None,
    index_path: str | None,
    text_field: str,
    quarantine: Path | None,
    estimator: Estimator | None = None,
) -> ShardResult:
    """One shard, wherever it runs: models and the index load once per process (cached)."""
    scorer = load_scorer(scorer_kind, model_dir)
    index = load_index(index_path) if index_path else None
    return judge_shard(shard, policy, scorer, index, text_field, quarantine, estimator=estimator)
