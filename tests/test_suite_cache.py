"""The suite writes nothing to the user's cache (~/.cache/llm-auditor or the AUDITOR_CACHE_DIR it
was started with): tests/conftest.py's suite_cache points the auditor, the service and their
subprocesses at a temporary cache, while the converted LM and the LM feature caches are still
found in the user's model cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from auditor.cli import app

runner = CliRunner()


def _under(path: Path | str, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


def test_what_the_auditor_writes_lies_in_the_temporary_cache(suite_cache):
    from api.settings import get_service_settings
    from auditor.cli import _task_store
    from auditor.config import get_settings
    from detectors.store import default_cache_dir

    settings = get_settings()
    assert _under(settings.cache_dir, suite_cache.tmp) and _under(default_cache_dir(), suite_cache.tmp)
    assert _under(settings.task_store_dir, suite_cache.tmp) and _under(_task_store().root, suite_cache.tmp)
    assert _under(settings.reference_location, suite_cache.tmp)
    service = get_service_settings()
    assert _under(service.tenant_tasks_dir("t1"), suite_cache.tmp)
    if not service.redis_url:
        assert _under(service.tenant_reference_location("t1"), suite_cache.tmp)
    if not service.database_url:
        assert _under(service.database.removeprefix("sqlite:///"), suite_cache.tmp)
    assert not _under(suite_cache.tmp, suite_cache.user) and not _under(suite_cache.user, suite_cache.tmp)


def test_the_models_are_still_the_users(suite_cache, tmp_path, monkeypatch):
    from auditor.config import get_settings
    from auditor.features import FeatureStore
    from detectors.store import MODEL_CACHE_ENV, model_cache_dir

    cache_dir = get_settings().cache_dir
    assert model_cache_dir(cache_dir) == suite_cache.models == model_cache_dir()  # where provision_smollm2 looks
    assert not _under(suite_cache.models, suite_cache.tmp)

    class Detector:  # what FeatureStore reads of a PerplexityDetector
        id = "probe"

        def get_params(self):
            return dict.fromkeys(("model", "max_tokens", "min_k", "embeddings", "pool_layers", "histograms"))

    # the LM feature cache follows the model cache, not the cache it is given (a stand-in here)
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "models"))
    store = FeatureStore(cache_dir, Detector())  # type: ignore[arg-type]
    assert _under(store.dir, tmp_path / "models" / "features")


def test_subprocesses_inherit_the_temporary_cache(suite_cache):
    code = "from auditor.config import get_settings; s = get_settings(); print(s.task_store_dir); print(s.cache_dir)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert all(_under(line, suite_cache.tmp) for line in done.stdout.split())


class _Classifier:
    def describe(self) -> dict:
        return {"model": "stand-in"}


class _Scorer:
    """What `auditor references add` uses of the scorer, without loading a model."""

    classifier = _Classifier()

    def probabilities(self, texts):
        return np.full(len(texts), 0.1)


def _add_references(suite_cache, tmp_path: Path, task: str) -> None:
    user_tasks = suite_cache.user / "tasks"
    before = sorted(user_tasks.iterdir()) if user_tasks.is_dir() else []
    (tmp_path / "human.csv").write_text("text\n" + "".join(f"a human answer number {i}\n" for i in range(12)))
    result = runner.invoke(app, ["references", "add", "--task", task, "--human", str(tmp_path / "human.csv")])
    assert result.exit_code == 0, result.output
    assert (suite_cache.tmp / "tasks" / task).is_dir()
    assert (sorted(user_tasks.iterdir()) if user_tasks.is_dir() else []) == before


def test_task_references_added_on_the_command_line_stay_out_of_the_users_cache(suite_cache, tmp_path, monkeypatch):
    monkeypatch.setattr("auditor.cli._scorer", lambda *args, **kwargs: _Scorer())
    _add_references(suite_cache, tmp_path, "isolation-probe")


@pytest.mark.lm
def test_the_lm_loads_from_the_users_model_cache_while_references_go_to_the_temporary_one(suite_cache, tmp_path):
    """The real scorer: the converted LM is found in the user's model cache (not converted again
    into the temporary cache), and the references it scores are stored in the temporary cache."""
    _add_references(suite_cache, tmp_path, "isolation-probe-lm")
    assert not (suite_cache.tmp / "models").exists()
