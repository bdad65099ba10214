"""HTML and Markdown renderings of a report. They read only the Report model, so any
``report.json`` (including older ones) renders the same way."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from auditor.report.models import Report, VendorReport
from auditor.report.verdict import VERDICT_RULE
from auditor.stats import CalibrationFit, Interval, LowerBound

_env = Environment(
    loader=PackageLoader("auditor.report", "templates"), autoescape=select_autoescape(["html", "html.j2"])
)


def pct(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{100 * value:.{digits}f}%"


def interval(value: Interval | None) -> str:
    if value is None:
        return "–"
    return f"{pct(value.estimate)} [{pct(value.ci_low)}, {pct(value.ci_high)}]"


def fit(value: CalibrationFit | None) -> str:
    if value is None:
        return "n/a"
    return f"{'fits' if value.consistent else 'does not fit'} (p = {value.p_value:.3g})"


def lower_bound(value: LowerBound | None) -> str:
    return "n/a" if value is None else f"{pct(value.bound)} ({int(100 * value.level)}% one-sided)"


def code_spans(text: str | None) -> Markup:
    """Plain text with `backticked` commands set as <code>, everything else escaped."""
    parts = re.split(r"`([^`]+)`", text or "")
    return Markup("".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts)))


_env.filters["code_spans"] = code_spans
_env.filters["fit"] = fit
_env.filters["lower_bound"] = lower_bound
_env.filters["pct"] = pct
_env.filters["interval"] = interval
_env.globals["verdict_rule"] = VERDICT_RULE


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def estimates_chart(report: Report) -> str:
    vendors = report.vendors
    height = 0.9 + 0.45 * len(vendors)
    figure, axis = plt.subplots(figsize=(7.5, height))
    y = np.arange(len(vendors))[::-1]
    for offset, attribute, colour, marker, label in (
        (0.12, "prevalence", "#c0392b", "o", "prevalence (corrected), circles"),
        (-0.12, "flag_rate", "#5f6b6d", "s", "flag rate, squares"),
    ):
        values = [getattr(v, attribute) for v in vendors]
        est = np.array([v.estimate for v in values])
        err = np.array([[v.estimate - v.ci_low for v in values], [v.ci_high - v.estimate for v in values]])
        axis.errorbar(est, y + offset, xerr=np.clip(err, 0, None), fmt=marker, color=colour, capsize=3, label=label)
    tolerance = report.configuration.get("tolerance")
    if tolerance is not None:
        axis.axvline(
            float(tolerance),
            color="#1f3a93",
            linestyle="--",
            linewidth=1.2,
            label=f"your tolerance ({pct(float(tolerance))})",
        )
    axis.set_yticks(y, [f"{v.vendor} (n={v.n_scored})" for v in vendors])
    axis.set_xlim(-0.02, 1.02)
    axis.set_xlabel(f"share of items ({int(100 * report.methods.interval_level)}% intervals)")
    axis.grid(axis="x", alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    return _png(figure)


def distribution_chart(vendor: VendorReport, report: Report) -> str:
    figure, axis = plt.subplots(figsize=(7.5, 2.6))
    edges = np.linspace(0, 1, 21)
    counts = np.asarray(vendor.score_histogram, dtype=float)
    if counts.sum():
        axis.bar(
            edges[:-1],
            counts / counts.sum(),
            width=0.05,
            align="edge",
            alpha=0.75,
            color="#2c3e50",
            label=f"{vendor.vendor}",
        )
    reference = report.models.get("calibration", {}) or {}
    human = _reference_histogram(reference, "human")
    machine = _reference_histogram(reference, "machine")
    if human is not None:
        axis.step(edges[:-1], human, where="post", color="#27ae60", label="human reference")
    if machine is not None:
        axis.step(edges[:-1], machine, where="post", color="#c0392b", linestyle="--", label="LLM reference")
    threshold = report.methods.error_rates.get("threshold")
    if threshold is not None:
        axis.axvline(threshold, color="black", linewidth=1, linestyle=":", label="threshold")
    axis.set_xlabel("llm_probability")
    axis.set_ylabel("share")
    axis.legend(fontsize=7, loc="upper center")
    return _png(figure)


def _reference_histogram(calibration: dict, which: str) -> np.ndarray | None:
    """Reference score histogram (logit bins) re-expressed on 20 equal probability bins."""
    reference = calibration.get("score_reference")
    if not reference:
        return None
    edges = np.concatenate([[-np.inf], np.asarray(reference["edges"]), [np.inf]])
    counts = np.asarray(reference[f"{which}_counts"], dtype=float)
    centres = np.where(np.isfinite(edges[:-1]) & np.isfinite(edges[1:]), (edges[:-1] + edges[1:]) / 2, np.nan)
    centres[0] = edges[1] - 1 if len(edges) > 2 else 0
    centres[-1] = edges[-2] + 1 if len(edges) > 2 else 0
    probability = 1 / (1 + np.exp(-centres))
    out = np.histogram(probability, bins=np.linspace(0, 1, 21), weights=counts)[0]
    return out / out.sum() if out.sum() else None


def workers_chart(vendor: VendorReport, limit: int = 25) -> str | None:
    workers = sorted(vendor.workers, key=lambda w: -w.prevalence.estimate)[:limit]
    if len(workers) < 2:
        return None
    figure, axis = plt.subplots(figsize=(7.5, 0.8 + 0.28 * len(workers)))
    y = np.arange(len(workers))[::-1]
    est = np.array([w.prevalence.estimate for w in workers])
    err = np.array(
        [
            [w.prevalence.estimate - w.prevalence.ci_low for w in workers],
            [w.prevalence.ci_high - w.prevalence.estimate for w in workers],
        ]
    )
    likely = np.array([w.p_uses_llm >= 0.5 for w in workers])
    sizes = np.array([12 + 3 * w.n_items for w in workers])
    axis.errorbar(est, y, xerr=np.clip(err, 0, None), fmt="none", ecolor="#bbbbbb", capsize=2)
    # shape as well as colour tells the likely LLM users apart (and the tick label says it in words)
    for mask, colour, marker, label in (
        (likely, "#c0392b", "^", "P(uses an LLM) >= 0.5"),
        (~likely, "#5f6b6d", "o", "P(uses an LLM) < 0.5"),
    ):
        if mask.any():
            axis.scatter(est[mask], y[mask], c=colour, marker=marker, s=sizes[mask], zorder=3, label=label)
    axis.set_yticks(
        y,
        [f"{'▲ ' if w.p_uses_llm >= 0.5 else ''}{w.worker} ({w.n_flagged}/{w.n_items})" for w in workers],
        fontsize=7,
    )
    axis.set_xlim(-0.02, 1.02)
    axis.set_xlabel("estimated share of LLM-written items (shrunk)")
    axis.legend(fontsize=7, loc="lower right")
    axis.grid(axis="x", alpha=0.3)
    return _png(figure)


def highlight(text: str, spans: list[dict]) -> str:
    """The text with its most machine-like sentences marked."""
    out, position = [], 0
    for span in sorted(spans, key=lambda s: s["start"]):
        start, end = max(span["start"], position), span["end"]
        if start >= end:
            continue
        out.append(html.escape(text[position:start]))
        out.append(
            f'<mark title="Fast-DetectGPT z = {span.get("fast_detectgpt", 0):.2f}">{html.escape(text[start:end])}</mark>'
        )
        position = end
    out.append(html.escape(text[position:]))
    return "".join(out)


def render_html(report: Report) -> str:
    charts = {
        "estimates": estimates_chart(report),
        "distributions": {v.vendor: distribution_chart(v, report) for v in report.vendors},
        "workers": {v.vendor: workers_chart(v) for v in report.vendors},
    }
    return _env.get_template("report.html.j2").render(report=report, charts=charts, highlight=highlight)


def render_markdown(report: Report) -> str:
    return _env.get_template("report.md.j2").render(report=report)


def write_report(report: Report, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "html": out / "report.html", "md": out / "report.md"}
    paths["json"].write_text(report.model_dump_json(indent=2))
    paths["html"].write_text(render_html(report))
    paths["md"].write_text(render_markdown(report))
    return paths
