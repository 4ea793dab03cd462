"""Order amendment: ``PUT /fapi/v1/order`` ("Modify Order") and ``GET /fapi/v1/orderAmendment``.

Binance: only LIMIT orders; ``quantity`` and ``price`` both mandatory; an amendment that fails a filter
is refused and the order stays; the order is canceled instead when it is partially filled and the new
quantity is not above what filled, or when a GTX order's new price would execute at once; the event
is ORDER_TRADE_UPDATE with execution type AMENDMENT; one order may be amended fewer than 10,000 times.
A new price that crosses the mark fills the order at once (as the mark crossing its price does).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from binance_sim import errors, rules
from binance_sim.errors import ErrorSpec
from binance_sim.ledger import Ledger
from binance_sim.market import fmt_places
from binance_sim.model import JSON, SIDES
from binance_sim.notify import Notifier
from binance_sim.orders import Orders
from binance_sim.params import Params

MAX_AMENDMENTS: Final = 10_000
NOTHING_TO_MODIFY: Final = ErrorSpec(-5027, "No need to modify the order.")
TOO_MANY: Final = ErrorSpec(-5026, "Exceeded maximum modify order limit.")


@dataclass(frozen=True, slots=True)
class Amendment:
    """One change of price and quantity, as ``GET /fapi/v1/orderAmendment`` lists it."""

    amendment_id: int
    order_id: int  # the id, not the record: the history outlives a restore from ``--state``
    time: int
    price: tuple[Decimal, Decimal]
    qty: tuple[Decimal, Decimal]
    count: int


class Amender:
    """Modifies resting LIMIT orders of one account."""

    def __init__(self, ledger: Ledger, notify: Notifier, orders: Orders) -> None:
        self.ledger = ledger
        self.notify = notify
        self.orders = orders
        self.history: list[Amendment] = []
        self.last_id = 0  # kept in ``--state`` with the history, so ids keep increasing

    def modify(self, params: Params) -> JSON:
        """PUT /fapi/v1/order."""
        order = self.orders.find_order(params)
        spec = self.ledger.spec(order.symbol)
        side = params.enum("side", SIDES, errors.INVALID_SIDE)
        qty = rules.quantity(spec, params, market=False)
        price = rules.price(spec, params, "price")
        if not order.is_open:
            raise errors.UNKNOWN_ORDER()
        if order.type != "LIMIT" or side != order.side:
            raise errors.INVALID_ORDER_TYPE() if order.type != "LIMIT" else errors.invalid_value("side")
        if price == order.price and qty == order.orig_qty:
            raise NOTHING_TO_MODIFY()
        count = sum(1 for a in self.history if a.order_id == order.order_id)
        if count + 1 >= MAX_AMENDMENTS:
            raise TOO_MANY()
        rules.limit_band(self.ledger, spec, side, price)
        mark = self.ledger.mark(spec.symbol)
        crosses = price >= mark if side == "BUY" else price <= mark
        now = self.ledger.clock()
        if (order.executed_qty and qty <= order.executed_qty) or (order.time_in_force == "GTX" and crosses):
            order.status = "CANCELED"
            order.update_time = now
            self.ledger.open_orders.pop(order.order_id, None)
            self.notify.order_update(order)
            return self.orders.order_json(order, with_cum_qty=True)
        self.history.append(
            Amendment(
                self._new_id(), order.order_id, now, (order.price, price), (order.orig_qty, qty), count + 1
            )
        )
        order.price, order.orig_qty, order.update_time = price, qty, now
        self.notify.order_update(order, amendment=True)
        if crosses:
            self.orders.fill_resting(order)
        return self.orders.order_json(order, with_cum_qty=True)

    def _new_id(self) -> int:
        self.last_id += 1
        return self.last_id

    def amendments(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/orderAmendment: the amendments of one order, oldest first."""
        order = self.orders.find_order(params)
        spec = self.ledger.spec(order.symbol)
        pp, qp = spec.price_places, spec.qty_places
        return [
            {
                "amendmentId": a.amendment_id,
                "symbol": order.symbol,
                "pair": order.symbol,
                "orderId": order.order_id,
                "clientOrderId": order.client_order_id,
                "time": a.time,
                "amendment": {
                    "price": {"before": fmt_places(a.price[0], pp), "after": fmt_places(a.price[1], pp)},
                    "origQty": {"before": fmt_places(a.qty[0], qp), "after": fmt_places(a.qty[1], qp)},
                    "count": a.count,
                },
            }
            for a in self.history
            if a.order_id == order.order_id
        ]
