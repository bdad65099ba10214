"""The per-vendor verdict rule (auditor/report/verdict.py) on constructed vendor reports: no LM."""

from __future__ import annotations

import pytest

from auditor.report.models import REPORT_SCHEMA_VERSION, VendorReport, Verdict
from auditor.report.verdict import MIN_SCORED, decide, share_bounds, verdict_for
from auditor.stats import CalibrationFit, Interval, LowerBound


def vendor(
    prevalence: tuple[float, float, float] = (0.0, 0.0, 0.04),
    n_scored: int = 200,
    fit: bool | None = None,
    bound: float | None = None,
    top_workers: list[str] | None = None,
) -> VendorReport:
    estimate, low, high = prevalence
    return VendorReport(
        vendor="acme",
        n_items=n_scored,
        n_scored=n_scored,
        n_skipped=0,
        n_flagged=3,
        flag_rate=Interval(estimate=0.02, ci_low=0.01, ci_high=0.04),
        prevalence=Interval(estimate=estimate, ci_low=low, ci_high=high),
        calibration_fit=None
        if fit is None
        else CalibrationFit(consistent=fit, p_value=0.5 if fit else 0.001, statistic=3.0, method="G-test"),
        prevalence_lower_bound=None
        if bound is None
        else LowerBound(bound=bound, level=0.9, threshold=0.5, n_human_reference=120, method="Clopper-Pearson"),
        top_workers=top_workers or [],
    )


def test_a_clean_vendor_is_no_llm_text_detected_at_most_the_upper_end():
    verdict = verdict_for(vendor((0.0, 0.0, 0.038), fit=True, bound=0.0), 0.9)
    assert verdict.status == "no_llm_text_detected"
    assert verdict.headline == "No LLM text detected (at most 3.8%)"
    assert "90% interval" in verdict.reason and "reaches down to 0%" in verdict.reason
    assert "120 texts" in verdict.reason  # the human-reference bound was looked at, and is 0
    assert "keep auditing" in verdict.next_action


def test_upper_ends_round_up_and_lower_ends_round_down():
    assert verdict_for(vendor((0.05, 0.0, 0.2341)), 0.9).headline == "No LLM text detected (at most 24%)"
    assert verdict_for(vendor((0.2, 0.127, 0.3)), 0.9).headline == "LLM text present: at least 12% of items"
    assert verdict_for(vendor((0.2, 0.12, 0.3)), 0.9).headline == "LLM text present: at least 12% of items"
    assert verdict_for(vendor((0.05, 0.0456, 0.3)), 0.9).headline == "LLM text present: at least 4.5% of items"


def test_an_interval_above_zero_is_llm_text_present_and_names_the_workers():
    verdict = verdict_for(vendor((0.3, 0.21, 0.4), top_workers=["w1", "w2", "w3", "w4", "w5"]), 0.9)
    assert verdict.status == "llm_text_present"
    assert verdict.headline == "LLM text present: at least 21% of items"
    assert "interval of the corrected LLM share starts at 21%" in verdict.reason
    assert "top flagged items" in verdict.next_action and "w1, w2, w3 and 2 more" in verdict.next_action


def test_a_human_reference_bound_alone_is_enough_and_the_larger_evidence_leads():
    by_bound = verdict_for(vendor((0.1, 0.0, 0.3), fit=True, bound=0.08), 0.9)
    assert by_bound.status == "llm_text_present"
    assert by_bound.headline == "LLM text present: at least 8% of items"
    assert by_bound.reason.startswith("The task's human reference (120 texts)") and "one-sided" in by_bound.reason

    both = verdict_for(vendor((0.3, 0.15, 0.4), fit=True, bound=0.22), 0.9)
    assert both.headline == "LLM text present: at least 22% of items"
    assert both.reason.startswith("The task's human reference") and "starts at 15%" in both.reason
    interval_first = verdict_for(vendor((0.3, 0.25, 0.4), fit=True, bound=0.1), 0.9)
    assert interval_first.headline == "LLM text present: at least 25% of items"
    assert interval_first.reason.startswith("The 90% interval")


def test_bounds_that_round_to_zero_are_not_evidence():
    verdict = verdict_for(vendor((0.001, 0.0002, 0.03), bound=0.0004), 0.9)
    assert verdict.status == "no_llm_text_detected" and verdict.headline == "No LLM text detected (at most 3%)"


def test_scores_that_do_not_fit_the_references_still_state_what_the_widened_interval_supports():
    verdict = verdict_for(vendor((0.3, 0.2, 0.6), fit=False, bound=0.15), 0.9)
    assert verdict.status == "llm_text_present" and verdict.headline == "LLM text present: at least 20% of items"
    assert "do not fit" in verdict.reason and "p = 0.001" in verdict.reason and "widened" in verdict.reason
    assert "To narrow the interval, measure the detector on this task" in verdict.next_action
    assert "auditor references add --task NAME" in verdict.next_action
    assert "--task NAME" in verdict.next_action.split("then", 1)[1] and "auditor calibrate" in verdict.next_action

    low = verdict_for(vendor((0.01, 0.0, 0.12), fit=False), 0.9)
    assert low.status == "no_llm_text_detected" and low.headline == "No LLM text detected (at most 12%)"
    assert "auditor references add" in low.next_action


def test_cannot_tell_without_a_tolerance_only_where_the_interval_says_nothing_useful():
    anything = verdict_for(vendor((0.3, 0.0, 1.0), fit=False), 0.9)
    assert anything.status == "cannot_tell" and anything.decision is None
    assert anything.headline == "Cannot tell: anywhere from 0% to 100% of items may be LLM-written"
    assert "auditor references add" in anything.next_action
    assert verdict_for(vendor((0.2, 0.0, 0.5)), 0.9).status == "cannot_tell"
    assert verdict_for(vendor((0.2, 0.0, 0.49)), 0.9).status == "no_llm_text_detected"


def test_too_few_scored_items_cannot_tell_and_the_reason_says_so():
    few = verdict_for(vendor((0.9, 0.5, 1.0), n_scored=MIN_SCORED - 1), 0.9)
    assert few.status == "cannot_tell" and few.headline == f"Cannot tell: only {MIN_SCORED - 1} item(s) scored"
    assert f"Only {MIN_SCORED - 1} item(s) could be scored" in few.reason and "do not fit" not in few.reason
    assert "Audit more" in few.next_action
    assert verdict_for(vendor((0.9, 0.5, 1.0), n_scored=MIN_SCORED), 0.9).status == "llm_text_present"

    both = verdict_for(vendor(n_scored=3, fit=False), 0.9)
    assert both.status == "cannot_tell" and "do not fit" in both.reason and "Only 3 item(s)" in both.reason
    assert "auditor references add" in both.next_action and "Audit more" in both.next_action
    assert (both.at_least, both.at_most) == (0.0, 1.0)  # a handful of texts supports no statement


@pytest.mark.parametrize("level", [0.8, 0.95])
def test_the_reason_quotes_the_reports_interval_level(level):
    assert f"{round(100 * level)}% interval" in verdict_for(vendor(), level).reason


def test_the_verdict_is_stored_in_report_json():
    report = vendor((0.3, 0.2, 0.4))
    report.verdict = verdict_for(report, 0.9)
    again = VendorReport.model_validate_json(report.model_dump_json())
    assert isinstance(again.verdict, Verdict) and again.verdict.status == "llm_text_present"
    assert (
        VendorReport.model_validate_json(vendor().model_copy(update={"verdict": None}).model_dump_json()).verdict
        is None
    )
    assert REPORT_SCHEMA_VERSION == "1.3"


# ------------------------------------------------------------------ against the user's tolerance


def test_the_decision_rule_at_its_edges():
    assert decide(0.11, 0.3, 0.1) == "above"
    assert decide(0.1, 0.3, 0.1) == "undetermined"  # at least 10% is not above a 10% tolerance
    assert decide(0.0, 0.1, 0.1) == "within"  # at most 10% is within it
    assert decide(0.02, 0.3, 0.1) == "undetermined"
    assert decide(0.0, 1.0, 1.0) == "within" and decide(0.001, 0.2, 0.0) == "above"


def test_the_share_is_the_larger_lower_evidence_and_the_intervals_upper_end():
    assert share_bounds(vendor((0.3, 0.15, 0.4), bound=0.22)) == (0.22, 0.4)
    assert share_bounds(vendor((0.3, 0.25, 0.4), bound=0.1)) == (0.25, 0.4)
    assert share_bounds(vendor((0.3, 0.25, 0.4), n_scored=MIN_SCORED - 1)) == (0.0, 1.0)


def test_an_interval_above_the_tolerance_is_above_even_when_the_calibration_does_not_fit():
    """The issue's case: 85% LLM-written in truth, interval [22%, 87%] widened for a misfit; a 10%
    tolerance is exceeded whatever the error rates on the task are."""
    verdict = verdict_for(vendor((0.45, 0.22, 0.87), fit=False, top_workers=["w1"]), 0.9, tolerance=0.1)
    assert (verdict.status, verdict.decision, verdict.tolerance) == ("above_tolerance", "above", 0.1)
    assert verdict.headline == "Above your 10% tolerance: at least 22% of items are LLM-written"
    assert (verdict.at_least, verdict.at_most) == (0.22, 0.87)
    assert "do not fit" in verdict.reason and "widened" in verdict.reason
    assert "w1" in verdict.next_action and "To narrow the interval" in verdict.next_action


def test_the_human_reference_bound_can_put_a_vendor_above():
    verdict = verdict_for(vendor((0.3, 0.036, 0.835), fit=False, bound=0.127), 0.9, tolerance=0.05)
    assert verdict.decision == "above" and verdict.headline.endswith("at least 12% of items are LLM-written")
    assert "one-sided lower bound at 12%" in verdict.reason


def test_an_interval_below_the_tolerance_is_within():
    verdict = verdict_for(vendor((0.01, 0.0, 0.038), fit=True), 0.9, tolerance=0.05)
    assert (verdict.status, verdict.decision) == ("within_tolerance", "within")
    assert verdict.headline == "Within your 5% tolerance: at most 3.8% of items are LLM-written"
    assert "keep auditing" in verdict.next_action


def test_an_interval_spanning_the_tolerance_is_undetermined_and_says_how_to_narrow_it():
    verdict = verdict_for(vendor((0.12, 0.02, 0.3)), 0.9, tolerance=0.1)
    assert (verdict.status, verdict.decision) == ("cannot_tell", "undetermined")
    assert verdict.headline == "Cannot tell against your 10% tolerance: between 2% and 30% of items are LLM-written"
    assert "spans 10%" in verdict.reason
    assert "Audit more" in verdict.next_action and "auditor references add --task NAME" in verdict.next_action
    few = verdict_for(vendor((0.9, 0.5, 1.0), n_scored=3), 0.9, tolerance=0.1)
    assert (
        few.decision == "undetermined"
        and few.headline == "Cannot tell against your 10% tolerance: only 3 item(s) scored"
    )


def test_the_shown_bound_falls_on_its_side_of_the_tolerance():
    assert "at least 10.4% of items" in verdict_for(vendor((0.2, 0.104, 0.3)), 0.9, 0.1).headline
    assert "at least 10.01% of items" in verdict_for(vendor((0.2, 0.1001, 0.3)), 0.9, 0.1).headline
    assert "at most 10% of items" in verdict_for(vendor((0.05, 0.0, 0.0999)), 0.9, 0.1).headline  # <= 10%
    assert "at most 5.45% of items" in verdict_for(vendor((0.01, 0.0, 0.0545)), 0.9, 0.0549).headline
    assert "your 5.5% tolerance" in verdict_for(vendor(), 0.9, 0.055).headline


def test_a_tolerance_verdict_round_trips_through_report_json():
    report = vendor((0.3, 0.2, 0.4))
    report.verdict = verdict_for(report, 0.9, tolerance=0.1)
    again = VendorReport.model_validate_json(report.model_dump_json()).verdict
    assert again is not None and again.model_dump() == report.verdict.model_dump()
    assert again.decision == "above" and again.tolerance == 0.1


def test_a_misfit_interval_without_an_upper_end_says_the_detector_may_be_missing_llm_text():
    open_ended = verdict_for(vendor((0.13, 0.0, 1.0), fit=False), 0.9, 0.05)
    assert open_ended.decision == "undetermined" and "no upper end" in open_ended.reason
    bounded = verdict_for(vendor((0.13, 0.0, 0.6), fit=False), 0.9, 0.05)
    assert "widened" in bounded.reason and "no upper end" not in bounded.reason
