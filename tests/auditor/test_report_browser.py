"""The HTML report as a reader sees it: rendered from a synthetic Report (three vendors, one per
verdict; no LM), opened in headless Chromium at 400 px and 1280 px.

Set SAVE_REPORT_SCREENSHOTS=1 to also keep the first-screen screenshots in benchmarks/results/.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from auditor.report.models import (
    BehaviourSummary,
    Diversity,
    DuplicateCluster,
    InputFile,
    ItemEvidence,
    Methods,
    Report,
    ReportWarning,
    VendorReport,
    WorkerReport,
)
from auditor.report.render import render_html, render_markdown
from auditor.report.verdict import verdict_for
from auditor.stats import CalibrationFit, Interval, LowerBound

LEVEL = 0.9
WIDTHS = {400: 860, 1280: 800}  # viewport width -> height
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
LONG_ID = "w-9f8e7d6c5b4a39281706f5e4d3c2b1a0e1f2a3b4c5d6e7f8091a2b3c4d5e6f70"


def interval(estimate: float, low: float, high: float) -> Interval:
    return Interval(estimate=estimate, ci_low=low, ci_high=high)


def workers(prefix: str, n: int, likely: int) -> list[WorkerReport]:
    out = []
    for i in range(n):
        p = 0.9 - 0.1 * i if i < likely else 0.2 / (i + 1)
        out.append(
            WorkerReport(
                worker=LONG_ID if i == 1 else f"{prefix}{i:02d}",
                n_items=20 + i,
                n_flagged=max(0, 12 - 3 * i),
                mean_probability=round(0.8 - 0.07 * i, 3),
                prevalence=interval(max(0.0, 0.6 - 0.1 * i), max(0.0, 0.4 - 0.1 * i), min(1.0, 0.8 - 0.05 * i)),
                p_uses_llm=round(p, 3),
                in_duplicate_clusters=1 if i < 2 else 0,
                behaviour={"time_on_task_s": 40.0 + i, "chars_per_second": 3.5, "pasted": 0.0},
            )
        )
    return out


def vendor(name: str, **fields) -> VendorReport:
    defaults = {
        "vendor": name,
        "n_items": 200,
        "n_scored": 198,
        "n_skipped": 2,
        "n_flagged": 9,
        "flag_rate": interval(0.045, 0.025, 0.075),
        "prevalence": interval(0.0, 0.0, 0.04),
        "score_histogram": [30, 40, 35, 25, 20, 12, 8, 6, 5, 4, 3, 2, 2, 1, 1, 1, 1, 1, 0, 1],
    }
    report = VendorReport(**(defaults | fields))
    report.verdict = verdict_for(report, LEVEL)
    return report


def synthetic_report() -> Report:
    present = vendor(
        "acme-labels",
        n_flagged=61,
        flag_rate=interval(0.31, 0.26, 0.36),
        prevalence=interval(0.42, 0.33, 0.51),
        calibration_fit=CalibrationFit(consistent=True, p_value=0.41, statistic=12.3, method="G-test, bootstrap"),
        prevalence_lower_bound=LowerBound(
            bound=0.27, level=LEVEL, threshold=0.8, n_human_reference=150, method="Clopper-Pearson"
        ),
        prevalence_from_flags=interval(0.42, 0.33, 0.51),
        prevalence_score_mixture=interval(0.4, 0.3, 0.5),
        batches=[
            {
                "batch": f"2024-0{i}",
                "n_scored": 66,
                "n_flagged": 20,
                "flag_rate": interval(0.3, 0.2, 0.4).model_dump(),
                "prevalence": interval(0.4, 0.3, 0.5).model_dump(),
            }
            for i in (1, 2, 3)
        ],
        workers=workers("acme-w", 8, likely=3),
        top_workers=["acme-w00", LONG_ID, "acme-w02"],
        duplicate_clusters=[
            DuplicateCluster(
                cluster=3,
                size=3,
                workers=["acme-w00", LONG_ID],
                vendors=["acme-labels"],
                mean_probability=0.93,
                example="Certainly! Here is a concise summary of the key points: " * 4,
                item_ids=["a1", "a2", "a3"],
            )
        ],
        top_flagged=[
            ItemEvidence(
                item_id=f"item-{LONG_ID}",
                vendor="acme-labels",
                worker=LONG_ID,
                llm_probability=0.987,
                flag_reason="llm_probability 0.987 > threshold 0.8123",
                signals_fired=["fast_detectgpt", "burstiness"],
                highlighted_spans=[{"start": 0, "end": 56, "fast_detectgpt": 3.2}],
                behaviour={"time_on_task_s": 12.0, "chars_per_second": 41.2},
                text="Certainly! Here is a concise summary of the key points. " + "The answer delves into it. " * 12,
            )
        ],
        diversity=Diversity(
            n_texts=198, distinct_1=0.21, distinct_2=0.52, compression_ratio=3.1, mean_pairwise_similarity=0.44
        ),
        behaviour=BehaviourSummary(
            columns={"time": "seconds", "paste": "pasted"},
            flagged={"items": 61, "median_time_on_task_s": 14.0, "median_chars_per_second": 22.0, "share_pasted": 0.7},
            not_flagged={
                "items": 137,
                "median_time_on_task_s": 95.0,
                "median_chars_per_second": 3.1,
                "share_pasted": 0.05,
            },
            notes=["23 item(s) hold more than 8 characters per second of total task time (faster than typing)"],
        ),
    )
    clean = vendor(
        "brightpath",
        calibration_fit=CalibrationFit(consistent=True, p_value=0.63, statistic=8.1, method="G-test, bootstrap"),
        prevalence_lower_bound=LowerBound(
            bound=0.0, level=LEVEL, threshold=None, n_human_reference=150, method="Clopper-Pearson"
        ),
        prevalence_score_mixture=interval(0.01, 0.0, 0.05),
        workers=workers("bp-", 4, likely=0),
    )
    unfamiliar = vendor(
        "northwind-translations-emea",
        n_flagged=40,
        flag_rate=interval(0.2, 0.15, 0.26),
        prevalence=interval(0.18, 0.0, 0.62),
        calibration_fit=CalibrationFit(consistent=False, p_value=0.0004, statistic=41.0, method="G-test, bootstrap"),
        calibration_advice="The detector's error rates on this vendor's task are unknown: add references with "
        "`auditor references add --task NAME --human FILE --machine FILE` and audit with `--task NAME`.",
        prevalence_score_mixture=interval(0.2, 0.05, 0.45),
    )
    return Report(
        created_at="2025-01-31T12:00:00+00:00",
        inputs=[InputFile(path=f"/data/deliveries/{LONG_ID}/batch.csv", rows_read=600, bytes=123456, sha256="ab" * 32)],
        columns={"text": "answer", "vendor": "vendor", "worker": "worker", "time": "seconds"},
        configuration={"task": None},
        models={
            "classifier": {"id": "classifier-v2"},
            "perplexity": {"id": "smollm2-135m", "params": {"model": "SmolLM2-135M"}},
            "near_duplicates": {"id": "minhash-5gram"},
            "model_dir": "/root/.cache/llm-auditor/models/default",
        },
        methods=Methods(
            interval_level=LEVEL,
            primary="flags",
            flag_rate="Wilson score interval",
            prevalence="flags corrected for the error rates",
            prevalence_score_mixture="mixture of the reference score histograms",
            workers="beta-binomial shrinkage",
            error_rates={
                "threshold": 0.8123,
                "false_positives": 12,
                "n_human": 1000,
                "true_positives": 700,
                "n_machine": 1000,
                "source": "held-out calibration texts",
            },
        ),
        totals={"rows": 600, "vendors": 3, "workers": 12, "flagged": 110},
        vendors=[present, clean, unfamiliar],
        warnings=[
            ReportWarning(
                kind="small_vendor",
                count=1,
                message="vendors with fewer than 30 scored items: their intervals are wide",
                examples=[f"{LONG_ID}: 3 item(s)"],
            )
        ],
    )


@pytest.fixture(scope="module")
def report() -> Report:
    return synthetic_report()


def test_the_synthetic_vendors_cover_the_three_verdicts(report):
    statuses = [v.verdict.status for v in report.vendors if v.verdict]
    assert statuses == ["llm_text_present", "no_llm_text_detected", "cannot_tell"]
    assert report.vendors[0].verdict and report.vendors[0].verdict.headline == "LLM text present: at least 33% of items"


def test_markdown_leads_with_the_verdicts(report):
    markdown = render_markdown(report)
    lines = markdown.splitlines()
    assert lines[0] == "# LLM contamination audit" and lines[2] == "## Verdicts"
    first_table = markdown.index("| vendor |")
    for v in report.vendors:
        assert v.verdict and markdown.index(v.verdict.headline) < first_table
        assert f"- Next: {v.verdict.next_action}" in markdown
    assert "? Cannot tell" in markdown and "✓ No LLM text detected" in markdown and "⚠ LLM text present" in markdown
    assert "at least (human reference)" in markdown and "calibration fit" in markdown


def test_a_report_without_verdicts_still_renders(report):
    old = report.model_copy(update={"vendors": [v.model_copy(update={"verdict": None}) for v in report.vendors]})
    assert "no verdict stored in this report" in render_markdown(old)
    assert "No verdict is stored in this report" in render_html(old)


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def pages(report, tmp_path_factory):
    """The rendered report opened at each width: {width: playwright Page}."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium binary found (apt-get install -y chromium chromium-driver, or set CHROMIUM_PATH)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (.[dev])")
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_html(report))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        opened = {}
        for width, height in WIDTHS.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            opened[width] = page
        yield opened
        browser.close()


def test_screenshots_show_the_verdicts_first(pages, tmp_path):
    keep = os.environ.get("SAVE_REPORT_SCREENSHOTS") == "1"
    for width, page in pages.items():
        shot = tmp_path / f"report_{width}px.png"
        page.screenshot(path=str(shot))
        page.screenshot(path=str(tmp_path / f"report_{width}px_full.png"), full_page=True)
        assert shot.stat().st_size > 10_000
        if keep:
            RESULTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, RESULTS / shot.name)


def test_every_verdict_headline_is_on_the_first_screen(pages, report):
    for width, page in pages.items():
        height = page.evaluate("window.innerHeight")
        for v in report.vendors:
            assert v.verdict
            headline = page.locator(f'li.verdict[data-vendor="{v.vendor}"] .verdict-headline')
            assert headline.inner_text().strip() == v.verdict.headline
            assert headline.is_visible(), (width, v.vendor)
            box = headline.bounding_box()
            assert box is not None and box["width"] > 0
            if width == 1280:
                assert box["y"] < height, (v.vendor, box, height)
            # the status is also said in words, not by the card's colour alone
            badge = page.locator(f'li.verdict[data-vendor="{v.vendor}"] .badge').inner_text()
            assert {"llm_text_present": "LLM text present", "no_llm_text_detected": "No LLM text detected"}.get(
                v.verdict.status, "Cannot tell"
            ) in badge
    first_verdict = pages[400].locator("li.verdict").first.bounding_box()
    assert first_verdict and first_verdict["y"] < WIDTHS[400], "the first verdict is on the phone's first screen"


def test_no_horizontal_overflow_at_400px(pages):
    page = pages[400]
    scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width <= inner_width + 1
    wider = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > window.innerWidth + 1)
            .map(e => e.tagName + '.' + e.className)"""
    )
    assert wider == [], "only the scroll containers of wide tables may be wider than the screen"
    assert page.evaluate("[...document.images].every(i => i.getBoundingClientRect().width <= window.innerWidth)")
    # a wide table scrolls, but its caption stays on the screen, wrapped
    assert page.evaluate(
        "[...document.querySelectorAll('caption > span')].every(c => c.getBoundingClientRect().right <= window.innerWidth)"
    )


def test_tables_have_captions_and_scoped_headers(pages):
    page = pages[1280]
    tables = page.evaluate(
        """() => [...document.querySelectorAll('table')].map(t => ({
            caption: (t.caption && t.caption.textContent.trim()) || '',
            unscoped: [...t.querySelectorAll('th')].filter(th => !['col', 'row'].includes(th.scope)).length,
            in_scroll: !!t.closest('.scroll'),
        }))"""
    )
    assert len(tables) >= 7
    for table in tables:
        assert table["caption"] and table["unscoped"] == 0 and table["in_scroll"], table


def test_page_metadata(pages):
    page = pages[400]
    assert page.evaluate("document.documentElement.lang") == "en"
    viewport = page.locator('meta[name="viewport"]').get_attribute("content")
    assert viewport == "width=device-width, initial-scale=1"
    assert page.locator("h2", has_text="Caveats").is_visible()


CONTRAST = """() => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = e => {
    for (; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || c[3] > 0) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const failures = [];
  for (const e of document.querySelectorAll('body *')) {
    const text = [...e.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent.trim()).join('');
    if (!text) continue;
    const fg = lum(rgb(getComputedStyle(e).color)), bg = lum(background(e));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < 4.5) failures.push(`${e.tagName}.${e.className}: ${ratio.toFixed(2)} "${text.slice(0, 40)}"`);
  }
  return failures;
}"""


def test_all_text_meets_wcag_aa_contrast(pages):
    assert pages[1280].evaluate(CONTRAST) == []
