"""Estimates with honest intervals: flag rates, prevalence corrected for the detector's
measured error rates, a score-mixture estimate, and per-worker shrinkage.

Prevalence from flags (the primary estimate). A flag rate mixes true and false positives:
``P(flag) = fpr + prevalence * (tpr - fpr)``. We put a flat prior on prevalence in [0, 1],
draw the error rates from their Beta posteriors given the calibration counts, and average
the binomial likelihood of the vendor's flag count over those draws. The estimate is the
posterior mode (the maximum-likelihood value, so a vendor with no LLM text gets ~0) and the
interval is the highest-posterior-density interval, which reaches down to 0 when 0 is
plausible instead of excluding it.

Error rates differ between kinds of text: a detector that catches 65% of LLM answers on
average may catch 90% in one task and 40% in another, and a vendor usually does one task.
When the calibration measured its rates per source, the spread between sources (the
random-effects variance of the logit rates, Paule-Mandel, via statsmodels) is added to the
draws used for the interval: it is a prediction interval for a vendor of an unseen kind of
text. The point estimate keeps the pooled rates, which are right for a mixed delivery.

Prevalence from the score distribution (a second opinion, in the spirit of Liang et al.
2024, "Monitoring AI-Modified Content at Scale"). The vendor's scores are modelled as a
mixture of the human and the LLM reference score distributions (histograms on the logit
scale); the mixing weight is fitted by maximum likelihood, with a bootstrap interval that
resamples the vendor's items and both reference samples. Where the reference scores themselves
are known (task references, not the calibration's stored histograms), the weight is the mean
of the histogram fit and a fit on Gaussian kernel densities of the same references: two
density estimates of a small reference err differently, and their mean erred less (on the
calibration split's tasks with 100 + 100 references, mean absolute error 0.038 -> 0.034).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
from pydantic import BaseModel, Field
from scipy.special import betaln, expit, logit
from scipy.stats import beta as beta_dist
from scipy.stats import binom, chi2, gaussian_kde
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.proportion import proportion_confint

_GRID = np.linspace(0.0, 1.0, 1001)
_KERNEL_MIN_DISTINCT = 10


class Interval(BaseModel):
    estimate: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class ErrorRates:
    """Detector error counts measured on held-out reference texts."""

    false_positives: int
    n_human: int
    true_positives: int
    n_machine: int
    fpr_spread: float = 0.0
    tpr_spread: float = 0.0
    """Between-source standard deviations of the logit rates (0: no measured spread)."""

    @property
    def fpr(self) -> float:
        return self.false_positives / self.n_human

    @property
    def tpr(self) -> float:
        return self.true_positives / self.n_machine

    @property
    def heterogeneous(self) -> bool:
        return self.fpr_spread > 0 or self.tpr_spread > 0

    def draws(
        self, size: int, rng: np.random.Generator, between_sources: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Jeffreys-posterior draws of (fpr, tpr); with ``between_sources``, the rates of a
        new source: each draw moved by a normal source effect on the logit scale."""
        fpr = rng.beta(self.false_positives + 0.5, self.n_human - self.false_positives + 0.5, size)
        tpr = rng.beta(self.true_positives + 0.5, self.n_machine - self.true_positives + 0.5, size)
        if between_sources:
            fpr = expit(logit(fpr) + rng.normal(0.0, self.fpr_spread, size))
            tpr = expit(logit(tpr) + rng.normal(0.0, self.tpr_spread, size))
        return fpr, tpr


def between_source_spread(counts: list[tuple[int, int]]) -> float:
    """Random-effects standard deviation of logit proportions ``k/n`` across sources
    (Paule-Mandel); 0 with fewer than three sources, when there is nothing to estimate it from."""
    counts = [(k, n) for k, n in counts if n > 0]
    if len(counts) < 3:
        return 0.0
    k, n = np.array(counts, dtype=float).T
    effect = np.log((k + 0.5) / (n - k + 0.5))
    variance = 1 / (k + 0.5) + 1 / (n - k + 0.5)
    return float(np.sqrt(max(combine_effects(effect, variance, method_re="pm").tau2, 0.0)))


def wilson(k: int, n: int, level: float = 0.9) -> Interval:
    if n == 0:
        return Interval(estimate=float("nan"), ci_low=0.0, ci_high=1.0)
    low, high = proportion_confint(k, n, alpha=1 - level, method="wilson")
    return Interval(estimate=k / n, ci_low=float(low), ci_high=float(high))


def prevalence_from_flags(
    k: int, n: int, rates: ErrorRates, level: float = 0.9, draws: int = 2000, seed: int = 0
) -> Interval:
    if n == 0:
        return Interval(estimate=float("nan"), ci_low=0.0, ci_high=1.0)
    rng = np.random.default_rng(seed)
    pooled = _hpd(_flag_likelihood(k, n, *rates.draws(draws, rng)), level)
    if not rates.heterogeneous:
        return pooled
    spread = _hpd(_flag_likelihood(k, n, *rates.draws(draws, rng, between_sources=True)), level)
    return Interval(
        estimate=pooled.estimate,
        ci_low=min(spread.ci_low, pooled.estimate),
        ci_high=max(spread.ci_high, pooled.estimate),
    )


def _flag_likelihood(k: int, n: int, fpr: np.ndarray, tpr: np.ndarray) -> np.ndarray:
    """Likelihood of ``k`` flags in ``n`` on the prevalence grid, averaged over rate draws."""
    p_flag = fpr[:, None] + _GRID[None, :] * (tpr - fpr)[:, None]
    return np.exp(binom.logpmf(k, n, np.clip(p_flag, 1e-12, 1 - 1e-12))).mean(axis=0)


def _hpd(density: np.ndarray, level: float) -> Interval:
    """Mode and highest-density interval of a density tabulated on ``_GRID``."""
    total = density.sum()
    if not np.isfinite(total) or total <= 0:
        return Interval(estimate=float("nan"), ci_low=0.0, ci_high=1.0)
    mass = density / total
    order = np.argsort(-mass, kind="stable")
    keep = order[: int(np.searchsorted(np.cumsum(mass[order]), level)) + 1]
    return Interval(estimate=float(_GRID[order[0]]), ci_low=float(_GRID[keep.min()]), ci_high=float(_GRID[keep.max()]))


@dataclass(frozen=True)
class ScoreReference:
    """Histograms of reference scores (human and LLM-written) on shared logit-scale bins, and
    the scores themselves when they are known (``from_scores``; not kept by ``to_dict``)."""

    edges: np.ndarray
    human_counts: np.ndarray
    machine_counts: np.ndarray
    human_scores: np.ndarray | None = None
    machine_scores: np.ndarray | None = None

    @classmethod
    def from_scores(cls, human: np.ndarray, machine: np.ndarray, bins: int | None = None) -> ScoreReference:
        """Bins at quantiles of the pooled scores; about ten reference texts of the smaller set
        per bin (5 to 24 bins), so that small domain references give smooth densities."""
        human, machine = np.asarray(human, dtype=float), np.asarray(machine, dtype=float)
        bins = bins or int(np.clip(min(len(human), len(machine)) // 10, 5, 24))
        pooled = _to_logit(np.concatenate([human, machine]))
        inner = np.unique(np.quantile(pooled, np.linspace(0, 1, bins + 1)[1:-1]))
        edges = np.concatenate([[-np.inf], inner, [np.inf]])
        return cls(
            edges,
            np.histogram(_to_logit(human), edges)[0],
            np.histogram(_to_logit(machine), edges)[0],
            human_scores=_finite(human),
            machine_scores=_finite(machine),
        )

    def counts(self, scores: np.ndarray) -> np.ndarray:
        """Histogram of ``scores`` (NaN left out) on the reference's bins."""
        scores = _finite(scores)
        return np.histogram(_to_logit(scores), self.edges)[0]

    def with_human(self, human: np.ndarray) -> ScoreReference:
        """The same bins and LLM histogram with the human histogram re-measured on ``human``
        (texts of the vendor's own task)."""
        return ScoreReference(self.edges, self.counts(human), self.machine_counts, human_scores=_finite(human))

    def densities(
        self, human_counts: np.ndarray | None = None, machine_counts: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        h = (self.human_counts if human_counts is None else human_counts) + 0.5
        m = (self.machine_counts if machine_counts is None else machine_counts) + 0.5
        return h / h.sum(), m / m.sum()

    def to_dict(self) -> dict:
        return {
            "edges": [float(e) for e in self.edges[1:-1]],
            "human_counts": self.human_counts.tolist(),
            "machine_counts": self.machine_counts.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ScoreReference:
        edges = np.concatenate([[-np.inf], np.asarray(data["edges"], dtype=float), [np.inf]])
        return cls(edges, np.asarray(data["human_counts"]), np.asarray(data["machine_counts"]))


def prevalence_from_scores(
    scores: np.ndarray, reference: ScoreReference, level: float = 0.9, bootstrap: int = 300, seed: int = 0
) -> Interval:
    """Mixture weight by maximum likelihood; the interval joins two sources of doubt: the
    vendor's own sampling (profile likelihood, so a vendor with no LLM-like scores still gets
    a non-zero upper bound that shrinks with its size) and the reference samples' (a bootstrap
    that resamples the vendor's items and both references)."""
    scores = _finite(scores)
    counts = reference.counts(scores)
    if counts.sum() == 0:
        return Interval(estimate=float("nan"), ci_low=0.0, ci_high=1.0)
    estimate = _mixture_weight(scores, reference)
    profile_low, profile_high = _profile_interval(counts, *reference.densities(), level)
    rng = np.random.default_rng(seed)
    replicates = np.array([_mixture_weight(*_resampled(scores, reference, rng)) for _ in range(bootstrap)])
    # Percentile interval of the bootstrap; at the boundary, one-sided from it.
    alpha = 1 - level
    if estimate <= 0.0:
        boot_low, boot_high = 0.0, float(np.quantile(replicates, level))
    else:
        boot_low, boot_high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return Interval(
        estimate=float(estimate),
        ci_low=float(max(0.0, min(boot_low, profile_low, estimate))),
        ci_high=float(min(1.0, max(boot_high, profile_high, estimate))),
    )


def _mixture_weight(scores: np.ndarray, reference: ScoreReference) -> float:
    """Maximum-likelihood mixture weight on the reference histograms; when the reference scores
    are known, the average of the weight on kernel densities and the least-squares share over
    fixed cut-offs (selected in benchmarks/mixture_selection.py: MAE 0.029 against 0.047 for the
    histogram + kernel average on the calibration split's tasks)."""
    human, machine = reference.human_scores, reference.machine_scores
    if human is None or machine is None or not (_kernel_ready(human) and _kernel_ready(machine)):
        return _mixture_mle(reference.counts(scores), *reference.densities())
    by_cutoffs = _cutoff_least_squares(scores, human, machine)
    kernel = _kernel_mixture_mle(scores, human, machine)
    return kernel if np.isnan(by_cutoffs) else (kernel + by_cutoffs) / 2


MIXTURE_CUTOFFS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


def _cutoff_least_squares(scores: np.ndarray, human: np.ndarray, machine: np.ndarray) -> float:
    """The share that best fits the vendor's shares above fixed cut-offs, each cut-off's
    correction (S_vendor - S_human) / (S_machine - S_human) weighted by its inverse variance;
    NaN when no cut-off separates the references by 0.1 or more."""
    t = np.asarray(MIXTURE_CUTOFFS)
    s_v, s_h, s_m = ((x[:, None] > t).mean(axis=0) for x in (scores, human, machine))
    separation = np.maximum(s_m - s_h, 1e-3)
    variance = (
        s_v * (1 - s_v) / len(scores) + s_h * (1 - s_h) / len(human) + 0.25 * s_m * (1 - s_m) / len(machine) + 1e-4
    ) / separation**2
    weights = np.where(s_m - s_h > 0.1, 1 / variance, 0.0)
    if weights.sum() == 0:
        return float("nan")
    return float(np.clip(np.sum(weights * (s_v - s_h) / separation) / weights.sum(), 0, 1))


def _kernel_ready(reference_scores: np.ndarray) -> bool:
    """Enough distinct reference scores for a kernel density (a handful of texts, or scores
    all at the clipping limit, leave the histogram fit alone)."""
    return len(np.unique(_to_logit(reference_scores))) >= _KERNEL_MIN_DISTINCT


def _resampled(
    scores: np.ndarray, reference: ScoreReference, rng: np.random.Generator
) -> tuple[np.ndarray, ScoreReference]:
    """A bootstrap replicate: the vendor's scores and both references resampled, bins kept."""
    again = rng.choice(scores, len(scores))
    if reference.human_scores is not None and reference.machine_scores is not None:
        human = rng.choice(reference.human_scores, len(reference.human_scores))
        machine = rng.choice(reference.machine_scores, len(reference.machine_scores))
        return again, replace(
            reference,
            human_counts=reference.counts(human),
            machine_counts=reference.counts(machine),
            human_scores=human,
            machine_scores=machine,
        )
    n_h, n_m = reference.human_counts.sum(), reference.machine_counts.sum()
    human_counts = rng.multinomial(n_h, reference.human_counts / n_h)
    machine_counts = rng.multinomial(n_m, reference.machine_counts / n_m)
    return again, replace(reference, human_counts=human_counts, machine_counts=machine_counts)


def _kernel_mixture_mle(scores: np.ndarray, human: np.ndarray, machine: np.ndarray) -> float:
    """Mixture weight maximising the likelihood of ``scores`` under Gaussian kernel densities
    (Scott's bandwidth) of the two references on the logit scale. The log-likelihood is
    concave in the weight, so its derivative is bisected (exact 0 or 1 at the boundaries)."""
    points = _to_logit(scores)
    h = gaussian_kde(_to_logit(human))(points) + 1e-300
    m = gaussian_kde(_to_logit(machine))(points) + 1e-300

    def slope(weight: float) -> float:
        return float(np.sum((m - h) / ((1 - weight) * h + weight * m)))

    if slope(0.0) <= 0:
        return 0.0
    if slope(1.0) >= 0:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if slope(middle) > 0 else (low, middle)
    return (low + high) / 2


def _mixture_loglik(counts: np.ndarray, human: np.ndarray, machine: np.ndarray) -> np.ndarray:
    """Multinomial log-likelihood of binned ``counts`` at every mixture weight of ``_GRID``."""
    mixture = (1 - _GRID[:, None]) * human[None, :] + _GRID[:, None] * machine[None, :]
    return (counts[None, :] * np.log(mixture)).sum(axis=1)


def _mixture_mle(counts: np.ndarray, human: np.ndarray, machine: np.ndarray) -> float:
    return float(_GRID[int(np.argmax(_mixture_loglik(counts, human, machine)))])


def _profile_interval(counts: np.ndarray, human: np.ndarray, machine: np.ndarray, level: float) -> tuple[float, float]:
    """Likelihood-ratio interval; on the boundary the one-sided cut-off (chi-square with
    ``2 level - 1``) keeps the coverage of the one-sided bound at ``level``."""
    loglik = _mixture_loglik(counts, human, machine)
    best = int(np.argmax(loglik))
    on_boundary = best in (0, len(_GRID) - 1)
    cut = chi2.ppf(2 * level - 1 if on_boundary else level, df=1) / 2
    inside = np.flatnonzero(loglik >= loglik[best] - cut)
    return float(_GRID[inside.min()]), float(_GRID[inside.max()])


class CalibrationFit(BaseModel):
    """Is the vendor's score distribution a mixture of the reference distributions in use?"""

    consistent: bool = Field(description="False: the detector's error rates on this vendor's task are unknown")
    p_value: float
    statistic: float
    method: str


FIT_METHOD = (
    "G-test of the fitted two-component mixture against the vendor's binned scores; p-value from a parametric "
    "bootstrap that redraws the vendor's scores from the fitted mixture and both reference samples from their "
    "histograms, refitting the mixture each time"
)


def mixture_fit(
    scores: np.ndarray, reference: ScoreReference, alpha: float = 0.1, bootstrap: int = 400, seed: int = 0
) -> CalibrationFit | None:
    """Goodness of fit of the score mixture: ``consistent`` when the p-value is at least ``alpha``.
    None when the vendor has no scored items."""
    counts = reference.counts(scores)
    n = int(counts.sum())
    if n == 0:
        return None
    human, machine = reference.densities()
    weight = _mixture_mle(counts, human, machine)
    observed = _g_statistic(counts, (1 - weight) * human + weight * machine)
    rng = np.random.default_rng(seed)
    n_h, n_m = int(reference.human_counts.sum()), int(reference.machine_counts.sum())
    null = (1 - weight) * human + weight * machine
    replicates = np.empty(bootstrap)
    for b in range(bootstrap):
        vendor = rng.multinomial(n, null)
        h, m = reference.densities(rng.multinomial(n_h, human), rng.multinomial(n_m, machine))
        w = _mixture_mle(vendor, h, m)
        replicates[b] = _g_statistic(vendor, (1 - w) * h + w * m)
    p_value = (1 + int((replicates >= observed - 1e-9).sum())) / (bootstrap + 1)
    return CalibrationFit(
        consistent=p_value >= alpha, p_value=round(p_value, 4), statistic=round(observed, 3), method=FIT_METHOD
    )


def _g_statistic(counts: np.ndarray, expected_share: np.ndarray) -> float:
    expected = counts.sum() * expected_share
    seen = counts > 0
    return float(2 * (counts[seen] * np.log(counts[seen] / expected[seen])).sum())


AGREEMENT_CUTOFFS = (0.2, 0.5, 0.8, 0.9, 0.95, 0.99)
AGREEMENT_METHOD = (
    "do the detector's error rates hold on this vendor's task? At fixed llm_probability cut-offs (and the "
    "threshold) the flag share corrected by the references' error rates at that cut-off estimates the same LLM "
    "share when they do; the test statistic is the largest disagreement with the threshold's estimate beyond a "
    "margin of {margin:.0%}, in units of its bootstrap standard deviation; p-value from a parametric bootstrap "
    "that redraws the vendor from the fitted mixture and both references from their histograms"
)


def estimate_agreement(
    scores: np.ndarray,
    reference: ScoreReference,
    threshold: float,
    alpha: float = 0.1,
    margin: float = 0.05,
    bootstrap: int = 400,
    seed: int = 0,
    cutoffs: tuple[float, ...] = AGREEMENT_CUTOFFS,
) -> CalibrationFit | None:
    """A fit test aimed at what the estimate uses: the error rates at the threshold. A task
    shift that moves them moves the corrected share differently at different cut-offs, while a
    shape difference that leaves every cut-off's estimate within ``margin`` is let pass."""
    counts = reference.counts(scores)
    n = int(counts.sum())
    if n == 0:
        return None
    cuts = _cut_bins(reference, (threshold, *cutoffs))
    human, machine = reference.densities()
    weight = _mixture_mle(counts, human, machine)
    observed = _share_by_cutoff(counts / n, human, machine, cuts)
    rng = np.random.default_rng(seed)
    n_h, n_m = int(reference.human_counts.sum()), int(reference.machine_counts.sum())
    null = (1 - weight) * human + weight * machine
    replicates = np.array(
        [
            _share_by_cutoff(
                rng.multinomial(n, null) / n,
                *reference.densities(rng.multinomial(n_h, human), rng.multinomial(n_m, machine)),
                cuts,
            )
            for _ in range(bootstrap)
        ]
    )
    with warnings.catch_warnings():  # a cut-off whose references never separate has no spread
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.nan_to_num(np.nanstd(replicates - replicates[:, :1], axis=0), nan=1.0)
    spread = np.maximum(spread, 1e-3)

    def statistic(shares: np.ndarray) -> np.ndarray:
        gap = np.abs(shares - shares[..., :1]) - margin
        return np.nanmax(np.where(np.isnan(gap), 0.0, np.clip(gap, 0, None)) / spread, axis=-1)

    stat = float(statistic(observed))
    p_value = 1.0 if stat <= 0 else (1 + int((statistic(replicates) >= stat - 1e-9).sum())) / (bootstrap + 1)
    return CalibrationFit(
        consistent=p_value >= alpha,
        p_value=round(p_value, 4),
        statistic=round(stat, 3),
        method=AGREEMENT_METHOD.format(margin=margin),
    )


def _cut_bins(reference: ScoreReference, probabilities: tuple[float, ...]) -> np.ndarray:
    """Indices of the reference's inner bin edges nearest to each cut-off (threshold first),
    without repeats."""
    inner = reference.edges[1:-1]
    if len(inner) == 0:
        return np.array([], dtype=int)
    nearest = [int(np.argmin(np.abs(inner - _to_logit(np.array([p]))[0]))) for p in probabilities]
    return np.array(list(dict.fromkeys(nearest)))


def _share_by_cutoff(vendor: np.ndarray, human: np.ndarray, machine: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """The LLM share implied at each cut (first: the threshold's), NaN where the references do
    not separate (their shares above the cut differ by under 0.1)."""

    def above(p: np.ndarray) -> np.ndarray:
        return np.cumsum(p[::-1])[::-1][cuts + 1]

    s_v, s_h, s_m = above(vendor), above(human), above(machine)
    separation = s_m - s_h
    return np.where(separation >= 0.1, (s_v - s_h) / np.where(separation >= 0.1, separation, 1.0), np.nan)


class LowerBound(BaseModel):
    """A one-sided bound: the LLM share is at least ``bound`` with probability ``level``."""

    bound: float
    level: float
    threshold: float | None = Field(description="the llm_probability cut-off the bound came from")
    n_human_reference: int
    method: str


LOWER_BOUND_METHOD = (
    "mixture-proportion estimation with a known human component: at every cut-off t the LLM share is at least "
    "(S_vendor(t) - S_human(t)) / (1 - S_human(t)), S = share of scores above t; one-sided Dvoretzky-Kiefer-Wolfowitz "
    "bands on both score distributions (the error split evenly between the vendor and the reference) hold at every "
    "cut-off at once, so the largest bound over all cut-offs keeps the level"
)


def prevalence_lower_bound(scores: np.ndarray, human_reference: np.ndarray, level: float = 0.9) -> LowerBound | None:
    """Valid whenever the vendor's human-written items score like ``human_reference`` (texts of
    the same task); it needs no LLM-written reference at all. Chosen over Clopper-Pearson bounds
    at fixed cut-offs with a Bonferroni split (benchmarks/lower_bound_selection.py)."""
    scores, human = _finite(scores), _finite(human_reference)
    if len(scores) == 0 or len(human) == 0:
        return None
    alpha = (1 - level) / 2
    vendor_slack, human_slack = (np.sqrt(np.log(1 / alpha) / (2 * len(x))) for x in (scores, human))
    cuts = np.unique(np.concatenate([scores, human]))
    vendor_above = 1 - np.searchsorted(np.sort(scores), cuts, side="right") / len(scores)
    human_above = np.minimum(1 - np.searchsorted(np.sort(human), cuts, side="right") / len(human) + human_slack, 1.0)
    usable = human_above < 1
    bounds = (vendor_above[usable] - vendor_slack - human_above[usable]) / (1 - human_above[usable])
    best = int(np.argmax(bounds)) if len(bounds) else None
    bound = max(0.0, float(bounds[best])) if best is not None else 0.0
    return LowerBound(
        bound=round(bound, 4),
        level=level,
        threshold=float(cuts[usable][best]) if best is not None and bound > 0 else None,
        n_human_reference=len(human),
        method=LOWER_BOUND_METHOD,
    )


def _clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """One-sided exact bounds, each with error ``alpha``."""
    low = 0.0 if k == 0 else float(beta_dist.ppf(alpha, k, n - k + 1))
    high = 1.0 if k == n else float(beta_dist.ppf(1 - alpha, k + 1, n - k))
    return low, high


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _to_logit(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6))


def shrunk_rates(k: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Beta(a, b) prior fitted to per-worker flag counts by the method of moments, so a
    worker with few items is pulled towards the vendor's rate. Returns (a, b)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    mean = k.sum() / max(n.sum(), 1)
    mean = float(np.clip(mean, 1e-3, 1 - 1e-3))
    rates = k / np.maximum(n, 1)
    # Between-worker variance beyond binomial noise (never below a small floor).
    observed = np.average((rates - mean) ** 2, weights=n) if n.sum() else 0.0
    binomial = mean * (1 - mean) * np.mean(1 / np.maximum(n, 1))
    between = max(observed - binomial, 1e-4)
    strength = max(mean * (1 - mean) / between - 1, 1.0)
    return mean * strength, (1 - mean) * strength


def item_posteriors(scores: np.ndarray, reference: ScoreReference, prevalence: float) -> np.ndarray:
    """P(LLM-written | score) for each item under the fitted mixture (the EM "responsibility")."""
    human, machine = reference.densities()
    bins = np.searchsorted(reference.edges[1:-1], _to_logit(scores), side="right")
    llm = prevalence * machine[bins]
    return llm / (llm + (1 - prevalence) * human[bins])


def poisson_binomial(p: np.ndarray) -> np.ndarray:
    """Distribution of the number of successes of independent Bernoulli(p_i) trials."""
    pmf = np.zeros(len(p) + 1)
    pmf[0] = 1.0
    for i, q in enumerate(p, start=1):
        pmf[1 : i + 1] = pmf[1 : i + 1] * (1 - q) + pmf[:i] * q
        pmf[0] *= 1 - q
    return pmf


_FINE_GRID = np.linspace(1e-7, 1 - 1e-7, 200_001)


def flag_rate_sequence(k: int, n: int, alpha: float = 0.05, prior_mean: float = 0.05) -> tuple[float, float]:
    """Anytime-valid (1 - alpha) confidence sequence for a Bernoulli rate after ``k`` of ``n``.

    Robbins' method of mixtures (see Howard et al. 2021, "Time-uniform, nonparametric,
    nonasymptotic confidence sequences"): the likelihood ratio of a Beta(a, b) mixture against
    the point rate p is a nonnegative martingale under p, so by Ville's inequality the set of p
    where it stays below 1/alpha covers the true rate at every n simultaneously. Sampling may
    therefore stop whenever the set is on one side of a threshold without inflating the error.
    The prior (mean ``prior_mean``, one pseudo-observation) only shapes where the sequence is
    tightest; put it near the rate the decision hinges on.
    """
    if n == 0:
        return 0.0, 1.0
    a = 1.0
    b = a * (1 - prior_mean) / prior_mean
    log_ratio = betaln(a + k, b + n - k) - betaln(a, b) - k * np.log(_FINE_GRID) - (n - k) * np.log1p(-_FINE_GRID)
    inside = np.flatnonzero(log_ratio < np.log(1 / alpha))
    return float(_FINE_GRID[inside[0]]), float(_FINE_GRID[inside[-1]])


def prevalence_bounds(
    flag_low: float, flag_high: float, fpr: tuple[float, float], tpr: tuple[float, float]
) -> tuple[float, float]:
    """Share of LLM-written items consistent with a flag-rate interval, given intervals for the
    detector's error rates: ``P(flag) = fpr + share * (tpr - fpr)`` solved at its extremes."""
    low = (flag_low - fpr[1]) / max(tpr[1] - fpr[1], 1e-9)
    high = (flag_high - fpr[0]) / max(tpr[0] - fpr[0], 1e-9)
    return float(np.clip(low, 0, 1)), float(np.clip(high, 0, 1))


__all__ = [
    "flag_rate_sequence",
    "prevalence_bounds",
    "ErrorRates",
    "Interval",
    "between_source_spread",
    "ScoreReference",
    "prevalence_from_flags",
    "prevalence_from_scores",
    "CalibrationFit",
    "LowerBound",
    "mixture_fit",
    "estimate_agreement",
    "prevalence_lower_bound",
    "shrunk_rates",
    "wilson",
    "item_posteriors",
    "poisson_binomial",
]
