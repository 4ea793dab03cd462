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
Binance's forced orders carry ``clientOrderId`` "autoclose-<time><sequence>" (``GET
/fapi/v1/forceOrders`` example) and order type LIQUIDATION in the user data stream.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from binance_sim.ledger import Ledger
from binance_sim.margin import active, bankruptcy_price, cross_wallet, isolated_wallet, next_to_liquidate
from binance_sim.market import ZERO
from binance_sim.model import AlgoOrder, Order, Position
from binance_sim.notify import Notifier

_MONEY: Final = Decimal("0.00000001")


class Liquidator:
    """Liquidates what falls to its maintenance margin; ``cancel_algo`` cancels one algo order."""

    def __init__(self, ledger: Ledger, notify: Notifier, cancel_algo: Callable[[AlgoOrder], None]) -> None:
        self.ledger = ledger
        self.notify = notify
        self.cancel_algo = cancel_algo

    def liquidate_below_maintenance(self) -> list[int]:
        """Liquidate positions, one at a time, while one is at or below its maintenance margin (a cross
        account stops losing positions as soon as it is compliant again, as Binance's does).

        Returns the ids of the LIQUIDATION orders (empty when nothing was liquidated).
        """
        order_ids = []
        while (pos := next_to_liquidate(self.ledger)) is not None:
            order_ids.append(self._liquidate(pos))
        return order_ids

    def _cancel_orders_of(self, symbol: str) -> None:
        engine = self.ledger
        now = engine.clock()
        for order in [o for o in engine.open_orders.values() if o.symbol == symbol]:
            order.status = "CANCELED"
            order.update_time = now
            engine.open_orders.pop(order.order_id, None)
            self.notify.order_update(order)
        for algo in [a for a in engine.open_algo.values() if a.symbol == symbol]:
            self.cancel_algo(algo)

    def _liquidate(self, pos: Position) -> int:
        engine = self.ledger
        spec = engine.spec(pos.symbol)
        self._cancel_orders_of(pos.symbol)
        margin_before = isolated_wallet(engine, pos)
        bankruptcy = bankruptcy_price(engine, pos)
        mark = engine.mark(pos.symbol)
        long = pos.amount > 0
        fill_price = mark if (mark >= bankruptcy if long else mark <= bankruptcy) else bankruptcy
        qty = abs(pos.amount)
        now = engine.clock()
        order_id = engine.ids.next_order()
        order = Order(
            order_id=order_id,
            symbol=pos.symbol,
            client_order_id=f"autoclose-{now}{order_id % 1_000_000:06d}",
            side="SELL" if long else "BUY",
            position_side=pos.position_side,
            type="LIQUIDATION",
            orig_type="LIQUIDATION",
            time_in_force="IOC",
            orig_qty=qty,
            price=bankruptcy,
            reduce_only=False,
            close_position=False,
            time=now,
            update_time=now,
        )
        engine.orders[order_id] = order
        self.notify.order_update(order)
        trade = engine.fill(order, qty, fill_price, maker=False)
        order.status = "FILLED"
        self.notify.order_update(order, trade)
        self.notify.account_update("ORDER", (pos.symbol,), ("USDT",))
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
            self.notify.account_update("INSURANCE_CLEAR", (pos.symbol,), ("USDT",))
        return order_id
