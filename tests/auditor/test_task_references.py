"""Task references: stored once with their scores, used by `auditor audit --task`, and every
way of getting them wrong told in plain words."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.config import get_settings
from auditor.reader import write_table
from auditor.tasks.store import TaskError, TaskStore

runner = CliRunner()


def length_score(texts):
    """A deterministic score (storage tests check what is stored and when it is re-scored)."""
    return np.array([min(len(t) / 100, 1.0) for t in texts])


def test_the_store_appends_dedupes_replaces_and_rescores_when_the_model_changes(tmp_path):
    store = TaskStore(tmp_path)
    calls = []

    def counted(texts):
        calls.append(len(texts))
        return length_score(texts)

    store.add("summaries", "human", ["a b c", "d e f", "a b c"], counted, "m1", "h.csv")
    info = store.add("summaries", "human", ["g h i", "d e f"], counted, "m1", "h2.csv")
    assert info.human is not None and info.human.n_texts == 3 and info.human.origins == ["h.csv", "h2.csv"]
    assert calls == [2, 1]  # repeated texts are neither stored nor scored twice
    loaded = store.load("summaries", counted, "m1")
    assert calls == [2, 1] and loaded.machine is None and len(loaded.human) == 3
    store.load("summaries", counted, "m2")  # another model: scored again, once
    assert calls == [2, 1, 3] and store.info("summaries").human.scored_with == "m2"
    store.add("summaries", "human", ["x y z", "u v w"], counted, "m2", "h3.csv", replace=True)
    assert store.texts("summaries", "human")["text"].tolist() == ["x y z", "u v w"]
    assert store.names() == ["summaries"]


def test_unscored_references_are_scored_by_the_first_audit_that_uses_them(tmp_path):
    store = TaskStore(tmp_path)
    store.add("t1", "machine", ["one text", "two texts"], None, "", "upload")
    assert store.texts("t1", "machine")["llm_probability"].isna().all()
    loaded = store.load("t1", length_score, "m1")
    assert np.allclose(loaded.machine, [0.08, 0.09])
    assert store.info("t1").machine.scored_with == "m1"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.info("nope"), "no task 'nope' (known tasks: t1)"),
        (lambda s: s.add("bad name!", "human", ["a", "b"], length_score, "m", "f"), "not allowed"),
        (lambda s: s.add("t2", "human", ["  ", ""], length_score, "m", "f.csv"), "no human texts to add from f.csv"),
        (lambda s: s.add("t2", "machine", ["only one"], length_score, "m", "f"), "at least 2 are needed"),
        (lambda s: s.add("t2", "both", ["a", "b"], length_score, "m", "f"), "role must be one of"),
        (lambda s: s.remove("nope"), "no task 'nope'"),
    ],
)
def test_bad_task_requests_name_the_task_and_what_is_missing(tmp_path, call, message):
    store = TaskStore(tmp_path)
    store.add("t1", "human", ["a b", "c d"], length_score, "m", "f")
    with pytest.raises(TaskError) as error:
        call(store)
    assert message in str(error.value)


@pytest.fixture(scope="module")
def task_files(tmp_path_factory, mini_corpus):
    """One kind of text (web texts and their LLM rewrites), held out: references, a delivery of
    30 human and 20 LLM-written texts, and a one-text reference."""
    root = tmp_path_factory.mktemp("task")
    pool = mini_corpus[
        (mini_corpus.dataset == "l2r_rewrites")
        & (mini_corpus.split == "test")
        & mini_corpus.text.str.len().between(200, 1200)
    ].sample(frac=1.0, random_state=1)
    human, machine = pool[pool.label == 0].text.tolist(), pool[pool.label == 1].text.tolist()
    write_table(pd.DataFrame({"answer": human[:40]}), root / "human.csv")
    write_table(pd.DataFrame({"answer": machine[:40]}), root / "machine.jsonl")
    vendor = [{"vendor": "v", "text": t} for t in human[40:70] + machine[40:60]]
    write_table(pd.DataFrame(vendor), root / "delivery.csv")
    write_table(pd.DataFrame({"answer": human[:1]}), root / "one.csv")
    return root


@pytest.fixture
def tasks_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITOR_TASKS_DIR", str(tmp_path / "tasks"))
    get_settings.cache_clear()
    yield tmp_path / "tasks"
    get_settings.cache_clear()


def _audit(files, out, *extra):
    args = ["audit", str(files / "delivery.csv"), "--text-col", "text", "--vendor-col", "vendor", "--out", str(out)]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


@pytest.mark.lm
def test_a_stored_task_audits_like_the_same_reference_files(task_files, tasks_env, scorer, tmp_path):
    added = runner.invoke(
        app,
        [
            "references", "add", "--task", "qa", "--human", str(task_files / "human.csv"),
            "--machine", str(task_files / "machine.jsonl"), "--text-col", "answer",
        ],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["references", "list"])
    assert "qa" in listed.output and "40" in listed.output
    shown = json.loads(runner.invoke(app, ["references", "show", "--task", "qa"]).stdout)
    assert shown["human"]["n_texts"] == 40 and shown["machine"]["origins"] == [str(task_files / "machine.jsonl")]

    by_task = _audit(task_files, tmp_path / "a", "--task", "qa")
    by_files = _audit(
        task_files,
        tmp_path / "b",
        "--human-reference", str(task_files / "human.csv"),
        "--machine-reference", str(task_files / "machine.jsonl"),
        "--reference-text-col", "answer",
    )  # fmt: skip
    vendor, same = by_task["vendors"][0], by_files["vendors"][0]
    assert by_task["methods"]["primary"] == "score_mixture"
    # The same texts, scored in other batches (int8's per-batch activation scales move scores slightly)
    for key in ("estimate", "ci_low", "ci_high"):
        assert vendor["prevalence"][key] == pytest.approx(same["prevalence"][key], abs=0.03)
    assert vendor["calibration_fit"]["consistent"] == same["calibration_fit"]["consistent"]
    assert set(vendor["calibration_fit"]) == {"consistent", "p_value", "statistic", "method"}
    assert by_task["configuration"]["task"] == "qa"
    assert by_task["configuration"]["references"]["human"]["n_texts"] == 40
    # 20 of 50 are LLM-written: the task's references put the interval around the truth
    assert vendor["prevalence"]["ci_low"] <= 0.4 <= vendor["prevalence"]["ci_high"]
    assert vendor["prevalence_lower_bound"]["bound"] <= 0.4

    human_only = _audit(
        task_files, tmp_path / "c", "--human-reference", str(task_files / "human.csv"), "--reference-text-col", "answer"
    )
    bound = human_only["vendors"][0]["prevalence_lower_bound"]
    assert 0.0 <= bound["bound"] <= 0.4 and bound["n_human_reference"] == 40
    assert "Dvoretzky-Kiefer-Wolfowitz" in bound["method"]
    markdown = (tmp_path / "c" / "report.md").read_text()
    assert "at least (human reference)" in markdown and "calibration fit" in markdown

    removed = runner.invoke(app, ["references", "remove", "--task", "qa"])
    assert removed.exit_code == 0 and not (tasks_env / "qa").exists()


@pytest.mark.lm
def test_task_mistakes_fail_clearly_and_lose_nothing(task_files, tasks_env, scorer, tmp_path):
    unknown = runner.invoke(
        app,
        ["audit", str(task_files / "delivery.csv"), "--text-col", "text", "--vendor-col", "vendor",
         "--out", str(tmp_path / "x"), "--task", "missing"],
    )  # fmt: skip
    assert unknown.exit_code == 2 and "no task 'missing'" in unknown.output and "references add" in unknown.output
    wrong_column = runner.invoke(
        app, ["references", "add", "--task", "qa", "--human", str(task_files / "human.csv"), "--text-col", "text"]
    )
    assert wrong_column.exit_code == 2
    assert "task 'qa'" in wrong_column.output and "'text'" in wrong_column.output and "answer" in wrong_column.output
    one_text = runner.invoke(
        app, ["references", "add", "--task", "qa", "--human", str(task_files / "one.csv"), "--text-col", "answer"]
    )
    assert one_text.exit_code == 2 and "at least 2 are needed" in one_text.output
    assert not (tasks_env / "qa" / "task.json").exists()  # nothing half-stored


@pytest.mark.lm
def test_generated_machine_references_are_recorded_and_warned_about(task_files, tasks_env, scorer, tmp_path):
    prompts = tmp_path / "prompts.csv"
    write_table(pd.DataFrame({"prompt": ["Explain what a hash table is.", "Why is the sky blue?"]}), prompts)
    generate = [
        "references", "generate", "--task", "qa", "--prompts", str(prompts), "--prompt-col", "prompt",
        "--per-prompt", "2", "--max-new-tokens", "24",
    ]  # fmt: skip
    made = runner.invoke(app, generate)
    assert made.exit_code == 0, made.output
    info = json.loads(runner.invoke(app, ["references", "show", "--task", "qa"]).stdout)
    assert info["machine"]["n_texts"] == 4 and info["machine"]["generator"]["kind"] == "local"
    again = runner.invoke(app, generate)  # everything is on file: nothing is generated twice
    assert again.exit_code == 0 and "0 answers written, 4 resumed" in again.output
    added = runner.invoke(
        app, ["references", "add", "--task", "qa", "--human", str(task_files / "human.csv"), "--text-col", "answer"]
    )
    assert added.exit_code == 0, added.output
    report = _audit(task_files, tmp_path / "audit", "--task", "qa")
    assert report["configuration"]["references"]["machine"]["generator"]["small_local_model"] is True
    assert "small_generator" in {w["kind"] for w in report["warnings"]}
    assert "few_reference_texts" in {w["kind"] for w in report["warnings"]}  # 4 machine texts are few
