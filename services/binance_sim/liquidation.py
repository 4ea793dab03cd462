"""Forced liquidation (over the ledger; binance_sim.margin has the maths).

Binance, "Liquidation" (futures FAQ): "A liquidation is triggered when Collateral = Initial Collateral
+ Realized PnL + Unrealized PnL < Maintenance Margin", judged at the mark price ("Liquidation occurs
when Mark Price hits the liquidation price"): for an isolated position its isolated wallet plus its
unrealized PnL against its maintenance margin; in cross margin the account's cross margin balance
against the maintenance margin of all cross positions. "On liquidation, all open orders are
immediately cancelled"; "all liquidation orders are Immediate or Cancel orders" "issued at the
bankruptcy price" (the price at which the position's margin is gone), so the order's ``price`` is the
bankruptcy price while it fills at the market (here: the mark, or the bankruptcy price if the mark
is already beyond it). A liquidation fee (``liquidationFee`` of exchangeInfo, on the liquidated
notional, at most what margin is left) goes to the insurance fund: an INSURANCE_CLEAR income row and
an ACCOUNT_UPDATE of that reason (one of the documented reasons "m" of "Event: Balance and Position
Update"), after the ORDER one of the liquidation fill.
Binance's forced orders carry ``clientOrderId`` "autoclose-<time><sequence>" and are, in REST (``GET
/fapi/v1/forceOrders`` "User's Force Orders" example, also allOrders and query), ``type`` LIMIT,
``origType`` LIMIT, ``timeInForce`` IOC; in the user data stream ("Event: Order Update") order type
LIQUIDATION, and their fill is execution type CALCULATED ("Liquidation Execution"). The open orders
of the symbol end EXPIRED with expiry reason 5 ("Order has expired when the account was liquidated",
the ``er`` list of that page); its algo orders are CANCELED.

Binance, "Event: Margin Call": MARGIN_CALL is pushed "when the user's position risk ratio is too high";
``cw`` only for a cross margin call, one ``p`` row per position at risk. The threshold is not
documented: here the margin ratio (maintenance margin / margin balance) reaching ``margin_call_ratio``
(0.8 by default, ``SimConfig.margin_call_ratio``), pushed once each time it is crossed upwards and
always ahead of the liquidation that may follow in the same mark move.

ADL ("adl_autoclose", LIMIT GTC in forceOrders' example with autoCloseType ADL) and settlement closes
of a delisted or delivered symbol ("settlement_autoclose-", the special client ids of the Order Update
page) are driven through ``POST /_sim/adl`` and ``POST /_sim/settle``; both are CALCULATED fills of
an order the stream shows as LIQUIDATION (the page lists no other type for them: our choice, stricter
for a client than a plain LIMIT, which it would mistake for its own kind of order).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from binance_sim import errors, events
from binance_sim.ledger import Ledger
from binance_sim.margin import (
    active,
    bankruptcy_price,
    cross_wallet,
    isolated_wallet,
    next_to_liquidate,
    position_maint_margin,
)
from binance_sim.market import ZERO
from binance_sim.model import EXPIRE_LIQUIDATION, JSON, AlgoOrder, Order, Position
from binance_sim.notify import Notifier
from binance_sim.params import Params
from binance_sim.shapes import order_json

_MONEY: Final = Decimal("0.00000001")
DEFAULT_MARGIN_CALL_RATIO: Final = Decimal("0.8")
LIQUIDATION: Final = "LIQUIDATION"
ADL: Final = "ADL"
SETTLEMENT: Final = "SETTLEMENT"
_FORCE_ORDER_KEYS: Final = (
    "orderId",
    "symbol",
    "status",
    "clientOrderId",
    "price",
    "avgPrice",
    "origQty",
    "executedQty",
    "cumQuote",
    "timeInForce",
    "type",
    "reduceOnly",
    "closePosition",
    "side",
    "positionSide",
    "stopPrice",
    "workingType",
    "origType",
    "time",
    "updateTime",
)
_WEEK_MS: Final = 7 * 24 * 3_600_000


class Liquidator:
    """Liquidates what falls to its maintenance margin, warns first (MARGIN_CALL), and closes positions
    by ADL or settlement on request; ``cancel_algo`` cancels one algo order."""

    def __init__(
        self,
        ledger: Ledger,
        notify: Notifier,
        cancel_algo: Callable[[AlgoOrder], None],
        *,
        margin_call_ratio: Decimal = DEFAULT_MARGIN_CALL_RATIO,
    ) -> None:
        self.ledger = ledger
        self.notify = notify
        self.cancel_algo = cancel_algo
        self.margin_call_ratio = margin_call_ratio
        # Margin groups ("cross", or an isolated position's (symbol, side)) past the ratio already called.
        self._called: set[object] = set()

    def liquidate_below_maintenance(self) -> list[int]:
        """Warn (MARGIN_CALL) where the margin ratio crossed ``margin_call_ratio``, then liquidate
        positions, one at a time, while one is at or below its maintenance margin (a cross account
        stops losing positions as soon as it is compliant again, as Binance's does).

        Returns the ids of the liquidation orders (empty when nothing was liquidated).
        """
        self.margin_calls()
        order_ids = []
        while (pos := next_to_liquidate(self.ledger)) is not None:
            order_ids.append(self._liquidate(pos))
        return order_ids

    def margin_calls(self) -> None:
        """Push MARGIN_CALL for each margin group whose ratio rose to the threshold since last time."""
        ledger = self.ledger
        groups: dict[object, tuple[list[Position], Decimal, bool]] = {}
        cross = active(ledger, isolated=False)
        if cross:
            balance = cross_wallet(ledger) + sum((ledger.unrealized(p) for p in cross), ZERO)
            groups["cross"] = (cross, balance, True)
        for pos in active(ledger, isolated=True):
            balance = isolated_wallet(ledger, pos) + ledger.unrealized(pos)
            groups[(pos.symbol, pos.position_side)] = ([pos], balance, False)
        at_risk = set()
        for key, (positions, balance, is_cross) in groups.items():
            maint = sum((position_maint_margin(ledger, p) for p in positions), ZERO)
            if balance <= 0 or maint / balance >= self.margin_call_ratio:
                at_risk.add(key)
                if key not in self._called:
                    self.notify.publish(events.margin_call(ledger, positions, is_cross, ledger.clock()))
        self._called = at_risk

    def _expire_orders_of(self, symbol: str, reason: int) -> None:
        ledger = self.ledger
        now = ledger.clock()
        for order in [o for o in ledger.open_orders.values() if o.symbol == symbol]:
            order.status = "EXPIRED"
            order.expire_reason = reason
            order.update_time = now
            ledger.open_orders.pop(order.order_id, None)
            self.notify.order_update(order)
        for algo in [a for a in ledger.open_algo.values() if a.symbol == symbol]:
            self.cancel_algo(algo)

    def _close(
        self, pos: Position, qty: Decimal, *, price: Decimal, fill_price: Decimal, kind: str, client_id: str
    ) -> Order:
        """One order of the exchange's own closing ``qty`` of ``pos`` at ``fill_price`` (its events:
        NEW, the CALCULATED fill, ACCOUNT_UPDATE ORDER)."""
        ledger = self.ledger
        now = ledger.clock()
        order = Order(
            order_id=ledger.ids.next_order(),
            symbol=pos.symbol,
            client_order_id=client_id,
            side="SELL" if pos.amount > 0 else "BUY",
            position_side=pos.position_side,
            type="LIMIT",
            orig_type="LIMIT",
            time_in_force="IOC" if kind == LIQUIDATION else "GTC",
            orig_qty=qty,
            price=price,
            reduce_only=False,
            close_position=False,
            time=now,
            update_time=now,
            auto_close=kind,
        )
        ledger.orders[order.order_id] = order
        self.notify.order_update(order)
        trade = ledger.fill(order, qty, fill_price, maker=False)
        order.status = "FILLED"
        self.notify.order_update(order, trade)
        self.notify.account_update("ORDER", (pos.symbol,), ("USDT",))
        return order

    def _liquidate(self, pos: Position) -> int:
        engine = self.ledger
        spec = engine.spec(pos.symbol)
        self._expire_orders_of(pos.symbol, EXPIRE_LIQUIDATION)
        margin_before = isolated_wallet(engine, pos)
        bankruptcy = bankruptcy_price(engine, pos)
        mark = engine.mark(pos.symbol)
        long = pos.amount > 0
        fill_price = mark if (mark >= bankruptcy if long else mark <= bankruptcy) else bankruptcy
        qty = abs(pos.amount)
        now = engine.clock()
        order_id = engine.ids.order + 1
        order = self._close(
            pos,
            qty,
            price=bankruptcy,
            fill_price=fill_price,
            kind=LIQUIDATION,
            client_id=f"autoclose-{now}{order_id % 1_000_000:06d}",
        )
        trade = engine.trades[-1]
        if engine.margin_type_of(pos.symbol) == "ISOLATED":
            left = margin_before + trade.realized_pnl - trade.commission
        else:
            left = cross_wallet(engine) + sum(
                (engine.unrealized(p) for p in active(engine, isolated=False)), ZERO
            )
        fee = min(spec.liquidation_fee * qty * fill_price, max(left, ZERO)).quantize(_MONEY, ROUND_HALF_UP)
        if fee > 0:
            engine.account.wallet["USDT"] = engine.account.wallet.get("USDT", ZERO) - fee
            # Booked with the fill (its time), not when the liquidation began: income lists it after the PnL.
            engine.income.book("INSURANCE_CLEAR", -fee, trade.time, pos.symbol)
            self.notify.account_update("INSURANCE_CLEAR", (pos.symbol,), ("USDT",), balance_change=-fee)
        return order.order_id

    def auto_deleverage(
        self, symbol: str, position_side: str, quantity: Decimal | None, price: Decimal | None
    ) -> JSON:
        """ADL: the exchange closes ``quantity`` (all when None) of a profitable position at ``price``
        (the mark when None), client id "adl_autoclose"; open orders stay."""
        ledger = self.ledger
        spec = ledger.spec(symbol)
        pos = ledger.positions.get((symbol, position_side))
        if pos is None or not pos.amount:
            raise errors.REDUCE_ONLY_REJECTED()
        qty = abs(pos.amount) if quantity is None else min(quantity, abs(pos.amount))
        if qty <= 0:
            raise errors.invalid_value("quantity")
        at = ledger.mark(symbol) if price is None else price
        order = self._close(pos, qty, price=at, fill_price=at, kind=ADL, client_id="adl_autoclose")
        return order_json(spec, order, with_time=True)

    def settle(self, symbol: str, price: Decimal) -> list[JSON]:
        """Settlement of a delisted or delivered symbol: its orders end, every position closes at
        ``price`` with a "settlement_autoclose-" order."""
        ledger = self.ledger
        spec = ledger.spec(symbol)
        if price <= 0:
            raise errors.PRICE_NOT_POSITIVE()
        self._expire_orders_of(symbol, EXPIRE_LIQUIDATION)
        closed = []
        for side in ledger.position_sides():
            pos = ledger.positions.get((symbol, side))
            if pos is None or not pos.amount:
                continue
            client_id = f"settlement_autoclose-{ledger.clock()}{(ledger.ids.order + 1) % 1_000_000:06d}"
            order = self._close(
                pos, abs(pos.amount), price=price, fill_price=price, kind=SETTLEMENT, client_id=client_id
            )
            closed.append(order_json(spec, order, with_time=True))
        return closed

    def force_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/forceOrders ("User's Force Orders"): the account's liquidation and ADL orders,
        newest last; ``autoCloseType`` LIQUIDATION or ADL (both when absent); without ``startTime``
        only the 7 days before ``endTime``; ``limit`` 50 by default, at most 100."""
        ledger = self.ledger
        symbol = params.opt_str("symbol")
        if symbol:
            ledger.spec(symbol)
        kinds = {LIQUIDATION, ADL}
        if params.has("autoCloseType"):
            kinds = {params.enum("autoCloseType", frozenset(kinds))}
        limit = params.opt_int("limit")
        limit = 50 if limit is None else limit
        if not 1 <= limit <= 100:
            raise errors.invalid_value("limit")
        start = params.opt_int("startTime")
        end = params.opt_int("endTime")
        if start is not None and end is not None and start > end:
            raise errors.START_AFTER_END()
        if end is None:
            end = ledger.clock()
        if start is None:
            start = end - _WEEK_MS
        rows = [
            o
            for o in ledger.orders.values()
            if o.auto_close in kinds and (not symbol or o.symbol == symbol) and start <= o.time <= end
        ]
        return [
            {
                k: v
                for k, v in order_json(ledger.spec(o.symbol), o, with_time=True).items()
                if k in _FORCE_ORDER_KEYS
            }
            for o in rows[-limit:]
        ]
