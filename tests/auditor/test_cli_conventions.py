"""Conventions shared by the commands: option names (`--text-col` everywhere, `--dask-workers`),
the deprecated spellings kept as hidden aliases, `-v/-q`, completion, `-` for standard input and
output in `auditor score`, and fsspec URLs in `auditor audit`.

Most tests here stop before any model loads (usage errors, help texts, the leakage index) or use
the fast n-gram gate; the few that score with the causal LM are marked `lm`."""

from __future__ import annotations

import gzip
import io
import json
import logging

import fsspec
import pandas as pd
import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.reader import read_table, write_table

runner = CliRunner()

TEXT_COMMANDS = [
    ["score"],
    ["calibrate"],
    ["train"],
    ["audit"],
    ["gate"],
    ["index-benchmarks"],
    ["reference", "add"],
    ["references", "add"],
]


def help_of(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", TEXT_COMMANDS, ids=" ".join)
def test_every_command_names_the_text_column_text_col(command):
    shown = help_of(*command)
    assert "--text-col" in shown
    assert "--text-field" not in shown and "--id-field" not in shown and "--confidence" not in shown


def test_references_generate_keeps_its_prompt_col():
    assert "--prompt-col" in help_of("references", "generate")


@pytest.mark.parametrize("command", ["audit", "gate"])
def test_dask_workers_replaces_workers_in_audit_and_gate(command):
    shown = help_of(command)
    assert "--dask-workers" in shown and "--workers " not in shown


def test_the_rest_service_worker_options_are_untouched():
    assert "--workers" in help_of("serve") and "--once" in help_of("worker")


def test_app_has_verbose_quiet_version_and_completion():
    shown = help_of()
    for option in ("--verbose", "-v", "--quiet", "-q", "--version", "--install-completion", "--show-completion"):
        assert option in shown, option
    both = runner.invoke(app, ["-v", "-q", "compare", "x.json"])
    assert both.exit_code == 2 and "not both" in both.output


@pytest.mark.parametrize("command", ["audit", "gate"])
def test_deprecated_workers_is_still_the_dask_workers_option(tmp_path, command):
    """`--workers N` still means `--dask-workers N` (with a warning): with --scheduler it is the same
    usage error, raised before any file is read or cluster started."""
    args = {
        "audit": ["audit", "x.csv", "--text-col", "t", "--vendor-col", "v", "--out", str(tmp_path)],
        "gate": ["gate", "x.jsonl", "--max-synthetic", "0.1", "--manifest", str(tmp_path / "m.json")],
    }[command]
    old = runner.invoke(app, [*args, "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"])
    assert old.exit_code == 2, old.output
    assert "--workers is deprecated" in old.output and "give --scheduler or --dask-workers, not both" in old.output
    new = runner.invoke(app, [*args, "--dask-workers", "2", "--scheduler", "tcp://127.0.0.1:1"])
    assert new.exit_code == 2 and "deprecated" not in new.output and "not both" in new.output
    clash = runner.invoke(app, [*args, "--dask-workers", "2", "--workers", "3"])
    assert clash.exit_code == 2 and "give --dask-workers or --workers, not both" in clash.output


@pytest.fixture
def benchmark_items(tmp_path):
    path = tmp_path / "items.jsonl"
    words = "the quick brown fox jumps over the lazy dog while seven wizards quietly hex the jolly king"
    with path.open("w") as out:
        for i in range(3):
            out.write(json.dumps({"qid": f"q{i}", "question": f"{words} number {i} " * 2}) + "\n")
    return path


def test_index_benchmarks_takes_text_col_and_id_col_and_the_old_spellings(tmp_path, benchmark_items):
    from auditor.gate.leakage import LeakageIndex

    for spelling in (["--text-col", "question", "--id-col", "qid"], ["--text-field", "question", "--id-field", "qid"]):
        out = tmp_path / f"index{len(spelling[0])}.npz"
        result = runner.invoke(app, ["index-benchmarks", str(benchmark_items), "--out", str(out), *spelling])
        assert result.exit_code == 0, result.output
        assert ("deprecated" in result.output) == (spelling[0] == "--text-field")
        index = LeakageIndex.load(out)
        assert index.describe()["items"] == 3


def test_quiet_hides_information_but_not_warnings(tmp_path, benchmark_items):
    args = ["index-benchmarks", str(benchmark_items), "--out", str(tmp_path / "i.npz"), "--text-field", "question"]
    loud = runner.invoke(app, args)
    quiet = runner.invoke(app, ["-q", *args])
    assert loud.exit_code == quiet.exit_code == 0
    assert "indexed" in loud.output and "indexed" not in quiet.output
    assert "--text-field is deprecated" in quiet.output  # a warning: shown even with -q


def test_verbose_leaves_the_libraries_talking_and_quiet_libraries_is_undone():
    from transformers.utils import logging as hf_logging

    from auditor.python_api import quiet_libraries

    before = (logging.getLogger("transformers").level, hf_logging.is_progress_bar_enabled())
    restore = quiet_libraries(verbose=False)
    assert logging.getLogger("torch").level == logging.ERROR and not hf_logging.is_progress_bar_enabled()
    restore()
    assert (logging.getLogger("transformers").level, hf_logging.is_progress_bar_enabled()) == before
    quiet_libraries(verbose=True)()
    assert (logging.getLogger("transformers").level, hf_logging.is_progress_bar_enabled()) == before


def test_gate_takes_text_col_and_the_old_text_field(tmp_path, mini_corpus):
    texts = mini_corpus[(mini_corpus.split == "test") & (mini_corpus.label == 0)].text.head(40).tolist()
    shard = tmp_path / "s.jsonl.gz"
    with gzip.open(shard, "wt") as out:
        for text in texts:
            out.write(json.dumps({"content": text}) + "\n")
    for spelling in ("--text-col", "--text-field"):
        manifest = tmp_path / f"m{spelling}.json"
        args = ["gate", str(shard), "--max-synthetic", "0.5", "--manifest", str(manifest), spelling, "content"]
        result = runner.invoke(app, args)
        assert result.exit_code in (0, 1), result.output
        assert json.loads(manifest.read_text())["shards"][0]["documents_read"] == 40
    clash = runner.invoke(
        app,
        ["gate", str(shard), "--max-synthetic", "0.5", "--manifest", str(manifest), "--text-col", "a"]
        + ["--text-field", "b"],
    )
    assert clash.exit_code == 2 and "give --text-col or --text-field, not both" in clash.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-", "--out", "o.csv"], "cannot tell the format of standard input"),
        (["in.csv", "--out", "-"], "--out -"),
        (["in.csv", "--out", "scores"], "--format"),
        (["in.csv", "--out", "o.csv", "--format", "xml"], "xml"),
    ],
)
def test_score_asks_for_a_format_where_no_name_gives_one(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    write_table(pd.DataFrame({"text": ["a b c"]}), tmp_path / "in.csv")
    result = runner.invoke(app, ["score", *args, "--text-col", "text"], input="text\nhello\n")
    assert result.exit_code == 2, result.output
    assert message in result.output


# ------------------------------------------------------------------ scoring with the causal LM


@pytest.fixture(scope="module")
def answers(mini_corpus):
    pool = mini_corpus[
        (mini_corpus.split == "test")
        & (mini_corpus.dataset == "l2r_rewrites")
        & mini_corpus.text.str.len().between(200, 900)
    ]
    picked = pd.concat(
        [pool[pool.label == 0].sample(5, random_state=2), pool[pool.label == 1].sample(5, random_state=2)]
    )
    return pd.DataFrame({"id": [f"a{i}" for i in range(10)], "vendor": ["v1"] * 5 + ["v2"] * 5, "text": picked.text})


@pytest.mark.lm
def test_score_reads_standard_input_and_writes_standard_output(tmp_path, answers):
    csv_in = answers.to_csv(index=False)
    as_csv = runner.invoke(app, ["score", "-", "--text-col", "text", "--out", "-", "--format", "csv"], input=csv_in)
    assert as_csv.exit_code == 0, as_csv.output
    scored = pd.read_csv(io.StringIO(as_csv.stdout))
    assert scored["id"].tolist() == answers["id"].tolist()
    assert scored["llm_probability"].between(0, 1).all() and "ppl_binoculars" in scored
    assert "scored 10 of 10 rows" in as_csv.stderr and "standard output" in as_csv.stderr

    as_parquet = runner.invoke(
        app,
        ["score", "-", "--text-col", "text", "--out", "-", "--format", "parquet", "--input-format", "csv"],
        input=csv_in,
    )
    assert as_parquet.exit_code == 0, as_parquet.stderr
    table = pd.read_parquet(io.BytesIO(as_parquet.stdout_bytes))
    assert table["llm_probability"].tolist() == pytest.approx(scored["llm_probability"].tolist(), abs=1e-6)

    extensionless = tmp_path / "answers"
    extensionless.write_text(answers.to_json(orient="records", lines=True))
    out = tmp_path / "scored.jsonl"
    result = runner.invoke(
        app, ["score", str(extensionless), "--text-col", "text", "--out", str(out), "--format", "jsonl"]
    )
    assert result.exit_code == 0, result.output
    assert len(read_table(out)[0]) == 10


@pytest.mark.lm
def test_audit_reads_file_and_memory_urls_like_paths(tmp_path, answers):
    path = write_table(answers, tmp_path / "delivery.csv")
    fs = fsspec.filesystem("memory")
    fs.pipe("/conventions/delivery.csv", path.read_bytes())
    reports = {}
    for name, source in (("path", str(path)), ("file", path.as_uri()), ("memory", "memory://conventions/delivery.csv")):
        out = tmp_path / name
        args = ["audit", source, "--text-col", "text", "--vendor-col", "vendor", "--id-col", "id", "--out", str(out)]
        result = runner.invoke(app, ["-q", *args])
        assert result.exit_code == 0, result.output
        assert "prevalence" not in result.output  # -q: no per-vendor information lines
        reports[name] = json.loads((out / "report.json").read_text())
        assert reports[name]["inputs"][0]["path"] in (source, str(path.resolve()))
        assert reports[name]["inputs"][0]["rows_read"] == 10
    for name in ("file", "memory"):
        assert [v["prevalence"] for v in reports[name]["vendors"]] == [
            v["prevalence"] for v in reports["path"]["vendors"]
        ]
