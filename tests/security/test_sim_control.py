"""A web page in the operator's browser posts to the simulator's control API on 127.0.0.1: a
``text/plain`` or form body needs no CORS preflight, so without a check it would reset the paper
account or move the mark. Each such request is refused and changes nothing; the JSON that the
tools send (no Origin) still works."""

from __future__ import annotations

from decimal import Decimal

import aiohttp
import pytest

from binance_sim import Simulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

EVIL = "http://evil.example"


def wallet(sim: Simulator) -> Decimal:
    [usdt] = [b for b in sim.state()["balances"] if b["asset"] == "USDT"]
    return Decimal(usdt["walletBalance"])


async def test_cross_site_control_requests_are_refused(sim: Simulator) -> None:
    url = f"{sim.base_url}/_sim/balance"
    before = wallet(sim)
    plain = '{"asset": "USDT", "balance": "1"}'
    attempts = [
        # <form enctype="text/plain"> and fetch(..., {mode: "no-cors", body: "..."}): no preflight.
        {"data": plain, "headers": {"Content-Type": "text/plain", "Origin": EVIL}},
        {"data": "asset=USDT&balance=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        {"data": plain, "headers": {"Content-Type": "text/plain"}},
        # JSON with a foreign Origin (a preflight would fail, but refuse it outright too).
        {"json": {"asset": "USDT", "balance": "1"}, "headers": {"Origin": EVIL}},
        {"json": {"asset": "USDT", "balance": "1"}, "headers": {"Origin": "null"}},
    ]
    async with aiohttp.ClientSession() as session:
        for attempt in attempts:
            async with session.post(url, **attempt) as reply:
                assert reply.status in (403, 415), (attempt, reply.status, await reply.text())
        # A body-less POST from a page carries an Origin too.
        async with session.post(f"{sim.base_url}/_sim/reset", headers={"Origin": EVIL}) as reply:
            assert reply.status == 403
        assert wallet(sim) == before
        # What the tools send: JSON, no Origin (or the simulator's own).
        own = {"Origin": sim.base_url}
        async with session.post(url, json={"asset": "USDT", "balance": "1234"}, headers=own) as reply:
            assert reply.status == 200, await reply.text()
    assert wallet(sim) == Decimal("1234")
