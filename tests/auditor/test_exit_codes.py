"""Exit codes for pipelines: `auditor audit --fail-above/--allow-partial` (0, 2, 3, 4, 5 on real
files: an empty text column, a truncated .gz) and `auditor gate --on-inconclusive`."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from auditor.cli import AUDIT_EXIT_CODES, GATE_EXIT_CODES, app, audit_exit_code
from auditor.reader import write_table
from auditor.report.models import Report, VendorReport
from auditor.report.verdict import verdict_for
from auditor.stats import Interval, LowerBound

runner = CliRunner()


def test_the_exit_code_tables_are_in_the_help():
    assert set(AUDIT_EXIT_CODES) == {0, 2, 3, 4, 5} and set(GATE_EXIT_CODES) == {0, 1, 2, 3}
    shown = runner.invoke(app, ["audit", "--help"], env={"COLUMNS": "300"}).output
    for code in AUDIT_EXIT_CODES:
        assert f"{code}: " in shown
    assert "--tolerance" in shown and "--fail-above" in shown and "--allow-partial" in shown
    assert "prevalence_lower_bound.bound" in shown and "verdict.decision" in shown
    gate_help = runner.invoke(app, ["gate", "--help"], env={"COLUMNS": "300"}).output
    assert "--on-inconclusive" in gate_help and all(f"{code}: " in gate_help for code in GATE_EXIT_CODES)
    assert "--max-synthetic" in gate_help and "--tolerance" in gate_help


def vendor(name: str, ci_low: float, bound: float | None = None, tolerance: float | None = None) -> VendorReport:
    lower = None
    if bound is not None:
        lower = LowerBound(bound=bound, level=0.9, threshold=0.5, n_human_reference=50, method="test")
    report = VendorReport.model_construct(
        vendor=name,
        n_scored=100,
        prevalence=Interval(estimate=ci_low + 0.1, ci_low=ci_low, ci_high=ci_low + 0.2),
        prevalence_lower_bound=lower,
        calibration_fit=None,
        top_workers=[],
    )
    report.verdict = verdict_for(report, 0.9, tolerance)
    return report


def report_of(by_status: dict[str, int], *vendors: VendorReport) -> Report:
    totals = {"rows": sum(by_status.values()), "by_status": by_status}
    return Report.model_construct(totals=totals, vendors=list(vendors))


@pytest.mark.parametrize(
    ("by_status", "tolerance", "allow_partial", "code"),
    [
        ({"scored": 10}, None, False, 0),
        ({"scored": 10}, 0.25, False, 3),  # b's own bound (0.3) is above its ci_low (0.05)
        ({"scored": 10}, 0.35, False, 0),
        ({"scored": 10, "unreadable": 1}, 0.25, False, 5),
        ({"scored": 10, "unreadable": 1}, 0.25, True, 3),
        ({"scored": 10, "unreadable": 1}, None, True, 0),
        ({"skipped": 4, "unreadable": 2}, None, False, 4),
        ({"skipped": 4}, None, True, 0),
    ],
)
def test_exit_code_precedence_and_the_lower_bound(by_status, tolerance, allow_partial, code):
    report = report_of(
        by_status, vendor("a", 0.2, tolerance=tolerance), vendor("b", 0.05, bound=0.3, tolerance=tolerance)
    )
    assert audit_exit_code(report, allow_partial) == code


@pytest.mark.parametrize("tolerance", [0.0, 0.05, 0.1, 0.2, 0.25, 0.3, 0.35, 0.5, 1.0])
def test_exit_three_exactly_when_a_stored_decision_is_above(tolerance, capsys):
    """One rule: the code reads the verdicts' decisions, and each vendor named on stderr is one
    whose report.json verdict says above (its headline is what is printed)."""
    vendors = [vendor("a", 0.2, tolerance=tolerance), vendor("b", 0.05, bound=0.3, tolerance=tolerance)]
    above = [v.vendor for v in vendors if v.verdict and v.verdict.decision == "above"]
    code = audit_exit_code(report_of({"scored": 10}, *vendors), False)
    assert code == (3 if above else 0)
    named = [line for line in capsys.readouterr().err.splitlines() if "above --tolerance" in line]
    assert [line.split(":", 1)[1].split()[0] for line in named] == above
    for v, line in zip([v for v in vendors if v.vendor in above], named, strict=True):
        assert v.verdict and v.verdict.headline in line


def test_usage_errors_stay_two(tmp_path):
    delivery = write_table(pd.DataFrame({"text": ["a"], "vendor": ["v"]}), tmp_path / "d.csv")
    missing = runner.invoke(
        app, ["audit", str(delivery), "--text-col", "answer", "--vendor-col", "vendor", "--out", str(tmp_path / "o")]
    )
    assert missing.exit_code == 2 and "--text-col 'answer'" in missing.output
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 nothing else")
    unreadable = runner.invoke(
        app, ["audit", str(broken), "--text-col", "text", "--vendor-col", "vendor", "--out", str(tmp_path / "o")]
    )
    assert unreadable.exit_code == 2 and "no input file could be read" in unreadable.output
    assert not (tmp_path / "o" / "report.json").exists()


# ------------------------------------------------------------------ audits with the causal LM


@pytest.fixture(scope="module")
def texts(mini_corpus):
    pool = mini_corpus[
        (mini_corpus.split == "test")
        & (mini_corpus.dataset == "l2r_rewrites")
        & mini_corpus.text.str.len().between(300, 1200)
    ]
    human = pool[pool.label == 0].sample(12, random_state=11).text.tolist()
    machine = pool[pool.label == 1].sample(12, random_state=11).text.tolist()
    return human, machine


def run_audit(source, out, *extra):
    args = ["audit", str(source), "--text-col", "text", "--vendor-col", "vendor", "--out", str(out), *extra]
    return runner.invoke(app, args)


@pytest.mark.lm
def test_an_empty_text_column_scores_nothing_and_exits_four(tmp_path, texts):
    human, _ = texts
    empty = tmp_path / "empty.csv"
    empty.write_text("id,vendor,text\n" + "".join(f"r{i},acme,\n" for i in range(len(human))))
    result = run_audit(empty, tmp_path / "out")
    assert result.exit_code == 4, result.output
    assert "no row was scored" in result.output and (tmp_path / "out" / "report.json").exists()
    accepted = run_audit(empty, tmp_path / "accepted", "--allow-partial")
    assert accepted.exit_code == 0, accepted.output
    assert "warning:" in accepted.output and "no row was scored" in accepted.output


@pytest.mark.lm
def test_a_truncated_gzip_loses_rows_and_exits_five(tmp_path, texts):
    human, machine = texts
    rows = [{"id": f"r{i}", "vendor": "acme", "text": t} for i, t in enumerate(human + machine)]
    whole = gzip.compress(("\n".join(json.dumps(r) for r in rows) + "\n").encode())
    cut = tmp_path / "delivery.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    result = run_audit(cut, tmp_path / "out")
    assert result.exit_code == 5, result.output
    assert "could not be read" in result.output
    items = pd.read_parquet(tmp_path / "out" / "items.parquet")
    assert 0 < (items.status == "scored").sum() < len(rows) and (items.status == "unreadable").sum() >= 1
    accepted = run_audit(cut, tmp_path / "accepted", "--allow-partial")
    assert accepted.exit_code == 0 and "warning:" in accepted.output


@pytest.mark.lm
def test_the_tolerance_decides_the_verdicts_and_the_exit_code_alike(tmp_path, texts):
    """--fail-above (the older name) and --tolerance are one option; the vendor above the tolerance is
    `above` in report.json, in the printed headline and in the exit code; one whose interval spans it
    is `undetermined`."""
    human, machine = texts
    rows = [{"vendor": "careful", "text": t} for t in human] + [{"vendor": "pasting", "text": t} for t in machine]
    delivery = write_table(pd.DataFrame(rows), tmp_path / "delivery.csv")
    clean = run_audit(delivery, tmp_path / "a", "--fail-above", "0.99")
    assert clean.exit_code == 0, clean.output
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    verdicts = {v["vendor"]: v["verdict"] for v in report["vendors"]}
    assert report["configuration"]["tolerance"] == 0.99 and "above" not in {v["decision"] for v in verdicts.values()}
    pasting, careful = verdicts["pasting"], verdicts["careful"]
    assert pasting["at_least"] > 0.2  # the premise: twelve LLM answers
    above = run_audit(delivery, tmp_path / "b", "--tolerance", "0.2")
    assert above.exit_code == 3, above.output
    decided = {v["vendor"]: v["verdict"] for v in json.loads((tmp_path / "b" / "report.json").read_text())["vendors"]}
    assert decided["pasting"]["decision"] == "above" and decided["pasting"]["status"] == "above_tolerance"
    assert f"verdict: {decided['pasting']['headline']}" in above.output
    named = [line for line in above.output.splitlines() if "above --tolerance" in line]
    assert len(named) == 1 and "pasting" in named[0]
    # a tolerance inside the careful vendor's interval: undetermined, and no exit 3 for it
    inside = (careful["at_least"] + careful["at_most"]) / 2
    spanned = run_audit(delivery, tmp_path / "c", "--tolerance", f"{inside:.6f}")
    decided = {v["vendor"]: v["verdict"] for v in json.loads((tmp_path / "c" / "report.json").read_text())["vendors"]}
    assert decided["careful"]["decision"] == "undetermined" and decided["careful"]["status"] == "cannot_tell"
    assert spanned.exit_code == (3 if decided["pasting"]["decision"] == "above" else 0), spanned.output


# ------------------------------------------------------------------ gate --on-inconclusive (fast n-gram scorer)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, mini_corpus):
    """Two shards judged on a ten-document sample: too few for the interval to leave --max-synthetic
    0.2, so both are inconclusive; one is clean (point estimate below), one is 60% LLM-written (above)."""
    test = mini_corpus[(mini_corpus.split == "test") & mini_corpus.text.str.len().between(80, 3000)]
    human, machine = test[test.label == 0].text.tolist(), test[test.label == 1].text.tolist()
    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("shards")
    paths = {}
    for name, share in (("clean", 0.0), ("mixed", 0.6)):
        k = int(400 * share)
        docs = [human[i] for i in rng.choice(len(human), 400 - k)] + [machine[i] for i in rng.choice(len(machine), k)]
        rng.shuffle(docs)
        paths[name] = root / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return paths


def gate(shards, out, *extra):
    """The shards are named relative to their folder (the test chdirs there): a shard's sample
    depends on its name, which must not change with pytest's temporary directory."""
    args = ["gate", shards["clean"].name, shards["mixed"].name, "--max-synthetic", "0.2", "--max-scored", "10"]
    result = runner.invoke(app, [*args, "--manifest", str(out / "m.json"), *extra])
    manifest = json.loads((out / "m.json").read_text())
    return result, {s["shard"].split("/")[-1]: s for s in manifest["shards"]}


def test_on_inconclusive_chooses_where_the_estimate_decided_before(tmp_path, shards, monkeypatch):
    monkeypatch.chdir(shards["clean"].parent)
    default, judged = gate(shards, tmp_path)
    assert not judged["clean.jsonl"]["conclusive"] and not judged["mixed.jsonl"]["conclusive"]
    assert judged["mixed.jsonl"]["synthetic"]["estimate"] > 0.2 >= judged["clean.jsonl"]["synthetic"]["estimate"]
    assert default.exit_code == 1, default.output  # today's behaviour: decided on the point estimate
    assert judged["clean.jsonl"]["decision"] == "pass" and judged["mixed.jsonl"]["decision"] == "reject"
    explicit = gate(shards, tmp_path, "--on-inconclusive", "estimate")[1]
    assert {k: v["decision"] for k, v in explicit.items()} == {k: v["decision"] for k, v in judged.items()}

    quarantine = tmp_path / "quarantine"
    passed, judged = gate(shards, tmp_path, "--on-inconclusive", "pass", "--quarantine", str(quarantine))
    assert passed.exit_code == 0, passed.output
    assert {s["decision"] for s in judged.values()} == {"pass"} and judged["mixed.jsonl"]["rejected_for"] == []
    assert any("--on-inconclusive pass" in r for r in judged["mixed.jsonl"]["reasons"])
    assert judged["mixed.jsonl"]["quarantine"] is None and not list(quarantine.glob("*.jsonl"))

    held = tmp_path / "held"
    rejected, judged = gate(shards, tmp_path, "--on-inconclusive", "reject", "--quarantine", str(held))
    assert rejected.exit_code == 1, rejected.output
    assert {s["decision"] for s in judged.values()} == {"reject"}
    assert judged["mixed.jsonl"]["flagged"] > 0 and judged["mixed.jsonl"]["quarantine"] is not None
    assert len(list(held.glob("*"))) >= 1  # the shards it rejects have their flagged documents quarantined
    assert judged["clean.jsonl"]["rejected_for"] == ["synthetic_share"]
    assert any("--on-inconclusive reject" in r for r in judged["clean.jsonl"]["reasons"])
    assert "--on-inconclusive" in rejected.output  # the per-shard lines already show the settled decision
    manifest = json.loads((tmp_path / "m.json").read_text())
    assert manifest["policy"]["on_inconclusive"] == "reject"  # the manifest records how it was decided
