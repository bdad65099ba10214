"""The :class:`Estimator`: from scored items to shares of LLM-written text, with intervals.

Built once per audit or gate run from the detector's calibration and whatever task references
the user gave. It owns the error rates at the threshold (from the calibration, or re-measured
on the references), the score mixture and its fit test, the human-reference lower bound, the
intervals for vendors, workers and batches, and the gate's sequential test. Callers turn its
results into report models; nothing else estimates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.stats import beta as beta_dist
from statsmodels.stats.proportion import proportion_confint

from auditor.calibration import Calibration, Rate
from auditor.stats import (
    CalibrationFit,
    ErrorRates,
    Interval,
    LowerBound,
    ScoreReference,
    estimate_agreement,
    flag_rate_sequence,
    item_posteriors,
    mixture_fit,
    poisson_binomial,
    prevalence_bounds,
    prevalence_from_flags,
    prevalence_from_scores,
    prevalence_lower_bound,
    shrunk_rates,
    wilson,
)

# Floors on the logit-scale spread of error rates between kinds of text, applied to every rate
# not measured on the vendor's own task. FPR: human registers differ in where they score (on the
# calibration split, the SD of their median logit score is 0.66); a register at the 99th
# percentile of that shift has an FPR of 9.5% at the threshold, and a spread of 1.2 puts the 95th
# percentile of the FPR there (benchmarks/register_shift.py): so at most ~1% of clean registers
# should be declared above a tolerance. TPR: the calibration's sources spread by ~1.4; 1.0 is a floor.
UNFAMILIAR_FPR_SPREAD = 1.2
UNFAMILIAR_TPR_SPREAD = 1.0
FLAGS, MIXTURE = "flags", "mixture"
AGREEMENT, G_TEST = "agreement", "g-test"
FIT_MARGIN = 0.05  # disagreement between cut-offs' estimates tolerated by the fit test (chosen in benchmarks/)


@dataclass(frozen=True)
class VendorEstimate:
    """Every estimate of one vendor (or any set of scored items)."""

    n_scored: int
    n_flagged: int
    flag_rate: Interval
    prevalence: Interval  # the headline: the primary estimate, widened when the fit test rejects
    from_flags: Interval
    score_mixture: Interval | None
    fit: CalibrationFit | None
    advice: str | None
    lower_bound: LowerBound | None


@dataclass(frozen=True)
class WorkerEstimate:
    prevalence: Interval
    p_uses_llm: float  # posterior probability that at least half of the worker's items are LLM-written


@dataclass
class Estimator:
    """Prevalence estimates under one calibration, interval level and set of task references."""

    calibration: Calibration
    level: float
    rates: ErrorRates
    rates_source: str
    reference: ScoreReference | None = None
    primary: str = FLAGS  # which estimate a vendor's headline `prevalence` is: "flags" or "mixture"
    task_human: np.ndarray | None = None  # scores of human texts of the vendor's task, for a lower bound
    task_tpr_measured: bool = False  # the true-positive rate was measured on LLM texts of the vendor's task
    unfamiliar_spread: tuple[float, float] = (UNFAMILIAR_FPR_SPREAD, UNFAMILIAR_TPR_SPREAD)
    """Logit SDs of (FPR, TPR) between kinds of text: how far the rates may be off on a task
    whose scores do not fit the references."""
    origins: dict[str, str] = field(default_factory=dict)
    fit_test: str = AGREEMENT  # "agreement" (of the share implied at several cut-offs) or "g-test" (every bin)
    fit_margin: float = FIT_MARGIN

    @classmethod
    def build(
        cls,
        calibration: Calibration,
        level: float,
        human: np.ndarray | None = None,
        machine: np.ndarray | None = None,
        origins: Mapping[str, str] | None = None,
        model: str = "the model",
    ) -> Estimator:
        """Error rates from the calibration, re-measured on the task's references where given
        (human references re-measure false positives, LLM references true positives); a rate
        not measured on the task may differ on it as between kinds of text (at least the
        unfamiliar-task floors). With both references, the score mixture becomes the primary
        estimate."""
        measured = calibration.error_rates()
        if measured is None:
            raise ValueError(
                f"{model}: the calibration has no measured true-positive rate; recalibrate with --machine texts"
            )
        unfamiliar = (max(measured.fpr_spread, UNFAMILIAR_FPR_SPREAD), max(measured.tpr_spread, UNFAMILIAR_TPR_SPREAD))
        rates = replace(measured, fpr_spread=unfamiliar[0], tpr_spread=unfamiliar[1])
        origins = dict(origins or {})
        human, machine = _finite_or_none(human), _finite_or_none(machine)
        reference = calibration.reference()
        source = f"calibration of {model}: {calibration.data}"
        if human is not None:
            fpr = Rate.of(int(calibration.flags(human).sum()), len(human))
            # Measured on the vendor's own kind of text: no between-source spread to allow for.
            rates = replace(rates, false_positives=fpr.k, n_human=fpr.n, fpr_spread=0.0)
            source = (
                f"false positives measured on {fpr.n} texts of {origins.get('human', 'the human reference')}; "
                "true positives from the model's calibration"
            )
            if reference is not None:
                reference = reference.with_human(human)
        if machine is not None:
            tpr = Rate.of(int(calibration.flags(machine).sum()), len(machine))
            rates = replace(rates, true_positives=tpr.k, n_machine=tpr.n, tpr_spread=0.0)
            source += f"; true positives measured on {tpr.n} texts of {origins.get('machine', 'the LLM reference')}"
        primary = FLAGS
        if human is not None and machine is not None:
            # Their full score distributions carry more information than one threshold does.
            reference = ScoreReference.from_scores(human, machine)
            primary = MIXTURE
        return cls(
            calibration=calibration,
            level=level,
            rates=rates,
            rates_source=source,
            reference=reference,
            primary=primary,
            task_human=human,
            task_tpr_measured=machine is not None,
            unfamiliar_spread=unfamiliar,
            origins=origins,
        )

    # ------------------------------------------------------------------ vendors
    def vendor(self, probabilities: np.ndarray, n_flagged: int | None = None) -> VendorEstimate:
        """``n_flagged`` defaults to the items above the threshold (the audit passes its own
        count, which also holds near-copies of known LLM output)."""
        scores = _finite(probabilities)
        k = int(self.calibration.flags(scores).sum()) if n_flagged is None else n_flagged
        from_flags = prevalence_from_flags(k, len(scores), self.rates, self.level)
        mixture = prevalence_from_scores(scores, self.reference, self.level) if self.reference else None
        headline = mixture if self.primary == MIXTURE and mixture is not None else from_flags
        fit = self._fit(scores)
        advice = None
        if fit is not None and not fit.consistent:
            headline = self._unfamiliar_task_prevalence(k, len(scores), headline, mixture)
            advice = self._unfamiliar_task_advice(fit)
        human = self.task_human
        lower = prevalence_lower_bound(scores, human, self.level) if human is not None else None
        return VendorEstimate(
            n_scored=len(scores),
            n_flagged=k,
            flag_rate=wilson(k, len(scores), self.level),
            prevalence=headline,
            from_flags=from_flags,
            score_mixture=mixture,
            fit=fit,
            advice=advice,
            lower_bound=lower,
        )

    def _fit(self, scores: np.ndarray) -> CalibrationFit | None:
        """Do the references (the calibration's or the task's) describe this vendor's scores?"""
        if self.reference is None:
            return None
        if self.fit_test == G_TEST:
            return mixture_fit(scores, self.reference, alpha=1 - self.level)
        threshold = self.calibration.threshold
        return estimate_agreement(scores, self.reference, threshold, alpha=1 - self.level, margin=self.fit_margin)

    def batch(self, probabilities: np.ndarray, n_flagged: int) -> Interval:
        """A batch's prevalence by the primary estimator (no fit test: batches are small)."""
        if self.primary == MIXTURE and self.reference is not None:
            return prevalence_from_scores(_finite(probabilities), self.reference, self.level)
        return prevalence_from_flags(n_flagged, len(_finite(probabilities)), self.rates, self.level)

    def _unfamiliar_task_prevalence(self, k: int, n: int, primary: Interval, mixture: Interval | None) -> Interval:
        """What is still known when the vendor's scores do not fit the references: the primary
        point estimate (still the best single guess), with an interval that joins the primary's,
        the mixture's and the flag count corrected with error rates that may lie anywhere
        between-task spreads allow; never a confident 0%. Without LLM texts of the task there is
        no upper end: the detector may be blind to this task's LLM text (as it is to LLM tweets
        of the calibration split), and the misfit is the only sign of it."""
        fpr_spread, tpr_spread = self.unfamiliar_spread
        rates = replace(
            self.rates,
            fpr_spread=max(self.rates.fpr_spread, fpr_spread),
            tpr_spread=max(self.rates.tpr_spread, tpr_spread),
        )
        intervals = [primary, prevalence_from_flags(k, n, rates, self.level)] + ([mixture] if mixture else [])
        return Interval(
            estimate=primary.estimate,
            ci_low=min(i.ci_low for i in intervals),
            ci_high=max(i.ci_high for i in intervals) if self.task_tpr_measured else 1.0,
        )

    def _unfamiliar_task_advice(self, fit: CalibrationFit) -> str:
        references = "the task references" if self.primary == MIXTURE else "the detector's calibration texts"
        return (
            f"The detector's error rates on this vendor's task are unknown: its scores do not fit a mixture of "
            f"{references} (p = {fit.p_value:.3g}), so the estimate is widened to the error rates seen across many "
            "kinds of text"
            + ("" if self.task_tpr_measured else ", with no upper end: the detector may miss this task's LLM text")
            + ". To measure them on this task, add human and LLM-written texts of the same task "
            "(`auditor references add --task NAME --human FILE --machine FILE`, or `auditor references generate` for "
            "the LLM side) and audit with `--task NAME`, or recalibrate on your own labelled texts with "
            "`auditor calibrate`."
        )

    # ------------------------------------------------------------------ workers
    def workers(
        self, probabilities: Mapping[str, np.ndarray], flagged: Mapping[str, int], vendor_prevalence: Interval | None
    ) -> dict[str, WorkerEstimate]:
        """Per worker: under the fitted score mixture when it is primary (the vendor's share is
        every item's prior, which shrinks small workers), else flag counts shrunk towards the
        vendor's rate."""
        if self.primary == MIXTURE and self.reference is not None and vendor_prevalence is not None:
            return {w: self._worker_from_posteriors(p, vendor_prevalence.estimate) for w, p in probabilities.items()}
        return self._workers_from_flags({w: len(_finite(p)) for w, p in probabilities.items()}, flagged)

    def _workers_from_flags(self, sizes: Mapping[str, int], flagged: Mapping[str, int]) -> dict[str, WorkerEstimate]:
        """Flag counts shrunk towards the vendor's rate (beta-binomial), corrected by the error rates."""
        workers = list(sizes)
        k = np.array([flagged[w] for w in workers], dtype=float)
        n = np.array([sizes[w] for w in workers], dtype=float)
        prior = shrunk_rates(k, n)
        spread = max(self.rates.tpr - self.rates.fpr, 1e-3)
        half = self.rates.fpr + 0.5 * spread  # the flag rate of a worker whose items are half LLM-written
        tails = [(1 - self.level) / 2, (1 + self.level) / 2]
        out = {}
        for worker, flags, size in zip(workers, k, n, strict=True):
            a, b = prior[0] + flags, prior[1] + size - flags
            flag_rate = np.array([a / (a + b), *beta_dist.ppf(tails, a, b)])
            est, low, high = np.clip((flag_rate - self.rates.fpr) / spread, 0.0, 1.0)
            out[worker] = WorkerEstimate(
                Interval(estimate=float(est), ci_low=float(low), ci_high=float(high)), float(beta_dist.sf(half, a, b))
            )
        return out

    def _worker_from_posteriors(self, probabilities: np.ndarray, vendor_prevalence: float) -> WorkerEstimate:
        """Each item's posterior probability of being LLM-written; the worker's LLM-item count is
        then Poisson-binomial."""
        assert self.reference is not None
        posterior = item_posteriors(_finite(probabilities), self.reference, vendor_prevalence)
        pmf = poisson_binomial(posterior)
        cdf = np.cumsum(pmf)
        n = len(posterior)
        low = np.searchsorted(cdf, (1 - self.level) / 2) / n
        high = np.searchsorted(cdf, (1 + self.level) / 2) / n
        mean = float(posterior.mean())
        # The share is discrete (k / n): its mean may fall outside the central interval of k.
        interval = Interval(estimate=mean, ci_low=float(min(low, mean)), ci_high=float(max(min(high, 1.0), mean)))
        return WorkerEstimate(interval, float(pmf[int(np.ceil(n / 2)) :].sum()))

    # ------------------------------------------------------------------ the gate
    def sequential(self, k: int, n: int, max_share: float) -> tuple[float, float]:
        """Anytime-valid bounds on the share after ``k`` flags in ``n`` scored documents, with
        the error rates' own uncertainty at the same confidence: sampling may stop as soon as
        they lie on one side of ``max_share``."""
        alpha = 1 - self.level
        fpr = _exact_interval(self.rates.false_positives, self.rates.n_human, alpha)
        tpr = _exact_interval(self.rates.true_positives, self.rates.n_machine, alpha)
        boundary = self.rates.fpr + max_share * (self.rates.tpr - self.rates.fpr)  # flag rate at the policy
        return prevalence_bounds(*flag_rate_sequence(k, n, alpha, max(boundary, 1e-4)), fpr, tpr)

    def point_share(self, k: int, n: int) -> float | None:
        """The flag count corrected for the error rates, clipped to [0, 1]."""
        if n == 0:
            return None
        return float(np.clip((k / n - self.rates.fpr) / (self.rates.tpr - self.rates.fpr), 0, 1))

    def error_rates(self) -> dict[str, object]:
        """What the report's methods say about the rates in use."""
        rates = self.rates
        return {
            "threshold": self.calibration.threshold,
            "false_positives": rates.false_positives,
            "n_human": rates.n_human,
            "true_positives": rates.true_positives,
            "n_machine": rates.n_machine,
            "fpr_spread_between_sources": rates.fpr_spread,
            "tpr_spread_between_sources": rates.tpr_spread,
            "source": self.rates_source,
        }


def _exact_interval(k: int, n: int, alpha: float) -> tuple[float, float]:
    low, high = proportion_confint(k, n, alpha=alpha, method="beta")
    return float(low), float(high)


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _finite_or_none(values: np.ndarray | None) -> np.ndarray | None:
    return None if values is None else _finite(values)
