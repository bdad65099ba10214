"""The Estimator: one object built from the calibration and the task's references, used by the
audit (vendors, workers, batches) and the gate (sequential bounds)."""

from dataclasses import replace

import numpy as np
import pytest

from auditor.calibration import calibrate
from auditor.estimate import Estimator
from auditor.estimate.estimator import UNFAMILIAR_FPR_SPREAD, UNFAMILIAR_TPR_SPREAD


@pytest.fixture(scope="module")
def calibration():
    rng = np.random.default_rng(0)
    return calibrate(rng.beta(2, 8, 300), rng.beta(2, 8, 300), rng.beta(6, 2, 300))


def test_without_references_the_rates_are_the_calibrations_and_the_flags_estimate_is_primary(calibration):
    estimator = Estimator.build(calibration, 0.9)
    rates = calibration.error_rates()
    assert (estimator.rates.false_positives, estimator.rates.n_human) == (rates.false_positives, rates.n_human)
    assert estimator.primary == "flags" and estimator.task_human is None
    assert estimator.error_rates()["source"].startswith("calibration of")


def test_task_references_re_measure_the_rates_and_make_the_mixture_primary(calibration):
    rng = np.random.default_rng(1)
    human = rng.beta(3, 5, 120)  # this task's humans score higher than the calibration's
    machine = np.concatenate([rng.beta(6, 2, 80), [np.nan]])
    only_human = Estimator.build(calibration, 0.9, human=human, origins={"human": "task t"})
    assert only_human.rates.n_human == 120
    assert only_human.rates.false_positives == int(calibration.flags(human).sum())
    assert only_human.rates.fpr_spread == 0.0 and only_human.primary == "flags"
    assert "120 texts of task t" in only_human.rates_source
    both = Estimator.build(calibration, 0.9, human=human, machine=machine)
    assert both.primary == "mixture" and both.rates.n_machine == 80  # the NaN left out
    assert both.reference is not None and both.reference.human_scores is not None


def test_a_vendor_estimate_holds_every_part_and_the_lower_bound_needs_human_references(calibration):
    rng = np.random.default_rng(2)
    vendor = np.concatenate([rng.beta(2, 8, 300), rng.beta(6, 2, 100)])
    plain = Estimator.build(calibration, 0.9).vendor(vendor)
    assert plain.n_scored == 400 and plain.lower_bound is None
    assert plain.n_flagged == int(calibration.flags(vendor).sum())
    assert plain.prevalence.ci_low <= 0.25 <= plain.prevalence.ci_high
    human = rng.beta(2, 8, 150)
    machine = rng.beta(6, 2, 150)
    task = Estimator.build(calibration, 0.9, human=human, machine=machine).vendor(vendor)
    mixture = task.score_mixture
    assert mixture is not None and task.fit is not None and task.prevalence.estimate == mixture.estimate
    # the headline is the mixture's interval, or (when the fit test rejects) an interval around it
    assert task.prevalence.ci_low <= mixture.ci_low and task.prevalence.ci_high >= mixture.ci_high
    assert (task.prevalence == mixture) == task.fit.consistent
    assert task.lower_bound is not None and 0 < task.lower_bound.bound <= 0.25
    assert abs(task.prevalence.estimate - 0.25) < 0.06


def test_the_gates_sequential_bounds_hold_the_point_share_and_narrow_with_more_documents(calibration):
    estimator = Estimator.build(calibration, 0.95)
    widths = []
    for n in (50, 400, 3200):
        k = int(round(n * (estimator.rates.fpr + 0.2 * (estimator.rates.tpr - estimator.rates.fpr))))
        low, high = estimator.sequential(k, n, max_share=0.1)
        share = estimator.point_share(k, n)
        assert share is not None and low <= share <= high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert estimator.point_share(0, 0) is None


def test_rates_not_measured_on_the_task_may_differ_on_it_at_least_by_the_floors(calibration):
    floors = (UNFAMILIAR_FPR_SPREAD, UNFAMILIAR_TPR_SPREAD)
    defaults = Estimator.build(calibration, 0.9).rates
    assert (defaults.fpr_spread, defaults.tpr_spread) >= floors and defaults.fpr_spread >= UNFAMILIAR_FPR_SPREAD
    rng = np.random.default_rng(6)
    human_only = Estimator.build(calibration, 0.9, human=rng.beta(2, 8, 100)).rates
    assert human_only.fpr_spread == 0.0 and human_only.tpr_spread >= UNFAMILIAR_TPR_SPREAD
    both = Estimator.build(calibration, 0.9, human=rng.beta(2, 8, 100), machine=rng.beta(6, 2, 100)).rates
    assert (both.fpr_spread, both.tpr_spread) == (0.0, 0.0)


def test_a_clean_register_flagged_like_the_99th_percentile_register_is_not_declared_above_5_percent(calibration):
    """Human texts of a register that scores higher than any the calibration saw (10% flagged,
    the non-native essays' kind of shift): without task references the interval's lower end
    stays at or below 5%; with the calibration's rates taken as exact it would not."""
    n, flagged = 600, 60
    estimator = Estimator.build(calibration, 0.9)
    assert estimator.rates.fpr < 0.03
    vendor = np.concatenate([np.full(flagged, 0.99), np.full(n - flagged, 0.05)])
    estimate = estimator.vendor(vendor, n_flagged=flagged)
    assert estimate.from_flags.ci_low <= 0.05 and estimate.prevalence.ci_low <= 0.05
    exact = replace(estimator, rates=replace(estimator.rates, fpr_spread=0.0, tpr_spread=0.0))
    assert exact.vendor(vendor, n_flagged=flagged).from_flags.ci_low > 0.05
