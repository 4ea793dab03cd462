"""The risk governor's control API as an attacker and a slow network see it: no path spelling
reaches a handler without the bearer token, and a kill switch whose body arrives in two TCP
segments (a TLS proxy, a slow link, a large reason) still halts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quantum_exec.app.service import Service
from support.desk import Desk

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "control-attack-token-0123456789"


async def _service(desk: Desk, **overrides: Any) -> Service:
    settings = desk.settings(
        metrics_port=0,
        metrics_host="127.0.0.1",
        watchdog=False,
        risk_stream=f"{desk.names['intent_stream']}:risk",
        api_token=TOKEN,
        **overrides,
    )
    service = Service(settings)
    desk.services.append(service)
    await service.start()
    return service


async def _raw(port: int, *parts: bytes) -> bytes:
    """Each part written on its own (the next only once the server has had time to read the last)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for n, part in enumerate(parts):
            if n:
                await asyncio.sleep(0.3)  # not a timing assertion: makes the segments separate reads
            writer.write(part)
            await writer.drain()
        async with asyncio.timeout(15):
            return await reader.read(65536)
    finally:
        writer.close()


def _head(path: str, length: int, *, token: str | None = TOKEN) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{auth}\r\n"
    ).encode()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def test_no_spelling_of_the_path_skips_the_token(desk: Desk) -> None:
    service = await _service(desk)
    assert service.governor is not None
    body = b'{"state": "HALTED", "reason": "attacker"}'
    for path in (
        "/api/control/state",
        "/api/control/state/",
        "/api//control/state",
        "/api/control/%73tate",
        "/api/control/./state",
        "/api/x/../control/state",
        "/api%2Fcontrol%2Fstate",
        "/api/control/state;x",
        "/api/control/state?token=" + TOKEN,  # a token in the query string is no token
        "http://127.0.0.1/api/control/state",
        "//api/control/state",
        "/API/control/state",
    ):
        answer = await _raw(service.metrics_port, _head(path, len(body), token=None) + body)
        assert _status(answer) in (401, 404), (path, answer[:200])
    assert service.governor.gate.state.state == "ACTIVE"


async def test_a_halt_whose_body_comes_in_two_segments_halts(desk: Desk) -> None:
    service = await _service(desk)
    assert service.governor is not None
    body = b'{"state": "HALTED", "reason": "operator over a slow link", "who": "ops"}'
    answer = await _raw(service.metrics_port, _head("/api/control/state", len(body)) + body[:12], body[12:])
    assert _status(answer) == 200, answer[-200:]
    assert service.governor.gate.state.state == "HALTED"

    limits = b'{"max_leverage": 3}'
    answer = await _raw(
        service.metrics_port, _head("/api/control/limits", len(limits)) + limits[:5], limits[5:]
    )
    assert _status(answer) == 200, answer[-200:]
