"""One verdict per vendor, computed once in the auditor and stored in ``report.json``, so that the
HTML and Markdown reports, the command line's headline and exit code, the Python API and the REST
service all read the same decision.

**The interval every statement rests on** (:func:`share_bounds`): the vendor's LLM share is

- *at least* the larger of the headline prevalence interval's lower end and the one-sided lower
  bound from a human reference of the task (``prevalence_lower_bound.bound``), and
- *at most* the headline interval's upper end,

where the headline interval is the one the report shows: when the vendor's scores do not fit the
references (``calibration_fit.consistent`` false) it is already widened to error rates that may
vary as much as they do between kinds of text, with no upper end unless LLM texts of the task
measured the detector's sensitivity, so its statements still hold; the verdict uses them and
advises task references to narrow it. With fewer than ``MIN_SCORED`` (10) scored items the
interval is [0, 1]: an estimate from a handful of texts (a bootstrap of three scores) is no basis
for a statement.

**With a tolerance** (``--tolerance`` / ``--fail-above``, ``tolerance=`` in Python and REST), the
decision (:func:`decide`) is

- ``above`` when *at least* > tolerance (status ``above_tolerance``),
- ``within`` when *at most* <= tolerance (status ``within_tolerance``),
- ``undetermined`` otherwise, i.e. the interval spans the tolerance (status ``cannot_tell``).

``auditor audit`` exits 3 exactly when some vendor's stored decision is ``above``.

**Without a tolerance** the verdict states the interval in words:

1. ``cannot_tell`` with fewer than ``MIN_SCORED`` scored items;
2. ``llm_text_present`` when *at least* is above 0 at the precision the headline shows (0.1
   percentage point): "at least X%", naming which evidence gives it;
3. ``no_llm_text_detected`` when *at most* is below ``UNINFORMATIVE`` (50%): "at most X%";
4. ``cannot_tell`` otherwise: an interval from 0% to half or more says nothing a buyer can act on.

Percentages in headlines are rounded towards the cautious side: lower bounds down, upper bounds up
(whole percents from 10% on, tenths below, "4%" rather than "4.0%"); next to a tolerance, with as
many more digits as it takes for the rounded bound to fall on its side of the tolerance.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from auditor.report.models import Decision, VendorReport, Verdict
from auditor.stats import Interval, LowerBound

MIN_SCORED = 10
"""Fewer scored items than this give no statement: an estimate from a handful of texts is no basis for one."""

UNINFORMATIVE = 0.5
"""Without a tolerance, an interval from 0% up to this share or more is "cannot tell"."""

ABOVE: Literal["above"] = "above"
WITHIN: Literal["within"] = "within"
UNDETERMINED: Literal["undetermined"] = "undetermined"

NO_LLM: Literal["no_llm_text_detected"] = "no_llm_text_detected"
PRESENT: Literal["llm_text_present"] = "llm_text_present"
CANNOT_TELL: Literal["cannot_tell"] = "cannot_tell"
ABOVE_TOLERANCE: Literal["above_tolerance"] = "above_tolerance"
WITHIN_TOLERANCE: Literal["within_tolerance"] = "within_tolerance"

VERDICT_RULE = (
    "a vendor's LLM share is at least the larger of its prevalence interval's lower end and the lower bound from "
    "the task's human reference, and at most the interval's upper end (the interval is widened where the "
    f"calibration does not fit the vendor's task; 0-100% with fewer than {MIN_SCORED} scored items); with a "
    "tolerance: above it when that lower end exceeds it, within it when the upper end is at or below it, cannot "
    "tell otherwise (auditor audit exits 3 when some vendor is above); without one: LLM text present when the lower "
    f"end is above 0, no LLM text detected when the upper end is below {round(100 * UNINFORMATIVE)}%, cannot tell "
    "otherwise"
)
"""The rule in one sentence, for the reports' method notes."""

TASK_REFERENCES_REMEDY = (
    "Measure the detector on this task: add human and LLM-written texts of the same task "
    "(`auditor references add --task NAME --human FILE --machine FILE`; `auditor references generate` can write "
    "the LLM side), then audit again with `auditor audit ... --task NAME`. Or recalibrate on your own labelled "
    "texts with `auditor calibrate`."
)


def share_bounds(vendor: VendorReport) -> tuple[float, float]:
    """The LLM share the vendor's verdict rests on: (at least, at most); see the module docstring."""
    return bounds_of(vendor.n_scored, vendor.prevalence, vendor.prevalence_lower_bound)


def bounds_of(n_scored: int, prevalence: Interval, lower_bound: LowerBound | None) -> tuple[float, float]:
    """(at least, at most) from a vendor's headline interval and its human-reference bound."""
    if n_scored < MIN_SCORED:
        return 0.0, 1.0
    bound = lower_bound.bound if lower_bound is not None else 0.0
    at_least = _clip(max(prevalence.ci_low, bound))
    return at_least, max(_clip(prevalence.ci_high), at_least)


def decide(at_least: float, at_most: float, tolerance: float) -> Decision:
    """Above, within or undetermined against the user's tolerance (a share in [0, 1])."""
    if at_least > tolerance:
        return ABOVE
    if at_most <= tolerance:
        return WITHIN
    return UNDETERMINED


def _clip(value: float) -> float:
    return 0.0 if math.isnan(value) else min(max(value, 0.0), 1.0)


def _percent_digits(value: float) -> int:
    return 0 if value >= 0.1 else 1


def _share(value: float, direction: Literal["down", "up"], extra_digits: int = 0) -> str:
    """``value`` (a share in [0, 1]) as a percentage, rounded down or up at the shown precision."""
    value = _clip(value)
    digits = _percent_digits(value) + extra_digits
    scale = 10**digits
    scaled = 100 * value * scale
    # a tolerance so that 0.12 (= 11.999...% in binary) is not floored to 11%
    rounded = math.floor(scaled + 1e-6) if direction == "down" else math.ceil(scaled - 1e-6)
    return f"{rounded / scale:.{digits}f}".removesuffix(".0") + "%"


def _share_beside(value: float, direction: Literal["down", "up"], tolerance: float) -> str:
    """As :func:`_share`, with more digits where the rounded value would land on the tolerance's
    wrong side (a lower bound of 10.4% above a 10% tolerance reads "at least 10.4%", not "10%")."""
    for extra in range(3):
        shown = _share(value, direction, extra)
        number = float(shown.removesuffix("%")) / 100
        if (number > tolerance) if direction == "down" else (number <= tolerance + 1e-12):
            return shown
    return shown


def _tolerance(tolerance: float) -> str:
    return f"{100 * tolerance:.4g}%"


def _shown_above_zero(value: float | None) -> bool:
    return value is not None and _share(value, "down") != "0%"


def _level(level: float) -> str:
    return f"{round(100 * level):d}%"


def verdict_for(vendor: VendorReport, level: float, tolerance: float | None = None) -> Verdict:
    """The verdict on one vendor (see the module docstring for the rule); ``level`` is the
    report's interval level (``methods.interval_level``), quoted in the reason; ``tolerance`` the
    user's largest acceptable LLM share, if any."""
    at_least, at_most = share_bounds(vendor)
    if tolerance is None:
        verdict = _stated(vendor, level, at_least, at_most)
    else:
        verdict = _decided(vendor, level, at_least, at_most, tolerance)
    return verdict.model_copy(update={"at_least": at_least, "at_most": at_most})


def _unfamiliar(vendor: VendorReport) -> bool:
    return vendor.calibration_fit is not None and not vendor.calibration_fit.consistent


def _misfit_note(vendor: VendorReport, widened: bool = True) -> str:
    assert vendor.calibration_fit is not None
    note = (
        "the vendor's scores do not fit a mixture of the reference scores "
        f"(p = {vendor.calibration_fit.p_value:.3g}), so the detector's error rates on this task are unknown"
    )
    if not widened:
        return note
    note += " and the interval is widened to the error rates seen across kinds of text"
    if vendor.prevalence.ci_high >= 1.0:
        note += ", with no upper end: without LLM-written texts of the task, the detector may be missing its LLM text"
    return note


def _narrowing_advice() -> str:
    return "To narrow the interval, measure" + TASK_REFERENCES_REMEDY.removeprefix("Measure")


def _too_few(vendor: VendorReport) -> tuple[str, str]:
    return (
        f"only {vendor.n_scored} item(s) could be scored; a verdict needs at least {MIN_SCORED}, "
        "as the estimate from fewer rests on a handful of texts",
        f"Audit more of this vendor's items (at least {MIN_SCORED} scorable texts).",
    )


def _sentence(*parts: str) -> str:
    text = "; ".join(p for p in parts if p)
    return text[0].upper() + text[1:] + "."


def _too_few_verdict(vendor: VendorReport, cannot_tell: str, **common: Any) -> Verdict:
    reason, action = _too_few(vendor)
    misfit = _misfit_note(vendor, widened=False) if _unfamiliar(vendor) else ""
    return Verdict(
        status=CANNOT_TELL,
        headline=f"{cannot_tell}: only {vendor.n_scored} item(s) scored",
        reason=_sentence(reason, misfit),
        next_action=_with_advice(vendor, action),
        **common,
    )


def _with_advice(vendor: VendorReport, action: str) -> str:
    return action + (" " + _narrowing_advice() if _unfamiliar(vendor) else "")


# ------------------------------------------------------------------ without a tolerance


def _stated(vendor: VendorReport, level: float, at_least: float, at_most: float) -> Verdict:
    unfamiliar = _unfamiliar(vendor)
    if vendor.n_scored < MIN_SCORED:
        return _too_few_verdict(vendor, "Cannot tell")
    if _shown_above_zero(at_least):
        return _present(vendor, level)
    shown = _share(at_most, "up")
    reason = (
        f"the {_level(level)} interval of the LLM share reaches down to 0% "
        f"(estimate {_share(vendor.prevalence.estimate, 'up')}, at most {shown})"
    )
    bound = vendor.prevalence_lower_bound
    if bound is not None:
        reason += (
            f", and the human reference of the task ({bound.n_human_reference} texts) gives no lower bound above 0%"
        )
    if at_most < UNINFORMATIVE:
        return Verdict(
            status=NO_LLM,
            headline=f"No LLM text detected (at most {shown})",
            reason=_sentence(reason, _misfit_note(vendor) if unfamiliar else "")[:-1]
            + ". Some LLM text up to that share cannot be ruled out.",
            next_action=_with_advice(vendor, "Nothing to do now; keep auditing this vendor's new batches."),
        )
    return Verdict(
        status=CANNOT_TELL,
        headline=f"Cannot tell: anywhere from 0% to {shown} of items may be LLM-written",
        reason=_sentence(reason, _misfit_note(vendor) if unfamiliar else ""),
        next_action=f"Audit more of this vendor's items. {_narrowing_advice()}",
    )


def _evidence(vendor: VendorReport, level: float) -> list[tuple[float, str]]:
    """What puts the share above 0, largest first: the interval's lower end, the human-reference bound."""
    evidence = []
    low = vendor.prevalence.ci_low
    if _shown_above_zero(low):
        evidence.append(
            (
                low,
                f"the {_level(level)} interval of the corrected LLM share starts at {_share(low, 'down')} "
                f"(estimate {_share(vendor.prevalence.estimate, 'down')})",
            )
        )
    bound = vendor.prevalence_lower_bound
    if bound is not None and _shown_above_zero(bound.bound):
        evidence.append(
            (
                bound.bound,
                f"the task's human reference ({bound.n_human_reference} texts) puts a "
                f"{_level(bound.level)} one-sided lower bound at {_share(bound.bound, 'down')}",
            )
        )
    evidence.sort(key=lambda e: -e[0])
    return evidence


def _review_action(vendor: VendorReport) -> str:
    action = "Review the top flagged items listed in this report"
    if vendor.top_workers:
        named = ", ".join(vendor.top_workers[:3])
        more = f" and {len(vendor.top_workers) - 3} more" if len(vendor.top_workers) > 3 else ""
        action += f" and the workers most likely to use an LLM ({named}{more})"
    return action + "; raise the confirmed cases with the vendor."


def _present(vendor: VendorReport, level: float) -> Verdict:
    evidence = _evidence(vendor, level)
    best = evidence[0][0]
    reason = _sentence(*(text for _, text in evidence), _misfit_note(vendor) if _unfamiliar(vendor) else "")
    return Verdict(
        status=PRESENT,
        headline=f"LLM text present: at least {_share(best, 'down')} of items",
        reason=reason,
        next_action=_with_advice(vendor, _review_action(vendor)),
    )


# ------------------------------------------------------------------ against a tolerance


def _decided(vendor: VendorReport, level: float, at_least: float, at_most: float, tolerance: float) -> Verdict:
    decision = decide(at_least, at_most, tolerance)
    yours = f"your {_tolerance(tolerance)} tolerance"
    unfamiliar = _unfamiliar(vendor)
    misfit = _misfit_note(vendor) if unfamiliar else ""
    common = {"decision": decision, "tolerance": tolerance}
    if vendor.n_scored < MIN_SCORED:
        return _too_few_verdict(vendor, f"Cannot tell against {yours}", **common)
    interval = (
        f"the {_level(level)} interval of the corrected LLM share is "
        f"{_share(vendor.prevalence.ci_low, 'down')}-{_share(vendor.prevalence.ci_high, 'up')} "
        f"(estimate {_share(vendor.prevalence.estimate, 'down')})"
    )
    bound = vendor.prevalence_lower_bound
    from_reference = (
        f"the task's human reference ({bound.n_human_reference} texts) puts a {_level(bound.level)} one-sided "
        f"lower bound at {_share(bound.bound, 'down')}"
        if bound is not None
        else ""
    )
    if decision == ABOVE:
        shown = _share_beside(at_least, "down", tolerance)
        return Verdict(
            status=ABOVE_TOLERANCE,
            headline=f"Above {yours}: at least {shown} of items are LLM-written",
            reason=_sentence(
                f"the LLM share is at least {shown}, above {_tolerance(tolerance)}", interval, from_reference, misfit
            ),
            next_action=_with_advice(vendor, _review_action(vendor)),
            **common,
        )
    if decision == WITHIN:
        shown = _share_beside(at_most, "up", tolerance)
        return Verdict(
            status=WITHIN_TOLERANCE,
            headline=f"Within {yours}: at most {shown} of items are LLM-written",
            reason=_sentence(
                f"the LLM share is at most {shown}, within {_tolerance(tolerance)}", interval, from_reference, misfit
            ),
            next_action=_with_advice(vendor, "Nothing to do now; keep auditing this vendor's new batches."),
            **common,
        )
    low, high = _share(at_least, "down"), _share(at_most, "up")
    action = "Audit more of this vendor's items."
    if unfamiliar or bound is None:
        action += " " + _narrowing_advice()
    return Verdict(
        status=CANNOT_TELL,
        headline=f"Cannot tell against {yours}: between {low} and {high} of items are LLM-written",
        reason=_sentence(
            f"the LLM share lies between {low} and {high}, an interval that spans {_tolerance(tolerance)}",
            interval,
            from_reference,
            misfit,
        ),
        next_action=action,
        **common,
    )
