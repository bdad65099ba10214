"""Fixtures shared across the test suite: the data the repository ships (a mini corpus of
permissively licensed public sets, tests/fixtures/), the full public corpus (tests marked
`corpus` only), and the Redis test server."""

from __future__ import annotations

import os
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


def pytest_configure(config):
    """Keep the suite's reference index away from the user's cache."""
    import tempfile

    os.environ.setdefault(
        "AUDITOR_REFERENCE_INDEX", str(Path(tempfile.mkdtemp(prefix="auditor-tests-")) / "reference.sqlite")
    )


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
