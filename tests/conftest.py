"""Fixtures shared across the test suite: the public data sets and the Redis test server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATASETS_ENV = "AUDITOR_DATASETS_DIR"
REDIS_ENV = "AUDITOR_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """Folder of the shared public data sets (``$AUDITOR_DATASETS_DIR`` or ``../shared/datasets``)."""
    root = Path(os.environ.get(DATASETS_ENV) or Path(__file__).resolve().parents[2] / "shared" / "datasets")
    if not root.is_dir():
        pytest.skip(f"shared data sets not found at {root}; set {DATASETS_ENV}")
    return root


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
        pytest.skip(f"Redis server not reachable at {url} ({error}); start it or set {REDIS_ENV}")
    finally:
        client.close()
    return url
