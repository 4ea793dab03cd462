"""A Redis password given as ``?password=`` in QUANTUM_REDIS_URL (redis-py reads it there) is masked
like a password in the userinfo: in ``serve --print-config`` and in the log of a running serve."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from security.serve_proc import Serve, clean_env, run_cli
from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PASSWORD = "query-pass-6c1f0b8e2d7a4953"


@pytest.fixture
def acl_user(redis_url: str) -> Iterator[str]:
    """A Redis user with PASSWORD on the session's server; the URL names it, the query holds PASSWORD."""
    name = f"qx-sec-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(
        name, enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    parts = urlsplit(redis_url)
    query = f"{parts.query}&" if parts.query else ""
    try:
        yield urlunsplit(parts._replace(netloc=f"{name}@{parts.netloc}", query=f"{query}password={PASSWORD}"))
    finally:
        admin.acl_deluser(name)
        admin.close()


def test_print_config_masks_a_query_password(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:6390/0?db=0&password={PASSWORD}"
    out = run_cli(clean_env(tmp_path, QUANTUM_REDIS_URL=url), "serve", "--print-config")
    assert out.returncode == 0, out.stderr
    assert PASSWORD not in out.stdout + out.stderr
    assert "redis://127.0.0.1:6390/0?db=0&password=****" in out.stdout


def test_serve_logs_the_redis_url_with_the_query_password_masked(tmp_path: Path, acl_user: str) -> None:
    # The embedded simulator makes serve record (and log) its endpoints.
    serve = Serve(tmp_path, QUANTUM_REDIS_URL=acl_user, QUANTUM_KEY_PREFIX=f"sec:{uuid.uuid4().hex[:8]}")
    try:
        serve.start()
        wait_until(lambda: "service.endpoints_recorded" in serve.output(), 30, "the endpoints log line")
    finally:
        serve.stop()
    output = serve.output()
    assert PASSWORD not in output
    [line] = [x for x in output.splitlines() if "service.endpoints_recorded" in x]
    assert "password=****" in line
