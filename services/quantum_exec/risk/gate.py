"""The governor's check before any order of a BUY/SELL: the trading state, the producer's intent
rate, the exposure limits (the executor's :class:`~quantum_exec.execution.ports.RiskCheck`).

The state, the run-time limits and the day figures are read from Redis for every entry by the
script that records its admission (one round trip: :mod:`.admissions`); the record stands until the
entry's first order has the exchange's answer, so a restricting transition waits for it; an entry
refused after the read releases it. The positions for the exposure
limits are read from the exchange (``positionRisk``: amounts, marks, leverage) only when such a
limit is on. :class:`HaltAwareCloses` ends working entries (LIMIT, STOP, TWAP) once HALTED, the
way a waiting CLOSE ends them; their filled part keeps its protective legs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from quantum_exec.contracts import TradeIntent
from quantum_exec.contracts.intent import intent_digest
from quantum_exec.core.errors import IntentRejected, ReasonCode, UnknownOutcomeError
from quantum_exec.core.rules import fmt
from quantum_exec.exchange.wire import Position
from quantum_exec.execution.ports import CloseRequests, Gateway
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.risk.admissions import DRAIN_DEADLINE_S, Read
from quantum_exec.risk.dayfigure import Stored, day_limits_on, today
from quantum_exec.risk.limits import Holding, Limits, check_entry, with_reserved
from quantum_exec.risk.rounds import OWN_PREFIX
from quantum_exec.risk.states import REFUSAL, RiskState, TradingState, admits
from quantum_exec.risk.store import RiskStore
from quantum_exec.risk.watch import ACTION, day_breach
from quantum_exec.stream.link import REDIS_DOWN

log = get_logger(__name__)

# How often an admission decides again when other entries reserve or release meanwhile.
_RESERVE_TRIES: Final = 20

# How long an entry waits for a restricting transition under way before it is tried again later.
ADMIT_WAIT_S: Final = DRAIN_DEADLINE_S + 10


def intent_source(intent: TradeIntent) -> str:
    """Whose intent it is, for the rate limit: ``<publisher>/<model>``. The publisher is the stream
    entry's ``source`` (the gateway writes the producer's name it authenticated there; a producer
    appending to the stream itself writes its own), the model what the payload calls itself
    (``model``, else ``source``/``strategy``): a producer naming another's model counts against its
    own budget, not the other's."""
    model = "unknown"
    for key in ("model", "source", "strategy"):
        value = intent.meta.get(key)
        if isinstance(value, str) and value:
            model = value[:64]
            break
    return f"{intent.origin or 'unknown'}/{model}"


def holdings(positions: list[Position]) -> list[Holding]:
    return [Holding(p.symbol, p.amount, p.mark_price, p.leverage) for p in positions if p.amount != 0]


class RiskGate:
    """Refuses what the state or a limit does not allow, with the numbers; keeps the last state seen."""

    def __init__(self, store: RiskStore, limits: Limits, gateway: Gateway) -> None:
        self._store = store
        self.base_limits = limits
        self._gateway = gateway
        self.state = RiskState()
        self.overrides: dict[str, str] = {}
        self.day_fields: dict[str, str] = {}
        self._gauged = False
        self._limits: tuple[dict[str, str], Limits] | None = None
        # Called when an admission finds the day's limit crossed (the holder checks at once).
        self.on_breach: Callable[[], None] | None = None

    @property
    def limits(self) -> Limits:
        if self._limits is None or self._limits[0] != self.overrides:  # parsed once per change
            self._limits = (self.overrides, self.base_limits.with_overrides(self.overrides))
        return self._limits[1]

    async def refresh(self) -> RiskState:
        """Read the state and the run-time limits; the metrics follow."""
        state, overrides, self.day_fields = await self._store.read_with_day()
        self.seen(state, overrides)
        return state

    def seen(self, state: RiskState, overrides: dict[str, str]) -> None:
        if state.state is not self.state.state or not self._gauged:
            self._gauged = True
            for each in TradingState:
                metrics.RISK_STATE.labels(state=each.value).set(1 if each is state.state else 0)
        self.state, self.overrides = state, overrides

    async def _read(self, key: str | None, give_up: float, *, reduces: bool = False) -> Read | None:
        """Read the state (and the limits and day figures) and record ``key``'s admission under it
        in one round trip (:meth:`.admissions.Admissions.admit`: not recorded when the state refuses
        it), waiting while a restricting transition drains; None: the wait ran out."""
        while True:
            read = await self._store.admissions.admit(key, reduces=reduces)
            if read is not None:
                self.day_fields = read.day
                self.seen(RiskState.from_fields(read.state), read.limits)
                return read
            if time.monotonic() >= give_up:
                return None
            await asyncio.sleep(0.005)

    async def admit(
        self,
        intent: TradeIntent,
        *,
        key: str,
        reduces: bool,
        quantity: Decimal,
        price: Decimal,
        leverage: int,
        entry: bool = True,
    ) -> bool:
        """Return when the BUY/SELL may go on; else :class:`IntentRejected` saying why, with numbers.
        True when it was admitted only because it reduces (a restricting state): it must then be
        sent reduce-only, so it cannot open a position if the one it reduces is gone meanwhile.

        An admitted entry (``entry``: it sends an order that may add exposure) is recorded with the
        state it is decided on, in the script that reads that state (:mod:`.admissions`), so the
        decision cannot go stale: a restricting transition waits for it. Refused (or the governor's
        own, which holds nothing back), the record is released; admitted, the caller calls
        :meth:`settled` once its first order has the exchange's answer or nothing was sent. A
        restricting transition under way makes it wait (at most :data:`ADMIT_WAIT_S`)."""
        give_up = time.monotonic() + ADMIT_WAIT_S
        recorded = False
        try:
            read = await self._read(key if entry else None, give_up, reduces=reduces)
            recorded = read is not None and read.recorded
            if read is None:
                raise UnknownOutcomeError(
                    "a change of the trading state is still under way: tried again later"
                )
            state = await self._decide(
                intent,
                self.state,
                key=key,
                reduces=reduces,
                quantity=quantity,
                price=price,
                leverage=leverage,
            )
        except REDIS_DOWN as exc:
            # Nothing was sent: the intent stays pending and is tried again once Redis answers.
            if recorded:
                await self.settled(key)
            raise UnknownOutcomeError(f"the trading state cannot be read from Redis ({exc})") from None
        except BaseException:
            if recorded:
                await self.settled(key)  # refused: it holds no transition back
            raise
        if state is None and recorded:
            await self.settled(key)  # the governor's own reduction runs in every state
        return state is not None and state.state is not TradingState.ACTIVE and reduces

    async def settled(self, key: str) -> None:
        """The admitted entry's first order has the exchange's answer, or nothing was sent (the
        record is removed off the order path: :meth:`.admissions.Admissions.settled`)."""
        await self._store.admissions.settled(key)

    async def _decide(
        self,
        intent: TradeIntent,
        state: RiskState,
        *,
        key: str,
        reduces: bool,
        quantity: Decimal,
        price: Decimal,
        leverage: int,
    ) -> RiskState | None:
        """The state the intent was admitted in (None: the governor's own, nothing to record), or
        :class:`IntentRejected`."""
        # The governor's own reductions (liquidation distance) run in every state and are not
        # rate-limited: only the very intent it published under that id (its digest), never a
        # producer's re-using the id.
        own = intent.reduce_only and await self.is_own(intent)
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
            count = await self._store.count_intent(source, key, datetime.now(UTC))
            if count > limits.max_intents_per_min:
                metrics.RISK_REFUSED.labels(code=ReasonCode.RISK_RATE.value).inc()
                raise IntentRejected(
                    ReasonCode.RISK_RATE,
                    f"{source}: {count} intents this minute, above the limit {limits.max_intents_per_min} "
                    "(QUANTUM_RISK_MAX_INTENTS_PER_MIN)",
                )
        if own:
            return None
        if reduces:
            return state
        # The exposure limits' reservations are read before the positions (see .reservations).
        reserving = limits.needs_book()
        epoch, reserved = await self._reserved(key) if reserving else (0, [])
        positions: list[Position] | None = None
        if day_limits_on(limits) and state.state is TradingState.ACTIVE:
            positions = await self._day_check(state, limits)
        if not (reserving or limits.max_leverage is not None):
            return state
        for _ in range(_RESERVE_TRIES):
            if positions is None and reserving:
                positions = await self._gateway.positions()
            breach = check_entry(
                limits,
                with_reserved(holdings(positions or []), reserved),
                symbol=intent.symbol,
                quantity=quantity,
                price=price,
                long=intent.is_long,
                leverage=leverage,
            )
            if breach is not None:
                metrics.RISK_REFUSED.labels(code=ReasonCode.RISK_LIMIT.value).inc()
                log.warning(
                    "risk.limit_refused",
                    symbol=intent.symbol,
                    **{k: str(v) for k, v in breach.to_json().items()},
                )
                raise IntentRejected(ReasonCode.RISK_LIMIT, breach.message)
            if not reserving:
                return state
            adds = Holding(intent.symbol, quantity if intent.is_long else -quantity, price)
            try:
                if await self._store.reservations.reserve(epoch, key, adds):
                    return state
            except REDIS_DOWN as exc:
                raise UnknownOutcomeError(f"the entry's reservation cannot be written ({exc})") from None
            # Another entry reserved or was released meanwhile: decide again with it counted.
            epoch, reserved = await self._reserved(key)
            positions = None
        raise UnknownOutcomeError("the exposure limits' reservations kept changing: tried again later")

    async def _reserved(self, key: str) -> tuple[int, list[Holding]]:
        try:
            return await self._store.reservations.snapshot(key)
        except REDIS_DOWN as exc:
            raise UnknownOutcomeError(f"the exposure reservations cannot be read ({exc})") from None

    async def _day_check(self, state: RiskState, limits: Limits) -> list[Position] | None:
        """Refuse an entry once the day's loss or drawdown is past its limit, even before the lease
        holder's check has made the transition (:mod:`.dayfigure`); the positions read, if any."""
        stored = Stored.from_fields(self.day_fields)
        now = datetime.now(UTC)
        if stored is None or stored.day.day != today(now) or state.forced_day == stored.day.day:
            return None
        positions = await self._gateway.positions()
        day = stored.now_with(positions)
        breach = day_breach(limits, day)
        if breach is None:
            return positions
        name, current, maximum = breach
        to = ACTION[limits.on_daily_loss]
        code = REFUSAL[to]
        metrics.RISK_REFUSED.labels(code=code.value).inc()
        if self.on_breach is not None:
            self.on_breach()
        raise IntentRejected(
            code,
            f"{name}: {fmt(current)} reached the limit {fmt(maximum)} (day {day.day}, PnL {fmt(day.pnl)}): "
            f"trading becomes {to.value} (on_daily_loss={limits.on_daily_loss.value}); "
            "this entry adds exposure",
        )

    async def admits_child(self, intent: TradeIntent, *, key: str, reduces: bool) -> str | None:
        """Before a later child of an admitted entry: admitted like an entry against the state read
        now (and the day's figure), recorded until :meth:`settled`; else why the schedule ends."""
        recorded = False
        try:
            read = await self._read(key, time.monotonic() + ADMIT_WAIT_S, reduces=reduces)
            if read is None:
                return "a change of the trading state is still under way"
            recorded = read.recorded
            state = self.state
            refusal = admits(state.state, close=False, reduces=reduces)
            if refusal is not None:
                if recorded:
                    await self.settled(key)
                reason = state.reason or "no reason given"
                return f"trading is {state.state.value} since {state.since} ({reason})"
            limits = self.limits
            if not reduces and day_limits_on(limits) and state.state is TradingState.ACTIVE:
                await self._day_check(state, limits)
        except IntentRejected as exc:
            if recorded:
                await self.settled(key)
            return exc.message
        except REDIS_DOWN as exc:
            if recorded:
                await self.settled(key)
            return f"the trading state cannot be read from Redis ({exc})"
        except BaseException:
            if recorded:
                await self.settled(key)
            raise
        return None

    @property
    def restricted(self) -> bool:
        """Trading was not ACTIVE at the last read (:meth:`refresh`)."""
        return self.state.state is not TradingState.ACTIVE

    async def still_admitted(self, key: str) -> None:
        """Right before an admitted entry's order leaves: :class:`IntentRejected` with the
        transition's reason when that transition went ahead without it (:mod:`.admissions`; no
        round trip while this instance's admission is fresh: :meth:`.admissions.Admissions.revoked`)."""
        try:
            why = await self._store.admissions.revoked(key)
        except REDIS_DOWN as exc:
            raise UnknownOutcomeError(f"the entry's admission cannot be read from Redis ({exc})") from None
        if why is None:
            return
        state, _, reason = why.partition("|")
        code = (
            ReasonCode.TRADING_HALTED if state == TradingState.HALTED.value else ReasonCode.TRADING_REDUCING
        )
        metrics.RISK_REFUSED.labels(code=code.value).inc()
        raise IntentRejected(
            code,
            f"trading went {state} ({reason or 'no reason given'}) while this entry waited between its "
            "admission and its send: nothing was sent",
        )

    async def adopt(self, intent: TradeIntent, *, key: str, quantity: Decimal, price: Decimal) -> None:
        """A resumed attempt found its entry on the exchange: what it adds is reserved again
        (:meth:`.reservations.Reservations.adopt`), under the exposure limits."""
        if not self.limits.needs_book():
            return
        adds = Holding(intent.symbol, quantity if intent.is_long else -quantity, price)
        try:
            await self._store.reservations.adopt(key, adds)
        except REDIS_DOWN as exc:
            raise UnknownOutcomeError(f"the entry's reservation cannot be written ({exc})") from None

    async def release(self, key: str, *, lapse: bool = False) -> None:
        """The entry has its result: its reservation is freed (``lapse``: its attempt is left to a
        later one; the reservation lapses with its lease unless that attempt reserves again)."""
        self._store.admissions.forget(key)  # not settled by now: its record lapses
        reservations = self._store.reservations
        if lapse:
            reservations.forget(key)
        elif key in reservations.held or self.limits.needs_book():
            await reservations.release(key)

    async def is_own(self, intent: TradeIntent) -> bool:
        """Whether ``intent`` is one the governor published itself (:mod:`.rounds`)."""
        intent_id = intent.intent_id or ""
        if not intent_id.startswith(OWN_PREFIX):
            return False
        try:
            digest = await self._store.own_digest(intent_id)
        except REDIS_DOWN as exc:
            raise UnknownOutcomeError(f"the governor's intents cannot be read from Redis ({exc})") from None
        return digest is not None and digest == intent_digest(intent)

    async def book(self) -> list[Holding]:
        """The open positions with their marks, as the exchange reports them."""
        return holdings(await self._gateway.positions())

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
