"""The account-wide checks of the lease holder: the day's loss, the drawdown from the day's equity
peak, the distance of each position to its liquidation price (issue #28).

* **Day figure**: from the ledger, the net PnL (realized - commission + funding) of the round trips
  closed this UTC day plus what the open ones have booked, plus the unrealized PnL of the open
  positions (``positionRisk``: the live view carries no marks). At or below
  ``-max_daily_loss_usd``: ``on_daily_loss`` (REDUCING, HALTED, HALTED + flatten); a HALT for it
  needs ``--force`` to be left before the next UTC day, and after a forced resume the governor
  leaves the day's loss to the operator until the next UTC day.
* **Drawdown**: equity (wallet balance + unrealized) against the day's peak (kept in Redis per
  day); ``max_drawdown_pct`` or more: the same action as the daily loss.
* **Liquidation distance**: a position whose mark is within ``min_liq_distance_pct`` of its
  liquidation price is reduced by half with a reduce-only intent of the governor's own
  (:mod:`.rounds`, ``risk-liq<day>-<SYMBOL>-<n>-<mac>``), again after each one is done, until it is not;
  from the third round on, what is left is closed (an isolated position's liquidation price does
  not move as it shrinks).

Each check also sets how much of its limit is used (``quantum_exec_risk_limit_use_ratio``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from redis.asyncio import Redis

from quantum_exec.core.settings import DailyLossAction, Settings
from quantum_exec.exchange.wire import Position
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.risk.booked import ClosedToday
from quantum_exec.risk.limits import Limits
from quantum_exec.risk.rounds import Rounds
from quantum_exec.risk.states import GOVERNOR, Request, RiskState, TradingState, TransitionRefused
from quantum_exec.risk.store import Fence, RiskStore

if TYPE_CHECKING:
    from quantum_exec.exchange.gateway import BinanceGateway
    from quantum_exec.ledger.book import LedgerBook

log = get_logger(__name__)

HUNDRED: Final = Decimal(100)
_DAY_TTL_S: Final = 3 * 86_400
MAX_LIQ_ROUNDS: Final = 20
HALVINGS: Final = 2
ACTION: Final = {
    DailyLossAction.REDUCE: TradingState.REDUCING,
    DailyLossAction.HALT: TradingState.HALTED,
    DailyLossAction.HALT_FLATTEN: TradingState.HALTED,
}


@dataclass(frozen=True, slots=True)
class Day:
    """The UTC day's figures: booked (ledger), unrealized, equity and its peak (None: not read)."""

    day: str
    booked: Decimal
    unrealized: Decimal
    equity: Decimal | None = None
    peak: Decimal | None = None

    @property
    def pnl(self) -> Decimal:
        return self.booked + self.unrealized

    @property
    def drawdown_pct(self) -> Decimal | None:
        if self.equity is None or self.peak is None or self.peak <= 0:
            return None
        return max(Decimal(0), (self.peak - self.equity) / self.peak * HUNDRED)

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "pnl": self.pnl,
            "booked": self.booked,
            "unrealized": self.unrealized,
            "equity": self.equity,
            "peak_equity": self.peak,
            "drawdown_pct": self.drawdown_pct,
        }


def day_breach(limits: Limits, day: Day) -> tuple[str, Decimal, Decimal] | None:
    """(limit, current, maximum) of the day's loss or drawdown when one is reached, else None."""
    if limits.max_daily_loss_usd is not None and day.pnl <= -limits.max_daily_loss_usd:
        return "max_daily_loss_usd", -day.pnl, limits.max_daily_loss_usd
    drawdown = day.drawdown_pct
    if limits.max_drawdown_pct is not None and drawdown is not None and drawdown >= limits.max_drawdown_pct:
        return "max_drawdown_pct", drawdown, limits.max_drawdown_pct
    return None


def liq_distance_pct(position: Position) -> Decimal | None:
    """How far the mark is from the liquidation price, in percent of the mark (None: no such price)."""
    if position.amount == 0 or position.liquidation_price <= 0 or position.mark_price <= 0:
        return None
    return abs(position.mark_price - position.liquidation_price) / position.mark_price * HUNDRED


def uses(limits: Limits, day: Day, positions: list[Position]) -> dict[str, Decimal]:
    """How much of each limit that is on is used (1 = at the limit)."""
    found: dict[str, Decimal] = {}
    if limits.max_daily_loss_usd is not None:
        found["max_daily_loss_usd"] = max(Decimal(0), -day.pnl) / limits.max_daily_loss_usd
    drawdown = day.drawdown_pct
    if limits.max_drawdown_pct is not None and drawdown is not None:
        found["max_drawdown_pct"] = drawdown / limits.max_drawdown_pct
    gross = sum((abs(p.amount) * p.mark_price for p in positions), Decimal(0))
    if limits.max_gross_notional_usd is not None:
        found["max_gross_notional_usd"] = gross / limits.max_gross_notional_usd
    if limits.max_symbol_notional_usd is not None and positions:
        biggest = max(abs(p.amount) * p.mark_price for p in positions)
        found["max_symbol_notional_usd"] = biggest / limits.max_symbol_notional_usd
    if limits.max_open_positions is not None:
        found["max_open_positions"] = Decimal(len(positions)) / limits.max_open_positions
    distances = [d for d in (liq_distance_pct(p) for p in positions) if d is not None]
    if limits.min_liq_distance_pct is not None and distances:
        found["min_liq_distance_pct"] = limits.min_liq_distance_pct / max(min(distances), Decimal("0.0001"))
    return found


class Watch:
    """The holder's checks, once per ``QUANTUM_RISK_CHECK_INTERVAL_S``."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        store: RiskStore,
        rounds: Rounds,
        gateway: BinanceGateway,
        ledger: LedgerBook | None,
    ) -> None:
        self._redis = redis
        self._peak_prefix = f"{settings.key_prefix}:risk:peak:"
        self._store = store
        self._rounds = rounds
        self._gateway = gateway
        self._ledger = ledger
        self._closed = None if ledger is None else ClosedToday(ledger)
        self.last: Day | None = None

    async def booked(self, since: datetime) -> Decimal:
        """The ledger's net PnL of the round trips closed since ``since`` (followed, not read again:
        :mod:`.booked`), plus the open ones'."""
        if self._ledger is None or self._closed is None:
            return Decimal(0)
        closed = await self._closed.since(since)
        opened = await self._ledger.open_trades()
        return sum((t.net_pnl for t in opened), closed)

    async def day(self, limits: Limits, positions: list[Position], now: datetime) -> Day:
        start = datetime(now.year, now.month, now.day, tzinfo=UTC)
        unrealized = sum((p.unrealized_pnl for p in positions), Decimal(0))
        booked = await self.booked(start)
        name = start.date().isoformat()
        if limits.max_drawdown_pct is None:
            return Day(name, booked, unrealized)
        equity = await self._gateway.wallet_balance() + unrealized
        key = self._peak_prefix + name
        raw: Any = await self._redis.get(key)
        kept = Decimal(raw.decode() if isinstance(raw, bytes) else raw) if raw is not None else None
        peak = equity if kept is None else max(kept, equity)
        if kept is None or peak != kept:
            await self._redis.set(key, str(peak), ex=_DAY_TTL_S)
        return Day(name, booked, unrealized, equity, peak)

    async def check(self, limits: Limits, state: RiskState, fence: Fence) -> None:
        now = datetime.now(UTC)
        positions = [p for p in await self._gateway.positions() if p.amount != 0]
        day = self.last = await self.day(limits, positions, now)
        metrics.RISK_LIMIT_USE.clear()
        for name, ratio in uses(limits, day, positions).items():
            metrics.RISK_LIMIT_USE.labels(limit=name).set(float(ratio))
        breach = day_breach(limits, day)
        if breach is not None and state.forced_day != day.day:  # an operator forced trading on today
            await self._act(limits, state.state, breach, day, fence)
        if limits.min_liq_distance_pct is not None:
            for position in positions:
                distance = liq_distance_pct(position)
                if distance is not None and distance < limits.min_liq_distance_pct:
                    await self._reduce(position, distance, limits.min_liq_distance_pct, day.day, fence)

    async def _act(
        self,
        limits: Limits,
        state: TradingState,
        breach: tuple[str, Decimal, Decimal],
        day: Day,
        fence: Fence,
    ) -> None:
        name, current, maximum = breach
        action = limits.on_daily_loss
        to = ACTION[action]
        if state is to or (state is TradingState.HALTED and to is TradingState.REDUCING):
            return
        request = Request(
            to,
            f"{name}: {current} reached the limit {maximum}",
            GOVERNOR,
            flatten=action is DailyLossAction.HALT_FLATTEN,
            lock_day=to is TradingState.HALTED,
        )
        numbers = {**day.to_json(), "current": current, "max": maximum, "on_daily_loss": action.value}
        try:
            await self._store.transition(request, fence=fence, numbers=numbers, limit=name)
        except TransitionRefused as exc:
            log.info("risk.transition_skipped", reason=str(exc))

    async def _reduce(
        self, position: Position, distance: Decimal, minimum: Decimal, day: str, fence: Fence
    ) -> None:
        symbol, amount = position.symbol, position.amount

        def make(round_: int) -> tuple[dict[str, Any], dict[str, Any]]:
            why = f"liquidation distance {distance:.4f} % below {minimum} %"
            payload: dict[str, Any] = {
                "side": "SELL" if amount > 0 else "BUY",
                "quantity": str(abs(amount) / 2),
                "reduce_only": True,
                "reason": why,
            }
            if position.leverage is not None:
                payload["leverage"] = position.leverage  # as set: a reduction changes no setting
            if round_ > HALVINGS:
                # An isolated position's liquidation price does not move as it shrinks: after
                # two halvings what is left is closed.
                payload = {"side": "CLOSE", "reason": why}
            event = {
                "kind": "liquidation_reduce",
                "reason": f"{symbol}: mark {position.mark_price} within {minimum} % of its liquidation "
                f"price {position.liquidation_price}: "
                + ("reduced by half (reduce-only)" if round_ <= HALVINGS else "closed"),
                "limit": "min_liq_distance_pct",
                "numbers": {
                    "position_amount": amount,
                    "mark_price": position.mark_price,
                    "liquidation_price": position.liquidation_price,
                    "distance_pct": distance,
                    "min": minimum,
                },
            }
            return payload, event

        await self._rounds.advance(f"liq{day.replace('-', '')}", symbol, fence, make, MAX_LIQ_ROUNDS)
