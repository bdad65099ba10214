"""The `corpus` marker's contract: without the full public corpus its tests are skipped with one
line saying what is missing and which variable points at it; under CI (CI=true) they fail the
run; and a test that reads the full corpus without the marker is refused at collection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS_TEST = "tests/auditor/test_corpus.py::test_light_polish_stays_out_of_training"


def pytest_run(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "CI"} | env
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "--durations=0", *args]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


def test_without_the_corpus_its_tests_are_skipped_with_a_one_line_reason(tmp_path):
    done = pytest_run(CORPUS_TEST, AUDITOR_DATASETS_DIR=str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    reasons = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(reasons) == 1, done.stdout
    assert f"AUDITOR_DATASETS_DIR={tmp_path} holds no data sets" in reasons[0]
    assert "set AUDITOR_DATASETS_DIR to" in reasons[0]


def test_under_ci_a_missing_corpus_fails_the_run(tmp_path):
    done = pytest_run(CORPUS_TEST, AUDITOR_DATASETS_DIR="", CI="true")
    assert done.returncode == 1, done.stdout + done.stderr
    summary = done.stdout.splitlines()[-1]
    assert "1 error" in summary and "skipped" not in summary and "public corpus not found" in done.stdout


def test_reading_the_full_corpus_without_the_marker_is_refused(tmp_path):
    (tmp_path / "test_unmarked.py").write_text("def test_reads_it(corpus):\n    pass\n")
    done = pytest_run(
        "-c", os.devnull, "--rootdir", str(tmp_path), "-p", "conftest", str(tmp_path / "test_unmarked.py"),
        cwd=tmp_path, PYTHONPATH=str(ROOT / "tests"),
    )  # fmt: skip
    assert done.returncode == 4, done.stdout + done.stderr
    assert "need @pytest.mark.corpus: " in done.stderr and "test_reads_it" in done.stderr
