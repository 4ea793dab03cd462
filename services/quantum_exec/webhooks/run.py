"""``quantum-exec gateway``: the gateway process (Redis client, handler, hardened listener)."""

from __future__ import annotations

import asyncio
import signal

from quantum_exec.core.redis_client import connect
from quantum_exec.core.settings import Settings
from quantum_exec.ops.listener import Listener
from quantum_exec.ops.logs import get_logger
from quantum_exec.ops.notify import Notifier
from quantum_exec.webhooks.config import GatewayConfig
from quantum_exec.webhooks.intake import Intake
from quantum_exec.webhooks.server import Gateway

log = get_logger(__name__)


class GatewayProcess:
    """Starts and stops the gateway; ``port`` is the bound one after :meth:`start`."""

    def __init__(self, settings: Settings, config: GatewayConfig, redis_url: str | None) -> None:
        self._redis = connect(settings, redis_url)
        self._gateway = Gateway(config, self._redis, Intake(self._redis, settings))
        self._listener = Listener(self._gateway.app(), config.host, config.port)
        self._config = config

    @property
    def port(self) -> int:
        return self._listener.port

    async def start(self) -> None:
        await self._listener.start()
        log.info(
            "gateway.listening",
            host=self._config.host,
            port=self.port,
            sources=sorted(self._config.sources),
        )

    async def stop(self) -> None:
        await self._listener.stop()
        await self._redis.aclose()


async def run_gateway(settings: Settings, config: GatewayConfig, redis_url: str | None) -> int:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    process = GatewayProcess(settings, config, redis_url)
    notifier = Notifier.from_env(watchdog=False)
    try:
        await process.start()
        notifier.ready(f"gateway on {config.host}:{process.port}")
        await stop.wait()
        notifier.stopping()
    finally:
        await process.stop()
    return 0
