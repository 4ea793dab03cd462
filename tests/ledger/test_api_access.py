"""Who may read /api/*: a bearer token when one is set, else loopback clients only."""

from __future__ import annotations

import json
from unittest import mock

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from quantum_exec.app.api import ReadApi
from quantum_exec.core.settings import Settings


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


def _request(path: str, remote: str, headers: dict[str, str] | None = None) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (remote, 40000) if name == "peername" else default
    )
    return make_mocked_request("GET", path, headers=headers or {}, transport=transport)


async def test_without_a_token_only_loopback_reads_the_api() -> None:
    api = ReadApi(Settings(), book=None, account=None, gateway=None)
    assert (await api.guard(_request("/api/trades", "127.0.0.1"), _ok)).status == 200
    assert (await api.guard(_request("/api/trades", "::1"), _ok)).status == 200
    refused = await api.guard(_request("/api/trades", "10.1.2.3"), _ok)
    assert refused.status == 403
    assert isinstance(refused, web.Response) and refused.body is not None
    assert json.loads(bytes(refused.body))["error"]["setting"] == "QUANTUM_API_TOKEN"
    # Everything else on the port is unchanged.
    assert (await api.guard(_request("/metrics", "10.1.2.3"), _ok)).status == 200


async def test_with_a_token_a_bearer_is_required_from_anywhere() -> None:
    api = ReadApi(Settings(api_token="s3cret-token-0123456789"), book=None, account=None, gateway=None)
    assert (await api.guard(_request("/api/positions", "127.0.0.1"), _ok)).status == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await api.guard(_request("/api/positions", "10.1.2.3", wrong), _ok)).status == 401
    right = {"Authorization": "Bearer s3cret-token-0123456789"}
    assert (await api.guard(_request("/api/positions", "10.1.2.3", right), _ok)).status == 200
    denied = await api.guard(_request("/api/positions", "10.1.2.3", wrong), _ok)
    assert isinstance(denied, web.Response) and b"s3cret" not in bytes(denied.body or b"")
