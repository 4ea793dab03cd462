"""The control API over real HTTP and the CLI against it: always a token, Host checked, JSON only;
``quantum-exec halt --flatten`` ends with the account flat and no conditional order of ours."""

from __future__ import annotations

import asyncio
import json
import socket
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from quantum_exec.app.cli import main
from quantum_exec.app.service import Service
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.risk.store import RiskStore
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "risk-control-token-0123456789"


async def _service(desk: Desk, **overrides: Any) -> Service:
    settings = desk.settings(
        metrics_port=0,
        metrics_host="127.0.0.1",
        watchdog=False,
        risk_stream=f"{desk.names['intent_stream']}:risk",
        **overrides,
    )
    service = Service(settings)
    desk.services.append(service)
    await service.start()
    return service


async def _request(
    service: Service, method: str, path: str, *, token: str | None = TOKEN, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"http://127.0.0.1:{service.metrics_port}{path}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, **kwargs) as r,
    ):
        return r.status, json.loads(await r.read(), parse_float=Decimal)


async def test_without_a_token_the_control_api_is_off_and_says_so(desk: Desk) -> None:
    service = await _service(desk)
    for method, path in (("GET", "/api/control"), ("POST", "/api/control/state")):
        status, body = await _request(service, method, path, token=None, json={"state": "HALTED"})
        assert status == 403 and "QUANTUM_API_TOKEN" in body["error"]["message"], body
    assert service.governor is not None and service.governor.gate.state.state == "ACTIVE"


async def test_redis_down_answers_503_naming_redis_and_changes_nothing(desk: Desk) -> None:
    service = await _service(desk, api_token=TOKEN)
    assert service.governor is not None
    live = service.governor.store
    # The governor's store on a Redis that does not answer (a port nothing listens on).
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}", socket_connect_timeout=1)
    service.governor.store = RiskStore(dead, service.settings)
    try:
        status, body = await _request(
            service, "POST", "/api/control/state", json={"state": "HALTED", "reason": "redis down"}
        )
    finally:
        service.governor.store = live
        await dead.aclose()
    message = body["error"]["message"]
    assert status == 503 and "Redis" in message and "Traceback" not in message, (status, body)
    state, _limits = await live.read()
    assert state.state == "ACTIVE", state


async def test_token_host_and_content_type_are_checked_before_anything_changes(desk: Desk) -> None:
    service = await _service(desk, api_token=TOKEN)
    halt = {"state": "HALTED", "reason": "test"}
    status, _ = await _request(
        service, "POST", "/api/control/state", token="wrong-token-0123456789", json=halt
    )
    assert status == 401
    status, body = await _request(
        service, "POST", "/api/control/state", json=halt, headers={"Host": "evil.example"}
    )
    assert status == 403 and "evil.example" in body["error"]["message"]
    status, body = await _request(service, "POST", "/api/control/state", data={"state": "HALTED"})
    assert status == 415, body
    status, body = await _request(service, "POST", "/api/control/state", json={"state": "PAUSED"})
    assert status == 400 and "PAUSED" in body["error"]["message"]
    status, body = await _request(service, "GET", "/api/control")
    assert status == 200 and body["state"]["state"] == "ACTIVE" and body["state"]["seq"] == 0
    status, body = await _request(service, "POST", "/api/control/limits", json={"max_leverage": "two"})
    assert status == 400 and "max_leverage='two'" in body["error"]["message"]
    status, body = await _request(service, "POST", "/api/control/state", json=halt)
    assert status == 200 and body["state"]["state"] == "HALTED" and body["changed"] is True
    status, body = await _request(service, "GET", "/api/status")
    assert status == 200 and body["risk"]["state"]["state"] == "HALTED"


async def test_cli_halt_flatten_closes_everything_and_cancels_our_legs(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    service = await _service(desk, api_token=TOKEN)
    for n, (symbol, side, qty) in enumerate((("BTCUSDT", "BUY", "0.010"), ("ETHUSDT", "SELL", "0.200"))):
        await desk.publish(
            intent_id=f"open-{n}", symbol=symbol, side=side, quantity=qty, stop_loss_pct=3, take_profit_pct=3
        )
        assert (await desk.result(f"open-{n}")).protection is ProtectionState.PROTECTED
    monkeypatch.setenv("QUANTUM_METRICS_PORT", str(service.metrics_port))
    monkeypatch.setenv("QUANTUM_API_TOKEN", TOKEN)
    monkeypatch.setenv("QUANTUM_REDIS_URL", desk.redis_url or "")
    code = await asyncio.to_thread(main, ["halt", "--flatten", "--reason", "desk closes the book"])
    out = capsys.readouterr().out
    assert code == 0 and "trading: HALTED" in out and "flatten under way" in out

    def clean() -> bool:
        positions = [p for p in desk.sim.state()["positions"] if Decimal(p["positionAmt"]) != 0]
        ours = desk.open_algos("BTCUSDT") + desk.open_algos("ETHUSDT")
        return not positions and not ours

    await wait_for(clean, 30, "the account flat with no conditional order of ours")
    await wait_for(
        lambda: service.governor is not None and not service.governor.gate.state.flatten, 10, "done"
    )
    events = await desk.redis.xrange(f"{desk.names['intent_stream']}:risk")
    kinds = [json.loads(f[b"payload"])["kind"] for _sid, f in events]
    assert kinds == ["transition", "flatten_close", "flatten_close", "flatten_done"], kinds
    # One reduce-only MARKET close per position, from the simulator's own history.
    closes = [o for o in desk.sim.state()["orders"] if o.get("reduceOnly") and o["type"] == "MARKET"]
    assert sorted((o["symbol"], o["side"], Decimal(o["origQty"])) for o in closes) == [
        ("BTCUSDT", "SELL", Decimal("0.010")),
        ("ETHUSDT", "BUY", Decimal("0.200")),
    ]
    # The CLOSEs' ids: unpredictable (a secret's HMAC), named by their events.
    close_ids = {
        json.loads(f[b"payload"])["symbol"]: json.loads(f[b"payload"])["intent_id"]
        for _sid, f in events
        if json.loads(f[b"payload"])["kind"] == "flatten_close"
    }
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert close_ids[symbol].startswith(f"risk-f1-{symbol}-1-") and len(close_ids[symbol]) > 30
        result = await desk.result(close_ids[symbol])
        assert result.status is ResultStatus.FILLED
    code = await asyncio.to_thread(main, ["resume"])
    assert code == 0 and "trading: ACTIVE" in capsys.readouterr().out
    code = await asyncio.to_thread(
        main, ["limits", "--set", "QUANTUM_RISK_MAX_OPEN_POSITIONS=2", "--set", "max_leverage=off"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "max_open_positions         2" in out and "max_leverage               off" in out
    assert service.governor is not None and service.governor.gate.limits.max_open_positions == 2
    code = await asyncio.to_thread(main, ["limits", "--set", "max_open_positions=1.5"])
    assert code == 2 and "max_open_positions='1.5' must be a whole number" in capsys.readouterr().err
