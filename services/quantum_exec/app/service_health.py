"""What a running (or starting) service says about itself: each readiness check with the reason
it fails, what start-up waits for, and the console's status. Reads the :class:`Service` it is
given; changes nothing."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from quantum_exec import __version__
from quantum_exec.core.redis_client import location

if TYPE_CHECKING:
    from quantum_exec.app.service import Service


class ServiceHealth:
    """The readiness checks (``True``, or why not) and ``/api/status`` of one service."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def checks(self) -> list[tuple[str, Any]]:
        """(name, check) of the checks every service has; the exchange's come with an executor."""
        return [("redis", self.redis_ready), ("group", self.group_ready), ("consumer", self.consumer_ready)]

    def starting_reason(self) -> str:
        """What start-up is waiting for (the read API's 503 and /readyz while starting)."""
        if self._service.settings.embedded_redis and self._service.redis_url is None:
            return "starting: starting the embedded Redis"
        if not self._service.redis_answered:
            return (
                f"starting: waiting for Redis at {location(self._service.settings, self._service.redis_url)}"
            )
        return "starting: connecting to the exchange"

    async def status(self) -> dict[str, Any]:
        """What the console's health strip shows: environment, version, every dependency."""
        service, executor = self._service, self._service.executor
        checks = service.metrics_server.readiness() if service.metrics_server is not None else []
        account = service.account
        stream: dict[str, Any] = {"enabled": account is not None}
        if account is not None:
            last = account.stream.last_event_at
            stream.update(
                connected=not account.state.stale,
                reconnects=account.stream.reconnects,
                last_event_age_s=None if last is None else round(time.monotonic() - last, 3),
                lease_holder=account.leader,
            )
        age = executor.gateway.rules.age_s() if executor is not None else None
        return {
            "environment": self._service.settings.exchange.value,
            "version": __version__,
            "consumer": self._service.settings.consumer_name,
            "ready": all(c.ok for c in checks),
            "checks": [{"name": c.name, "ok": c.ok, "error": c.error} for c in checks],
            "user_stream": stream,
            "rules_age_s": None if age is None or math.isnan(age) else round(age, 1),  # NaN: never loaded
            # Fills without their SL/TP past QUANTUM_UNPROTECTED_ALERT_S: now, and since the start.
            "unprotected": executor.exposure.status() if executor is not None else None,
            # The account's trading state and risk limits (the console's banner when not ACTIVE).
            "risk": service.governor.status() if service.governor is not None else None,
        }

    async def redis_ready(self) -> bool | str:
        if not self._service.redis_answered:
            return self.starting_reason()
        return bool(await self._service.redis.ping())

    async def consumer_ready(self) -> bool | str:
        if self._service.consumer is None:
            return "not consuming yet: starting"
        return self._service.consumer.running or f"not consuming {self._service.settings.intent_stream}"

    async def group_ready(self) -> bool | str:
        if self._service.consumer is None:
            return self.starting_reason()
        groups: Any = await self._service.redis.xinfo_groups(self._service.settings.intent_stream)
        wanted = self._service.settings.consumer_group
        if any(g.get("name") in (wanted, wanted.encode()) for g in groups):
            return True
        return f"consumer group {wanted} is missing on {self._service.settings.intent_stream}"

    async def rules_ready(self) -> bool | str:
        if self._service.executor is None:
            return self.starting_reason()
        return self._service.executor.gateway.rules.loaded or "exchange rules not loaded yet"

    async def exchange_ready(self) -> bool | str:
        if self._service.executor is None:
            return self.starting_reason()
        gateway = self._service.executor.gateway
        return gateway.reachable or f"the exchange at {gateway.base_url} is unreachable"
