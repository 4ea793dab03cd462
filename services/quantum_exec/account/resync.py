"""Resync, gap replay and reconciliation of the account follower.

On every (re)connect (and takeover) REST snapshots are merged into the view by time: fills that
arrive while they travel survive them (:meth:`.state.AccountState.resync`). Before that, the fills
of the gap (``userTrades`` since the last fill seen, each order looked up for its client id, our
legs that went final looked up for the order they triggered) are replayed through the same path
as pushed fills, so their events are published and their siblings cancelled. The lease holder
then runs :func:`.reconcile.plan_reconcile` on the merged view against the intent records.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from quantum_exec.account.events import ExecutionType, OrderTradeUpdate, PositionSide
from quantum_exec.account.lease import AccountLease
from quantum_exec.account.live_oco import LiveOco
from quantum_exec.account.oco import Cancel
from quantum_exec.account.positions import PositionEvent, PositionKind, PositionReason, PositionView
from quantum_exec.account.publishing import Publisher
from quantum_exec.account.reconcile import Protect, RecordFlat, ReportExternal, plan_reconcile
from quantum_exec.account.roles import intent_digest
from quantum_exec.account.state import AccountState
from quantum_exec.account.store import AccountStore
from quantum_exec.account.views import AlgoView
from quantum_exec.core.ids import client_order_id
from quantum_exec.exchange.fencing import OwnershipLost, reset_check, set_check
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.exchange.wire import AlgoOrder, Order, OrderSide, OrderStatus, OrderType, Position, Trade
from quantum_exec.execution.legs import LegOrder, LegPlacer
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

ZERO: Final = Decimal(0)
# When nothing is known of a symbol's last fill, a gap is searched this far back.
_GAP_LOOKBACK_MS: Final = 60_000


class Resyncer:
    """The REST side of following the account.

    ``on_fill`` takes each fill of the gap the view had not applied (position before and after),
    as the follower takes pushed ones; ``synced`` is set after the first resync.
    """

    def __init__(
        self,
        gateway: BinanceGateway,
        legs: LegPlacer,
        store: AccountStore,
        state: AccountState,
        lease: AccountLease,
        oco: LiveOco,
        publisher: Publisher,
        on_fill: Callable[[OrderTradeUpdate, PositionView, PositionView], None],
        synced: asyncio.Event,
    ) -> None:
        self._gateway = gateway
        self._legs = legs
        self._store = store
        self._state = state
        self._lease = lease
        self._oco = oco
        self._publisher = publisher
        self._on_fill = on_fill
        self._synced = synced
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        """True while a resync runs (another one waits for it)."""
        return self._lock.locked()

    async def run(self) -> None:
        """Merge REST snapshots into the view (after replaying the gap), then reconcile as holder."""
        async with self._lock:
            try:
                # Events keep arriving while the snapshots travel: the view merges them by time.
                asked_ms = int(time.time() * 1000)
                positions = await self._gateway.positions()
                algos = await self._gateway.open_algo_orders()
                if self._state.generation > 0:
                    await self._replay_gap(positions, algos)
                self._state.resync(positions, algos, as_of_ms=asked_ms)
            except Exception:
                metrics.ACCOUNT_RESYNCS.labels(outcome="failed").inc()
                raise
            metrics.ACCOUNT_RESYNCS.labels(outcome="ok").inc()
            metrics.USER_STREAM_LAST_EVENT.set(time.time())
            metrics.OPEN_POSITIONS.set(self._state.open_count())
            if self._lease.leader:
                # The merged view, not the raw snapshots: a fill they missed is a position still.
                await self._reconcile(self._state.positions(), self._state.open_algo_orders())
                for symbol in sorted(self._state.symbols()):
                    self._oco.kick(symbol)
            self._synced.set()

    async def _replay_gap(self, positions: list[Position], algos: list[AlgoOrder]) -> None:
        """Fills missed while the socket was down, applied (and published) as if they had been pushed."""
        rest = {p.symbol: p.amount for p in positions if p.position_side == "BOTH"}
        still_open = {a.client_algo_id for a in algos}
        for symbol in sorted(self._state.symbols() | set(rest)):
            if rest.get(symbol, ZERO) == self._state.known_amount(symbol):
                continue
            # Legs of ours that ended during the gap: their triggered order ids name the fills.
            for leg in self._state.own_protective_known(symbol):
                if leg.client_algo_id not in still_open:
                    found = await self._legs.find(leg.client_algo_id)
                    if found is not None:
                        self._state.record_algo(found)
            since = self._state.last_fill_ms(symbol)
            start = since + 1 if since else int(time.time() * 1000) - _GAP_LOOKBACK_MS
            orders: dict[int, Order | None] = {}
            for trade in await self._gateway.user_trades_since(symbol, start):
                if self._state.has_trade(symbol, trade.order_id, trade.trade_id):
                    continue
                if trade.order_id not in orders:
                    orders[trade.order_id] = await self._gateway.get_order_by_id(symbol, trade.order_id)
                fill = _fill_of(symbol, trade, orders[trade.order_id])
                applied = self._state.apply(fill)
                if applied.fill is not None and applied.before is not None and applied.after is not None:
                    log.info(
                        "account.gap_fill", symbol=symbol, order_id=trade.order_id, trade_id=trade.trade_id
                    )
                    self._on_fill(applied.fill, applied.before, applied.after)

    async def _reconcile(self, positions: list[PositionView], algos: list[AlgoView]) -> None:
        stored = await self._store.records()
        records = [r for r in (rec.as_intent_record() for rec in stored) if r is not None]
        by_client_id = {a.client_algo_id: a for a in algos}
        external = 0
        token = set_check(self._lease.still_leader)
        try:
            for action in plan_reconcile(positions, algos, records):
                kind = type(action).__name__
                try:
                    if isinstance(action, Cancel):
                        await self._oco.cancel(by_client_id[action.client_algo_id].algo_id, action.reason)
                    elif isinstance(action, Protect):
                        await self._protect(action, by_client_id)
                    elif isinstance(action, RecordFlat):
                        digest = intent_digest(client_order_id(action.intent_key, "entry"))
                        if digest:
                            await self._store.drop_record(action.symbol, digest)
                    elif isinstance(action, ReportExternal):
                        external += 1
                        await self._report_external(action)
                except OwnershipLost:
                    log.warning(
                        "reconcile.not_leader", detail="the account lease is not ours: nothing more sent"
                    )
                    break
                except Exception as exc:
                    metrics.RECONCILE_ACTIONS.labels(action=kind, outcome="failed").inc()
                    log.error(
                        "reconcile.failed",
                        action=kind,
                        symbol=action.symbol,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                else:
                    metrics.RECONCILE_ACTIONS.labels(action=kind, outcome="done").inc()
                    log.info("reconcile.done", action=kind, symbol=action.symbol)
        finally:
            reset_check(token)
        metrics.EXTERNAL_POSITIONS.set(external)

    async def _protect(self, action: Protect, by_client_id: dict[str, AlgoView]) -> None:
        old = by_client_id.get(action.replaces) if action.replaces is not None else None
        if old is not None:
            await self._oco.replace_leg(old, action.quantity, "protection too small", action.trigger_price)
        else:
            await self._oco.place_leg(
                LegOrder(
                    action.symbol,
                    action.side,
                    OrderType(action.order_type),
                    action.trigger_price,
                    action.client_algo_id,
                    action.quantity,
                )
            )
        log.warning(
            "reconcile.protected",
            symbol=action.symbol,
            role=action.role,
            client_algo_id=action.client_algo_id,
            trigger_price=str(action.trigger_price),
            quantity=str(action.quantity),
        )

    async def _report_external(self, action: ReportExternal) -> None:
        log.warning(
            "position.external",
            symbol=action.symbol,
            amount=str(action.amount),
            ours=str(action.ours),
            detail="a position this service did not open: reported, never touched",
        )
        now = datetime.now(UTC)
        event = PositionEvent(
            event_id=f"{action.symbol}:external:{action.amount}:{action.entry_price}:{action.ours}",
            symbol=action.symbol,
            kind=PositionKind.OPENED,
            reason=PositionReason.EXTERNAL,
            position_amount=action.amount,
            entry_price=action.entry_price,
            price=action.entry_price,
            quantity=abs(action.amount) - action.ours,
            realized_pnl=ZERO,
            commission=ZERO,
            order_id=0,
            time=now.replace(microsecond=now.microsecond // 1000 * 1000),
        )
        await self._publisher.publish(event)


def _fill_of(symbol: str, trade: Trade, order: Order | None) -> OrderTradeUpdate:
    """A trade fetched by REST, shaped as the ORDER_TRADE_UPDATE that would have pushed it."""
    return OrderTradeUpdate(
        event_time_ms=trade.time_ms,
        transaction_time_ms=trade.time_ms,
        symbol=symbol,
        client_order_id=order.client_order_id if order is not None else "",
        side=OrderSide(trade.side),
        order_type=order.order_type.value if order is not None else "MARKET",
        original_type=order.orig_type if order is not None else "",
        execution_type=ExecutionType.TRADE,
        status=order.status if order is not None else OrderStatus.FILLED,
        order_id=trade.order_id,
        orig_qty=order.orig_qty if order is not None else trade.qty,
        price=ZERO,
        avg_price=order.avg_price if order is not None else trade.price,
        stop_price=ZERO,
        last_qty=trade.qty,
        cum_qty=order.executed_qty if order is not None else trade.qty,
        last_price=trade.price,
        commission=trade.commission,
        commission_asset=trade.commission_asset,
        realized_profit=trade.realized_pnl,
        trade_id=trade.trade_id,
        trade_time_ms=trade.time_ms,
        maker=trade.maker,
        reduce_only=order.reduce_only if order is not None else False,
        close_position=False,
        position_side=PositionSide.BOTH,
    )
