"""A detector added from outside the auditor: declared, registered and named in a setting, with no
edit to the schema, the scorer or the report code, its column reaches items.parquet, the report's
evidence and the service's answers.

The toy detector lives in this module only: it counts exclamation marks (``exclamation_rate``,
higher is more machine-like). It is registered for this module and configured as a user would,
with ``AUDITOR_DETECTORS``; audits run on the fast n-gram model (no causal LM), directly
(``run_audit``, which writes items.parquet) and as a REST job run by a worker, in-process
(tests/api/conftest.py's ``app`` and ``client``). Its signal fires in the evidence of a flagged
item when the item's rate is above the human 95th percentile, which a copy of the fast model's
calibration records for it (``signal_reference`` from human texts, as calibration does)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditor.auditing.options import AuditColumns, AuditOptions
from auditor.auditing.run import run_audit
from auditor.auditing.work import plan
from auditor.calibration import load_calibration, save_calibration, signal_reference
from auditor.config import Settings
from auditor.scoring import ITEMS, SCORED, Scorer
from detectors import SCORE, Detector, OutputColumn, machine_directions, register, unregister
from detectors.ngram import default_fast_dir

TOY = "toy-exclamations"
SIGNAL = "exclamation_rate"


class ExclamationDetector(Detector):
    """Exclamation marks per 100 characters; only scores, like every detector."""

    name = TOY
    version = "1"
    outputs = (OutputColumn(SIGNAL, pa.float64(), 1, "exclamation marks per 100 characters"),)

    def _score_valid(self, texts: list[str]) -> pd.DataFrame:
        rate = np.array([100 * t.count("!") / len(t) for t in texts])
        return pd.DataFrame({SIGNAL: rate, SCORE: np.minimum(rate, 1.0)})


@pytest.fixture(scope="module", autouse=True)
def toy():
    """Registered, and named in AUDITOR_DETECTORS, for this module only (autouse: before the app
    reads its settings); afterwards the tables are as they were."""
    assert SIGNAL not in SCORED.names
    register(ExclamationDetector)
    patch = pytest.MonkeyPatch()
    patch.setenv("AUDITOR_DETECTORS", TOY)
    yield ExclamationDetector
    patch.undo()
    unregister(TOY)
    assert SIGNAL not in SCORED.names and SIGNAL not in ITEMS.names and SIGNAL not in machine_directions()


@pytest.fixture(scope="module")
def rows(mini_corpus) -> list[dict]:
    """Human and LLM-written answers of one task (test split); every other LLM answer ends in an
    exclamation, and one answer is empty (skipped: its signal is null)."""
    pool = mini_corpus[(mini_corpus.dataset == "l2r_rewrites") & (mini_corpus.split == "test")]
    human = pool[pool.label == 0].text.sample(12, random_state=3).tolist()
    machine = pool[pool.label == 1].text.sample(40, random_state=3).tolist()
    machine = [t + " What a result!" if i % 2 else t for i, t in enumerate(machine)]
    texts = [*human, *machine, ""]
    return [{"id": f"r{i}", "answer": t, "vendor": "acme" if i % 2 else "beta"} for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def rates(rows, toy) -> dict[str, float]:
    """The toy detector's value for each row (of the text as it cleans it), by id; NaN when skipped."""
    values = toy().detect([r["answer"] for r in rows])[SIGNAL].to_numpy(dtype=float)
    assert np.isnan(values[-1]) and np.nansum(values > 0) >= 20
    return {r["id"]: float(v) for r, v in zip(rows, values, strict=True)}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, mini_corpus, toy) -> str:
    """The fast model with its calibration's signal reference for the toy signal: the 95th
    percentile of human texts (calibration split) in its machine-like direction."""
    target = tmp_path_factory.mktemp("fast-model") / "ngram"
    shutil.copytree(default_fast_dir(), target)
    pool = mini_corpus[(mini_corpus.dataset == "l2r_rewrites") & (mini_corpus.split == "calibration")]
    humans = pool[pool.label == 0].text.tolist()
    calibration = load_calibration(target)
    assert calibration is not None
    values = toy().detect(humans)[SIGNAL].to_numpy(dtype=float)
    calibration.signal_reference = signal_reference({SIGNAL: values})
    assert set(calibration.signal_reference) == {SIGNAL}
    save_calibration(calibration, target)
    return str(target)


def fired_as_expected(report: dict, rates: dict[str, float], q95: float) -> list[dict]:
    """The flagged items of the report, each checked: the toy signal fired exactly when its rate
    is above the human reference. Both cases must occur, or the check proves nothing."""
    flagged = [item for vendor in report["vendors"] for item in vendor["top_flagged"]]
    for item in flagged:
        assert (SIGNAL in item["signals_fired"]) == (rates[item["item_id"]] > q95), item
    assert any(SIGNAL in item["signals_fired"] for item in flagged), "no flagged item fired the toy signal"
    assert any(SIGNAL not in item["signals_fired"] for item in flagged), "every flagged item fired it"
    return flagged


def audit(rows, tmp_path, settings: Settings, model_dir: str):
    path = tmp_path / "delivery.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    options = AuditOptions(columns=AuditColumns(text="answer", vendor="vendor", id="id"))
    options.columns, unreadable, _ = plan([path], options.columns)
    scorer = Scorer(settings, model_dir=model_dir, reference=False, kind="fast").setup()
    report = run_audit([path], options, tmp_path / "out", scorer, settings, unreadable, embeddings=False)
    return pq.read_table(tmp_path / "out" / "items.parquet"), report.model_dump(mode="json")


def test_the_declared_column_is_in_items_parquet_and_fires_in_the_report(rows, rates, model_dir, tmp_path):
    table, report = audit(rows, tmp_path, Settings(), model_dir)  # AUDITOR_DETECTORS names the toy
    names = table.schema.names
    assert SIGNAL in names and table.schema.field(SIGNAL).type == pa.float64()
    # In the item schema's order: after the built-in detectors' signals, before the scorer's own columns.
    assert names == [n for n in ITEMS.names if n in names]
    assert ITEMS.names.index("ngram_probability") < ITEMS.names.index(SIGNAL) < ITEMS.names.index("text_truncated")
    items = table.to_pandas().set_index("item_id")
    assert items.loc[list(rates), SIGNAL].to_numpy() == pytest.approx(list(rates.values()), nan_ok=True)
    assert items.at[rows[-1]["id"], "status"] == "skipped" and pd.isna(items.at[rows[-1]["id"], SIGNAL])
    fired_as_expected(report, rates, load_calibration(model_dir).signal_reference[SIGNAL])
    assert [d["id"] for d in report["models"]["detectors"]] == [f"{TOY}-v1"]


def test_without_the_setting_the_audit_is_as_before(rows, model_dir, tmp_path):
    """The same registered detector, not named in the settings: no column, nothing fires."""
    table, report = audit(rows, tmp_path, Settings(detectors=[]), model_dir)
    assert SIGNAL not in table.schema.names
    assert table.schema.names == [n for n in ITEMS.names if n in table.schema.names]
    flagged = [item for vendor in report["vendors"] for item in vendor["top_flagged"]]
    assert flagged and not any(SIGNAL in item["signals_fired"] for item in flagged)
    assert "detectors" not in report["models"]


def test_a_rest_audit_job_reports_the_declared_signal(app, client, rows, rates, model_dir):
    from api.jobs import worker_loop

    submitted = client.post(
        "/v1/audits", json={"rows": rows, "text_col": "answer", "vendor_col": "vendor", "id_col": "id"}
    )
    assert submitted.status_code == 202, submitted.text
    settings = app.state.settings
    assert settings.detectors == [TOY]  # the service read AUDITOR_DETECTORS
    worker_loop(settings, Scorer(settings, model_dir=model_dir, reference=False, kind="fast").setup(), once=True)
    status = client.get(f"/v1/audits/{submitted.json()['id']}").json()
    assert status["status"] == "succeeded", status
    report = client.get(f"/v1/audits/{submitted.json()['id']}/report").json()
    fired_as_expected(report, rates, load_calibration(model_dir).signal_reference[SIGNAL])


def test_the_fast_tier_answers_with_the_declared_signal(client, rows, rates):
    picked = rows[-3:]  # an LLM answer without and one with an exclamation, and the empty answer
    response = client.post("/v1/score", json={"texts": [r["answer"] for r in picked], "tier": "fast"})
    assert response.status_code == 200, response.text
    signals = [r["signals"] for r in response.json()["results"]]
    assert [s[SIGNAL] for s in signals[:2]] == pytest.approx([rates[r["id"]] for r in picked[:2]])
    assert sorted(s[SIGNAL] > 0 for s in signals[:2]) == [False, True] and signals[2][SIGNAL] is None
