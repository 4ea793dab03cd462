"""The one way every part of quantum-exec opens Redis: a URL, Sentinel, or a Redis Cluster.

* ``QUANTUM_REDIS_URL=redis://...`` (or ``rediss://``, or ``unix:///path/to/redis.sock``): one server.
* ``QUANTUM_REDIS_SENTINELS`` + ``QUANTUM_REDIS_SENTINEL_MASTER``: the master the sentinels name,
  asked again on every new connection, so a failover is followed by the client's own reconnects
  (a demoted master answering READONLY is dropped the same way).
* ``QUANTUM_REDIS_URL=redis+cluster://host:port`` (or ``rediss+cluster://``): any node; the client
  discovers the others and follows MOVED/ASK. The settings refuse keys that would not share a slot.

RESP2 is pinned (the reply shapes the service parses); hiredis is used when installed.

Every command's write goes through :mod:`.redis_conn` (a write the socket takes at once needs no
timer task; the read keeps redis-py's socket timeout, so a dead Redis is still noticed in time).
The scripts of a client made here go through its lane (:mod:`.redis_lane`: those of one loop turn
in one write on one connection), except in a Redis Cluster.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from quantum_exec.core import redis_lane
from quantum_exec.core.redis_conn import QUICK_CLASSES, QuickSentinelConnection, QuickSentinelSSLConnection
from quantum_exec.core.settings import CLUSTER_SCHEMES, Settings, mask_url_password

# Connect timeout, and what a socket read may take beyond a blocking command's own block time.
SOCKET_MARGIN_S = 5.0
HEALTH_CHECK_INTERVAL_S = 15
CLIENT_NAME = "quantum-exec"
# Connections per pool. redis-py's asyncio default (100) is below what a burst needs: up to
# QUANTUM_MAX_CONCURRENCY intents each holding one briefly, plus the reader, leases, the account
# follower and the ledger; past it redis-py raises "Too many connections" (local, not an outage).
MAX_CONNECTIONS = 1024


class SentinelRedis(Redis):
    """A client of the master named by Sentinel that also closes its sentinel connections."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        pool = self.connection_pool
        await super().aclose(close_connection_pool)
        if isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()


def connect(settings: Settings, url: str | None = None, *, block_ms: int | None = None) -> Redis:
    """A client for the configured Redis (``url``: an embedded server's or a recorded one's).

    ``block_ms`` is the longest blocking read the caller makes; the socket timeout lies above it,
    so the client's own timeout never cuts a blocking XREADGROUP short.
    """
    read_timeout_s = (block_ms if block_ms is not None else settings.block_ms) / 1000 + SOCKET_MARGIN_S
    options: dict[str, Any] = {
        "protocol": 2,
        "socket_timeout": read_timeout_s,
        "socket_connect_timeout": SOCKET_MARGIN_S,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "client_name": CLIENT_NAME,
        "max_connections": MAX_CONNECTIONS,
    }
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    if settings.redis_sentinels:
        return _sentinel_master(settings, options, password)
    target = url or settings.redis_url
    if not target:
        raise ValueError("no Redis configured: set QUANTUM_REDIS_URL or QUANTUM_REDIS_SENTINELS")
    scheme, _, rest = target.partition("://")
    if password is not None and urlsplit(target).password is None:
        # QUANTUM_REDIS_PASSWORD (or its credential) fills in a password the URL leaves out; one in
        # the URL (userinfo or ?password=) wins.
        options["password"] = password
    if scheme in CLUSTER_SCHEMES:
        node_url = ("rediss://" if scheme.startswith("rediss") else "redis://") + rest
        cluster = RedisCluster.from_url(node_url, **options)
        # The service uses the commands both classes share (streams, scripts, hashes, plain
        # pipelines), each call's keys in one slot: the cluster client stands in for a Redis.
        return cast("Redis", cluster)
    if scheme == "unix":  # the embedded server's socket: keepalive is a TCP option
        del options["socket_keepalive"]
    client = Redis.from_url(target, **options)
    pool = client.connection_pool
    # The URL chose the class (TCP, TLS or unix socket); no connection exists yet.
    pool.connection_class = QUICK_CLASSES.get(pool.connection_class, pool.connection_class)
    redis_lane.enable(client)
    return client


def _sentinel_master(settings: Settings, options: dict[str, Any], password: str | None) -> Redis:
    tls: dict[str, Any] = {}
    if settings.redis_tls:
        tls = {"ssl": True}
        if settings.redis_tls_ca_file is not None:
            tls["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
    sentinel_password = settings.redis_sentinel_password
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        [_address(a) for a in settings.redis_sentinels],
        sentinel_kwargs={
            "protocol": 2,
            "socket_timeout": SOCKET_MARGIN_S,
            "socket_connect_timeout": SOCKET_MARGIN_S,
            "password": sentinel_password.get_secret_value() if sentinel_password else None,
            **tls,
        },
    )
    assert settings.redis_sentinel_master is not None
    quick = QuickSentinelSSLConnection if settings.redis_tls else QuickSentinelConnection
    client = sentinel.master_for(
        settings.redis_sentinel_master,
        redis_class=SentinelRedis,
        password=password,
        connection_class=quick,
        **options,
        **tls,
    )
    redis_lane.enable(client)
    return cast("Redis", client)


def _address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def location(settings: Settings, url: str | None = None) -> str:
    """Where the client connects, for logs and messages: passwords masked."""
    if settings.redis_sentinels:
        return f"sentinel master {settings.redis_sentinel_master} via {','.join(settings.redis_sentinels)}"
    return mask_url_password(url or settings.redis_url or "")
