"""The operating threshold: chosen on human reference texts for a target false-positive
rate, and stored next to the model with the error rates measured on held-out texts.

The threshold is a conformal quantile of human scores: with ``n`` calibration texts it is
the ``ceil((n + 1)(1 - alpha))``-th smallest score, which keeps the expected false-positive
rate on exchangeable human text at or below ``alpha``. The held-out rates (with exact
binomial intervals) are what audits use to correct flag rates into prevalence estimates.
When the held-out texts say where they came from (dataset, task, domain), the rates are
also kept per source: their spread tells audits how far one vendor's rates may stray
from the average.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field
from statsmodels.stats.proportion import proportion_confint

from auditor.stats import ErrorRates, ScoreReference, between_source_spread

CALIBRATION_FILE = "calibration.json"
CALIBRATION_SCHEMA = 1


class Rate(BaseModel):
    """k of n, with a 95% Clopper-Pearson interval."""

    k: int
    n: int
    estimate: float
    ci_low: float
    ci_high: float

    @classmethod
    def of(cls, k: int, n: int) -> Rate:
        if n == 0:
            return cls(k=0, n=0, estimate=float("nan"), ci_low=0.0, ci_high=1.0)
        low, high = proportion_confint(k, n, alpha=0.05, method="beta")
        return cls(k=int(k), n=int(n), estimate=k / n, ci_low=float(low), ci_high=float(high))


class Calibration(BaseModel):
    schema_version: int = CALIBRATION_SCHEMA
    target_fpr: float
    threshold: float
    rule: str = "flag when llm_probability > threshold"
    method: str = "conformal quantile of human calibration scores"
    n_calibration_human: int
    heldout_fpr: Rate
    heldout_tpr: Rate | None = None
    heldout_fpr_by_source: dict[str, Rate] | None = Field(None, description="false-positive rate per source")
    heldout_tpr_by_source: dict[str, Rate] | None = Field(None, description="true-positive rate per source")
    score_reference: dict | None = Field(
        None, description="histograms of held-out human and LLM scores, for score-mixture prevalence estimates"
    )
    signal_reference: dict[str, float] | None = Field(
        None, description="per signal, the 95th percentile of held-out human texts in its machine-like direction"
    )
    data: str = Field("", description="what the calibration and held-out texts were")
    model: str = Field("", description="bundle the threshold belongs to")
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def error_rates(self) -> ErrorRates | None:
        if self.heldout_tpr is None or self.heldout_tpr.n == 0 or self.heldout_fpr.n == 0:
            return None
        return ErrorRates(
            self.heldout_fpr.k,
            self.heldout_fpr.n,
            self.heldout_tpr.k,
            self.heldout_tpr.n,
            fpr_spread=_spread(self.heldout_fpr_by_source),
            tpr_spread=_spread(self.heldout_tpr_by_source),
        )

    def reference(self) -> ScoreReference | None:
        return ScoreReference.from_dict(self.score_reference) if self.score_reference else None

    def flags(self, probabilities: np.ndarray) -> np.ndarray:
        p = np.asarray(probabilities, dtype=float)
        return np.nan_to_num(p, nan=-np.inf) > self.threshold


def _spread(by_source: dict[str, Rate] | None) -> float:
    return between_source_spread([(r.k, r.n) for r in by_source.values()]) if by_source else 0.0


def conformal_threshold(human_scores: np.ndarray, target_fpr: float) -> float:
    """Smallest threshold whose expected false-positive rate is at most ``target_fpr``."""
    scores = np.sort(_scored(human_scores))
    n = len(scores)
    if n == 0:
        raise ValueError("calibration needs human texts that could be scored")
    rank = math.ceil((n + 1) * (1 - target_fpr))
    if rank > n:
        raise ValueError(
            f"{n} human texts cannot support a false-positive rate of {target_fpr:g}: "
            f"at least {math.ceil(1 / target_fpr) - 1} are needed"
        )
    return float(scores[rank - 1])


def calibrate(
    calibration_human: np.ndarray,
    heldout_human: np.ndarray,
    heldout_machine: np.ndarray | None = None,
    target_fpr: float = 0.01,
    data: str = "",
    model: str = "",
    human_sources: np.ndarray | None = None,
    machine_sources: np.ndarray | None = None,
) -> Calibration:
    """Set the threshold on ``calibration_human`` scores; measure the false-positive rate
    on ``heldout_human`` and, if given, the true-positive rate on ``heldout_machine``.
    ``human_sources`` / ``machine_sources`` (one label per held-out text) add per-source rates."""
    calibration_human = _scored(calibration_human)
    threshold = conformal_threshold(calibration_human, target_fpr)
    heldout_human, human_sources = _scored_with(heldout_human, human_sources)
    tpr = tpr_by_source = reference = None
    if heldout_machine is not None:
        machine, machine_sources = _scored_with(heldout_machine, machine_sources)
        tpr = Rate.of(int((machine > threshold).sum()), len(machine))
        tpr_by_source = rates_by_source(machine > threshold, machine_sources)
        if len(machine) and len(heldout_human):
            reference = ScoreReference.from_scores(heldout_human, machine).to_dict()
    return Calibration(
        target_fpr=target_fpr,
        threshold=threshold,
        n_calibration_human=len(calibration_human),
        heldout_fpr=Rate.of(int((heldout_human > threshold).sum()), len(heldout_human)),
        heldout_tpr=tpr,
        heldout_fpr_by_source=rates_by_source(heldout_human > threshold, human_sources),
        heldout_tpr_by_source=tpr_by_source,
        score_reference=reference,
        data=data,
        model=model,
    )


def heldout_mask(n: int, heldout_fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """A random choice of ``round(n * heldout_fraction)`` of ``n`` texts to hold out."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[: int(round(n * heldout_fraction))]] = True
    return mask


def split_human(scores: np.ndarray, heldout_fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, held-out) parts of one set of human scores, at random."""
    scores = _scored(scores)
    heldout = heldout_mask(len(scores), heldout_fraction, seed)
    return scores[~heldout], scores[heldout]


def _scored(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    return scores[~np.isnan(scores)]


def _scored_with(scores: np.ndarray, sources: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Scored texts, and their sources kept aligned with them."""
    scores = np.asarray(scores, dtype=float)
    keep = ~np.isnan(scores)
    if sources is None:
        return scores[keep], None
    sources = np.asarray(sources, dtype=object)
    if len(sources) != len(scores):
        raise ValueError(f"{len(sources)} source labels for {len(scores)} scores")
    return scores[keep], sources[keep]


def rates_by_source(hits: np.ndarray, sources: np.ndarray | None) -> dict[str, Rate] | None:
    if sources is None:
        return None
    return {
        str(source): Rate.of(int(hits[sources == source].sum()), int((sources == source).sum()))
        for source in sorted(set(sources.tolist()), key=str)
    }


def save_calibration(calibration: Calibration, directory: Path) -> Path:
    path = Path(directory) / CALIBRATION_FILE
    path.write_text(calibration.model_dump_json(indent=2) + "\n")
    return path


def load_calibration(directory: Path) -> Calibration | None:
    path = Path(directory) / CALIBRATION_FILE
    if not path.exists():
        return None
    return Calibration.model_validate(json.loads(path.read_text()))


def signal_reference(human_signals: dict[str, np.ndarray]) -> dict[str, float]:
    """95th percentile of human values, oriented so that larger means more machine-like, for
    each of the given signals that a registered detector declares a direction for."""
    from detectors import machine_directions

    directions = machine_directions()
    reference = {}
    for name, values in human_signals.items():
        if name not in directions:
            continue
        oriented = _scored(values) * directions[name]
        if len(oriented):
            reference[name] = round(float(np.quantile(oriented, 0.95)), 4)
    return reference


def signals_fired(signals: dict[str, float], reference: dict[str, float] | None) -> list[str]:
    """Signals of one item beyond the human 95th percentile in the machine-like direction."""
    from detectors import machine_directions

    if not reference:
        return []
    directions = machine_directions()
    fired = []
    for name, q95 in reference.items():
        value = signals.get(name)
        direction = directions.get(name)  # None: no registered detector declares it now
        if direction is not None and value is not None and not np.isnan(value) and value * direction > q95:
            fired.append(name)
    return fired
