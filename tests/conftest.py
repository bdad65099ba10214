"""Fixtures shared across the test suite: the public data sets and the Redis test server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REDIS_ENV = "AUDITOR_TEST_REDIS_URL"


def pytest_configure(config):
    """Keep the suite's reference index away from the user's cache."""
    import tempfile

    os.environ.setdefault(
        "AUDITOR_REFERENCE_INDEX", str(Path(tempfile.mkdtemp(prefix="auditor-tests-")) / "reference.sqlite")
    )


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """Folder of the shared public data sets. The suite tests on real data: missing data is
    an error to fix (set $AUDITOR_DATASETS_DIR), not a reason to skip."""
    from auditor.corpus import datasets_dir

    return datasets_dir()


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
        message = f"Redis server not reachable at {url} ({error}); start it or set {REDIS_ENV}"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI has the service: its absence is a broken run, not a skip
        pytest.skip(message)
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
    from auditor.corpus import load_corpus

    return load_corpus(shared_datasets)
