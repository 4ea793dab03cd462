"""Account settings: leverage, margin type and position mode (POST /fapi/v1/leverage, marginType,
positionSide/dual), with Binance's refusals, and the answers that read them back (accountConfig,
symbolConfig, commissionRate, rateLimit/order)."""

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


def account_config(ledger: Ledger) -> JSON:
    """GET /fapi/v1/accountConfig ("Account Configuration")."""
    return {
        "feeTier": 0,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "dualSidePosition": ledger.account.dual_side,
        "updateTime": 0,
        "multiAssetsMargin": False,
        "tradeGroupId": -1,
    }


def symbol_config(ledger: Ledger, params: Params) -> list[JSON]:
    """GET /fapi/v1/symbolConfig ("Symbol Configuration"): margin type and leverage per symbol."""
    rows = []
    for spec in ledger.symbols(params):
        leverage = ledger.leverage_of(spec.symbol)
        rows.append(
            {
                "symbol": spec.symbol,
                "marginType": ledger.margin_type_of(spec.symbol),
                "isAutoAddMargin": "false",
                "leverage": leverage,
                "maxNotionalValue": fmt(spec.max_notional(leverage)),
            }
        )
    return rows


def commission_rate(ledger: Ledger, params: Params) -> JSON:
    """GET /fapi/v1/commissionRate ("User Commission Rate"): ``symbol`` required."""
    spec = ledger.spec(params.req_str("symbol"))
    return {
        "symbol": spec.symbol,
        "makerCommissionRate": fmt(ledger.market.maker_rate.normalize()),
        "takerCommissionRate": fmt(ledger.market.taker_rate.normalize()),
    }
