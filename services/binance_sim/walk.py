"""A seeded random walk of the marks, so paper trading and demos see stops and targets fire by themselves.

Each step moves every symbol's mark by ``mark × volatility × z`` (z standard normal, from a
``random.Random(seed)``, so a seed replays the same path), rounded to the tick and never below one
tick, and sets the index price and the last (contract) price near the new mark: on Binance the mark
is derived from the index and the last price (premiumIndex's ``indexPrice``, the ticker's ``price``),
and a CONTRACT_PRICE trigger fires on the last price while a MARK_PRICE one fires on the mark. Pure;
the server calls :meth:`PriceWalk.step` on a timer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from binance_sim.market import ONE, SymbolSpec, round_to_step

if TYPE_CHECKING:
    from binance_sim.engine import Engine


@dataclass(frozen=True, slots=True)
class WalkConfig:
    """``volatility``: relative standard deviation of one step (None = no walk); ``interval_s``: time
    between steps; ``seed``: the random seed; ``basis_share``: how far (as a share of one step's
    volatility) the index and last prices stray from the mark."""

    volatility: Decimal | None = None
    interval_s: float = 1.0
    seed: int = 0
    basis_share: Decimal = Decimal("0.25")


@dataclass(frozen=True, slots=True)
class PriceStep:
    """The prices of one symbol after one step."""

    mark: Decimal
    index: Decimal
    last: Decimal


class PriceWalk:
    """The random walk; the same seed and the same starting marks give the same steps."""

    def __init__(self, config: WalkConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)

    def _normal(self) -> Decimal:
        # Six digits are plenty and keep the Decimal arithmetic independent of float formatting.
        return Decimal(f"{self._rng.gauss(0.0, 1.0):.6f}")

    def _near(self, spec: SymbolSpec, price: Decimal, scale: Decimal) -> Decimal:
        moved = price * (ONE + scale * self._normal())
        return max(spec.tick_size, round_to_step(moved, spec.tick_size, up=moved > price))

    def next_prices(self, spec: SymbolSpec, mark: Decimal) -> PriceStep:
        """Draw the next mark, index and last price of one symbol."""
        volatility = self.config.volatility or Decimal(0)
        new_mark = self._near(spec, mark, volatility)
        basis = volatility * self.config.basis_share
        return PriceStep(new_mark, self._near(spec, new_mark, basis), self._near(spec, new_mark, basis))

    def step(self, engine: Engine) -> dict[str, PriceStep]:
        """Move every symbol (in name order, so the draws are reproducible); triggers, resting orders
        and liquidations act as on any mark move."""
        steps: dict[str, PriceStep] = {}
        for symbol in sorted(engine.marks):
            step = self.next_prices(engine.spec(symbol), engine.mark(symbol))
            engine.set_reference_prices(symbol, index=step.index, last=step.last)
            engine.set_mark_price(symbol, step.mark)
            steps[symbol] = step
        return steps
