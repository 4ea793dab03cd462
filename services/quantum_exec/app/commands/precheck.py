"""``submit``'s check before publishing: the service's own checks, run here, so what the service
would refuse is refused with its reason code instead of being published and rejected later.

Nothing is copied: the intent is parsed by the service's parser, checked by its
:class:`~quantum_exec.execution.guards.Guards` (freshness, symbol, leverage, size, notional, SL/TP
side) against the exchange's own rules and mark price, and a re-used ``intent_id`` is compared
with the digest the service recorded for it (``INTENT_ID_CONFLICT``). The exchange is the one the
service uses: the address an embedded ``serve`` recorded, else ``QUANTUM_BINANCE_BASE_URL`` or the
environment's. When it cannot be asked, the exchange checks are skipped with a note (the service
still makes them).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from quantum_exec.contracts import Side, TradeIntent, intent_digest
from quantum_exec.core.errors import ConfigError, ExchangeError, IntentRejected, ReasonCode
from quantum_exec.core.settings import ExchangeEnv, Settings


def refused(code: str, message: str) -> ConfigError:
    return ConfigError(f"not submitted: {code}: {message}")


async def check_intent_id(redis: Redis, settings: Settings, intent: TradeIntent) -> None:
    """INTENT_ID_CONFLICT when the id was recorded for another intent (the service would
    dead-letter this one and keep the first one's result)."""
    if not intent.intent_id:
        return
    from quantum_exec.stream.store import Keys

    stored: Any = await redis.hget(Keys(settings).idempotency(intent.intent_id), "hash")
    if stored is None:
        return
    if (stored.decode() if isinstance(stored, bytes) else str(stored)) != intent_digest(intent):
        raise refused(
            str(ReasonCode.INTENT_ID_CONFLICT),
            f"intent_id {intent.intent_id!r} was already used for a different intent; its result "
            f"stands (quantum-exec results --intent {intent.intent_id})",
        )


def _exchange_url(settings: Settings) -> str:
    """Where the service's exchange is: its REST root, or the simulator an embedded serve started."""
    from quantum_exec.app.runtime import read_endpoints
    from quantum_exec.exchange.endpoints import rest_root

    if settings.exchange is ExchangeEnv.SIM and not settings.binance_base_url:
        recorded = read_endpoints().get("exchange_url")
        if not recorded:
            raise ValueError("QUANTUM_BINANCE_BASE_URL is unset and no running serve recorded its simulator")
        return str(recorded)
    return rest_root(settings)


async def check_on_exchange(settings: Settings, intent: TradeIntent) -> None:
    """The service's pre-trade guards, on the exchange's rules and mark price."""
    from quantum_exec.app.embedded import with_sim_credentials
    from quantum_exec.exchange.gateway import BinanceGateway
    from quantum_exec.execution.guards import Guards
    from quantum_exec.execution.run import Run

    run = Run(intent, intent.intent_id or "cli-check", None, datetime.now(UTC))
    guards = Guards(settings, _PublicLeverage(None))  # freshness first: it needs no exchange
    try:
        guards.check_fresh(run)
    except IntentRejected as exc:
        raise refused(str(exc.code), exc.message) from None
    try:
        url = _exchange_url(settings)
        gateway = BinanceGateway(with_sim_credentials(settings), url)
    except (ExchangeError, ValueError) as exc:
        _skipped(str(exc))
        return
    try:
        await gateway.sync_time()
        await gateway.rules.load()
        guards = Guards(settings, _PublicLeverage(gateway))
        if intent.side in (Side.CLOSE, Side.MODIFY):
            # Nothing to size: the position's own checks (NO_POSITION, SL_TP_WRONG_SIDE) are the
            # service's, at the moment it acts.
            guards.rules_for(intent.symbol)
        else:
            await guards.pre_trade(run, long=intent.side is Side.BUY)
    except IntentRejected as exc:
        raise refused(str(exc.code), exc.message) from None
    except ExchangeError as exc:
        _skipped(f"the exchange at {url} could not be asked ({exc})")
    finally:
        await gateway.close()


class _PublicLeverage:
    """The gateway as the guards see it, except that a symbol's leverage bracket (a signed request)
    is left to the service when this client's keys cannot ask for it."""

    def __init__(self, gateway: Any) -> None:
        self._gateway = gateway

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gateway, name)

    async def max_leverage(self, symbol: str) -> int | None:
        try:
            return await self._gateway.max_leverage(symbol)  # type: ignore[no-any-return]
        except ExchangeError:
            return None


def _skipped(why: str) -> None:
    sys.stderr.write(f"quantum-exec: note: exchange checks skipped, the service will make them: {why}\n")
