"""A key prefix of each test's own on the shared Redis."""

import os
import uuid

import pytest
import redis

REDIS_URL = os.environ.get("LUMINET_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def redis_available() -> bool:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError:
        return False
    return True


def require_redis() -> None:
    if redis_available():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"Redis is required under CI=true ({REDIS_URL})")
    pytest.skip("no Redis on 127.0.0.1:6379")


@pytest.fixture
def redis_prefix():
    """A prefix for the test's keys; they (and only they) are deleted afterwards."""
    require_redis()
    prefix = f"lmtest-{uuid.uuid4().hex}:"
    yield prefix
    sync = redis.Redis.from_url(REDIS_URL)
    keys = list(sync.scan_iter(match=f"{prefix}*"))
    if keys:
        sync.delete(*keys)
    sync.close()
