"""Read-only views of the account and the market, as Binance's REST answers show them: premiumIndex,
ticker price, leverage brackets, positionRisk, balance, account, and the simulator's own state dump.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from binance_sim import errors
from binance_sim import margin as margins
from binance_sim.funding import is_perpetual, next_funding_time
from binance_sim.income import DEFAULT_WINDOW_MS, INCOME_TYPES, trade_rows
from binance_sim.ledger import Ledger
from binance_sim.market import ONE, ZERO, SymbolSpec, fmt, fmt_places
from binance_sim.model import JSON, MONEY_PLACES, Position, liquidation_text, money
from binance_sim.params import Params
from binance_sim.shapes import algo_json, order_json, trade_json


def premium_index(ledger: Ledger, params: Params) -> JSON | list[JSON]:
    """GET /fapi/v1/premiumIndex."""
    now = ledger.clock()
    rows = [
        {
            "symbol": s.symbol,
            "markPrice": fmt_places(ledger.mark(s.symbol), s.price_places),
            "indexPrice": fmt_places(ledger.index_price(s.symbol), s.price_places),
            "estimatedSettlePrice": fmt_places(ledger.index_price(s.symbol), s.price_places),
            "lastFundingRate": fmt_places(ledger.funding_rate(s.symbol), 8) if is_perpetual(s) else "",
            "interestRate": "0.00010000" if is_perpetual(s) else "",
            "nextFundingTime": next_funding_time(now, ledger.funding_interval_ms(s.symbol))
            if is_perpetual(s)
            else 0,
            "time": now,
        }
        for s in ledger.symbols(params)
        if s.symbol in ledger.marks
    ]
    return rows[0] if params.has("symbol") else rows


def ticker_price(ledger: Ledger, params: Params) -> JSON | list[JSON]:
    """GET /fapi/v1/ticker/price and /fapi/v2/ticker/price (the last contract price)."""
    now = ledger.clock()
    rows = [
        {"symbol": s.symbol, "price": fmt_places(ledger.last_price(s.symbol), s.price_places), "time": now}
        for s in ledger.symbols(params)
        if s.symbol in ledger.marks
    ]
    return rows[0] if params.has("symbol") else rows


def leverage_bracket(ledger: Ledger, params: Params) -> JSON | list[JSON]:
    """GET /fapi/v1/leverageBracket: an object when a symbol is given, else a list."""
    rows = []
    for s in ledger.symbols(params):
        brackets = [
            {
                "bracket": b.bracket,
                "initialLeverage": b.initial_leverage,
                "notionalCap": int(b.notional_cap),
                "notionalFloor": int(b.notional_floor),
                "maintMarginRatio": float(b.maint_margin_ratio),
                "cum": float(b.cum),
            }
            for b in s.brackets
        ]
        rows.append({"symbol": s.symbol, "brackets": brackets})
    return rows[0] if params.has("symbol") else rows


# ----- account settings -------------------------------------------------------------------


def _position_rows(
    ledger: Ledger, symbols: Iterable[SymbolSpec], *, only_active: bool
) -> list[tuple[SymbolSpec, Position]]:
    rows = []
    for spec in symbols:
        for side in ledger.position_sides():
            pos = ledger.positions.get((spec.symbol, side)) or Position(spec.symbol, side)
            active = bool(pos.amount) or any(o.symbol == spec.symbol for o in ledger.open_orders.values())
            if only_active and not active:
                continue
            rows.append((spec, pos))
    return rows


def _position_fields(ledger: Ledger, spec: SymbolSpec, pos: Position) -> JSON:
    mark = ledger.mark(spec.symbol)
    leverage = ledger.leverage_of(spec.symbol)
    upnl = money(ledger.unrealized(pos))
    margin = money(ledger.position_margin(pos)) if pos.amount else ZERO
    isolated = ledger.margin_type_of(spec.symbol) == "ISOLATED"
    isolated_wallet = money(margins.isolated_wallet(ledger, pos))
    fee = ledger.market.taker_rate
    break_even = pos.entry_price * (ONE + fee if pos.amount > 0 else ONE - fee) if pos.amount else ZERO
    order_margin = sum(
        (ledger.order_margin(o) for o in ledger.open_orders.values() if o.symbol == spec.symbol), ZERO
    )
    return {
        "symbol": spec.symbol,
        "positionSide": pos.position_side,
        "positionAmt": fmt_places(pos.amount, spec.qty_places),
        "entryPrice": fmt(pos.entry_price.normalize()) if pos.entry_price else "0.0",
        "breakEvenPrice": fmt(money(break_even).normalize()) if pos.amount else "0.0",
        "markPrice": fmt_places(mark, MONEY_PLACES),
        "unRealizedProfit": fmt_places(upnl, MONEY_PLACES),
        "liquidationPrice": liquidation_text(margins.liquidation_price(ledger, pos)),
        "leverage": leverage,
        "maxNotionalValue": fmt(spec.max_notional(leverage)),
        "marginType": "isolated" if isolated else "cross",
        "isolated": isolated,
        "isolatedMargin": fmt_places(isolated_wallet + upnl if isolated else ZERO, MONEY_PLACES),
        "isolatedWallet": fmt_places(isolated_wallet, MONEY_PLACES),
        "notional": fmt_places(money(pos.amount * mark), MONEY_PLACES),
        "initialMargin": fmt_places(money(margin + order_margin), MONEY_PLACES),
        "positionInitialMargin": fmt_places(margin, MONEY_PLACES),
        "openOrderInitialMargin": fmt_places(money(order_margin), MONEY_PLACES),
        "maintMargin": fmt_places(money(margins.position_maint_margin(ledger, pos)), MONEY_PLACES),
        "updateTime": pos.update_time,
    }


def position_risk(ledger: Ledger, params: Params, version: int) -> list[JSON]:
    """GET /fapi/v2/positionRisk (every symbol) and /fapi/v3/positionRisk (active ones only)."""
    rows = _position_rows(ledger, ledger.symbols(params), only_active=version >= 3)
    result = []
    for spec, pos in rows:
        f = _position_fields(ledger, spec, pos)
        if version >= 3:
            result.append(
                {k: f[k] for k in _V3_POSITION_KEYS}
                | {"marginAsset": "USDT", "adl": 0, "bidNotional": "0", "askNotional": "0"}
            )
        else:
            result.append(
                {k: f[k] for k in _V2_POSITION_KEYS}
                | {
                    "isAutoAddMargin": "false",
                    "leverage": str(f["leverage"]),
                    "marginType": f["marginType"],
                }
            )
    return result


def _asset_rows(ledger: Ledger) -> list[JSON]:
    totals = ledger.totals()
    now = ledger.clock()
    rows = []
    for asset, balance in ledger.account.wallet.items():
        usdt = asset == "USDT"
        available = totals["available"] if usdt else balance
        rows.append(
            {
                "asset": asset,
                "walletBalance": fmt_places(balance, MONEY_PLACES),
                "unrealizedProfit": fmt_places(money(totals["upnl"]) if usdt else ZERO, MONEY_PLACES),
                "marginBalance": fmt_places(
                    money(balance + (totals["upnl"] if usdt else ZERO)), MONEY_PLACES
                ),
                "maintMargin": fmt_places(
                    money(margins.total_maint_margin(ledger)) if usdt else ZERO, MONEY_PLACES
                ),
                "initialMargin": fmt_places(
                    money(totals["position_margin"] + totals["order_margin"]) if usdt else ZERO,
                    MONEY_PLACES,
                ),
                "positionInitialMargin": fmt_places(money(totals["position_margin"]) if usdt else ZERO, 8),
                "openOrderInitialMargin": fmt_places(money(totals["order_margin"]) if usdt else ZERO, 8),
                "crossWalletBalance": fmt_places(balance, MONEY_PLACES),
                "crossUnPnl": fmt_places(money(totals["cross_upnl"]) if usdt else ZERO, MONEY_PLACES),
                "availableBalance": fmt_places(money(available), MONEY_PLACES),
                "maxWithdrawAmount": fmt_places(money(max(available, ZERO)), MONEY_PLACES),
                "marginAvailable": True,
                "updateTime": now,
            }
        )
    return rows


def balance(ledger: Ledger, version: int) -> list[JSON]:
    """GET /fapi/v2/balance and /fapi/v3/balance."""
    return [
        {
            "accountAlias": "SgsR",
            "asset": row["asset"],
            "balance": row["walletBalance"],
            "crossWalletBalance": row["crossWalletBalance"],
            "crossUnPnl": row["crossUnPnl"],
            "availableBalance": row["availableBalance"],
            "maxWithdrawAmount": row["maxWithdrawAmount"],
            "marginAvailable": row["marginAvailable"],
            "updateTime": row["updateTime"],
        }
        for row in _asset_rows(ledger)
    ]


def account_info(ledger: Ledger, version: int) -> JSON:
    """GET /fapi/v2/account (all symbols' positions) and /fapi/v3/account (active positions only)."""
    totals = ledger.totals()
    margin = money(totals["position_margin"] + totals["order_margin"])
    body: JSON = {}
    if version < 3:
        body |= {
            "feeTier": 0,
            "feeBurn": False,
            "canTrade": True,
            "canDeposit": True,
            "canWithdraw": True,
            "updateTime": 0,
            "multiAssetsMargin": False,
            "tradeGroupId": -1,
        }
    body |= {
        "totalInitialMargin": fmt_places(margin, MONEY_PLACES),
        "totalMaintMargin": fmt_places(money(margins.total_maint_margin(ledger)), MONEY_PLACES),
        "totalWalletBalance": fmt_places(totals["wallet"], MONEY_PLACES),
        "totalUnrealizedProfit": fmt_places(money(totals["upnl"]), MONEY_PLACES),
        "totalMarginBalance": fmt_places(money(totals["wallet"] + totals["upnl"]), MONEY_PLACES),
        "totalPositionInitialMargin": fmt_places(money(totals["position_margin"]), MONEY_PLACES),
        "totalOpenOrderInitialMargin": fmt_places(money(totals["order_margin"]), MONEY_PLACES),
        "totalCrossWalletBalance": fmt_places(totals["wallet"], MONEY_PLACES),
        "totalCrossUnPnl": fmt_places(money(totals["cross_upnl"]), MONEY_PLACES),
        "availableBalance": fmt_places(money(totals["available"]), MONEY_PLACES),
        "maxWithdrawAmount": fmt_places(money(max(totals["available"], ZERO)), MONEY_PLACES),
        "assets": _asset_rows(ledger),
    }
    positions = []
    for spec, pos in _position_rows(ledger, ledger.market.symbols.values(), only_active=version >= 3):
        f = _position_fields(ledger, spec, pos)
        # /fapi/v2|v3/account spells it unrealizedProfit (positionRisk: unRealizedProfit).
        row = {("unrealizedProfit" if k == "unRealizedProfit" else k): f[k] for k in _ACCOUNT_POSITION_KEYS}
        if version < 3:
            row |= {
                "leverage": str(f["leverage"]),
                "isolated": f["isolated"],
                "entryPrice": f["entryPrice"],
            }
            row |= {"maxNotional": f["maxNotionalValue"], "bidNotional": "0", "askNotional": "0"}
        positions.append(row)
    body["positions"] = positions
    return body


def state(ledger: Ledger) -> JSON:
    """Everything for GET /_sim/state: Binance-shaped orders, algo orders, trades, positions, balances."""
    return {
        "serverTime": ledger.clock(),
        "markPrices": {s: fmt(p) for s, p in ledger.marks.items()},
        "dualSidePosition": ledger.account.dual_side,
        "leverage": dict(ledger.account.leverage),
        "marginType": dict(ledger.account.margin_type),
        "balances": _asset_rows(ledger),
        "positions": [
            _position_fields(ledger, ledger.spec(p.symbol), p) for p in ledger.positions.values() if p.amount
        ],
        "orders": [order_json(ledger.spec(o.symbol), o, with_time=True) for o in ledger.orders.values()],
        "openOrderIds": list(ledger.open_orders),
        "algoOrders": [algo_json(ledger.spec(a.symbol), a, query=True) for a in ledger.algo_orders.values()],
        "trades": [trade_json(ledger.spec(t.symbol), t) for t in ledger.trades],
    }


_V2_POSITION_KEYS: Final = (
    "entryPrice",
    "breakEvenPrice",
    "isolatedMargin",
    "liquidationPrice",
    "markPrice",
    "maxNotionalValue",
    "positionAmt",
    "notional",
    "isolatedWallet",
    "symbol",
    "unRealizedProfit",
    "positionSide",
    "updateTime",
)
_V3_POSITION_KEYS: Final = (
    "symbol",
    "positionSide",
    "positionAmt",
    "entryPrice",
    "breakEvenPrice",
    "markPrice",
    "unRealizedProfit",
    "liquidationPrice",
    "isolatedMargin",
    "notional",
    "isolatedWallet",
    "initialMargin",
    "maintMargin",
    "positionInitialMargin",
    "openOrderInitialMargin",
    "updateTime",
)
_ACCOUNT_POSITION_KEYS: Final = (
    "symbol",
    "positionSide",
    "positionAmt",
    "unRealizedProfit",
    "isolatedMargin",
    "notional",
    "isolatedWallet",
    "initialMargin",
    "maintMargin",
    "updateTime",
)


def income_history(ledger: Ledger, params: Params, lag_ms: int = 0) -> list[dict[str, Any]]:
    """GET /fapi/v1/income; rows younger than ``lag_ms`` are not listed yet."""
    symbol = params.opt_str("symbol")
    if symbol:
        ledger.spec(symbol)
    income_type = params.opt_str("incomeType")
    if income_type is not None and income_type not in INCOME_TYPES:
        raise errors.invalid_value("incomeType")
    limit = params.opt_int("limit")
    limit = 100 if limit is None else limit
    if not 1 <= limit <= 1000:
        raise errors.invalid_value("limit")
    page = params.opt_int("page") or 1
    start = params.opt_int("startTime")
    end = params.opt_int("endTime")
    if end is None:
        end = ledger.clock() if start is None else max(ledger.clock(), start)
    if start is None:
        start = end - DEFAULT_WINDOW_MS
    listed_until = ledger.clock() - lag_ms
    rows = sorted(
        (
            row
            for row in (*trade_rows(ledger.trades), *ledger.income.rows)
            if (not symbol or row.symbol == symbol)
            and (income_type is None or row.income_type == income_type)
            and start <= row.time <= end
            and row.time <= listed_until
        ),
        key=lambda row: (row.time, row.order),
    )
    first = (page - 1) * limit
    return [row.to_json() for row in rows[first : first + limit]]


def funding_rate_history(ledger: Ledger, params: Params) -> list[JSON]:
    """GET /fapi/v1/fundingRate ("Get Funding Rate History"): ``symbol`` optional, ``startTime`` /
    ``endTime``, ``limit`` 100 by default, at most 1000; ascending; without a window the most recent
    ``limit`` records, with one the first ``limit`` from ``startTime``."""
    symbol = params.opt_str("symbol")
    if symbol:
        ledger.spec(symbol)
    limit = params.opt_int("limit")
    limit = 100 if limit is None else limit
    if not 1 <= limit <= 1000:
        raise errors.invalid_value("limit")
    start = params.opt_int("startTime")
    end = params.opt_int("endTime")
    rows = [
        (s, t, rate, mark)
        for s, t, rate, mark in ledger.funding_history
        if (not symbol or s == symbol) and (start is None or t >= start) and (end is None or t <= end)
    ]
    rows = rows[:limit] if start is not None or end is not None else rows[-limit:]
    return [
        {
            "symbol": s,
            "fundingRate": fmt_places(rate, 8),
            "fundingTime": t,
            "markPrice": fmt_places(mark, MONEY_PLACES),
        }
        for s, t, rate, mark in rows
    ]


def funding_info(ledger: Ledger) -> list[JSON]:
    """GET /fapi/v1/fundingInfo: each perpetual's rate cap, floor and funding interval."""
    return [
        {
            "symbol": s.symbol,
            "adjustedFundingRateCap": fmt_places(ledger.funding.rate_cap, 8),
            "adjustedFundingRateFloor": fmt_places(ledger.funding.rate_floor, 8),
            "fundingIntervalHours": ledger.funding_interval_ms(s.symbol) // 3_600_000,
            "disclaimer": False,
        }
        for s in ledger.market.symbols.values()
        if is_perpetual(s)
    ]
