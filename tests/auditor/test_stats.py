import numpy as np
from scipy.special import expit

from auditor.calibration import calibrate, load_calibration, save_calibration
from auditor.stats import ErrorRates, between_source_spread, prevalence_from_flags


def test_a_flag_rate_at_the_false_positive_rate_means_no_llm_text():
    rates = ErrorRates(false_positives=10, n_human=1000, true_positives=650, n_machine=1000)
    result = prevalence_from_flags(20, 2000, rates)  # 1% flagged at a 1% false-positive rate
    assert result.estimate <= 0.01 and result.ci_low == 0.0 and result.ci_high < 0.03


def test_between_source_spread_is_zero_for_one_rate_and_recovers_a_real_spread():
    rng = np.random.default_rng(0)
    same = [(int(rng.binomial(500, 0.65)), 500) for _ in range(8)]
    assert between_source_spread(same) < 0.15
    logits = rng.normal(0.6, 0.8, 8)
    varied = [(int(rng.binomial(500, expit(x))), 500) for x in logits]
    assert 0.4 < between_source_spread(varied) < 1.3
    assert between_source_spread(varied[:2]) == 0.0  # too few sources to say


def _single_source_coverage(rates: ErrorRates, source_tprs: np.ndarray, rng: np.random.Generator) -> float:
    """Vendors of one source each (true share 30%, 500 items): how often the interval covers 0.3."""
    covered = []
    for tpr in source_tprs:
        for _ in range(3):
            llm = rng.binomial(500, 0.3)
            flags = rng.binomial(llm, tpr) + rng.binomial(500 - llm, 0.01)
            interval = prevalence_from_flags(int(flags), 500, rates, draws=1000)
            covered.append(interval.ci_low <= 0.3 <= interval.ci_high)
    return float(np.mean(covered))


def test_intervals_allow_for_rates_that_differ_between_sources():
    rng = np.random.default_rng(3)
    source_tprs = expit(rng.normal(0.6, 0.9, 12))
    counts = [(int(rng.binomial(400, t)), 400) for t in source_tprs]
    k, n = sum(c[0] for c in counts), sum(c[1] for c in counts)
    pooled = ErrorRates(10, 1000, k, n)
    spread = ErrorRates(10, 1000, k, n, tpr_spread=between_source_spread(counts))
    assert _single_source_coverage(pooled, source_tprs, rng) < 0.7  # the pooled rate alone is overconfident
    assert _single_source_coverage(spread, source_tprs, rng) >= 0.85
    # The point estimate still uses the pooled rates.
    assert prevalence_from_flags(200, 1000, pooled).estimate == prevalence_from_flags(200, 1000, spread).estimate


def test_calibration_keeps_rates_per_source_and_audits_see_their_spread(tmp_path):
    rng = np.random.default_rng(4)
    human = rng.beta(2, 8, 2000)
    machine = np.concatenate([rng.beta(8, 2, 300), rng.beta(3, 3, 300), rng.beta(5, 2, 300)])
    machine_sources = np.repeat(["easy", "hard", "middle"], 300)
    result = calibrate(
        human[:1000],
        human[1000:],
        machine,
        target_fpr=0.05,
        human_sources=np.tile(["easy", "hard", "middle", "other"], 250),
        machine_sources=machine_sources,
    )
    by_source = result.heldout_tpr_by_source
    assert set(by_source) == {"easy", "hard", "middle"} and by_source["easy"].estimate > by_source["hard"].estimate
    assert sum(r.n for r in result.heldout_fpr_by_source.values()) == 1000
    rates = result.error_rates()
    assert rates.tpr_spread > 0.3
    save_calibration(result, tmp_path)
    assert load_calibration(tmp_path).error_rates() == rates


def test_flag_rate_sequence_covers_the_rate_at_every_look_where_a_fixed_interval_does_not():
    """Peeking after every 100 documents: the confidence sequence must keep its 95% coverage
    over the whole run; a fixed-sample 95% Wilson interval checked as often does not."""
    from statsmodels.stats.proportion import proportion_confint

    from auditor.stats import flag_rate_sequence

    rng = np.random.default_rng(0)
    rate, looks = 0.03, np.arange(100, 3001, 100)
    sequence_missed = fixed_missed = 0
    for _ in range(100):
        flags = np.cumsum(rng.random(3000) < rate)
        counts = [(int(flags[n - 1]), int(n)) for n in looks]
        sequence_missed += any(
            not (lo <= rate <= hi) for lo, hi in (flag_rate_sequence(k, n, 0.05, 0.03) for k, n in counts)
        )
        fixed_missed += any(
            not (lo <= rate <= hi) for lo, hi in (proportion_confint(k, n, 0.05, "wilson") for k, n in counts)
        )
    assert sequence_missed <= 6
    assert fixed_missed > 2 * max(sequence_missed, 5)


def test_prevalence_bounds_follow_the_error_rates():
    from auditor.stats import prevalence_bounds

    # A flag rate at the false-positive rate means no LLM text; at the true-positive rate, all of it.
    assert prevalence_bounds(0.01, 0.01, (0.01, 0.01), (0.5, 0.5)) == (0.0, 0.0)
    assert prevalence_bounds(0.5, 0.5, (0.01, 0.01), (0.5, 0.5)) == (1.0, 1.0)
    low, high = prevalence_bounds(0.05, 0.07, (0.005, 0.015), (0.4, 0.5))
    assert 0.05 < low < high < 0.2  # uncertain error rates widen the interval on both sides
    assert low < (0.05 - 0.01) / (0.45 - 0.01) and high > (0.07 - 0.01) / (0.45 - 0.01)
