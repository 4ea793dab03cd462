"""Plain orders (MARKET and LIMIT): placing, matching against the synthetic book, resting, canceling,
the fills of resting orders, and the order and trade history endpoints.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from binance_sim import errors, rules
from binance_sim.book import market_fills
from binance_sim.errors import SimError
from binance_sim.ledger import Ledger
from binance_sim.market import ZERO, fmt, round_to_step
from binance_sim.model import (
    CONDITIONAL_TYPES,
    EXPIRE_IOC,
    EXPIRE_IOC_STP,
    EXPIRE_NONE,
    EXPIRE_REDUCE_ONLY,
    EXPIRE_STP,
    GTD_MAX,
    GTD_MIN_AHEAD_MS,
    JSON,
    ORDER_TYPES,
    PRICE_MATCHES,
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
        price_match = params.enum("priceMatch", PRICE_MATCHES, default="NONE")
        if market:
            if params.has("price"):
                raise errors.not_required("price")
            if price_match != "NONE":
                raise errors.not_required("priceMatch")
            tif = "GTC"
            price = ZERO
            reference = self.ledger.mark(spec.symbol)
        else:
            tif = params.enum("timeInForce", TIME_IN_FORCE, errors.INVALID_TIF)
            if price_match != "NONE":
                # priceMatch "can't be passed together with price": the book sets it.
                if params.has("price"):
                    raise errors.not_required("price")
                price = rules.match_price(self.ledger, spec, side, price_match)
            else:
                price = rules.price(spec, params, "price")
            rules.limit_band(self.ledger, spec, side, price)
            if tif == "GTD":
                good_till = self._good_till(params)
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
        if market:
            rules.market_fill_price(self.ledger, spec, side)  # -4131 beyond PERCENT_PRICE
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
            price_match=price_match,
        )
        self.ledger.orders[order.order_id] = order
        self.execute(order, reduce_only=reduce_only, marketable=marketable)
        return self.order_json(order, ack=resp_type == "ACK", with_cum_qty=True)

    def _good_till(self, params: Params) -> int:
        """goodTillDate of a GTD order: mandatory, more than 600 s ahead, below 253402300799000, kept to
        the second ("New Order": "the ms part will be ignored")."""
        good_till = params.req_int("goodTillDate")
        if not self.ledger.clock() + GTD_MIN_AHEAD_MS < good_till < GTD_MAX:
            raise errors.invalid_value("goodTillDate")
        return good_till // 1000 * 1000

    def expire_due(self) -> None:
        """GTD orders whose goodTillDate has come end EXPIRED (Binance expires them at that time)."""
        now = self.ledger.clock()
        for order in [o for o in self.ledger.open_orders.values() if o.time_in_force == "GTD"]:
            if order.good_till_date <= now:
                self._expire(order, "EXPIRED", EXPIRE_NONE)

    def execute(self, order: Order, *, reduce_only: bool, marketable: bool) -> None:
        """Fill a new order now (MARKET, marketable LIMIT), rest it (GTC/GTD LIMIT) or expire it.

        A taker walks the book level by level: MARKET up to the marketTakeBound, LIMIT up to its price
        (the rest of a GTC/GTD LIMIT rests on the book, an IOC's rest expires, a FOK the book cannot
        fill whole expires unfilled). Our own resting orders are part of that book: meeting one applies
        the taker's self-trade prevention mode (see :meth:`_self_trade`). A reduce-only MARKET larger
        than the position fills the position size: its origQty shrinks to it and it ends FILLED."""
        ledger = self.ledger
        spec = ledger.spec(order.symbol)
        ioc = order.time_in_force == "IOC"
        if not marketable:
            self.notify.order_update(order)
            if order.time_in_force in ("IOC", "FOK"):
                self._expire(order, "EXPIRED", EXPIRE_IOC if ioc else EXPIRE_NONE)
            else:
                ledger.open_orders[order.order_id] = order
            return
        qty = order.orig_qty
        if reduce_only:
            qty = min(qty, ledger.reducible(order.symbol, order.side, order.position_side))
            if order.type == "MARKET" and 0 < qty < order.orig_qty:
                order.orig_qty = qty
        self.notify.order_update(order)
        levels = market_fills(
            spec,
            order.side,
            qty,
            ledger.mark(spec.symbol),
            ledger.book,
            ledger.slippage_bps,
            limit=None if order.type == "MARKET" else order.price,
        )
        if order.time_in_force == "FOK" and sum((q for _, q in levels), ZERO) < qty:
            self._expire(order, "EXPIRED", EXPIRE_NONE)  # fill or kill: nothing, unless all of it
            return
        for level_price, level_qty in levels:
            if self._self_trade(order, level_price):
                return  # the taker expired in the match
            remaining = min(level_qty, qty - order.executed_qty)
            if remaining > 0:
                self._book_fill(order, remaining, level_price, maker=False)
        if order.executed_qty >= order.orig_qty:
            return
        if order.type == "MARKET" or order.time_in_force in ("IOC", "FOK") or qty < order.orig_qty:
            self._expire(order, "EXPIRED", EXPIRE_IOC if ioc else EXPIRE_NONE)
        else:
            ledger.open_orders[order.order_id] = order  # the rest of a GTC/GTD LIMIT rests

    def _self_trade(self, taker: Order, level_price: Decimal) -> bool:
        """Before the taker takes ``level_price``: our own resting orders on the other side at that
        price or better come first in the book. EXPIRE_MAKER expires them (EXPIRED_IN_MATCH),
        EXPIRE_TAKER expires the taker, EXPIRE_BOTH both; NONE lets the two trade (a self-trade at
        the maker's price). True when the taker is done ("Self-Trade Prevention (STP) FAQ"; statuses
        and ``er`` 1/3 of "Event: Order Update")."""
        buy = taker.side == "BUY"
        makers = sorted(
            (
                o
                for o in self.ledger.open_orders.values()
                if o.symbol == taker.symbol
                and o.side != taker.side
                and (o.price <= level_price if buy else o.price >= level_price)
            ),
            key=lambda o: (o.price if buy else -o.price, o.order_id),
        )
        mode = taker.self_trade_prevention_mode
        for maker in makers:
            if not taker.is_open:
                return True
            if mode == "NONE":
                qty = min(maker.orig_qty - maker.executed_qty, taker.orig_qty - taker.executed_qty)
                self._book_fill(maker, qty, maker.price, maker=True)
                self._book_fill(taker, qty, maker.price, maker=False)
                continue
            if mode in ("EXPIRE_MAKER", "EXPIRE_BOTH"):
                self.ledger.open_orders.pop(maker.order_id, None)
                self._expire(maker, "EXPIRED_IN_MATCH", EXPIRE_STP)
            if mode in ("EXPIRE_TAKER", "EXPIRE_BOTH"):
                ioc = taker.time_in_force == "IOC"
                self._expire(taker, "EXPIRED_IN_MATCH", EXPIRE_IOC_STP if ioc else EXPIRE_STP)
                return True
        return not taker.is_open

    def _expire(self, order: Order, status: str, reason: int) -> None:
        order.status = status
        order.expire_reason = reason
        order.update_time = self.ledger.clock()
        self.ledger.open_orders.pop(order.order_id, None)
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

    def find_order(self, params: Params) -> Order:
        """The order named by ``orderId`` (wins) or ``origClientOrderId`` of ``symbol`` (-2013 if none)."""
        return self._find_order(params)

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

    def cancel_all_open_orders(self, params: Params) -> JSON:
        """DELETE /fapi/v1/allOpenOrders: every open regular order of ``symbol`` (conditional orders
        live in the algo service since 2025-12: DELETE /fapi/v1/algoOpenOrders cancels those)."""
        spec = self.ledger.spec(params.req_str("symbol"))
        now = self.ledger.clock()
        for order in [o for o in self.ledger.open_orders.values() if o.symbol == spec.symbol]:
            order.status = "CANCELED"
            order.update_time = now
            self.ledger.open_orders.pop(order.order_id, None)
            self.notify.order_update(order)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

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
        """GET /fapi/v1/allOrders ("All Orders"): ``symbol`` optional since 2026-08-25; with ``orderId``
        the orders from that id on, else the newest; the window at most 7 days (the last 7 days by
        default, -1127 beyond); CANCELED or EXPIRED orders with no fill drop out 3 days after their
        creation ("These orders will not be found"); ``limit`` 500 by default, at most 1000."""
        symbol = params.opt_str("symbol")
        if symbol:
            self.ledger.spec(symbol)
        from_id = params.opt_int("orderId")
        start, end = _window(params, self.ledger.clock(), default=from_id is None)
        limit = limit_param(params)
        hidden_before = self.ledger.clock() - _THREE_DAYS_MS
        rows = [
            o
            for o in self.ledger.orders.values()
            if (not symbol or o.symbol == symbol)
            and (from_id is None or o.order_id >= from_id)
            and (start is None or o.time >= start)
            and (end is None or o.time <= end)
            and not (o.status in ("CANCELED", "EXPIRED") and not o.executed_qty and o.time < hidden_before)
        ]
        rows = rows[:limit] if from_id is not None else rows[-limit:]
        return [self.order_json(o, with_time=True) for o in rows]

    def user_trades(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/userTrades ("Account Trade List"): ``symbol`` required; ``fromId`` not with
        ``startTime``/``endTime`` (-1128); the window at most 7 days (the last 7 days when neither is
        sent, the 7 days from ``startTime`` when only it is); nothing older than 3 months (since
        2026-08-26); ``limit`` 500 by default, at most 1000."""
        spec = self.ledger.spec(params.req_str("symbol"))
        order_id = params.opt_int("orderId")
        from_id = params.opt_int("fromId")
        if from_id is not None and (params.has("startTime") or params.has("endTime")):
            raise errors.BAD_PARAM_COMBO()
        now = self.ledger.clock()
        start, end = _window(params, now, default=from_id is None)
        limit = limit_param(params)
        oldest = now - _THREE_MONTHS_MS
        rows = [
            t
            for t in self.ledger.trades
            if t.symbol == spec.symbol
            and t.time >= oldest
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
        """The mark crossed a resting order's price: it fills at its price as maker. With a book depth
        (``BookConfig.depth_of``) one level's worth fills per crossing move and the rest keeps resting,
        as a real book fills a LIMIT in pieces; a reduce-only order's part beyond the position expires
        (``er`` 4, "reversed positions would be opened")."""
        qty = order.orig_qty - order.executed_qty
        beyond_position = False
        if order.reduce_only:
            reducible = self.ledger.reducible(order.symbol, order.side, order.position_side)
            beyond_position = reducible < qty
            qty = min(qty, reducible)
        depth = self.ledger.book.depth_of(order.symbol)
        if depth is not None and qty > 0:
            spec = self.ledger.spec(order.symbol)
            per_move = max(spec.lot_step, round_to_step(depth / order.price, spec.lot_step, up=False))
            if per_move < qty:
                qty, beyond_position = per_move, False
        if qty > 0:
            self._book_fill(order, qty, order.price, maker=True)
        if order.is_open and (beyond_position or qty <= 0):
            self._expire(order, "EXPIRED", EXPIRE_REDUCE_ONLY)

    def fill_crossed(self, symbol: str, price: Decimal) -> None:
        """Fill every resting order of ``symbol`` the mark ``price`` crossed."""
        for order in [o for o in self.ledger.open_orders.values() if o.symbol == symbol]:
            crossed = price <= order.price if order.side == "BUY" else price >= order.price
            if crossed:
                self.fill_resting(order)


_WEEK_MS: Final = 7 * 24 * 3_600_000
_THREE_DAYS_MS: Final = 3 * 24 * 3_600_000
_THREE_MONTHS_MS: Final = 90 * 24 * 3_600_000


def _window(params: Params, now: int, *, default: bool) -> tuple[int | None, int | None]:
    """``startTime``/``endTime`` of a history query, at most 7 days apart (-1127 beyond, -1023 when
    reversed); with neither, the last 7 days when ``default``; with one, the 7 days on its side."""
    start = params.opt_int("startTime")
    end = params.opt_int("endTime")
    if start is not None and end is not None:
        if start > end:
            raise errors.START_AFTER_END()
        if end - start > _WEEK_MS:
            raise errors.LOOKUP_INTERVAL_TOO_BIG()
        return start, end
    if start is not None:
        return start, start + _WEEK_MS
    if end is not None:
        return end - _WEEK_MS, end
    return (now - _WEEK_MS, now) if default else (None, None)
