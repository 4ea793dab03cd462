"""Account settings: leverage, margin type and position mode (POST /fapi/v1/leverage, marginType,
positionSide/dual), with Binance's refusals."""

from __future__ import annotations

from binance_sim import errors
from binance_sim.ledger import Ledger
from binance_sim.market import fmt
from binance_sim.model import JSON, MARGIN_TYPES
from binance_sim.params import Params


def change_leverage(ledger: Ledger, params: Params) -> JSON:
    """POST /fapi/v1/leverage."""
    spec = ledger.spec(params.req_str("symbol"))
    raw = params.req_str("leverage")
    leverage = params.req_int("leverage")
    if not 1 <= leverage <= spec.max_leverage:
        raise errors.invalid_leverage(raw)
    for side in ledger.position_sides():
        pos = ledger.positions.get((spec.symbol, side))
        if pos and abs(pos.amount) * ledger.mark(spec.symbol) > spec.max_notional(leverage):
            raise errors.MAX_POSITION_AT_LEVERAGE()
    ledger.account.leverage[spec.symbol] = leverage
    return {
        "leverage": leverage,
        "maxNotionalValue": fmt(spec.max_notional(leverage)),
        "symbol": spec.symbol,
    }


def change_margin_type(ledger: Ledger, params: Params) -> JSON:
    """POST /fapi/v1/marginType."""
    spec = ledger.spec(params.req_str("symbol"))
    margin_type = params.enum("marginType", MARGIN_TYPES)
    if margin_type == ledger.margin_type_of(spec.symbol):
        raise errors.MARGIN_TYPE_UNCHANGED()
    if any(o.symbol == spec.symbol for o in ledger.open_orders.values()):
        raise errors.MARGIN_TYPE_OPEN_ORDERS()
    if any(p.symbol == spec.symbol and p.amount for p in ledger.positions.values()):
        raise errors.MARGIN_TYPE_POSITION()
    ledger.account.margin_type[spec.symbol] = margin_type
    return {"code": 200, "msg": "success"}


def position_mode(ledger: Ledger) -> JSON:
    """GET /fapi/v1/positionSide/dual."""
    return {"dualSidePosition": ledger.account.dual_side}


def change_position_mode(ledger: Ledger, params: Params) -> JSON:
    """POST /fapi/v1/positionSide/dual."""
    params.req_str("dualSidePosition")
    dual = params.opt_bool("dualSidePosition")
    if dual == ledger.account.dual_side:
        raise errors.POSITION_MODE_UNCHANGED()
    if ledger.open_orders or ledger.open_algo:
        raise errors.POSITION_MODE_OPEN_ORDERS()
    if any(p.amount for p in ledger.positions.values()):
        raise errors.POSITION_MODE_POSITION()
    ledger.account.dual_side = dual
    ledger.positions.clear()
    return {"code": 200, "msg": "success"}
