"""User data stream events built from engine records, with Binance's field names and JSON types.

Pure functions (no I/O): the engine's hooks call them and hand the result to the user stream.
Prices and quantities are strings, ids and times integers, flags booleans, as Binance sends them.
Field lists follow the Binance USD-M docs (developers.binance.com/docs/derivatives/usds-margined-futures/
user-data-streams/): "Event: Order Update" (ORDER_TRADE_UPDATE), "Event: Balance and Position Update"
(ACCOUNT_UPDATE), "Event: Algo Order Update" (ALGO_UPDATE), "Event: Trade Lite" (TRADE_LITE) and
"Event: User Data Stream Expired" (listenKeyExpired, whose ``E`` USD-M sends as a string; see also
adshao/go-binance#510, where a futures client failed on exactly that).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from binance_sim import margin, trailing
from binance_sim.market import ZERO, fmt, fmt_places

if TYPE_CHECKING:
    from binance_sim.ledger import Ledger
    from binance_sim.model import AlgoOrder, Order, Position, Trade

JSON = dict[str, Any]
_MONEY_PLACES = 8
_QUANT = Decimal("0.00000001")


def _price(value: Decimal, places: int) -> str:
    return fmt_places(value, places)


def order_trade_update(
    engine: Ledger, order: Order, trade: Trade | None, now: int, *, amendment: bool = False
) -> JSON:
    """ORDER_TRADE_UPDATE: ``x`` is TRADE for a fill (l/L/n/N/t/rp/m of that fill), else the status."""
    spec = engine.spec(order.symbol)
    pp, qp = spec.price_places, spec.qty_places
    avg = order.avg_price
    if trade is not None:
        # A fill of an order the exchange placed to close the position (liquidation, ADL, settlement)
        # is "CALCULATED - Liquidation Execution"; any other fill is TRADE.
        execution = "CALCULATED" if order.auto_close else "TRADE"
        last_qty, last_price = fmt_places(trade.qty, qp), _price(trade.price, pp)
        commission, trade_id = fmt_places(trade.commission, _MONEY_PLACES), trade.trade_id
        realized, maker, when = fmt_places(trade.realized_pnl, _MONEY_PLACES), trade.maker, trade.time
    else:
        # NEW, CANCELED, EXPIRED (EXPIRED_IN_MATCH shows as EXPIRED), or AMENDMENT ("Order Modified").
        execution = "AMENDMENT" if amendment else order.status
        if execution == "EXPIRED_IN_MATCH":
            execution = "EXPIRED"
        last_qty, last_price, commission, trade_id, realized, maker = "0", "0", "0", 0, "0", False
        when = order.update_time
    open_notional = (order.orig_qty - order.executed_qty) * order.price if order.is_open else ZERO
    body: JSON = {
        "s": order.symbol,
        "c": order.client_order_id,
        "S": order.side,
        # The REST order is LIMIT (forceOrders shows it so); the stream says LIQUIDATION.
        "o": "LIQUIDATION" if order.auto_close else order.type,
        "f": order.time_in_force,
        "q": fmt_places(order.orig_qty, qp),
        "p": _price(order.price, pp),
        "ap": _price(avg, pp) if order.executed_qty else "0",
        "sp": _price(order.stop_price, pp),
        "x": execution,
        "X": order.status,
        "i": order.order_id,
        "l": last_qty,
        "z": fmt_places(order.executed_qty, qp),
        "L": last_price,
        "N": "USDT",
        "n": commission,
        "T": when,
        "t": trade_id,
        "b": fmt(open_notional) if order.side == "BUY" else "0",
        "a": fmt(open_notional) if order.side == "SELL" else "0",
        "m": maker,
        "R": order.reduce_only,
        "wt": order.working_type,
        "ot": "LIQUIDATION" if order.auto_close else order.orig_type,
        "ps": order.position_side,
        "cp": order.close_position,
        "rp": realized,
        "pP": order.price_protect,
        "si": 0,
        "ss": 0,
        "V": order.self_trade_prevention_mode,
        "pm": order.price_match,
        "gtd": order.good_till_date,
        "er": str(order.expire_reason),
    }
    return {"e": "ORDER_TRADE_UPDATE", "E": now, "T": when, "o": body}


def trade_lite(engine: Ledger, order: Order, trade: Trade, now: int) -> JSON:
    """TRADE_LITE: the short fill event Binance pushes ahead of ORDER_TRADE_UPDATE."""
    spec = engine.spec(order.symbol)
    return {
        "e": "TRADE_LITE",
        "E": now,
        "T": trade.time,
        "s": order.symbol,
        "q": fmt_places(order.orig_qty, spec.qty_places),
        "p": _price(order.price, spec.price_places),
        "m": trade.maker,
        "c": order.client_order_id,
        "S": order.side,
        "L": _price(trade.price, spec.price_places),
        "l": fmt_places(trade.qty, spec.qty_places),
        "t": trade.trade_id,
        "i": order.order_id,
    }


def account_update(
    engine: Ledger,
    reason: str,
    symbols: Iterable[str],
    assets: Iterable[str],
    now: int,
    balance_change: Decimal = ZERO,
) -> JSON:
    """ACCOUNT_UPDATE: the changed balances (B) and the positions of ``symbols`` (P) after the change.

    ``bc`` is the "Balance Change except PnL and Commission" (a funding fee, a transfer, an insurance
    clearance; 0 for a fill), ``cr`` the position's "(Pre-fee) Accumulated Realized". A FUNDING_FEE
    update carries no position of a cross margin symbol: the caller passes only isolated symbols
    ("Event: Balance and Position Update")."""
    balances = []
    for asset in assets:
        wallet = engine.account.wallet.get(asset, ZERO)
        balances.append(
            {
                "a": asset,
                "wb": fmt_places(wallet, _MONEY_PLACES),
                "cw": fmt_places(margin.cross_wallet(engine) if asset == "USDT" else wallet, _MONEY_PLACES),
                "bc": fmt(balance_change.normalize()) if balance_change else "0",
            }
        )
    positions = []
    for symbol in symbols:
        spec = engine.spec(symbol)
        for side in engine.position_sides():
            pos = engine.position(symbol, side)
            isolated = engine.margin_type_of(symbol) == "ISOLATED"
            fee = engine.market.taker_rate
            bep = pos.entry_price * (1 + fee if pos.amount > 0 else 1 - fee) if pos.amount else ZERO
            positions.append(
                {
                    "s": symbol,
                    "pa": fmt_places(pos.amount, spec.qty_places),
                    "ep": fmt(pos.entry_price.normalize()) if pos.entry_price else "0",
                    "bep": fmt(bep.quantize(Decimal("0.00000001")).normalize()) if pos.amount else "0",
                    "cr": fmt_places(pos.realized, _MONEY_PLACES) if pos.realized else "0",
                    "up": fmt_places(engine.unrealized(pos).quantize(Decimal("0.00000001")), _MONEY_PLACES),
                    "mt": "isolated" if isolated else "cross",
                    "iw": fmt_places(
                        margin.isolated_wallet(engine, pos).quantize(Decimal("0.00000001")),
                        _MONEY_PLACES,
                    ),
                    "ps": side,
                }
            )
    return {"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {"m": reason, "B": balances, "P": positions}}


def algo_update(engine: Ledger, algo: AlgoOrder, now: int) -> JSON:
    """ALGO_UPDATE: every algo status change; ``ai`` carries the real order id once triggered."""
    spec = engine.spec(algo.symbol)
    pp, qp = spec.price_places, spec.qty_places
    actual = engine.orders.get(algo.actual_order_id) if algo.actual_order_id is not None else None
    body: JSON = {
        "caid": algo.client_algo_id,
        "aid": algo.algo_id,
        "at": "CONDITIONAL",
        "o": algo.order_type,
        "s": algo.symbol,
        "S": algo.side,
        "ps": algo.position_side,
        "f": algo.time_in_force,
        "q": fmt_places(algo.quantity, qp),
        "X": algo.algo_status,
        "ai": "" if algo.actual_order_id is None else str(algo.actual_order_id),
        "ap": fmt_places(actual.avg_price, pp) if actual is not None else fmt_places(ZERO, 5),
        "aq": fmt_places(actual.executed_qty, qp) if actual is not None else fmt_places(ZERO, 5),
        "act": actual.type if actual is not None else "0",
        "tp": _price(algo.trigger_price, pp),
        "p": _price(algo.price, pp),
        "V": algo.self_trade_prevention_mode,
        "wt": algo.working_type,
        "pm": "NONE",
        "cp": algo.close_position,
        "pP": algo.price_protect,
        "R": algo.reduce_only,
        "tt": algo.trigger_time,
        "gtd": algo.good_till_date,
    }
    if algo.order_type == trailing.TRAILING:
        body["ia"] = trailing.activated(algo)  # activated (since 2026-08-21)
    body["rm"] = algo.reject_reason
    return {"e": "ALGO_UPDATE", "T": algo.update_time, "E": now, "o": body}


def margin_call(engine: Ledger, positions: Iterable[Position], cross: bool, now: int) -> JSON:
    """MARGIN_CALL ("Event: Margin Call"): ``cw`` only for a cross margin call, a row per position."""
    body: JSON = {"e": "MARGIN_CALL", "E": now}
    if cross:
        body["cw"] = fmt_places(margin.cross_wallet(engine).quantize(_QUANT), _MONEY_PLACES)
    rows = []
    for pos in positions:
        spec = engine.spec(pos.symbol)
        rows.append(
            {
                "s": pos.symbol,
                "ps": pos.position_side,
                "pa": fmt_places(pos.amount, spec.qty_places),
                "mt": "CROSSED" if cross else "ISOLATED",
                "iw": "0"
                if cross
                else fmt_places(margin.isolated_wallet(engine, pos).quantize(_QUANT), _MONEY_PLACES),
                "mp": fmt_places(engine.mark(pos.symbol), _MONEY_PLACES),
                "up": fmt_places(engine.unrealized(pos).quantize(_QUANT), _MONEY_PLACES),
                "mm": fmt_places(margin.position_maint_margin(engine, pos).quantize(_QUANT), _MONEY_PLACES),
            }
        )
    body["p"] = rows
    return body


def listen_key_expired(listen_key: str, now: int) -> JSON:
    """listenKeyExpired (USD-M sends ``E`` as a string here)."""
    return {"e": "listenKeyExpired", "E": str(now), "listenKey": listen_key}
