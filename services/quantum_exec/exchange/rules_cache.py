"""The exchange rules (exchangeInfo) per symbol, cached and refreshed in the background."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from quantum_exec.core.rules import SymbolRules, parse_exchange_info
from quantum_exec.exchange.pacing import Limits
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)


class RulesCache:
    """exchangeInfo rules per symbol, refreshed in the background; a failed refresh keeps the last copy."""

    def __init__(self, fetch: Callable[[], Awaitable[dict[str, Any]]], refresh_s: float) -> None:
        self._fetch = fetch
        self._refresh_s = refresh_s
        self._rules: dict[str, SymbolRules] = {}
        self._loaded_at: float | None = None
        self._refresh_requested = asyncio.Event()
        self.raw_limits = Limits()
        metrics.EXCHANGE_INFO_AGE.set_function(self.age_s)

    def age_s(self) -> float:
        return time.monotonic() - self._loaded_at if self._loaded_at is not None else float("nan")

    @property
    def loaded(self) -> bool:
        return self._loaded_at is not None

    def get(self, symbol: str) -> SymbolRules | None:
        return self._rules.get(symbol)

    def all(self) -> dict[str, SymbolRules]:
        """Every symbol's rules as last loaded (empty before the first load)."""
        return dict(self._rules)

    async def load(self) -> None:
        """Fetch and parse exchangeInfo; raises when it fails (the caller keeps the last copy)."""
        try:
            raw = await self._fetch()
            rules = parse_exchange_info(raw)
        except Exception:
            metrics.EXCHANGE_INFO_REFRESHES.labels(outcome="error").inc()
            raise
        self._rules = rules
        self.raw_limits = Limits.from_exchange_info(raw)
        self._loaded_at = time.monotonic()
        metrics.EXCHANGE_INFO_REFRESHES.labels(outcome="ok").inc()
        log.info("rules.loaded", symbols=len(rules))

    def request_refresh(self) -> None:
        """Ask the background loop for an early refresh (after -1111/-4014/-4023)."""
        self._refresh_requested.set()

    async def run(self) -> None:
        """Background loop: refresh every ``refresh_s`` or when asked; never dies on a failure."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh_requested.wait(), timeout=self._refresh_s)
            self._refresh_requested.clear()
            try:
                await self.load()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("rules.refresh_failed", error=type(exc).__name__, detail=str(exc)[:200])
