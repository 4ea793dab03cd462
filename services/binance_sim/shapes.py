"""The JSON shapes of orders, algo orders and trades, as Binance's REST answers spell them.

Field lists follow the Binance USD-M docs ("New Order", "Query Order", "New Algo Order", "Query Algo
Order", "Account Trade List"); prices and quantities are strings at the symbol's places.
"""

from __future__ import annotations

from binance_sim.market import ZERO, SymbolSpec, fmt, fmt_places
from binance_sim.model import JSON, MONEY_PLACES, AlgoOrder, Order, Trade, price_text


def order_json(
    spec: SymbolSpec, order: Order, *, ack: bool = False, with_time: bool = False, with_cum_qty: bool = False
) -> JSON:
    if ack:
        status, executed, cum_quote, avg = "NEW", "0", "0", "0.00"
    else:
        status = order.status
        executed = fmt_places(order.executed_qty, spec.qty_places)
        cum_quote = fmt(order.cum_quote) if order.cum_quote else "0"
        avg = price_text(order.avg_price, spec.price_places) if order.executed_qty else "0.00"
    body: JSON = {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": status,
        "clientOrderId": order.client_order_id,
        "price": fmt_places(order.price, spec.price_places),
        "avgPrice": avg,
        "origQty": fmt_places(order.orig_qty, spec.qty_places),
        "executedQty": executed,
    }
    if with_cum_qty:
        body["cumQty"] = executed
    body |= {
        "cumQuote": cum_quote,
        "timeInForce": order.time_in_force,
        "type": order.type,
        "reduceOnly": order.reduce_only,
        "closePosition": order.close_position,
        "side": order.side,
        "positionSide": order.position_side,
        "stopPrice": fmt_places(order.stop_price, spec.price_places),
        "workingType": order.working_type,
        "priceProtect": order.price_protect,
        "origType": order.orig_type,
        "priceMatch": order.price_match,
        "selfTradePreventionMode": order.self_trade_prevention_mode,
        "goodTillDate": order.good_till_date,
    }
    if with_time:
        body["time"] = order.time
    body["updateTime"] = order.update_time
    return body


def algo_json(spec: SymbolSpec, algo: AlgoOrder, *, query: bool) -> JSON:
    body: JSON = {
        "algoId": algo.algo_id,
        "clientAlgoId": algo.client_algo_id,
        "algoType": "CONDITIONAL",
        "orderType": algo.order_type,
        "symbol": algo.symbol,
        "side": algo.side,
        "positionSide": algo.position_side,
        "timeInForce": algo.time_in_force,
        "quantity": fmt_places(algo.quantity, spec.qty_places),
        "algoStatus": algo.algo_status,
    }
    if query:
        # GET /fapi/v1/algoOrder: "actualOrderId" "" and "actualPrice" "0.00000" until triggered.
        body["actualOrderId"] = "" if algo.actual_order_id is None else str(algo.actual_order_id)
        body["actualPrice"] = (
            "0.00000" if algo.actual_price is None else price_text(algo.actual_price, spec.price_places)
        )
    body |= {
        "triggerPrice": fmt_places(algo.trigger_price, spec.price_places),
        "price": fmt_places(algo.price, spec.price_places),
        "icebergQuantity": None,
    }
    if query:
        # The query answers carry the (unused for CONDITIONAL) TP/SL attachment fields too.
        zero = fmt_places(ZERO, spec.price_places)
        body |= {
            "tpTriggerPrice": zero,
            "tpPrice": zero,
            "slTriggerPrice": zero,
            "slPrice": zero,
            "tpOrderType": "",
        }
    body |= {
        "selfTradePreventionMode": algo.self_trade_prevention_mode,
        "workingType": algo.working_type,
        "priceMatch": "NONE",
        "closePosition": algo.close_position,
        "priceProtect": algo.price_protect,
        "reduceOnly": algo.reduce_only,
        "activatePrice": ""
        if algo.activate_price is None
        else fmt_places(algo.activate_price, spec.price_places),
        "callbackRate": "" if algo.callback_rate is None else fmt(algo.callback_rate),
        "createTime": algo.create_time,
        "updateTime": algo.update_time,
        "triggerTime": algo.trigger_time,
        "goodTillDate": algo.good_till_date,
    }
    return body


def trade_json(spec: SymbolSpec, trade: Trade) -> JSON:
    return {
        "buyer": trade.side == "BUY",
        "commission": fmt_places(trade.commission, MONEY_PLACES),
        "commissionAsset": "USDT",
        "id": trade.trade_id,
        "marginAsset": "USDT",
        "maker": trade.maker,
        "orderId": trade.order_id,
        "price": fmt_places(trade.price, spec.price_places),
        "qty": fmt_places(trade.qty, spec.qty_places),
        "quoteQty": fmt(trade.quote_qty),
        "realizedPnl": fmt_places(trade.realized_pnl, MONEY_PLACES),
        "side": trade.side,
        "positionSide": trade.position_side,
        "symbol": trade.symbol,
        "time": trade.time,
    }
