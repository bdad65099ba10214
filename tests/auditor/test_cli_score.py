"""`auditor score INPUT --text-col COL --out OUT`, end to end through the real models."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.reader import read_table, write_table

pytestmark = pytest.mark.lm
runner = CliRunner()


@pytest.fixture(scope="module")
def delivery(mini_corpus):
    """Real answers plus the awkward cells a delivery contains, and one answer pasted three times."""
    real = mini_corpus[(mini_corpus.split == "test") & (mini_corpus.dataset == "worker_vs_gpt")].sample(
        12, random_state=3
    )
    pasted = real.text.iloc[0]
    texts = real.text.tolist() + [
        pasted,
        pasted.upper() + "!!",
        None,
        "",
        "x",
        "😀😂🙏 love this",
        "word " * 30_000,
        "Dette er en dansk sætning om vejret.",
    ]
    return pd.DataFrame({"item": [f"i{i}" for i in range(len(texts))], "answer": texts, "worker": "w1"})


@pytest.mark.parametrize(
    ("source", "target"), [("in.csv", "out.csv"), ("in.jsonl", "out.parquet"), ("in.parquet", "out.jsonl")]
)
def test_score_keeps_every_row_and_column_and_adds_signals(tmp_path, scorer, delivery, source, target):
    write_table(delivery, tmp_path / source)
    result = runner.invoke(
        app, ["score", str(tmp_path / source), "--text-col", "answer", "--out", str(tmp_path / target)]
    )
    assert result.exit_code == 0, result.output
    out, problems = read_table(tmp_path / target)
    assert problems == [] and len(out) == len(delivery)
    assert out["item"].tolist() == delivery["item"].tolist()
    for column in (
        "answer",
        "worker",
        "llm_probability",
        "flagged",
        "skip_reason",
        "ppl_fast_detectgpt",
        "ppl_binoculars",
        "ppl_ll_mean",
        "ppl_min_k_prob",
        "spans",
        "dup_cluster",
        "ref_jaccard",
    ):
        assert column in out.columns, column
    skipped = out["skip_reason"].notna() & (out["skip_reason"].astype(str) != "")
    assert skipped.tolist()[14:17] == [True, True, True]
    scored = out[~skipped]
    probability = pd.to_numeric(scored["llm_probability"])
    assert probability.between(0, 1).all() and len(scored) == len(delivery) - 3
    flagged = out["flagged"].astype(str).str.lower().isin(["true", "1"])
    assert not flagged[skipped].any()
    threshold = scorer.require_calibration().threshold
    assert (flagged[~skipped] == (probability > threshold)).all()
    clusters = pd.to_numeric(out["dup_cluster"])
    assert clusters.iloc[0] >= 0 and clusters.iloc[0] == clusters.iloc[12] == clusters.iloc[13]
    assert json.loads(out["spans"].iloc[1]) and "start" in json.loads(out["spans"].iloc[1])[0]


def test_wrong_column_lists_the_columns_that_exist(tmp_path, delivery):
    write_table(delivery, tmp_path / "in.csv")
    result = runner.invoke(
        app, ["score", str(tmp_path / "in.csv"), "--text-col", "text", "--out", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 2
    assert "--text-col 'text'" in result.output and "'answer'" in result.output and "'worker'" in result.output


def test_unreadable_input_says_which_file_and_why(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    result = runner.invoke(app, ["score", str(bad), "--text-col", "text", "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and "broken.parquet" in result.output and "Parquet" in result.output
    result = runner.invoke(
        app, ["score", str(tmp_path / "nope.csv"), "--text-col", "text", "--out", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 2 and "nope.csv: no such file" in result.output
