"""One verdict per vendor, computed once in the auditor and stored in ``report.json``, so that the
HTML and Markdown reports (and anything else reading the JSON) can lead with it.

The rule, in order (the first that applies wins):

1. ``cannot_tell`` when the detector's error rates cannot be trusted on the vendor's texts or
   there are too few of them:

   - ``calibration_fit`` exists and is not consistent: the vendor's scores do not fit a mixture
     of the human and LLM reference scores, so the error rates measured on those references do
     not hold for this task (the headline interval is already widened for it, but a
     "present"/"none" call would still lean on rates that are unknown here); or
   - fewer than ``MIN_SCORED`` (10) items were scored.

   The reason names which (both, when both hold). The next action for an unfamiliar task is the
   task-references remedy (``auditor references add --task NAME ...`` then
   ``auditor audit --task NAME``, or ``auditor calibrate`` on one's own labelled texts); for too
   few items it is to audit more of the vendor's items.

2. ``llm_text_present`` when the headline prevalence interval's ``ci_low`` is above 0, or the
   one-sided lower bound from a human reference of the task (``prevalence_lower_bound.bound``)
   is above 0. The headline says "at least X%" with the larger of the two, and the reason says
   which evidence that is. "Above 0" means above 0 at the precision the headline shows (0.1
   percentage point): a bound of 0.02% would read "at least 0%", which says nothing.
   Next action: review the top flagged items and the workers listed in the report.

3. ``no_llm_text_detected`` otherwise, with "at most <ci_high>" of the headline interval.
   Next action: nothing now; keep auditing new batches.

Percentages in headlines are rounded towards the cautious side: lower bounds down, upper
bounds up (whole percents from 10% on, tenths below, "4%" rather than "4.0%").
"""

from __future__ import annotations

import math
from typing import Literal

from auditor.report.models import VendorReport, Verdict

MIN_SCORED = 10
"""Fewer scored items than this give no verdict: an estimate from a handful of texts is no basis for one."""

VERDICT_RULE = (
    f"cannot tell when a vendor's scores do not fit a mixture of the reference scores or fewer than {MIN_SCORED} "
    "items were scored; LLM text present when the prevalence interval or the lower bound from the task's human "
    'reference is above 0 ("at least" the larger); otherwise no LLM text detected, "at most" the interval\'s '
    "upper end"
)
"""The rule in one sentence, for the reports' method notes."""

NO_LLM: Literal["no_llm_text_detected"] = "no_llm_text_detected"
PRESENT: Literal["llm_text_present"] = "llm_text_present"
CANNOT_TELL: Literal["cannot_tell"] = "cannot_tell"

TASK_REFERENCES_REMEDY = (
    "Measure the detector on this task: add human and LLM-written texts of the same task "
    "(`auditor references add --task NAME --human FILE --machine FILE`; `auditor references generate` can write "
    "the LLM side), then audit again with `auditor audit ... --task NAME`. Or recalibrate on your own labelled "
    "texts with `auditor calibrate`."
)


def _percent_digits(value: float) -> int:
    return 0 if value >= 0.1 else 1


def _share(value: float, direction: Literal["down", "up"]) -> str:
    """``value`` (a share in [0, 1]) as a percentage, rounded down or up at the shown precision."""
    value = min(max(value, 0.0), 1.0)
    digits = _percent_digits(value)
    scale = 10**digits
    scaled = 100 * value * scale
    # a tolerance so that 0.12 (= 11.999...% in binary) is not floored to 11%
    rounded = math.floor(scaled + 1e-6) if direction == "down" else math.ceil(scaled - 1e-6)
    return f"{rounded / scale:.{digits}f}".removesuffix(".0") + "%"


def _shown_above_zero(value: float | None) -> bool:
    return value is not None and _share(value, "down") != "0%"


def _level(level: float) -> str:
    return f"{round(100 * level):d}%"


def verdict_for(vendor: VendorReport, level: float) -> Verdict:
    """The verdict on one vendor (see the module docstring for the rule); ``level`` is the
    report's interval level (``methods.interval_level``), quoted in the reason."""
    fit = vendor.calibration_fit
    unfamiliar = fit is not None and not fit.consistent
    too_few = vendor.n_scored < MIN_SCORED
    if unfamiliar or too_few:
        return _cannot_tell(vendor, unfamiliar, too_few)

    prevalence = vendor.prevalence
    bound = vendor.prevalence_lower_bound
    from_interval = prevalence.ci_low if _shown_above_zero(prevalence.ci_low) else None
    from_bound = bound.bound if bound is not None and _shown_above_zero(bound.bound) else None
    if from_interval is not None or from_bound is not None:
        return _present(vendor, level, from_interval, from_bound)

    at_most = _share(prevalence.ci_high, "up")
    reason = (
        f"The {_level(level)} interval of the LLM share reaches down to 0% "
        f"(estimate {_share(prevalence.estimate, 'up')}, at most {at_most})"
    )
    if bound is not None:
        reason += (
            f", and the human reference of the task ({bound.n_human_reference} texts) gives no lower bound above 0%"
        )
    return Verdict(
        status=NO_LLM,
        headline=f"No LLM text detected (at most {at_most})",
        reason=reason + ". Some LLM text up to that share cannot be ruled out.",
        next_action="Nothing to do now; keep auditing this vendor's new batches.",
    )


def _cannot_tell(vendor: VendorReport, unfamiliar: bool, too_few: bool) -> Verdict:
    reasons, actions = [], []
    if unfamiliar:
        assert vendor.calibration_fit is not None
        reasons.append(
            "the vendor's scores do not fit a mixture of the reference scores "
            f"(p = {vendor.calibration_fit.p_value:.3g}), so the detector's error rates measured on those "
            "references do not hold for this task"
        )
        actions.append(TASK_REFERENCES_REMEDY)
    if too_few:
        reasons.append(
            f"only {vendor.n_scored} item(s) could be scored; a verdict needs at least {MIN_SCORED}, "
            "as the estimate from fewer rests on a handful of texts"
        )
        actions.append(f"Audit more of this vendor's items (at least {MIN_SCORED} scorable texts).")
    if unfamiliar:
        headline = "Cannot tell on this task: the detector's error rates do not hold for it"
    else:
        headline = f"Cannot tell: only {vendor.n_scored} item(s) scored"
    reason = " and ".join(reasons)
    return Verdict(
        status=CANNOT_TELL,
        headline=headline,
        reason=reason[0].upper() + reason[1:] + ".",
        next_action=" ".join(actions),
    )


def _present(vendor: VendorReport, level: float, from_interval: float | None, from_bound: float | None) -> Verdict:
    evidence = []
    if from_interval is not None:
        evidence.append(
            (
                from_interval,
                f"the {_level(level)} interval of the corrected LLM share starts at {_share(from_interval, 'down')} "
                f"(estimate {_share(vendor.prevalence.estimate, 'down')})",
            )
        )
    if from_bound is not None:
        bound = vendor.prevalence_lower_bound
        assert bound is not None
        evidence.append(
            (
                from_bound,
                f"the task's human reference ({bound.n_human_reference} texts) puts a "
                f"{_level(bound.level)} one-sided lower bound at {_share(from_bound, 'down')}",
            )
        )
    evidence.sort(key=lambda e: -e[0])
    best, best_text = evidence[0]
    reason = best_text[0].upper() + best_text[1:]
    if len(evidence) > 1:
        reason += f"; {evidence[1][1]}"
    action = "Review the top flagged items listed in this report"
    if vendor.top_workers:
        named = ", ".join(vendor.top_workers[:3])
        more = f" and {len(vendor.top_workers) - 3} more" if len(vendor.top_workers) > 3 else ""
        action += f" and the workers most likely to use an LLM ({named}{more})"
    return Verdict(
        status=PRESENT,
        headline=f"LLM text present: at least {_share(best, 'down')} of items",
        reason=reason + ".",
        next_action=action + "; raise the confirmed cases with the vendor.",
    )
