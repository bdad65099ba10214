"""`auditor train` and `auditor calibrate` on a user's own labelled texts."""

import json

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.reader import write_table

pytestmark = pytest.mark.lm
runner = CliRunner()


@pytest.fixture(scope="module")
def labelled(mini_corpus):
    """A user's labelled texts of one kind: crowd-written social-media posts and Llama-2 posts
    written for the same task labels, 150 of each class."""
    rows = mini_corpus[(mini_corpus.dataset == "worker_vs_gpt") & mini_corpus.generator.isin(["human", "llama-2"])]
    picked = rows.sample(frac=1, random_state=1).groupby("label").head(150)
    return picked.assign(who=picked.label.map({0: "person", 1: "chatgpt"}))[["text", "who"]]


def test_train_then_calibrate_then_score_with_the_new_model(tmp_path, labelled, mini_corpus):
    data = write_table(labelled, tmp_path / "labelled.csv")
    bundle = tmp_path / "my-model"
    result = runner.invoke(
        app,
        [
            "train",
            str(data),
            "--text-col",
            "text",
            "--label-col",
            "who",
            "--machine-label",
            "chatgpt",
            "--out",
            str(bundle),
            "--model-kind",
            "logistic",
            "--target-fpr",
            "0.05",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (bundle / "bundle.json").exists() and (bundle / "classifier.skops").exists()
    calibration = json.loads((bundle / "calibration.json").read_text())
    assert calibration["target_fpr"] == 0.05 and calibration["heldout_tpr"]["estimate"] > 0.5

    # the user's own human texts, of other kinds (not trained on): web texts, news, essays, articles
    humans = mini_corpus[(mini_corpus.dataset != "worker_vs_gpt") & (mini_corpus.label == 0)].head(120)
    human_file = write_table(humans[["text", "domain"]], tmp_path / "humans.jsonl")
    result = runner.invoke(
        app,
        [
            *("calibrate", "--human", str(human_file), "--text-col", "text", "--source-col", "domain"),
            *("--model", str(bundle), "--target-fpr", "0.05"),
        ],
    )
    assert result.exit_code == 0, result.output
    recalibrated = json.loads((bundle / "calibration.json").read_text())
    assert recalibrated["n_calibration_human"] == 60 and recalibrated["heldout_fpr"]["n"] == 60
    by_source = recalibrated["heldout_fpr_by_source"]
    assert set(by_source) <= set(humans.domain) and sum(rate["n"] for rate in by_source.values()) == 60
    assert recalibrated["threshold"] != calibration["threshold"]

    result = runner.invoke(
        app, ["score", str(human_file), "--text-col", "text", "--out", str(tmp_path / "o.csv"), "--model", str(bundle)]
    )
    assert result.exit_code == 0, result.output


def test_training_needs_both_classes(tmp_path, labelled):
    data = write_table(labelled.assign(who="person"), tmp_path / "one-class.csv")
    result = runner.invoke(
        app, ["train", str(data), "--text-col", "text", "--label-col", "who", "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 2 and "both human and LLM-written" in result.output


def test_calibration_refuses_too_few_humans_and_never_overwrites_the_shipped_model(tmp_path, mini_corpus):
    few = mini_corpus[mini_corpus.label == 0].head(30)
    path = write_table(few[["text"]], tmp_path / "few.csv")
    result = runner.invoke(app, ["calibrate", "--human", str(path), "--text-col", "text"])
    assert result.exit_code == 2 and "read-only" in result.output
    result = runner.invoke(app, ["calibrate", "--human", str(path), "--text-col", "text", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "at least 99" in result.output
    assert not (tmp_path / "m" / "calibration.json").exists()
