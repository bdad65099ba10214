"""The Python API: `from auditor import audit, score, Report, AuditResult, __version__`, the same audit as
`auditor audit` (same report from a DataFrame as from the CSV of its rows), and an import that
stays light."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from importlib import metadata

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import auditor
from auditor import AuditResult, Report, __version__, audit, score
from auditor.cli import app
from auditor.reader import write_table

runner = CliRunner()


def test_import_auditor_loads_neither_torch_nor_pandas():
    code = (
        "import sys, auditor\n"
        "assert 'torch' not in sys.modules and 'pandas' not in sys.modules, sorted(sys.modules)\n"
        "from auditor import audit, score, Report, AuditResult, __version__\n"
        "assert 'torch' not in sys.modules\n"
        "print(__version__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == metadata.version("llm-contamination-auditor")


def test_version_is_the_installed_distribution_and_the_cli_prints_it():
    assert __version__ == auditor.__version__ == metadata.version(auditor.DISTRIBUTION)
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"auditor {__version__}"


def test_audit_is_the_function_and_its_machinery_is_auditor_auditing():
    import inspect

    import auditor.auditing
    from auditor import audit as again
    from auditor.python_api import audit as api_audit

    assert audit is again is api_audit is auditor.audit
    assert {"frame_or_paths", "text_col", "vendor_col", "level", "out", "model"} <= set(
        inspect.signature(audit).parameters
    )
    assert "DataFrame" in (audit.__doc__ or "")
    assert callable(auditor.auditing.run_audit) and not hasattr(audit, "run_audit")


def test_report_is_the_one_report_class_and_audit_returns_an_audit_result():
    import auditor.report
    import auditor.report.models

    assert Report is auditor.Report is auditor.report.Report is auditor.report.models.Report
    assert AuditResult.__name__ == "AuditResult" and AuditResult is not Report


# ------------------------------------------------------------------ with the causal LM


@pytest.fixture(scope="module")
def delivery(mini_corpus) -> pd.DataFrame:
    """Two vendors of real texts: 'careful' writes its own, 'hasty' pastes LLM rewrites for most items."""
    pool = mini_corpus[
        (mini_corpus.dataset == "l2r_rewrites")
        & (mini_corpus.split == "test")
        & mini_corpus.text.str.len().between(300, 1200)
    ]
    human = pool[pool.label == 0].sample(16, random_state=5).text.tolist()
    machine = pool[pool.label == 1].sample(12, random_state=5).text.tolist()
    rows = [{"id": f"c{i}", "vendor": "careful", "worker": f"c{i % 4}", "answer": t} for i, t in enumerate(human[:12])]
    rows += [{"id": f"h{i}", "vendor": "hasty", "worker": f"h{i % 3}", "answer": t} for i, t in enumerate(machine)]
    rows += [{"id": f"x{i}", "vendor": "hasty", "worker": "h0", "answer": t} for i, t in enumerate(human[12:])]
    return pd.DataFrame(rows)


COLUMNS = {"text_col": "answer", "vendor_col": "vendor", "worker_col": "worker", "id_col": "id"}


def comparable(report: dict) -> dict:
    """What must agree between two audits of the same rows: estimates, counts and fits (not
    creation times, paths, item ids or timing)."""
    vendor_keys = (
        "vendor",
        "n_items",
        "n_scored",
        "n_skipped",
        "n_flagged",
        "flag_rate",
        "prevalence",
        "calibration_fit",
        "prevalence_lower_bound",
        "prevalence_from_flags",
        "prevalence_score_mixture",
        "score_histogram",
        "verdict",
    )
    worker_keys = ("worker", "n_items", "n_flagged", "mean_probability", "prevalence", "p_uses_llm")
    return {
        "vendors": [
            {k: v.get(k) for k in vendor_keys} | {"workers": [{k: w[k] for k in worker_keys} for w in v["workers"]]}
            for v in report["vendors"]
        ],
        "totals": report["totals"],
        "methods": report["methods"],
        "warnings": sorted((w["kind"], w["count"]) for w in report["warnings"]),
    }


@pytest.fixture(scope="module")
def audited(delivery, tmp_path_factory):
    root = tmp_path_factory.mktemp("python-api")
    csv = write_table(delivery, root / "delivery.csv")
    args = ["--text-col", "answer", "--vendor-col", "vendor", "--worker-col", "worker", "--id-col", "id"]
    result = runner.invoke(app, ["audit", str(csv), *args, "--out", str(root / "cli")])
    assert result.exit_code == 0, result.output
    from_frame = audit(delivery, **COLUMNS)  # out=None: a temporary directory
    return {
        "cli": json.loads((root / "cli" / "report.json").read_text()),
        "frame": from_frame,
        "csv": csv,
        "root": root,
    }


@pytest.mark.lm
def test_a_dataframe_audits_like_the_cli_on_the_same_rows(audited):
    report = audited["frame"]
    assert isinstance(report, AuditResult) and isinstance(report.report, Report)
    assert comparable(json.loads(report.to_json())) == comparable(audited["cli"])
    assert report.report.inputs[0].path.endswith("dataframe.parquet") and report.report.inputs[0].rows_read == 28
    assert not list(report.out.glob(".input/*"))  # the staged Parquet file is temporary


@pytest.mark.lm
def test_paths_audit_like_the_cli_and_write_into_out(audited):
    out = audited["root"] / "paths"
    report = audit([audited["csv"]], **COLUMNS, out=out)
    assert comparable(report.report.model_dump(mode="json")) == comparable(audited["cli"])
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.html", "report.md", "items.parquet"}


@pytest.mark.lm
def test_report_tables_for_notebooks(audited, delivery, tmp_path):
    report = audited["frame"]
    vendors = report.vendors
    assert list(vendors.columns) == list(AuditResult.VENDOR_COLUMNS)
    assert vendors["vendor"].tolist() == ["careful", "hasty"]
    assert vendors["n_items"].tolist() == [12, 16] and vendors["n_scored"].sum() == 28
    careful, hasty = vendors.set_index("vendor").loc["careful"], vendors.set_index("vendor").loc["hasty"]
    assert hasty["prevalence"] > careful["prevalence"]
    assert (vendors["prevalence_ci_low"] <= vendors["prevalence"]).all()
    assert (vendors["prevalence"] <= vendors["prevalence_ci_high"]).all()

    items = report.items
    assert len(items) == len(delivery) and set(items["item_id"]) == set(delivery["id"])
    assert {"status", "llm_probability", "flagged", "vendor", "worker"} <= set(items.columns)

    workers = report.workers
    assert list(workers.columns) == list(AuditResult.WORKER_COLUMNS) and len(workers) == 7
    assert set(zip(workers["vendor"], workers["worker"], strict=True)) == set(
        zip(delivery["vendor"], delivery["worker"], strict=True)
    )

    summary = report._repr_html_()
    assert "careful" in summary and "hasty" in summary and "<table>" in summary
    assert "data:image/png" not in summary and len(summary) < 5000  # a summary, not the whole report
    assert "careful" in repr(report) and "2 vendor(s)" in repr(report)
    assert "data:image/png" in report.to_html()

    paths = report.save(tmp_path / "saved")
    assert {p.name for p in paths.values()} == {"report.json", "report.html", "report.md", "items.parquet"}
    assert AuditResult.load(tmp_path / "saved").vendors.equals(vendors)


@pytest.mark.lm
def test_the_tolerance_decides_alike_in_python_and_on_the_command_line(audited, delivery):
    """tolerance= is --tolerance: the same verdicts (decision, headline, interval) in both reports,
    and the command exits 3 exactly when Python's decisions hold an `above`."""
    hasty = audited["frame"].report.vendor("hasty").verdict
    assert hasty is not None and hasty.at_least is not None and hasty.at_least > 0.05  # the premise
    tolerance = 0.05
    report = audit(delivery, **COLUMNS, tolerance=tolerance)
    assert report.tolerance == tolerance and report.decisions["hasty"] == "above"
    assert report.vendors.set_index("vendor").loc["hasty", "decision"] == "above"
    assert "above your 5% tolerance" in repr(report).lower()
    args = ["--text-col", "answer", "--vendor-col", "vendor", "--worker-col", "worker", "--id-col", "id"]
    out = audited["root"] / "cli-tolerance"
    result = runner.invoke(app, ["audit", str(audited["csv"]), *args, "--tolerance", str(tolerance), "--out", str(out)])
    assert result.exit_code == 3, result.output
    cli = json.loads((out / "report.json").read_text())
    assert comparable(json.loads(report.to_json())) == comparable(cli)
    assert {v["vendor"]: v["verdict"]["decision"] for v in cli["vendors"]} == report.decisions


def test_report_tables_carry_the_verdicts(tmp_path):
    """The notebook tables read the stored verdicts (no LM: a constructed report)."""
    from auditor.report.models import Methods, VendorReport
    from auditor.report.verdict import verdict_for
    from auditor.stats import Interval

    def vendor(name: str, low: float, high: float) -> VendorReport:
        made = VendorReport(
            vendor=name,
            n_items=100,
            n_scored=100,
            n_skipped=0,
            n_flagged=10,
            flag_rate=Interval(estimate=0.1, ci_low=0.05, ci_high=0.15),
            prevalence=Interval(estimate=(low + high) / 2, ci_low=low, ci_high=high),
        )
        made.verdict = verdict_for(made, 0.9, 0.1)
        return made

    model = Report(
        created_at="2026-12-06T00:00:00+00:00",
        inputs=[],
        columns={},
        configuration={"tolerance": 0.1},
        models={},
        methods=Methods(
            interval_level=0.9,
            primary="flags",
            flag_rate="",
            prevalence="",
            prevalence_score_mixture="",
            workers="",
            error_rates={},
        ),
        totals={"rows": 300, "by_status": {"scored": 300}},
        vendors=[vendor("over", 0.22, 0.87), vendor("spans", 0.02, 0.3), vendor("under", 0.0, 0.04)],
    )
    report = AuditResult(model, tmp_path)
    assert report.tolerance == 0.1
    assert report.decisions == {"over": "above", "spans": "undetermined", "under": "within"}
    table = report.vendors.set_index("vendor")
    assert table["decision"].to_dict() == report.decisions
    assert table.loc["over", "at_least"] == 0.22 and table.loc["under", "at_most"] == 0.04
    assert table.loc["spans", "verdict"] == "cannot_tell" and table.loc["over", "headline"].startswith("Above")
    assert "Above your 10% tolerance" in report._repr_html_() and "Within your 10% tolerance" in repr(report)


@pytest.mark.lm
def test_the_temporary_directory_goes_with_the_report(delivery):
    report = audit(delivery.head(6), **COLUMNS)
    out = report.out
    assert (out / "items.parquet").exists()
    del report
    gc.collect()
    assert not out.exists()


@pytest.mark.lm
def test_score_gives_one_row_per_text(delivery, scorer):
    texts = delivery["answer"].head(5).tolist() + [""]
    scored = score(texts)
    assert len(scored) == 6 and scored["text"].tolist() == texts
    probabilities = scored["llm_probability"].to_numpy(dtype=float)
    assert ((probabilities[:5] >= 0) & (probabilities[:5] <= 1)).all() and np.isnan(probabilities[5])
    assert scored["skip_reason"].notna().tolist() == [False] * 5 + [True]
    assert scored["flagged"].dtype == bool and any(c.startswith("ppl_") for c in scored.columns)
    threshold = scorer.require_calibration().threshold
    assert (scored["flagged"].to_numpy()[:5] == (probabilities[:5] > threshold)).all()

    series = pd.Series(texts[:3], index=["a", "b", "c"])
    by_series = score(series)
    assert by_series.index.tolist() == ["a", "b", "c"]
    assert by_series["llm_probability"].tolist() == pytest.approx(scored["llm_probability"].head(3).tolist())
    with pytest.raises(TypeError):
        score("one text")
