"""``quantum-exec notify``: the notifier process."""

from __future__ import annotations

import asyncio
import signal

from redis.asyncio import Redis

from quantum_exec.core.redis_client import connect
from quantum_exec.core.settings import Settings
from quantum_exec.notify.config import NotifyConfig
from quantum_exec.notify.sidecar import NoticeSidecar, metrics_reader
from quantum_exec.ops.health import local_url
from quantum_exec.ops.notify import Notifier


def build_sidecar(settings: Settings, config: NotifyConfig, redis: Redis) -> NoticeSidecar:
    """The sidecar on ``redis``, reading the local service's /metrics for the user stream.

    Without a token: the series it reads is served to any scrape, and whatever listens on that
    local port (another user's process while the service is down) would get the token sent."""
    reader = metrics_reader(local_url(settings))
    return NoticeSidecar(redis, settings, config, read_connected=reader)


async def run_notifier(settings: Settings, config: NotifyConfig, redis_url: str | None) -> int:
    """Run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    redis = connect(settings, redis_url, block_ms=1000)
    sidecar = build_sidecar(settings, config, redis)
    notifier = Notifier.from_env(watchdog=False)
    try:
        await sidecar.start()
        notifier.ready("notifier running")
        await stop.wait()
        notifier.stopping()
    finally:
        await sidecar.stop()
        await redis.aclose()
    return 0
