"""Algo (conditional) orders: placing and validating them, their triggers, and the real order each
places when its trigger is crossed (NEW -> TRIGGERING -> TRIGGERED -> FINISHED, or REJECTED).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from binance_sim import errors, rules, trailing
from binance_sim.errors import SimError
from binance_sim.ledger import Ledger
from binance_sim.market import ZERO, fmt
from binance_sim.model import (
    CONDITIONAL_TYPES,
    JSON,
    MAX_OPEN_ALGO_ORDERS,
    SIDES,
    STP_MODES,
    TIME_IN_FORCE,
    WORKING_TYPES,
    AlgoOrder,
    Order,
    crossed,
    hedge_closing,
    limit_param,
    new_client_id,
)
from binance_sim.notify import Notifier
from binance_sim.orders import Orders
from binance_sim.params import Params
from binance_sim.shapes import algo_json


class Algos:
    """The algo order API of one account. ``after_triggers`` runs once crossed triggers are placed
    (the engine checks liquidation there)."""

    def __init__(
        self,
        ledger: Ledger,
        notify: Notifier,
        orders: Orders,
        *,
        after_triggers: Callable[[], None],
        max_per_symbol: int | None = None,
    ) -> None:
        self.ledger = ledger
        self.notify = notify
        self.orders = orders
        self.after_triggers = after_triggers
        self.max_algo_orders_per_symbol = max_per_symbol

    def algo_json(self, algo: AlgoOrder, *, query: bool) -> JSON:
        """``algo`` as the REST answers show it (see binance_sim.shapes.algo_json)."""
        return algo_json(self.ledger.spec(algo.symbol), algo, query=query)

    def new_algo_order(self, params: Params) -> JSON:
        """POST /fapi/v1/algoOrder with algoType=CONDITIONAL."""
        params.enum("algoType", frozenset({"CONDITIONAL"}))
        spec = self.ledger.trading_spec(params)
        order_type = params.req_str("type")
        if order_type not in CONDITIONAL_TYPES:
            raise errors.INVALID_ORDER_TYPE()
        side = params.enum("side", SIDES, errors.INVALID_SIDE)
        position_side = rules.position_side(self.ledger, params)
        close_position = params.opt_bool("closePosition")
        reduce_only = params.opt_bool("reduceOnly")
        working_type = params.enum("workingType", WORKING_TYPES, default="CONTRACT_PRICE")
        price_protect = params.opt_bool("priceProtect")
        tif = params.enum("timeInForce", TIME_IN_FORCE, errors.INVALID_TIF, default="GTC")
        # Algo orders default to NONE ("New Algo Order": selfTradePreventionMode, default NONE).
        stp = params.enum("selfTradePreventionMode", STP_MODES, default="NONE")
        client_id = params.opt_client_id("clientAlgoId") or new_client_id()
        market = order_type.endswith("_MARKET")
        if close_position:
            if order_type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
                raise errors.close_position_invalid(order_type)
            if params.has("quantity"):
                raise errors.not_required("quantity")
            if reduce_only:
                raise errors.not_required("reduceOnly")
            qty = ZERO
            self._check_one_close_position(spec.symbol, side, position_side, order_type)
        else:
            qty = rules.quantity(spec, params, market=market)
        price = ZERO
        if market:
            if params.has("price"):
                raise errors.not_required("price")
        else:
            price = rules.price(spec, params, "price")
        mark = self.ledger.mark(spec.symbol)
        activate: Decimal | None = None
        callback: Decimal | None = None
        trigger = ZERO
        if order_type == "TRAILING_STOP_MARKET":
            callback = params.req_decimal("callbackRate")
            trailing.check_callback(callback)
            activate_name = "activationPrice" if params.has("activationPrice") else "activatePrice"
            if params.has(activate_name):
                activate = rules.price(spec, params, activate_name)
                if (side == "SELL" and activate <= mark) or (side == "BUY" and activate >= mark):
                    raise errors.WOULD_TRIGGER()
            reference = activate if activate is not None else mark
        else:
            trigger = rules.price(spec, params, "triggerPrice")
            if crossed(
                order_type, side, trigger, rules.working_price(self.ledger, spec.symbol, working_type)
            ):
                raise errors.WOULD_TRIGGER()
            reference = trigger
        if not (reduce_only or close_position) and qty * (price or reference) < spec.min_notional:
            raise errors.min_notional(fmt(spec.min_notional))
        per_symbol = self.max_algo_orders_per_symbol or spec.max_num_algo_orders
        pending = [*self.ledger.open_algo.values(), *self.ledger.triggering.values()]
        if len(pending) >= MAX_OPEN_ALGO_ORDERS or (
            per_symbol is not None and sum(1 for a in pending if a.symbol == spec.symbol) >= per_symbol
        ):
            raise errors.MAX_STOP_ORDERS()
        if any(a.client_algo_id == client_id for a in self.ledger.open_algo.values()):
            raise errors.CLIENT_ID_DUPLICATED()
        now = self.ledger.clock()
        algo = AlgoOrder(
            algo_id=self.ledger.ids.next_algo(),
            client_algo_id=client_id,
            symbol=spec.symbol,
            side=side,
            position_side=position_side,
            order_type=order_type,
            time_in_force=tif,
            quantity=qty,
            trigger_price=trigger,
            price=price,
            working_type=working_type,
            close_position=close_position,
            price_protect=price_protect,
            reduce_only=reduce_only,
            activate_price=activate,
            callback_rate=callback,
            self_trade_prevention_mode=stp,
            good_till_date=params.opt_int("goodTillDate") or 0,
            create_time=now,
            update_time=now,
            trailing_extreme=mark if order_type == "TRAILING_STOP_MARKET" and activate is None else None,
        )
        self.ledger.algo_orders[algo.algo_id] = algo
        self.ledger.open_algo[algo.algo_id] = algo
        self.notify.algo_update(algo)
        return self.algo_json(algo, query=False)

    def _check_one_close_position(self, symbol: str, side: str, position_side: str, order_type: str) -> None:
        """-4130: Binance keeps one closePosition stop and one closePosition take-profit per side of a
        symbol (a STOP_MARKET and a TAKE_PROFIT_MARKET may rest together); a second one of the same
        kind, while the first is open or triggering, is refused. Replacing one is cancel-then-place."""
        kind = order_type.startswith("STOP")
        for algo in (*self.ledger.open_algo.values(), *self.ledger.triggering.values()):
            if (
                algo.close_position
                and algo.symbol == symbol
                and algo.side == side
                and algo.position_side == position_side
                and algo.order_type.startswith("STOP") == kind
            ):
                raise errors.CLOSE_POSITION_EXISTS()

    def _find_algo(self, params: Params) -> AlgoOrder:
        algo_id = params.opt_int("algoId")
        client_id = params.opt_str("clientAlgoId")
        if algo_id is None and client_id is None:
            raise errors.ALGO_ID_REQUIRED()
        if algo_id is not None:
            algo = self.ledger.algo_orders.get(algo_id)
            if algo is None:
                raise errors.ORDER_NOT_FOUND()
            return algo
        for candidate in reversed(self.ledger.algo_orders.values()):
            if candidate.client_algo_id == client_id:
                return candidate
        raise errors.ORDER_NOT_FOUND()

    def query_algo_order(self, params: Params) -> JSON:
        """GET /fapi/v1/algoOrder by algoId or clientAlgoId."""
        return self.algo_json(self._find_algo(params), query=True)

    def cancel_algo_order(self, params: Params) -> JSON:
        """DELETE /fapi/v1/algoOrder."""
        try:
            algo = self._find_algo(params)
        except SimError as exc:
            if exc.code == -2013:
                raise errors.UNKNOWN_ORDER() from None
            raise
        if not algo.is_open:
            raise errors.UNKNOWN_ORDER()
        self.cancel_algo(algo)
        return {"algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id, "code": "200", "msg": "success"}

    def cancel_algo(self, algo: AlgoOrder) -> None:
        self.ledger.open_algo.pop(algo.algo_id, None)
        self.notify.set_algo_status(algo, "CANCELED")

    def cancel_all_algo_orders(self, params: Params) -> JSON:
        """DELETE /fapi/v1/algoOpenOrders for one symbol."""
        spec = self.ledger.spec(params.req_str("symbol"))
        for algo in [a for a in self.ledger.open_algo.values() if a.symbol == spec.symbol]:
            self.cancel_algo(algo)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def list_open_algo_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/openAlgoOrders."""
        symbol = params.opt_str("symbol")
        if symbol:
            self.ledger.spec(symbol)
        return [
            self.algo_json(a, query=True)
            for a in self.ledger.open_algo.values()
            if not symbol or a.symbol == symbol
        ]

    def list_all_algo_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/allAlgoOrders (symbol required; algoId, startTime, endTime, limit)."""
        spec = self.ledger.spec(params.req_str("symbol"))
        from_id = params.opt_int("algoId")
        start = params.opt_int("startTime")
        end = params.opt_int("endTime")
        limit = limit_param(params)
        rows = [
            a
            for a in self.ledger.algo_orders.values()
            if a.symbol == spec.symbol
            and (from_id is None or a.algo_id >= from_id)
            and (start is None or a.create_time >= start)
            and (end is None or a.create_time <= end)
        ]
        rows = rows[:limit] if from_id is not None else rows[-limit:]
        return [self.algo_json(a, query=True) for a in rows]

    # ----- price moves and triggers ----------------------------------------------------------------

    def fire_crossed(self, symbol: str) -> None:
        """Fire every open algo order of ``symbol`` whose trigger the current prices cross."""
        protected = self._protect_holds(symbol)
        for algo in [a for a in self.ledger.open_algo.values() if a.symbol == symbol]:
            if algo.price_protect and protected:
                continue
            if self._should_fire(algo, rules.working_price(self.ledger, symbol, algo.working_type)):
                self._fire(algo)

    def _protect_holds(self, symbol: str) -> bool:
        """priceProtect ("New Algo Order"): a trigger with priceProtect=TRUE is held while mark and last
        price differ by more than the symbol's ``triggerProtect`` (exchangeInfo) of the mark."""
        spec = self.ledger.spec(symbol)
        if not spec.trigger_protect:
            return False
        mark = self.ledger.mark(symbol)
        return abs(mark - self.ledger.last_price(symbol)) > mark * spec.trigger_protect

    def _should_fire(self, algo: AlgoOrder, price: Decimal) -> bool:
        if algo.order_type != trailing.TRAILING:
            return crossed(algo.order_type, algo.side, algo.trigger_price, price)
        now_active, fire = trailing.step(algo, price, self.ledger.spec(algo.symbol).tick_size)
        if now_active and not fire:
            algo.update_time = self.ledger.clock()
            self.notify.algo_update(algo)  # NEW again, with ia true
        return fire

    def _fire(self, algo: AlgoOrder) -> None:
        """The trigger is crossed: NEW -> TRIGGERING (placed by :meth:`complete_triggers`, at once
        unless the server paces it with its trigger delay)."""
        now = self.ledger.clock()
        algo.trigger_time = now
        self.ledger.open_algo.pop(algo.algo_id, None)
        self.ledger.triggering[algo.algo_id] = algo
        self.notify.set_algo_status(algo, "TRIGGERING")

    def complete_triggers(self) -> None:
        """Place the real order of every TRIGGERING algo order (TRIGGERED, then FINISHED once that
        order is filled, canceled or expired; REJECTED when it cannot be placed)."""
        while self.ledger.triggering:
            algo_id = next(iter(self.ledger.triggering))
            self._place_triggered(self.ledger.triggering.pop(algo_id))
        self.after_triggers()

    def _place_triggered(self, algo: AlgoOrder) -> None:
        """Submit the real order. A reduce-only/closePosition trigger with nothing to reduce is
        REJECTED with rm "Reduce Only reject" and no order behind it (ALGO_UPDATE docs)."""
        now = self.ledger.clock()
        spec = self.ledger.spec(algo.symbol)
        market = algo.order_type.endswith("_MARKET")
        reduce_only = algo.reduce_only or algo.close_position
        reducible = self.ledger.reducible(algo.symbol, algo.side, algo.position_side)
        qty = reducible if algo.close_position else algo.quantity
        if hedge_closing(algo.side, algo.position_side):
            reduce_only = True
        if reduce_only and reducible <= 0:
            self.notify.set_algo_status(algo, "REJECTED", "Reduce Only reject")
            return
        try:
            if not reduce_only:
                self.ledger.check_margin(spec, qty, self.ledger.mark(spec.symbol) if market else algo.price)
            if market:
                rules.market_fill_price(self.ledger, spec, algo.side)  # -4131 beyond PERCENT_PRICE
        except SimError as exc:
            self.notify.set_algo_status(algo, "REJECTED", exc.msg)
            return
        order = Order(
            order_id=self.ledger.ids.next_order(),
            symbol=algo.symbol,
            client_order_id=new_client_id(),
            side=algo.side,
            position_side=algo.position_side,
            type="MARKET" if market else "LIMIT",
            orig_type=algo.order_type,
            time_in_force=algo.time_in_force,
            orig_qty=qty,
            price=algo.price,
            reduce_only=algo.reduce_only,
            close_position=algo.close_position,
            time=now,
            update_time=now,
            stop_price=algo.trigger_price,
            working_type=algo.working_type,
            price_protect=algo.price_protect,
            self_trade_prevention_mode=algo.self_trade_prevention_mode,
            good_till_date=algo.good_till_date,
        )
        mark = self.ledger.mark(spec.symbol)
        marketable = market or (algo.price >= mark if algo.side == "BUY" else algo.price <= mark)
        self.ledger.orders[order.order_id] = order
        algo.actual_order_id = order.order_id
        self.ledger.algo_by_order[order.order_id] = algo
        self.notify.set_algo_status(algo, "TRIGGERED")
        self.orders.execute(order, reduce_only=reduce_only, marketable=marketable)

    # ----- account views ----------------------------------------------------------------------------
