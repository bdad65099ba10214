"""The statistics of task-aware audits: does the calibration fit a vendor, a mixture interval
that is never zero-width, and a lower bound from a human reference alone."""

from dataclasses import replace

import numpy as np
import pytest

from auditor.calibration import calibrate
from auditor.estimate import Estimator
from auditor.stats import Interval, ScoreReference, mixture_fit, prevalence_from_scores, prevalence_lower_bound


def _human(rng, n):
    return rng.beta(2, 8, n)


def _llm(rng, n):
    return rng.beta(6, 2, n)


def _vendor(rng, n, share, human=_human):
    k = int(round(share * n))
    return np.concatenate([human(rng, n - k), _llm(rng, k)])


def test_the_fit_test_accepts_vendors_drawn_from_the_references_and_rejects_another_task():
    rng = np.random.default_rng(0)
    reference = ScoreReference.from_scores(_human(rng, 300), _llm(rng, 300))
    same_task = [mixture_fit(_vendor(rng, 300, s), reference, alpha=0.1, bootstrap=200) for s in (0, 0.1, 0.3) * 8]
    rejected = np.mean([not f.consistent for f in same_task])
    assert rejected <= 0.25  # about alpha when the references describe the vendor's task
    assert all(0 < f.p_value <= 1 for f in same_task)

    def other_humans(rng, n):  # humans of another task: scores a little higher
        return rng.beta(3, 6, n)

    other_task = [
        mixture_fit(_vendor(rng, 400, 0.2, other_humans), reference, alpha=0.1, bootstrap=200) for _ in range(10)
    ]
    assert np.mean([not f.consistent for f in other_task]) >= 0.8
    assert all(f.method.startswith("G-test") and f.statistic > 0 for f in other_task)


def test_the_mixture_interval_is_never_zero_width_and_narrows_with_size():
    rng = np.random.default_rng(1)
    reference = ScoreReference.from_scores(_human(rng, 200), _llm(rng, 200))
    small = prevalence_from_scores(_human(rng, 48), reference)
    large = prevalence_from_scores(_human(rng, 2000), reference)
    assert small.ci_low == 0.0 and small.ci_high > 0.01  # 48 human texts cannot prove 0%
    assert large.ci_high < small.ci_high
    covered = [
        prevalence_from_scores(_vendor(rng, 100, s), reference, bootstrap=150).ci_low
        <= s
        <= prevalence_from_scores(_vendor(rng, 100, s), reference, bootstrap=150).ci_high
        for s in (0.0, 0.05, 0.25) * 6
    ]
    assert np.mean(covered) >= 0.8


def test_the_lower_bound_from_a_human_reference_holds_and_finds_real_llm_text():
    rng = np.random.default_rng(2)
    held = []
    for share in (0.0, 0.05, 0.1, 0.25, 0.5) * 12:
        bound = prevalence_lower_bound(_vendor(rng, 200, share), _human(rng, 100), level=0.9)
        assert bound is not None
        held.append(bound.bound <= share)
    assert np.mean(held) >= 0.9
    strong = prevalence_lower_bound(_vendor(rng, 500, 0.5), _human(rng, 200), level=0.9)
    assert strong is not None and 0.2 < strong.bound <= 0.5 and strong.threshold is not None
    assert prevalence_lower_bound(np.array([]), _human(rng, 10)) is None


def test_a_vendor_whose_scores_do_not_fit_gets_a_wide_interval_not_a_confident_zero():
    rng = np.random.default_rng(3)
    human, llm = _human(rng, 400), _llm(rng, 400)
    calibration = calibrate(human[:200], human[200:], llm)
    estimator = Estimator(
        calibration, 0.9, calibration.error_rates(), "test", calibration.reference(), unfamiliar_spread=(1.0, 1.0)
    )
    confident = prevalence_from_scores(np.full(48, 0.05), calibration.reference())
    widened = estimator._unfamiliar_task_prevalence(2, 48, confident, confident)
    assert widened.ci_high > max(confident.ci_high, 0.1)
    assert widened.ci_low <= confident.ci_low and widened.estimate == confident.estimate
    # without LLM texts of the task the detector may be blind to it: no upper end
    assert widened.ci_high == 1.0
    measured = replace(estimator, task_tpr_measured=True)._unfamiliar_task_prevalence(2, 48, confident, confident)
    assert max(confident.ci_high, 0.1) < measured.ci_high < 1.0


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_vendors_get_no_fit_verdict_or_a_harmless_one(n):
    rng = np.random.default_rng(4)
    reference = ScoreReference.from_scores(_human(rng, 100), _llm(rng, 100))
    fit = mixture_fit(_human(rng, n), reference)
    assert (fit is None) if n == 0 else fit.consistent


def test_known_reference_scores_add_a_kernel_fit_and_the_calibrations_histograms_do_not_keep_them():
    rng = np.random.default_rng(3)
    human, machine = _human(rng, 100), _llm(rng, 100)
    with_scores = ScoreReference.from_scores(human, machine)
    histograms_only = ScoreReference.from_dict(with_scores.to_dict())
    assert histograms_only.human_scores is None and len(with_scores.machine_scores) == 100
    errors = {"averaged": [], "histograms": []}
    for share in (0.0, 0.1, 0.25, 0.5) * 5:
        vendor = _vendor(rng, 500, share)
        averaged = prevalence_from_scores(vendor, with_scores, bootstrap=50)
        alone = prevalence_from_scores(vendor, histograms_only, bootstrap=50)
        assert averaged.ci_low <= averaged.estimate <= averaged.ci_high
        errors["averaged"].append(abs(averaged.estimate - share))
        errors["histograms"].append(abs(alone.estimate - share))
    assert np.mean(errors["averaged"]) < 0.04
    assert np.mean(errors["averaged"]) != np.mean(errors["histograms"])  # the kernel fit is in use


@pytest.mark.parametrize("primary", ["mixture", "flags"])
def test_every_worker_interval_holds_its_own_estimate(primary):
    """A worker with one clearly LLM-like item read "96.3% [100.0%, 100.0%]" in the GPTurk report:
    the share of a worker's items is discrete, and its mean can fall outside the central interval."""
    import pandas as pd

    rng = np.random.default_rng(5)
    human, llm = _human(rng, 400), _llm(rng, 400)
    calibration = calibrate(human[:200], human[200:], llm)
    estimator = Estimator(
        calibration, 0.9, calibration.error_rates(), "test", ScoreReference.from_scores(human, llm), primary
    )
    sizes = [1, 1, 2, 3, 5, 12]
    scores = np.concatenate([rng.choice(np.array([0.02, 0.5, 0.97, 0.995]), size) for size in sizes])
    items = pd.DataFrame(
        {
            "worker": np.repeat([f"w{i}" for i in range(len(sizes))], sizes),
            "llm_probability": scores,
            "flagged": calibration.flags(scores),
        }
    )
    items.loc[0, "llm_probability"] = 0.999  # the one-item worker of the report
    grouped = items.groupby("worker")
    estimates = estimator.workers(
        {w: part["llm_probability"].to_numpy() for w, part in grouped},
        {w: int(part["flagged"].sum()) for w, part in grouped},
        Interval(estimate=0.4, ci_low=0.3, ci_high=0.5),
    )
    assert len(estimates) == len(sizes)
    for worker, estimate in estimates.items():
        interval = estimate.prevalence
        assert interval.ci_low <= interval.estimate <= interval.ci_high, (worker, interval)


@pytest.mark.parametrize("machine", [np.full(4, 0.9999999), np.array([0.97, 0.99, 0.995, 0.999])])
def test_a_tiny_or_constant_reference_falls_back_to_the_histogram_fit(machine):
    rng = np.random.default_rng(6)
    reference = ScoreReference.from_scores(_human(rng, 50), machine)
    result = prevalence_from_scores(_vendor(rng, 50, 0.2), reference, bootstrap=30)
    assert 0 <= result.ci_low <= result.estimate <= result.ci_high <= 1


def test_the_agreement_test_lets_same_task_vendors_pass_and_rejects_shifted_error_rates():
    """The fit test aimed at the estimate: vendors drawn from the references pass at about the
    stated rate, vendors whose humans score higher (a higher false-positive rate at the
    threshold than the references say) are rejected."""
    from auditor.stats import estimate_agreement

    rng = np.random.default_rng(10)
    reference = ScoreReference.from_scores(_human(rng, 300), _llm(rng, 300))
    same_task = [estimate_agreement(_vendor(rng, 300, s), reference, 0.5, bootstrap=200) for s in (0, 0.1, 0.3) * 8]
    assert np.mean([not f.consistent for f in same_task]) <= 0.15
    assert all(0 < f.p_value <= 1 for f in same_task)

    def other_humans(rng, n):
        return rng.beta(3, 5, n)

    other_task = [
        estimate_agreement(_vendor(rng, 400, 0.2, other_humans), reference, 0.5, bootstrap=200) for _ in range(10)
    ]
    assert np.mean([not f.consistent for f in other_task]) >= 0.8
    assert all(f.statistic > 0 and "cut-offs" in f.method for f in other_task)
