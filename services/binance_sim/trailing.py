"""TRAILING_STOP_MARKET: a stop that follows the working price (the mark for MARK_PRICE) with its
callback, as Binance's Algo Order API runs it.

* ``callbackRate`` 0.1-20 percent (Binance raised the maximum from 10 on 2026-10-23; see
  /work/shared/docs/binance-futures.md, "Conditional orders live in the Algo Order API"), else
  ``-2007 Invalid callBack rate``.
* ``activatePrice`` (optional; ``activationPrice`` on the older order endpoint): a SELL trailing
  stop activates when the price reaches it from below, a BUY one from above; one already crossed at
  placement is ``-2021``. Without it the stop is active at once, tracking from the mark.
* Once active it tracks the extreme (a SELL the highest price, a BUY the lowest) and fires when the
  price retraces by the callback from it: SELL at ``extreme x (1 - rate)``, BUY at
  ``extreme x (1 + rate)`` (Binance "Trailing Stop" FAQ; NautilusTrader's and finandy's trailing
  order descriptions agree: https://docs.finandy.com/trading/manual/position-settings/3.-order-types/trailing-order).
* ALGO_UPDATE carries ``ia`` (activated) since 2026-08-21: NEW with ``ia`` false at placement (true
  when it is active at once), then NEW again with ``ia`` true when it activates.

Pure over one order: the engine (``algos.py``) calls :func:`check_callback` at placement and
:func:`step` at each price move, and announces the activation.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from binance_sim import errors
from binance_sim.market import ONE, round_to_step
from binance_sim.model import AlgoOrder

TRAILING: Final = "TRAILING_STOP_MARKET"
MIN_CALLBACK: Final = Decimal("0.1")
MAX_CALLBACK: Final = Decimal(20)
_HUNDRED: Final = Decimal(100)


def check_callback(rate: Decimal) -> None:
    """``callbackRate`` within Binance's 0.1-20 percent."""
    if not MIN_CALLBACK <= rate <= MAX_CALLBACK:
        raise errors.CALLBACK_RATE()


def activated(algo: AlgoOrder) -> bool:
    """The stop tracks the price (``ia``): it activated, or had no activation price."""
    return algo.trailing_extreme is not None


def step(algo: AlgoOrder, price: Decimal, tick: Decimal) -> tuple[bool, bool]:
    """Follow ``price``: ``(activated now, fires now)``. On firing, the trigger price is where it
    fired (rounded to the tick toward the market)."""
    assert algo.callback_rate is not None
    now_active = False
    if algo.trailing_extreme is None:
        assert algo.activate_price is not None
        reached = price >= algo.activate_price if algo.side == "SELL" else price <= algo.activate_price
        if not reached:
            return False, False
        algo.trailing_extreme, now_active = price, True
    rate = algo.callback_rate / _HUNDRED
    if algo.side == "SELL":
        algo.trailing_extreme = max(algo.trailing_extreme, price)
        fire = price <= algo.trailing_extreme * (ONE - rate)
    else:
        algo.trailing_extreme = min(algo.trailing_extreme, price)
        fire = price >= algo.trailing_extreme * (ONE + rate)
    if fire:
        algo.trigger_price = round_to_step(price, tick, up=algo.side == "BUY")
    return now_active, fire
