"""The per-vendor verdict rule (auditor/report/verdict.py) on constructed vendor reports: no LM."""

from __future__ import annotations

import pytest

from auditor.report.models import REPORT_SCHEMA_VERSION, VendorReport, Verdict
from auditor.report.verdict import MIN_SCORED, verdict_for
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


def test_scores_that_do_not_fit_the_references_cannot_tell_even_with_a_bound():
    verdict = verdict_for(vendor((0.3, 0.2, 0.6), fit=False, bound=0.15), 0.9)
    assert verdict.status == "cannot_tell"
    assert verdict.headline == "Cannot tell on this task: the detector's error rates do not hold for it"
    assert "do not fit" in verdict.reason and "p = 0.001" in verdict.reason
    assert "auditor references add --task NAME" in verdict.next_action
    assert "--task NAME" in verdict.next_action.split("then", 1)[1] and "auditor calibrate" in verdict.next_action


def test_too_few_scored_items_cannot_tell_and_the_reason_says_so():
    few = verdict_for(vendor((0.9, 0.5, 1.0), n_scored=MIN_SCORED - 1), 0.9)
    assert few.status == "cannot_tell" and few.headline == f"Cannot tell: only {MIN_SCORED - 1} item(s) scored"
    assert f"Only {MIN_SCORED - 1} item(s) could be scored" in few.reason and "do not fit" not in few.reason
    assert "Audit more" in few.next_action
    assert verdict_for(vendor((0.9, 0.5, 1.0), n_scored=MIN_SCORED), 0.9).status == "llm_text_present"

    both = verdict_for(vendor(n_scored=3, fit=False), 0.9)
    assert "do not fit" in both.reason and "only 3 item(s)" in both.reason
    assert "auditor references add" in both.next_action and "Audit more" in both.next_action


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
    assert REPORT_SCHEMA_VERSION == "1.2"
