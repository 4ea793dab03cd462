"""The governor's check before any order of a BUY/SELL: the trading state, the producer's intent
rate, the exposure limits (the executor's :class:`~quantum_exec.execution.ports.RiskCheck`).

The state and the run-time limits are read from Redis for every entry (one round trip), so the
moment a transition is written no instance sends another entry. The positions for the exposure
limits are read from the exchange (``positionRisk``: amounts, marks, leverage) only when such a
limit is on. :class:`HaltAwareCloses` ends working entries (LIMIT, STOP, TWAP) once HALTED, the
way a waiting CLOSE ends them; their filled part keeps its protective legs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from quantum_exec.contracts import TradeIntent
from quantum_exec.errors import IntentRejected, ReasonCode, UnknownOutcomeError
from quantum_exec.execution.ports import CloseRequests, Gateway
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.risk.limits import Holding, Limits, check_entry
from quantum_exec.risk.rounds import OWN_PREFIX
from quantum_exec.risk.states import RiskState, TradingState, admits
from quantum_exec.risk.store import RiskStore
from quantum_exec.stream.link import REDIS_DOWN

log = get_logger(__name__)


def intent_source(intent: TradeIntent) -> str:
    """Whose intent it is, for the rate limit: the producer's ``model``, else its ``source``."""
    for key in ("model", "source", "strategy"):
        value = intent.meta.get(key)
        if isinstance(value, str) and value:
            return value[:64]
    return "unknown"


class RiskGate:
    """Refuses what the state or a limit does not allow, with the numbers; keeps the last state seen."""

    def __init__(self, store: RiskStore, limits: Limits, gateway: Gateway) -> None:
        self._store = store
        self.base_limits = limits
        self._gateway = gateway
        self.state = RiskState()
        self.overrides: dict[str, str] = {}

    @property
    def limits(self) -> Limits:
        return self.base_limits.with_overrides(self.overrides)

    async def refresh(self) -> RiskState:
        """Read the state and the run-time limits; the metrics follow."""
        state, overrides = await self._store.read()
        self.seen(state, overrides)
        return state

    def seen(self, state: RiskState, overrides: dict[str, str]) -> None:
        self.state, self.overrides = state, overrides
        for each in TradingState:
            metrics.RISK_STATE.labels(state=each.value).set(1 if each is state.state else 0)

    async def admit(
        self,
        intent: TradeIntent,
        *,
        reduces: bool,
        quantity: Decimal,
        price: Decimal,
        leverage: int,
    ) -> None:
        """Return when the BUY/SELL may go on; else :class:`IntentRejected` saying why, with numbers."""
        try:
            state = await self.refresh()
        except REDIS_DOWN as exc:
            # Nothing was sent: the intent stays pending and is tried again once Redis answers.
            raise UnknownOutcomeError(f"the trading state cannot be read from Redis ({exc})") from None
        # The governor's own reductions (liquidation distance) run in every state; reduce-only,
        # they can only lower exposure, whoever sends one under that id.
        own = intent.reduce_only and (intent.intent_id or "").startswith(OWN_PREFIX)
        refusal = admits(state.state, close=own, reduces=reduces)
        if refusal is not None:
            metrics.RISK_REFUSED.labels(code=refusal.value).inc()
            raise IntentRejected(
                refusal,
                f"trading is {state.state.value} since {state.since} ({state.reason or 'no reason given'}, "
                f"by {state.by or 'unknown'}): "
                + (
                    "only intents that reduce exposure are executed"
                    if refusal is ReasonCode.TRADING_REDUCING
                    else "only CLOSE intents are executed"
                ),
            )
        limits = self.limits
        if limits.max_intents_per_min is not None and not own:
            source = intent_source(intent)
            count = await self._store.count_intent(source, datetime.now(UTC))
            if count > limits.max_intents_per_min:
                metrics.RISK_REFUSED.labels(code=ReasonCode.RISK_RATE.value).inc()
                raise IntentRejected(
                    ReasonCode.RISK_RATE,
                    f"{source}: {count} intents this minute, above the limit {limits.max_intents_per_min} "
                    "(QUANTUM_RISK_MAX_INTENTS_PER_MIN)",
                )
        if reduces or not (limits.needs_book() or limits.max_leverage is not None):
            return
        book = await self.book() if limits.needs_book() else []
        breach = check_entry(
            limits,
            book,
            symbol=intent.symbol,
            quantity=quantity,
            price=price,
            long=intent.is_long,
            leverage=leverage,
        )
        if breach is not None:
            metrics.RISK_REFUSED.labels(code=ReasonCode.RISK_LIMIT.value).inc()
            log.warning(
                "risk.limit_refused", symbol=intent.symbol, **{k: str(v) for k, v in breach.to_json().items()}
            )
            raise IntentRejected(ReasonCode.RISK_LIMIT, breach.message)

    async def book(self) -> list[Holding]:
        """The open positions with their marks, as the exchange reports them."""
        return [
            Holding(p.symbol, p.amount, p.mark_price, p.leverage)
            for p in await self._gateway.positions()
            if p.amount != 0
        ]

    def status(self) -> dict[str, Any]:
        return {"state": self.state.to_json(), "limits": self.limits.to_json()}


HALTED_ENDS: Final = "trading is HALTED"


class HaltAwareCloses:
    """The CLOSE signals the working entries wait on, and HALTED as one more reason to end them."""

    def __init__(self, inner: CloseRequests | None, gate: RiskGate) -> None:
        self._inner = inner
        self._gate = gate

    async def wait(self, symbol: str, stream_id: str | None, timeout_s: float) -> str | None:
        if self._gate.state.state is TradingState.HALTED:
            return HALTED_ENDS
        if self._inner is None:
            return None
        return await self._inner.wait(symbol, stream_id, timeout_s)
