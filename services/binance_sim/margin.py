"""Maintenance margin, wallets, liquidation and bankruptcy prices (pure over the ledger).

Binance, "Leverage and Margin of USDⓈ-M Futures": ``Maintenance Margin = Notional Position Value ×
Maintenance Margin Rate − Maintenance Amount``, rate and amount (``maintMarginRatio``, ``cum`` of
``GET /fapi/v1/leverageBracket``) from the bracket the notional (at the mark) falls in.

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
    from binance_sim.ledger import Ledger
    from binance_sim.model import Position

_MONEY: Final = Decimal("0.00000001")


def maint_margin_of(spec: SymbolSpec, notional: Decimal) -> Decimal:
    """Maintenance margin of an absolute ``notional``: notional × rate − amount of its bracket."""
    if not notional:
        return ZERO
    bracket = spec.bracket_for(notional)
    return notional * bracket.maint_margin_ratio - bracket.cum


def position_maint_margin(engine: Ledger, pos: Position) -> Decimal:
    """Maintenance margin of a position at the current mark."""
    return maint_margin_of(engine.spec(pos.symbol), abs(pos.amount) * engine.mark(pos.symbol))


def isolated_wallet(engine: Ledger, pos: Position) -> Decimal:
    """The margin an isolated position holds: its opening notional over the leverage."""
    if not pos.amount or engine.margin_type_of(pos.symbol) != "ISOLATED":
        return ZERO
    return abs(pos.amount) * pos.entry_price / engine.leverage_of(pos.symbol)


def active(engine: Ledger, *, isolated: bool) -> list[Position]:
    return [
        p
        for p in engine.positions.values()
        if p.amount and (engine.margin_type_of(p.symbol) == "ISOLATED") == isolated
    ]


def cross_wallet(engine: Ledger) -> Decimal:
    """Wallet balance minus what the isolated positions hold (Binance's crossWalletBalance)."""
    held = sum((isolated_wallet(engine, p) for p in active(engine, isolated=True)), ZERO)
    return engine.account.wallet.get("USDT", ZERO) - held


def total_maint_margin(engine: Ledger) -> Decimal:
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


def liquidation_price(engine: Ledger, pos: Position) -> Decimal:
    """Binance's published liquidation price of ``pos`` (0 when there is none), to 8 places."""
    if not pos.amount:
        return ZERO
    spec = engine.spec(pos.symbol)
    if engine.margin_type_of(pos.symbol) == "ISOLATED":
        group = [pos]
        base = isolated_wallet(engine, pos)
    else:
        cross = active(engine, isolated=False)
        group = [p for p in cross if p.symbol == pos.symbol]
        others = [p for p in cross if p.symbol != pos.symbol]
        base = (
            cross_wallet(engine)
            - sum((position_maint_margin(engine, p) for p in others), ZERO)
            + sum((engine.unrealized(p) for p in others), ZERO)
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


def bankruptcy_price(engine: Ledger, pos: Position) -> Decimal:
    """The price at which the position's margin (isolated wallet, or the cross balance) is zero."""
    spec = engine.spec(pos.symbol)
    if engine.margin_type_of(pos.symbol) == "ISOLATED":
        margin = isolated_wallet(engine, pos)
    else:
        others = [p for p in active(engine, isolated=False) if p is not pos]
        margin = cross_wallet(engine) + sum((engine.unrealized(p) for p in others), ZERO)
    price = pos.entry_price - margin / pos.amount
    # Rounded against the position: the loss never stops short of the margin.
    return max(spec.tick_size, round_to_step(price, spec.tick_size, up=pos.amount > 0))


def next_to_liquidate(engine: Ledger) -> Position | None:
    """An isolated position at or below its maintenance margin; else, when the cross account is, the
    cross position holding the largest maintenance margin; else None."""
    for pos in active(engine, isolated=True):
        if isolated_wallet(engine, pos) + engine.unrealized(pos) <= position_maint_margin(engine, pos):
            return pos
    cross = active(engine, isolated=False)
    if not cross:
        return None
    balance = cross_wallet(engine) + sum((engine.unrealized(p) for p in cross), ZERO)
    if balance > sum((position_maint_margin(engine, p) for p in cross), ZERO):
        return None
    return max(cross, key=lambda p: position_maint_margin(engine, p))
