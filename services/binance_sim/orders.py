"""Plain orders (MARKET and LIMIT): placing, matching against the synthetic book, resting, canceling,
the fills of resting orders, and the order and trade history endpoints.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from binance_sim import errors, rules
from binance_sim.book import market_fills
from binance_sim.errors import SimError
from binance_sim.ledger import Ledger
from binance_sim.market import ZERO, fmt
from binance_sim.model import (
    CONDITIONAL_TYPES,
    JSON,
    ORDER_TYPES,
    RESP_TYPES,
    SIDES,
    STP_MODES,
    TIME_IN_FORCE,
    Order,
    Trade,
    hedge_closing,
    limit_param,
    new_client_id,
)
from binance_sim.notify import Notifier
from binance_sim.params import Params
from binance_sim.shapes import order_json, trade_json


class Orders:
    """The order API of one account (over its ledger; events through ``notify``)."""

    def __init__(self, ledger: Ledger, notify: Notifier) -> None:
        self.ledger = ledger
        self.notify = notify

    def order_json(self, order: Order, **shape: bool) -> JSON:
        """``order`` as the REST answers show it (see binance_sim.shapes.order_json)."""
        return order_json(self.ledger.spec(order.symbol), order, **shape)

    def new_order(self, params: Params) -> JSON:
        """POST /fapi/v1/order (MARKET and LIMIT; conditional types belong to the algo API)."""
        spec = self.ledger.trading_spec(params)
        order_type = params.req_str("type")
        if order_type in CONDITIONAL_TYPES:
            raise errors.USE_ALGO_API()
        if order_type not in ORDER_TYPES:
            raise errors.INVALID_ORDER_TYPE()
        side = params.enum("side", SIDES, errors.INVALID_SIDE)
        position_side = rules.position_side(self.ledger, params)
        reduce_only = params.opt_bool("reduceOnly")
        client_id = params.opt_client_id("newClientOrderId") or new_client_id()
        resp_type = params.enum("newOrderRespType", RESP_TYPES, default="ACK")
        stp = params.enum("selfTradePreventionMode", STP_MODES, default="EXPIRE_MAKER")
        if params.has("closePosition") and params.opt_bool("closePosition"):
            raise errors.not_required("closePosition")
        market = order_type == "MARKET"
        qty = rules.quantity(spec, params, market=market)
        good_till = 0
        if market:
            if params.has("price"):
                raise errors.not_required("price")
            tif = "GTC"
            price = ZERO
            reference = self.ledger.mark(spec.symbol)
        else:
            tif = params.enum("timeInForce", TIME_IN_FORCE, errors.INVALID_TIF)
            price = rules.price(spec, params, "price")
            rules.limit_band(self.ledger, spec, side, price)
            if tif == "GTD":
                good_till = params.req_int("goodTillDate")
            reference = price
        if not reduce_only and qty * reference < spec.min_notional:
            raise errors.min_notional(fmt(spec.min_notional))
        reducible = self.ledger.reducible(spec.symbol, side, position_side)
        if reduce_only and reducible <= 0:
            raise errors.REDUCE_ONLY_REJECTED()
        if hedge_closing(side, position_side) and qty > reducible:
            # Hedge mode: a SELL of LONG (a BUY of SHORT) only closes; beyond the position, or with
            # none, it is refused, never a negative position.
            raise errors.REDUCE_ONLY_REJECTED()
        if any(o.client_order_id == client_id for o in self.ledger.open_orders.values()):
            raise errors.CLIENT_ID_DUPLICATED()
        if not reduce_only:
            self.ledger.check_margin(spec, qty - reducible, reference)
        fill_price = rules.market_fill_price(self.ledger, spec, side) if market else ZERO
        marketable = market or (
            price >= self.ledger.mark(spec.symbol)
            if side == "BUY"
            else price <= self.ledger.mark(spec.symbol)
        )
        if not market and tif == "GTX" and marketable:
            raise errors.POST_ONLY_REJECTED()
        resting = sum(1 for o in self.ledger.open_orders.values() if o.symbol == spec.symbol)
        if not marketable and resting >= spec.max_num_orders:
            raise errors.MAX_OPEN_ORDERS()
        now = self.ledger.clock()
        order = Order(
            order_id=self.ledger.ids.next_order(),
            symbol=spec.symbol,
            client_order_id=client_id,
            side=side,
            position_side=position_side,
            type=order_type,
            orig_type=order_type,
            time_in_force=tif,
            orig_qty=qty,
            price=price,
            reduce_only=reduce_only,
            close_position=False,
            time=now,
            update_time=now,
            self_trade_prevention_mode=stp,
            good_till_date=good_till,
        )
        self.ledger.orders[order.order_id] = order
        self.execute(order, reduce_only=reduce_only, fill_price=fill_price, marketable=marketable)
        return self.order_json(order, ack=resp_type == "ACK", with_cum_qty=True)

    def execute(self, order: Order, *, reduce_only: bool, fill_price: Decimal, marketable: bool) -> None:
        """Fill a new order now (MARKET, marketable LIMIT) or rest it (GTC/GTD LIMIT) or expire it.

        A reduce-only MARKET larger than the position fills the position size: its origQty shrinks
        to it and it ends FILLED (Binance answers such an order that way, not with a partial fill)."""
        spec = self.ledger.spec(order.symbol)
        if marketable:
            qty = order.orig_qty
            if reduce_only:
                qty = min(qty, self.ledger.reducible(order.symbol, order.side, order.position_side))
                if order.type == "MARKET" and 0 < qty < order.orig_qty:
                    order.orig_qty = qty
            self.notify.order_update(order)
            price = fill_price
            if order.type == "LIMIT":
                taker = rules.market_fill_price(self.ledger, spec, order.side)
                price = min(order.price, taker) if order.side == "BUY" else max(order.price, taker)
            if qty > 0 and order.type == "MARKET":
                # Level by level through the synthetic book, up to the marketTakeBound (the rest expires).
                for level_price, level_qty in market_fills(
                    spec,
                    order.side,
                    qty,
                    self.ledger.mark(spec.symbol),
                    self.ledger.book,
                    self.ledger.slippage_bps,
                ):
                    self._book_fill(order, level_qty, level_price, maker=False)
            elif qty > 0:
                self._book_fill(order, qty, price, maker=False)
            if order.executed_qty != order.orig_qty:
                order.status = "EXPIRED"
                self.notify.order_update(order)
        elif order.time_in_force in ("IOC", "FOK"):
            self.notify.order_update(order)
            order.status = "EXPIRED"
            self.notify.order_update(order)
        else:
            self.ledger.open_orders[order.order_id] = order
            self.notify.order_update(order)

    def _book_fill(self, order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> Trade:
        """One fill with its events: ORDER_TRADE_UPDATE (x=TRADE), TRADE_LITE, ACCOUNT_UPDATE (ORDER)."""
        trade = self.ledger.fill(order, qty, price, maker=maker)
        order.status = "FILLED" if order.executed_qty >= order.orig_qty else "PARTIALLY_FILLED"
        if order.status == "FILLED":
            self.ledger.open_orders.pop(order.order_id, None)
        self.notify.order_update(order, trade)
        self.notify.account_update("ORDER", (order.symbol,))
        return trade

    def _find_order(self, params: Params) -> Order:
        spec = self.ledger.spec(params.req_str("symbol"))
        order_id = params.opt_int("orderId")
        client_id = params.opt_str("origClientOrderId")
        if order_id is None and client_id is None:
            raise errors.ORDER_ID_REQUIRED()
        if order_id is not None:
            order = self.ledger.orders.get(order_id)
            if order is None or order.symbol != spec.symbol:
                raise errors.ORDER_NOT_FOUND()
            return order
        for candidate in reversed(self.ledger.orders.values()):
            if candidate.client_order_id == client_id and candidate.symbol == spec.symbol:
                return candidate
        raise errors.ORDER_NOT_FOUND()

    def query_order(self, params: Params) -> JSON:
        """GET /fapi/v1/order."""
        return self.order_json(self._find_order(params), with_time=True)

    def cancel_order(self, params: Params) -> JSON:
        """DELETE /fapi/v1/order: only open orders can be canceled (-2011 otherwise)."""
        try:
            order = self._find_order(params)
        except SimError as exc:
            if exc.code == -2013:
                raise errors.UNKNOWN_ORDER() from None
            raise
        if not order.is_open:
            raise errors.UNKNOWN_ORDER()
        order.status = "CANCELED"
        order.update_time = self.ledger.clock()
        self.ledger.open_orders.pop(order.order_id, None)
        self.notify.order_update(order)
        return self.order_json(order, with_cum_qty=True)

    def list_open_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/openOrders."""
        symbol = params.opt_str("symbol")
        if symbol:
            self.ledger.spec(symbol)
        return [
            self.order_json(o, with_time=True)
            for o in self.ledger.open_orders.values()
            if not symbol or o.symbol == symbol
        ]

    def list_all_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/allOrders (symbol required; orderId, startTime, endTime, limit)."""
        spec = self.ledger.spec(params.req_str("symbol"))
        from_id = params.opt_int("orderId")
        start = params.opt_int("startTime")
        end = params.opt_int("endTime")
        limit = limit_param(params)
        rows = [
            o
            for o in self.ledger.orders.values()
            if o.symbol == spec.symbol
            and (from_id is None or o.order_id >= from_id)
            and (start is None or o.time >= start)
            and (end is None or o.time <= end)
        ]
        rows = rows[:limit] if from_id is not None else rows[-limit:]
        return [self.order_json(o, with_time=True) for o in rows]

    def user_trades(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/userTrades (symbol required; orderId, fromId, startTime, endTime, limit)."""
        spec = self.ledger.spec(params.req_str("symbol"))
        order_id = params.opt_int("orderId")
        from_id = params.opt_int("fromId")
        start = params.opt_int("startTime")
        end = params.opt_int("endTime")
        limit = limit_param(params)
        rows = [
            t
            for t in self.ledger.trades
            if t.symbol == spec.symbol
            and (order_id is None or t.order_id == order_id)
            and (from_id is None or t.trade_id >= from_id)
            and (start is None or t.time >= start)
            and (end is None or t.time <= end)
        ]
        rows = rows[:limit] if from_id is not None else rows[-limit:]
        return [trade_json(self.ledger.spec(t.symbol), t) for t in rows]

    def trade_against(self, symbol: str, client_order_id: str, quantity: Decimal) -> dict[str, Any]:
        """A taker trades ``quantity`` against our resting order at its price (one maker fill).

        On Binance a resting LIMIT fills in pieces as takers meet it, each with its own
        ORDER_TRADE_UPDATE (x=TRADE, X=PARTIALLY_FILLED until the last) and ACCOUNT_UPDATE; the mark
        crossing the price (``set_mark_price``) fills the whole remainder. At most the remainder
        fills; a reduce-only order at most what it can reduce."""
        order = next(
            (
                o
                for o in self.ledger.open_orders.values()
                if o.symbol == symbol and o.client_order_id == client_order_id
            ),
            None,
        )
        if order is None:
            raise errors.UNKNOWN_ORDER()
        if quantity <= 0:
            raise errors.invalid_value("quantity")
        qty = min(quantity, order.orig_qty - order.executed_qty)
        if order.reduce_only:
            qty = min(qty, self.ledger.reducible(order.symbol, order.side, order.position_side))
        if qty > 0:
            self._book_fill(order, qty, order.price, maker=True)
        return self.order_json(order, ack=False, with_cum_qty=True)

    def fill_resting(self, order: Order) -> None:
        qty = order.orig_qty - order.executed_qty
        if order.reduce_only:
            qty = min(qty, self.ledger.reducible(order.symbol, order.side, order.position_side))
        self.ledger.open_orders.pop(order.order_id, None)
        if qty > 0:
            self._book_fill(order, qty, order.price, maker=True)
        if order.executed_qty != order.orig_qty:
            order.status = "EXPIRED"
            order.update_time = self.ledger.clock()
            self.notify.order_update(order)

    def fill_crossed(self, symbol: str, price: Decimal) -> None:
        """Fill every resting order of ``symbol`` the mark ``price`` crossed."""
        for order in [o for o in self.ledger.open_orders.values() if o.symbol == symbol]:
            crossed = price <= order.price if order.side == "BUY" else price >= order.price
            if crossed:
                self.fill_resting(order)
