"""Fixtures shared across the test suite: the data the repository ships (a mini corpus of
permissively licensed public sets, tests/fixtures/), the full public corpus (tests marked
`corpus` only), the Redis test server, and the temporary cache every test writes to
(:func:`suite_cache`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

REDIS_ENV = "AUDITOR_TEST_REDIS_URL"
FIXTURES = Path(__file__).parent / "fixtures"
# Fixtures that read the full public corpus: a test using one must carry the `corpus` marker.
FULL_CORPUS_FIXTURES = frozenset({"shared_datasets", "corpus"})


def skip_or_fail(message: str) -> NoReturn:
    """Skip locally; fail under CI, which has the service or data: its absence is a broken run."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class SuiteCache:
    """Where the suite keeps what the auditor writes (``tmp``), and the user's cache it stays out
    of (``user``) but whose models it uses (``models``)."""

    tmp: Path
    user: Path
    models: Path


def _clear_settings() -> None:
    """Settings read from the environment before it changed are read again."""
    from api.settings import get_service_settings
    from auditor.config import get_settings

    get_settings.cache_clear()
    get_service_settings.cache_clear()


@pytest.fixture(scope="session", autouse=True)
def suite_cache(tmp_path_factory) -> Iterator[SuiteCache]:
    """Every test writes task references, reference and benchmark indexes, job files and the
    service's database under a temporary cache (``AUDITOR_CACHE_DIR``), never under the user's
    (``~/.cache/llm-auditor`` or the ``AUDITOR_CACHE_DIR`` the suite was started with). The
    converted LM and the LM feature caches, expensive to rebuild, are still the user's:
    ``AUDITOR_MODEL_CACHE_DIR`` points there (unless it already names a model cache), and
    subprocesses inherit both variables."""
    from detectors.store import CACHE_ENV, MODEL_CACHE_ENV, default_cache_dir, model_cache_dir

    cache = SuiteCache(tmp=tmp_path_factory.mktemp("auditor-cache"), user=default_cache_dir(), models=model_cache_dir())
    patch = pytest.MonkeyPatch()
    patch.setenv(CACHE_ENV, str(cache.tmp))
    patch.setenv(MODEL_CACHE_ENV, str(cache.models))
    patch.setenv("AUDITOR_REFERENCE_INDEX", str(cache.tmp / "reference-index.sqlite"))
    patch.delenv("AUDITOR_TASKS_DIR", raising=False)  # tasks: <cache>/tasks, unless a test sets its own
    _clear_settings()
    yield cache
    patch.undo()
    _clear_settings()


def pytest_collection_modifyitems(config, items):
    """A test that reads the full public corpus says so with the `corpus` marker, so that a clone
    without the corpus skips exactly those tests (and `-m "not corpus"` leaves them out)."""
    unmarked = [
        item.nodeid
        for item in items
        if FULL_CORPUS_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("corpus") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests reading the full public corpus (fixtures "
            f"{', '.join(sorted(FULL_CORPUS_FIXTURES))}) need @pytest.mark.corpus: {', '.join(unmarked)}"
        )


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="session")
def mini_datasets() -> Path:
    """The mini corpus the repository ships: a few hundred real rows of each permissively
    licensed public set, in the public corpus's layout (tests/fixtures/README.md)."""
    return FIXTURES / "datasets"


@pytest.fixture(scope="session")
def mini_corpus(mini_datasets):
    """``auditor.corpus.load_corpus`` of the mini corpus: the public corpus's groups and splits
    (a text of the ``test`` split was never trained on by the shipped models)."""
    from auditor.corpus import load_corpus

    return load_corpus(mini_datasets)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """Folder of the full public corpus, for the tests marked `corpus`: skipped when it is
    missing, failed when it is missing under CI (CI=true)."""
    from auditor.corpus import datasets_dir

    try:
        return datasets_dir()
    except FileNotFoundError as missing:
        skip_or_fail(str(missing))  # what was looked for, and AUDITOR_DATASETS_DIR to point at it


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the Redis test database; skips only when no server answers there."""
    import redis

    url = os.environ.get(REDIS_ENV, DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.AuthenticationError:
        raise  # a server is there but refuses us: that is a failure, not a skip
    except (redis.ConnectionError, redis.TimeoutError) as error:
        skip_or_fail(f"Redis server not reachable at {url} ({error}); start it or set {REDIS_ENV}")
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def scorer():
    """The shipped model and the real SmolLM2, loaded once for the whole session."""
    from auditor.scoring import cached_scorer

    return cached_scorer(None, False, False)


@pytest.fixture(scope="session")
def perplexity(scorer):
    """The scorer's own perplexity detector (same loaded LM), with spans and embeddings."""
    return scorer.classifier.lm_


@pytest.fixture(scope="session")
def corpus(shared_datasets):
    """The full public corpus (tests marked `corpus`); most tests need only ``mini_corpus``."""
    from auditor.corpus import load_corpus

    return load_corpus(shared_datasets)
