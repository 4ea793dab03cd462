"""Secrets passed as systemd credentials ($CREDENTIALS_DIRECTORY/<NAME>), as the README says: the
API token of a running serve, and the Redis passwords. A token the service did not read would
leave the book open to every local process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from security.serve_proc import Serve, clean_env, run_cli
from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "credential-token-5b0e9d1c7a3f4e28"


def credentials(tmp_path: Path, **secrets: str) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir(mode=0o700)
    for name, value in secrets.items():
        (directory / name).write_text(value + "\n")
        (directory / name).chmod(0o600)
    return directory


def get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_api_token_credential_guards_the_book(tmp_path: Path) -> None:
    creds = credentials(tmp_path, QUANTUM_API_TOKEN=TOKEN)
    serve = Serve(tmp_path, CREDENTIALS_DIRECTORY=str(creds))
    try:
        port = serve.start()["metrics_port"]
        url = f"http://127.0.0.1:{port}/api/positions"
        without, wrong, right = get(url), get(url, "not-the-token-at-all"), get(url, TOKEN)
    finally:
        serve.stop()
    assert (without, wrong, right) == (401, 401, 200)
    assert TOKEN not in serve.output()


def test_redis_passwords_come_from_credentials(tmp_path: Path) -> None:
    creds = credentials(
        tmp_path,
        QUANTUM_REDIS_PASSWORD="redis-pass-from-cred",
        QUANTUM_REDIS_SENTINEL_PASSWORD="sentinel-cred",
    )
    env = clean_env(
        tmp_path,
        CREDENTIALS_DIRECTORY=str(creds),
        QUANTUM_REDIS_SENTINELS="127.0.0.1:26379",
        QUANTUM_REDIS_SENTINEL_MASTER="quantum",
    )
    out = run_cli(env, "serve", "--print-config")
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)
    assert config["redis_password"] == config["redis_sentinel_password"] == "**********"
    assert "from-cred" not in out.stdout and "sentinel-cred" not in out.stdout


def test_serve_authenticates_to_redis_with_the_password_credential(tmp_path: Path, redis_url: str) -> None:
    """The URL names a user and no password; the password comes only from the credential."""
    password = f"cred-{uuid.uuid4().hex}"
    user = f"qx-cred-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    parts = urlsplit(redis_url)
    url = urlunsplit(parts._replace(netloc=f"{user}@{parts.netloc}"))
    creds = credentials(tmp_path, QUANTUM_REDIS_PASSWORD=password)
    serve = Serve(
        tmp_path,
        CREDENTIALS_DIRECTORY=str(creds),
        QUANTUM_REDIS_URL=url,
        QUANTUM_KEY_PREFIX=f"cred:{uuid.uuid4().hex[:8]}",
    )
    try:
        serve.start()
        wait_until(lambda: "service.endpoints_recorded" in serve.output(), 30, "serve to be ready")
        clients = [c for c in admin.client_list() if c.get("user") == user]
    finally:
        serve.stop()
        admin.acl_deluser(user)
        admin.close()
    assert clients, "serve never authenticated as the credential's user"
    assert password not in serve.output()
