"""The synthetic order book MARKET orders walk (pure; no engine state).

Binance fills a MARKET order against resting liquidity, level by level, so a large order gets
several trades and a volume-weighted ``avgPrice``. The simulator has no other traders, so it builds
the opposite side of the book around the mark on demand: the best level ``spread_bps / 2`` (plus the
configured ``slippage_bps``) away from the mark, further levels ``level_bps`` apart (at least one
tick), each holding ``depth`` USDT of notional (rounded down to the MARKET_LOT_SIZE step, at least
one step). Without a depth the book is one level deep enough for any order: one trade at the best
price, which is exactly the simulator's behaviour before the book existed.

``marketTakeBound`` (exchangeInfo, per symbol; 0.05 on every fixture symbol) caps how far from the
mark a MARKET order may take: Binance's exchangeInfo field comment reads 市价吃单(相对于标记价格)允许可
造成的最大价格偏离比例, "the largest price deviation (relative to the mark price) a market taker order
may cause". Levels beyond ``mark × (1 ± marketTakeBound)`` are not taken and the unfilled rest
expires, so the order ends EXPIRED with a partial ``executedQty``: Binance's order status table
defines EXPIRED as "canceled according to the order type's rules (e.g. LIMIT FOK orders with no fill,
LIMIT IOC or MARKET orders that partially fill)".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from binance_sim.market import ONE, ZERO, SymbolSpec, round_to_step

_BPS: Final = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class BookConfig:
    """Shape of the synthetic book.

    ``depth_notional``: USDT notional per level for every symbol (None = unlimited, one level);
    ``depth_by_symbol`` overrides it per symbol. ``spread_bps``: full bid-ask spread around the mark.
    ``level_bps``: price gap between levels (0 = one tick).
    """

    depth_notional: Decimal | None = None
    depth_by_symbol: Mapping[str, Decimal] = field(default_factory=dict)
    spread_bps: Decimal = ZERO
    level_bps: Decimal = ZERO

    def depth_of(self, symbol: str) -> Decimal | None:
        """USDT notional per level of ``symbol`` (None = unlimited)."""
        return self.depth_by_symbol.get(symbol, self.depth_notional)


def best_price(
    spec: SymbolSpec, side: str, mark: Decimal, config: BookConfig, slippage_bps: Decimal
) -> Decimal:
    """The first level a taker on ``side`` meets: away from the mark by half the spread plus slippage."""
    offset = mark * (slippage_bps + config.spread_bps / 2) / _BPS
    if side == "BUY":
        return round_to_step(mark + offset, spec.tick_size, up=True)
    return round_to_step(mark - offset, spec.tick_size, up=False)


def take_bound(spec: SymbolSpec, side: str, mark: Decimal) -> Decimal | None:
    """The worst price a MARKET order on ``side`` may fill at (None when the symbol has no bound)."""
    if not spec.market_take_bound:
        return None
    return mark * (ONE + spec.market_take_bound if side == "BUY" else ONE - spec.market_take_bound)


def market_fills(
    spec: SymbolSpec,
    side: str,
    qty: Decimal,
    mark: Decimal,
    config: BookConfig,
    slippage_bps: Decimal,
    limit: Decimal | None = None,
) -> list[tuple[Decimal, Decimal]]:
    """The (price, quantity) trades of a taker order of ``qty``; their sum is short of ``qty`` when the
    book runs into the marketTakeBound or, for a LIMIT taker, past its ``limit`` price (the levels a
    LIMIT IOC/FOK/GTC meets are those at or better than its price, as on Binance's book)."""
    price = best_price(spec, side, mark, config, slippage_bps)
    bound = take_bound(spec, side, mark)
    depth = config.depth_of(spec.symbol)
    gap = max(spec.tick_size, round_to_step(mark * config.level_bps / _BPS, spec.tick_size, up=True))
    step = spec.market_step or spec.lot_step
    fills: list[tuple[Decimal, Decimal]] = []
    remaining = qty
    while remaining > 0 and price > 0:
        if limit is None and bound is not None and (price > bound if side == "BUY" else price < bound):
            break
        if limit is not None and (price > limit if side == "BUY" else price < limit):
            break
        level_qty = remaining if depth is None else max(step, round_to_step(depth / price, step, up=False))
        taken = min(remaining, level_qty)
        fills.append((price, taken))
        remaining -= taken
        price = price + gap if side == "BUY" else price - gap
    return fills


def level_price(
    spec: SymbolSpec, side: str, mark: Decimal, config: BookConfig, slippage_bps: Decimal, level: int
) -> Decimal:
    """The price of the ``level``-th (1-based) level a taker on ``side`` meets."""
    gap = max(spec.tick_size, round_to_step(mark * config.level_bps / _BPS, spec.tick_size, up=True))
    best = best_price(spec, side, mark, config, slippage_bps)
    return best + gap * (level - 1) if side == "BUY" else best - gap * (level - 1)
