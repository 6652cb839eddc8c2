"""A key prefix of each test's own on the shared Redis."""

import os

import pytest

from harness import HarnessError, KeyPrefix

REDIS_URL = os.environ.get("LUMINET_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture
def redis_prefix():
    """A prefix for the test's keys; they (and only they) are deleted afterwards."""
    try:
        keys = KeyPrefix(REDIS_URL, "lmtest")
    except HarnessError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required under CI=true: {exc}")
        pytest.skip(str(exc))
    try:
        yield keys.prefix
    finally:
        keys.close()
