import numpy as np
import pytest

from auditor.calibration import (
    Rate,
    calibrate,
    conformal_threshold,
    load_calibration,
    save_calibration,
    split_human,
)


def test_conformal_threshold_keeps_false_positives_at_target_on_fresh_human_scores():
    rng = np.random.default_rng(1)
    rates = []
    for _ in range(200):
        calibration = rng.beta(2, 8, 500)
        fresh = rng.beta(2, 8, 5000)
        rates.append((fresh > conformal_threshold(calibration, 0.01)).mean())
    assert np.mean(rates) <= 0.01 + 0.001  # valid in expectation
    assert np.mean(rates) > 0.006  # and not needlessly conservative


def test_too_few_human_texts_for_the_target_rate_is_an_error():
    with pytest.raises(ValueError, match="at least 99"):
        conformal_threshold(np.linspace(0, 1, 50), 0.01)


def test_calibration_measures_rates_on_held_out_scores_and_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    human = rng.beta(2, 8, 2000)
    machine = rng.beta(8, 2, 500)
    cal_h, held_h = split_human(human, 0.5, seed=0)
    assert len(cal_h) == len(held_h) == 1000 and not set(cal_h) & set(held_h)
    result = calibrate(cal_h, held_h, machine, target_fpr=0.05)
    assert result.heldout_fpr.n == 1000 and result.heldout_tpr.n == 500
    assert abs(result.heldout_fpr.estimate - 0.05) < 0.025  # sampling noise of both halves is ~0.01
    assert result.heldout_tpr.estimate > 0.9
    assert list(result.flags(np.array([result.threshold, result.threshold + 1e-9, np.nan]))) == [False, True, False]
    save_calibration(result, tmp_path)
    assert load_calibration(tmp_path) == result


def test_rate_interval_contains_estimate():
    rate = Rate.of(3, 200)
    assert rate.ci_low < rate.estimate < rate.ci_high and rate.estimate == 0.015
