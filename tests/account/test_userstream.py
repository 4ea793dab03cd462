"""The account's user data stream client against the simulator's real WebSocket and listenKey API.

Every (re)connect runs the resync hook before events are trusted; a dropped socket reconnects
with the same key; an expired key (``listenKeyExpired``) is replaced by a new one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from binance_sim import Simulator
from quantum_exec.account.userstream import UserStream
from quantum_exec.core.errors import ListenKeyGone
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.endpoints import stream_root
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.exchange.wire import OrderSide
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.connects = 0
        self.disconnects = 0

    async def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def on_connected(self) -> None:
        self.connects += 1

    def on_disconnected(self) -> None:
        self.disconnects += 1

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("e") == kind]


@pytest.fixture
async def gateway(sim: Simulator) -> AsyncIterator[BinanceGateway]:
    settings = Settings(
        binance_base_url=sim.base_url,
        api_key="quantum-sim-key",
        api_secret="quantum-sim-secret",
        metrics_port=0,
    )
    gw = BinanceGateway(settings, sim.base_url)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.close()


async def _stream(gateway: BinanceGateway, sim: Simulator, recorder: Recorder) -> UserStream:
    settings = Settings(binance_base_url=sim.base_url, api_key="k", api_secret="s")
    stream = UserStream(
        gateway,
        stream_root(settings),
        on_event=recorder.on_event,
        on_connected=recorder.on_connected,
        on_disconnected=recorder.on_disconnected,
        reconnect_max_s=0.2,
    )
    await stream.start()
    await wait_for(lambda: stream.connected, 10, "the stream connected")
    return stream


async def test_fills_arrive_and_the_resync_runs_first(gateway: BinanceGateway, sim: Simulator) -> None:
    recorder = Recorder()
    stream = await _stream(gateway, sim, recorder)
    try:
        assert recorder.connects == 1
        order = await gateway.place_market("ETHUSDT", OrderSide.BUY, Decimal("0.100"), "qxe-userstream-1")
        await wait_for(
            lambda: any(e["o"]["x"] == "TRADE" for e in recorder.of("ORDER_TRADE_UPDATE")),
            10,
            "the fill event",
        )
        [fill] = [e["o"] for e in recorder.of("ORDER_TRADE_UPDATE") if e["o"]["x"] == "TRADE"]
        assert fill["i"] == order.order_id and fill["c"] == "qxe-userstream-1"
        assert Decimal(fill["z"]) == order.executed_qty
        await wait_for(lambda: recorder.of("ACCOUNT_UPDATE"), 10, "the position update")
        # Binance orders events within one type only ("event order across types not guaranteed"):
        # an ACCOUNT_UPDATE may come before the ORDER_TRADE_UPDATE of its own fill.
        for event_type in {e["e"] for e in recorder.events}:
            stamps = [e["E"] for e in recorder.of(event_type)]
            assert stamps == sorted(stamps), event_type
    finally:
        await stream.stop()


async def test_a_dropped_socket_reconnects_and_resyncs(gateway: BinanceGateway, sim: Simulator) -> None:
    recorder = Recorder()
    stream = await _stream(gateway, sim, recorder)
    try:
        sim.set_faults(actions=["drop_user_streams"])
        await wait_for(lambda: recorder.disconnects >= 1 and stream.connected, 10, "a reconnect")
        assert recorder.connects == 2 and stream.reconnects >= 1
        await gateway.place_market("BTCUSDT", OrderSide.SELL, Decimal("0.002"), "qxe-userstream-2")
        await wait_for(lambda: recorder.of("ORDER_TRADE_UPDATE"), 10, "events after the reconnect")
    finally:
        await stream.stop()


async def test_an_expired_key_is_replaced(gateway: BinanceGateway, sim: Simulator) -> None:
    recorder = Recorder()
    stream = await _stream(gateway, sim, recorder)
    try:
        first = await gateway.create_listen_key()
        sim.set_faults(actions=["expire_listen_key"])
        await wait_for(lambda: recorder.connects >= 2 and stream.connected, 10, "a new key and socket")
        with pytest.raises(ListenKeyGone):
            await gateway.keepalive_listen_key(first)
        assert await gateway.create_listen_key() != first
    finally:
        await stream.stop()
