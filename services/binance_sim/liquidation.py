"""Maintenance margin, liquidation price and forced liquidation (pure over the engine's state).

Binance, "Leverage and Margin of USDⓈ-M Futures": ``Maintenance Margin = Notional Position Value ×
Maintenance Margin Rate − Maintenance Amount``, rate and amount (``maintMarginRatio``, ``cum`` of
``GET /fapi/v1/leverageBracket``) from the bracket the notional (at the mark) falls in.

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

Binance, "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts" (one-way mode; hedge mode
adds the LONG and SHORT terms the same way)::

    LP = (WB − TMM1 + UPNL1 + cumB − Side1BOTH × Position1BOTH × EP1BOTH)
         / (Position1BOTH × MMR_B − Side1BOTH × Position1BOTH)

WB is the cross wallet balance (isolated: the position's isolated wallet, and TMM1 = UPNL1 = 0),
TMM1 and UPNL1 the maintenance margin and unrealized PnL of all other (cross) contracts, Side 1 for
long and −1 for short, Position the absolute size, EP the entry price. When the notional at the
liquidation price falls in another bracket than at the mark, that bracket's rate and amount apply
(the FAQ's note); a result at or below zero is shown as 0.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Final

from binance_sim.market import ONE, ZERO, LeverageBracket, SymbolSpec, round_to_step

if TYPE_CHECKING:
    from binance_sim.engine import Engine, Position

_MONEY: Final = Decimal("0.00000001")


def maint_margin_of(spec: SymbolSpec, notional: Decimal) -> Decimal:
    """Maintenance margin of an absolute ``notional``: notional × rate − amount of its bracket."""
    if not notional:
        return ZERO
    bracket = spec.bracket_for(notional)
    return notional * bracket.maint_margin_ratio - bracket.cum


def position_maint_margin(engine: Engine, pos: Position) -> Decimal:
    """Maintenance margin of a position at the current mark."""
    return maint_margin_of(engine.spec(pos.symbol), abs(pos.amount) * engine.mark(pos.symbol))


def isolated_wallet(engine: Engine, pos: Position) -> Decimal:
    """The margin an isolated position holds: its opening notional over the leverage."""
    if not pos.amount or engine.margin_type_of(pos.symbol) != "ISOLATED":
        return ZERO
    return abs(pos.amount) * pos.entry_price / engine.leverage_of(pos.symbol)


def _active(engine: Engine, *, isolated: bool) -> list[Position]:
    return [
        p
        for p in engine.positions.values()
        if p.amount and (engine.margin_type_of(p.symbol) == "ISOLATED") == isolated
    ]


def cross_wallet(engine: Engine) -> Decimal:
    """Wallet balance minus what the isolated positions hold (Binance's crossWalletBalance)."""
    held = sum((isolated_wallet(engine, p) for p in _active(engine, isolated=True)), ZERO)
    return engine.account.wallet.get("USDT", ZERO) - held


def total_maint_margin(engine: Engine) -> Decimal:
    """Maintenance margin of every open position (account information's totalMaintMargin)."""
    return sum((position_maint_margin(engine, p) for p in engine.positions.values() if p.amount), ZERO)


def _side(pos: Position) -> Decimal:
    return ONE if pos.amount > 0 else -ONE


def _formula(
    base: Decimal, group: list[Position], brackets: list[LeverageBracket]
) -> tuple[Decimal, Decimal]:
    numerator = base
    denominator = ZERO
    for pos, bracket in zip(group, brackets, strict=True):
        size = abs(pos.amount)
        numerator += bracket.cum - _side(pos) * size * pos.entry_price
        denominator += size * bracket.maint_margin_ratio - _side(pos) * size
    return numerator, denominator


def liquidation_price(engine: Engine, pos: Position) -> Decimal:
    """Binance's published liquidation price of ``pos`` (0 when there is none), to 8 places."""
    if not pos.amount:
        return ZERO
    spec = engine.spec(pos.symbol)
    if engine.margin_type_of(pos.symbol) == "ISOLATED":
        group = [pos]
        base = isolated_wallet(engine, pos)
    else:
        cross = _active(engine, isolated=False)
        group = [p for p in cross if p.symbol == pos.symbol]
        others = [p for p in cross if p.symbol != pos.symbol]
        base = (
            cross_wallet(engine)
            - sum((position_maint_margin(engine, p) for p in others), ZERO)
            + sum((engine._unrealized(p) for p in others), ZERO)
        )
    mark = engine.mark(pos.symbol)
    brackets = [spec.bracket_for(abs(p.amount) * mark) for p in group]
    if len(group) == 1:
        # The bracket that applies is the one the notional at the liquidation price falls in.
        for bracket in spec.brackets:
            numerator, denominator = _formula(base, group, [bracket])
            if (
                denominator
                and spec.bracket_for(abs(pos.amount) * max(numerator / denominator, ZERO)) is bracket
            ):
                brackets = [bracket]
                break
    numerator, denominator = _formula(base, group, brackets)
    if not denominator:
        return ZERO
    price = numerator / denominator
    if price <= 0:
        return ZERO
    return price.quantize(_MONEY, ROUND_HALF_UP)


def _bankruptcy_price(engine: Engine, pos: Position) -> Decimal:
    """The price at which the position's margin (isolated wallet, or the cross balance) is zero."""
    spec = engine.spec(pos.symbol)
    if engine.margin_type_of(pos.symbol) == "ISOLATED":
        margin = isolated_wallet(engine, pos)
    else:
        others = [p for p in _active(engine, isolated=False) if p is not pos]
        margin = cross_wallet(engine) + sum((engine._unrealized(p) for p in others), ZERO)
    price = pos.entry_price - margin / pos.amount
    # Rounded against the position: the loss never stops short of the margin.
    return max(spec.tick_size, round_to_step(price, spec.tick_size, up=pos.amount > 0))


def _next_to_liquidate(engine: Engine) -> Position | None:
    """An isolated position at or below its maintenance margin; else, when the cross account is, the
    cross position holding the largest maintenance margin; else None."""
    for pos in _active(engine, isolated=True):
        if isolated_wallet(engine, pos) + engine._unrealized(pos) <= position_maint_margin(engine, pos):
            return pos
    cross = _active(engine, isolated=False)
    if not cross:
        return None
    balance = cross_wallet(engine) + sum((engine._unrealized(p) for p in cross), ZERO)
    if balance > sum((position_maint_margin(engine, p) for p in cross), ZERO):
        return None
    return max(cross, key=lambda p: position_maint_margin(engine, p))


def liquidate_below_maintenance(engine: Engine) -> list[int]:
    """Liquidate positions, one at a time, while one is at or below its maintenance margin (a cross
    account stops losing positions as soon as it is compliant again, as Binance's does).

    Returns the ids of the LIQUIDATION orders (empty when nothing was liquidated).
    """
    order_ids = []
    while (pos := _next_to_liquidate(engine)) is not None:
        order_ids.append(_liquidate(engine, pos))
    return order_ids


def _cancel_orders_of(engine: Engine, symbol: str) -> None:
    now = engine.clock()
    for order in [o for o in engine.open_orders.values() if o.symbol == symbol]:
        order.status = "CANCELED"
        order.update_time = now
        engine.open_orders.pop(order.order_id, None)
        engine._on_order_update(order)
    for algo in [a for a in engine.open_algo.values() if a.symbol == symbol]:
        engine._cancel_algo(algo)


def _liquidate(engine: Engine, pos: Position) -> int:
    from binance_sim.engine import Order  # the engine imports this module

    spec = engine.spec(pos.symbol)
    _cancel_orders_of(engine, pos.symbol)
    margin_before = isolated_wallet(engine, pos)
    bankruptcy = _bankruptcy_price(engine, pos)
    mark = engine.mark(pos.symbol)
    long = pos.amount > 0
    fill_price = mark if (mark >= bankruptcy if long else mark <= bankruptcy) else bankruptcy
    qty = abs(pos.amount)
    now = engine.clock()
    order_id = engine._ids.next_order()
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
    engine._on_order_update(order)
    trade = engine._fill(order, qty, fill_price, maker=False)
    order.status = "FILLED"
    engine._on_order_update(order, trade)
    engine._on_account_update("ORDER", (pos.symbol,), ("USDT",))
    if engine.margin_type_of(pos.symbol) == "ISOLATED":
        left = margin_before + trade.realized_pnl - trade.commission
    else:
        left = cross_wallet(engine) + sum(
            (engine._unrealized(p) for p in _active(engine, isolated=False)), ZERO
        )
    fee = min(spec.liquidation_fee * qty * fill_price, max(left, ZERO)).quantize(_MONEY, ROUND_HALF_UP)
    if fee > 0:
        engine.account.wallet["USDT"] = engine.account.wallet.get("USDT", ZERO) - fee
        # Booked with the fill (its time), not when the liquidation began: income lists it after the PnL.
        engine.income.book("INSURANCE_CLEAR", -fee, trade.time, pos.symbol)
        engine._on_account_update("INSURANCE_CLEAR", (pos.symbol,), ("USDT",))
    return order_id
