"""Every request that changes state is fenced: with the ownership lost nothing of it leaves, while
reads still do (a deposed instance may look, never act)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

from binance_sim import Simulator
from quantum_exec.core.ids import client_order_id
from quantum_exec.core.settings import Settings
from quantum_exec.exchange import fencing
from quantum_exec.exchange.endpoints import EP_CANCEL_ALL_ALGO, EP_LISTEN_KEY_KEEP, EP_SET_MARGIN
from quantum_exec.exchange.fencing import OwnershipLost
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.exchange.wire import OrderSide, OrderType

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

Write = Callable[[BinanceGateway], Awaitable[Any]]
WRITES: dict[str, tuple[str, Write]] = {
    "entry": (
        "POST /fapi/v1/order",
        lambda g: g.place_market("BTCUSDT", OrderSide.BUY, Decimal("0.002"), client_order_id("w", "entry")),
    ),
    "leg": (
        "POST /fapi/v1/algoOrder",
        lambda g: g.place_algo(
            "BTCUSDT",
            OrderSide.SELL,
            OrderType.STOP_MARKET,
            Decimal("50000"),
            client_order_id("w", "sl"),
            quantity=None,
            working_type="MARK_PRICE",
            price_protect=False,
        ),
    ),
    "cancel": ("DELETE /fapi/v1/order", lambda g: g.cancel_order("BTCUSDT", client_order_id("w", "entry"))),
    "cancel_algo": ("DELETE /fapi/v1/algoOrder", lambda g: g.cancel_algo(1)),
    "leverage": ("POST /fapi/v1/leverage", lambda g: g.set_leverage("BTCUSDT", 7)),
    "margin_type": ("POST /fapi/v1/marginType", lambda g: g.set_margin_type("BTCUSDT", "ISOLATED")),
}


def test_every_post_put_and_delete_is_fenced() -> None:
    assert EP_SET_MARGIN.fenced and EP_CANCEL_ALL_ALGO.fenced and EP_LISTEN_KEY_KEEP.fenced


@pytest.mark.parametrize("name", list(WRITES))
async def test_nothing_that_changes_state_leaves_once_the_ownership_is_lost(
    make_settings: Callable[..., Settings], sim: Simulator, name: str
) -> None:
    request, write = WRITES[name]
    gateway = BinanceGateway(make_settings(), sim.base_url)
    await gateway.start()
    asked: list[str] = []

    async def lost() -> bool:
        asked.append(name)
        return False

    token = fencing.set_check(lost)
    try:
        await gateway.positions("BTCUSDT")  # a read is not fenced
        assert asked == []
        with pytest.raises(OwnershipLost):
            await write(gateway)
    finally:
        fencing.reset_check(token)
        await gateway.close()
    assert asked == [name] and sim.request_counts[request] == 0
