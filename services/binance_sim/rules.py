"""Binance's checks of an order's parameters (filters, position side, price bands) and the prices a
taker or a trigger meets: shared by plain orders and algo orders. Each raises :class:`SimError` with
Binance's code and message.
"""

from __future__ import annotations

from decimal import Decimal

from binance_sim import errors
from binance_sim.book import best_price, level_price
from binance_sim.ledger import Ledger
from binance_sim.market import SymbolSpec, decimals_of, fmt_places, round_to_step
from binance_sim.model import POSITION_SIDES
from binance_sim.params import Params


def quantity(spec: SymbolSpec, params: Params, *, market: bool) -> Decimal:
    qty = params.req_decimal("quantity")
    if decimals_of(qty) > spec.quantity_precision:
        raise errors.PRECISION()
    if qty <= 0:
        raise errors.QTY_NOT_POSITIVE()
    min_qty, max_qty, step = (
        (spec.market_min_qty, spec.market_max_qty, spec.market_step)
        if market
        else (spec.lot_min_qty, spec.lot_max_qty, spec.lot_step)
    )
    if qty < min_qty:
        raise errors.QTY_BELOW_MIN()
    if max_qty and qty > max_qty:
        raise errors.QTY_ABOVE_MAX()
    if step and (qty - min_qty) % step:
        raise errors.QTY_STEP()
    return qty


def price(spec: SymbolSpec, params: Params, name: str) -> Decimal:
    price = params.req_decimal(name)
    if decimals_of(price) > spec.price_places:
        raise errors.PRECISION()
    if price <= 0:
        raise errors.STOP_PRICE_NOT_POSITIVE() if name != "price" else errors.PRICE_NOT_POSITIVE()
    if spec.max_price and price > spec.max_price:
        raise errors.PRICE_ABOVE_MAX()
    if price < spec.min_price:
        raise errors.PRICE_BELOW_MIN()
    if spec.tick_size and (price - spec.min_price) % spec.tick_size:
        raise errors.PRICE_TICK()
    return price


def limit_band(ledger: Ledger, spec: SymbolSpec, side: str, price: Decimal) -> None:
    mark = ledger.mark(spec.symbol)
    if not spec.multiplier_up:
        return
    if side == "BUY":
        cap = round_to_step(mark * spec.multiplier_up, spec.tick_size, up=False)
        if price > cap:
            raise errors.limit_price_too_high(fmt_places(cap, spec.price_places))
    else:
        floor = round_to_step(mark * spec.multiplier_down, spec.tick_size, up=True)
        if price < floor:
            raise errors.limit_price_too_low(fmt_places(floor, spec.price_places))


def position_side(ledger: Ledger, params: Params) -> str:
    position_side = params.enum("positionSide", POSITION_SIDES, default="BOTH")
    if ledger.account.dual_side:
        if position_side == "BOTH":
            raise errors.POSITION_SIDE_MISMATCH()
        if params.opt_bool("reduceOnly"):
            raise errors.not_required("reduceOnly")
    elif position_side != "BOTH":
        raise errors.POSITION_SIDE_MISMATCH()
    return position_side


def market_fill_price(ledger: Ledger, spec: SymbolSpec, side: str) -> Decimal:
    """The best price a taker meets in the synthetic book; -4131 when it is outside PERCENT_PRICE."""
    mark = ledger.mark(spec.symbol)
    price = best_price(spec, side, mark, ledger.book, ledger.slippage_bps)
    if side == "BUY":
        if spec.multiplier_up and price > mark * spec.multiplier_up:
            raise errors.PERCENT_PRICE()
    elif spec.multiplier_down and price < mark * spec.multiplier_down:
        raise errors.PERCENT_PRICE()
    return price


# ----- orders -------------------------------------------------------------------------------


def working_price(ledger: Ledger, symbol: str, working_type: str) -> Decimal:
    """The price a trigger watches: the mark for MARK_PRICE, the last price for CONTRACT_PRICE."""
    return ledger.mark(symbol) if working_type == "MARK_PRICE" else ledger.last_price(symbol)


def match_price(ledger: Ledger, spec: SymbolSpec, side: str, price_match: str) -> Decimal:
    """The price ``priceMatch`` gives a LIMIT ("New Order": OPPONENT is the best price of the other
    side, OPPONENT_5/10/20 its 5th/10th/20th level; QUEUE the best price of the order's own side, and
    QUEUE_N that side's Nth level)."""
    kind, _, depth = price_match.partition("_")
    level = int(depth) if depth else 1
    # The other side is what a taker on ``side`` meets; the own side what a taker on the other meets.
    taker_side = side if kind == "OPPONENT" else ("SELL" if side == "BUY" else "BUY")
    return level_price(spec, taker_side, ledger.mark(spec.symbol), ledger.book, ledger.slippage_bps, level)
