"""A flatten that only waits for admissions to settle does not read the exchange every tick.

An instance killed between its entry's answer and its settle leaves the admission's record until it
lapses (up to 30 s). Reading positions, every open algo order and every open order (85 of the
account's request weight) at each 0.25 s tick meanwhile spent the instance's share of the weight
budget within seconds; pacing then held the governor's next read, and the ``flatten_done``, for
most of a minute. Counted with fakes: no timing is asserted.
"""

from __future__ import annotations

from typing import Any, cast

from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.risk.flatten import Flattener
from quantum_exec.risk.rounds import Rounds
from quantum_exec.risk.store import RiskStore

FENCE = ("lease", "held")


class _Admissions:
    def __init__(self) -> None:
        self.left = 1

    async def unsettled(self) -> int:
        return self.left


class _Store:
    def __init__(self) -> None:
        self.admissions = _Admissions()
        self.finished: list[str] = []

    async def finish_flatten(self, flatten_id: str, fence: Any, numbers: dict[str, Any]) -> bool:
        self.finished.append(flatten_id)
        return True


class _Rounds:
    async def all_done(self, flatten_id: str) -> tuple[bool, int]:
        return True, 0


class _Gateway:
    """An exchange holding nothing: every read counted."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    async def positions(self) -> list[Any]:
        self.reads.append("positionRisk")
        return []

    async def open_algo_orders(self) -> list[Any]:
        self.reads.append("openAlgoOrders")
        return []

    async def open_orders(self) -> list[Any]:
        self.reads.append("openOrders")
        return []


def _flattener() -> tuple[Flattener, _Store, _Gateway]:
    store, gateway = _Store(), _Gateway()
    flattener = Flattener(cast(RiskStore, store), cast(Rounds, _Rounds()), cast(BinanceGateway, gateway))
    return flattener, store, gateway


async def test_waiting_only_for_an_unsettled_admission_reads_the_exchange_once_not_every_tick() -> None:
    flattener, store, gateway = _flattener()
    for _ in range(20):  # 5 s of ticks
        assert await flattener.step("f1", FENCE) is False
    assert gateway.reads == ["positionRisk", "openAlgoOrders", "openOrders"]
    assert store.finished == []
    # The admission settles (or lapses): the exchange is read again at once, and the flatten is done.
    store.admissions.left = 0
    assert await flattener.step("f1", FENCE) is True
    assert gateway.reads[3:] == ["positionRisk", "openAlgoOrders", "openOrders"]
    assert store.finished == ["f1"]


async def test_another_flatten_reads_the_exchange_afresh() -> None:
    flattener, _store, gateway = _flattener()
    assert await flattener.step("f1", FENCE) is False
    assert await flattener.step("f2", FENCE) is False
    assert len(gateway.reads) == 6
