"""Which of our legs someone here is acting on, so the live OCO and the executor never both do.

* An algo id being cancelled or replaced (its CANCELED may still be on the way) is not asked twice.
* Legs sent beside an entry still travelling are held: their symbol is flat only until the entry
  fills, so the live OCO leaves them alone until the executor releases them.
* A symbol whose whole set of legs a MODIFY is replacing is held: the live OCO acts on none of its
  legs meanwhile (the MODIFY reads the exchange again once its set stands and hands over).
"""

from __future__ import annotations

from collections.abc import Iterable


class LegClaims:
    """Algo ids acted on, and client ids of held legs; shared by the follower's components."""

    def __init__(self) -> None:
        self._acted_on: set[int] = set()
        self._held: set[str] = set()
        self._symbols: dict[str, int] = {}  # symbol -> how many hold it

    def acting(self, algo_id: int) -> bool:
        return algo_id in self._acted_on

    def claim(self, algo_ids: Iterable[int]) -> None:
        self._acted_on.update(algo_ids)

    def unclaim(self, algo_id: int) -> None:
        self._acted_on.discard(algo_id)

    def hold(self, client_algo_ids: Iterable[str]) -> None:
        self._held.update(client_algo_ids)

    def release(self, client_algo_ids: Iterable[str]) -> None:
        self._held.difference_update(client_algo_ids)

    def held(self, client_algo_id: str) -> bool:
        return client_algo_id in self._held

    def hold_symbol(self, symbol: str) -> None:
        self._symbols[symbol] = self._symbols.get(symbol, 0) + 1

    def release_symbol(self, symbol: str) -> None:
        left = self._symbols.get(symbol, 0) - 1
        if left > 0:
            self._symbols[symbol] = left
        else:
            self._symbols.pop(symbol, None)

    def symbol_held(self, symbol: str) -> bool:
        return symbol in self._symbols
