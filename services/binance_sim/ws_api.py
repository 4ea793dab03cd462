"""Binance's WebSocket API for USDⓈ-M futures (``/ws-fapi/v1``): the trade methods over one socket.

A request is ``{"id", "method", "params"}``; the answer ``{"id", "status": 200, "result": ...,
"rateLimits": [...]}`` or ``{"id", "status": 4xx, "error": {"code", "msg"}, "rateLimits": [...]}``
(https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-api-general-info).
A SIGNED request carries ``apiKey``, ``timestamp`` (and ``recvWindow``) and ``signature`` in its
params; the signed payload is every other param sorted by name, ``key=value`` joined by ``&``;
HMAC, RSA and Ed25519 keys verify as on REST (Ed25519/RSA signatures in base64).

Each method runs the REST route it mirrors (``order.place`` is ``POST /fapi/v1/order``, ...), so the
engine, the error codes, the rate limits (shared with REST: same counters per IP and account) and
the configured faults are the same; a ``drop_*`` fault closes the socket (before or after the
request was processed), the transport's "no answer" case; ``truncated_after`` sends the first half
of the answer's text frame; a fault answering a 2xx status (``garbled_after``) carries its body
as the ``result``.

Session authentication (same page, "Authenticate after connection"): ``session.logon`` (SIGNED:
``apiKey``, ``timestamp``, optional ``recvWindow``, ``signature``; only Ed25519 keys; weight 2)
ties an API key to the connection, after which requests may omit ``apiKey`` and ``signature``
(their ``timestamp`` and ``recvWindow`` are still checked); a request that carries them is
verified as given. ``session.status`` and ``session.logout`` (weight 2) answer
``{apiKey, authorizedSince, connectedSince, returnRateLimits, serverTime}``. The code Binance
returns for a logon with an HMAC or RSA key is not documented for futures; the simulator answers
``-1002`` "You are not authorized to execute this request." (Binance's unauthorized code).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson
from aiohttp import WSMsgType, web

from binance_sim import signing
from binance_sim.auth import Auth
from binance_sim.config import SimConfig
from binance_sim.endpoint import Endpoint
from binance_sim.errors import SimError
from binance_sim.faults import FaultSet
from binance_sim.params import Params
from binance_sim.ratelimit import Verdict

log = logging.getLogger("binance_sim")

PATH: Final = "/ws-fapi/v1"
# method -> the REST route it mirrors
METHODS: Final[dict[str, tuple[str, str]]] = {
    "order.place": ("POST", "/fapi/v1/order"),
    "order.status": ("GET", "/fapi/v1/order"),
    "order.cancel": ("DELETE", "/fapi/v1/order"),
    "algoOrder.place": ("POST", "/fapi/v1/algoOrder"),
    "order.modify": ("PUT", "/fapi/v1/order"),
    "algoOrder.cancel": ("DELETE", "/fapi/v1/algoOrder"),
    "account.balance": ("GET", "/fapi/v2/balance"),
    "account.status": ("GET", "/fapi/v2/account"),
    "account.position": ("GET", "/fapi/v2/positionRisk"),
    "v2/account.balance": ("GET", "/fapi/v3/balance"),
    "v2/account.status": ("GET", "/fapi/v3/account"),
    "v2/account.position": ("GET", "/fapi/v3/positionRisk"),
    # USER_STREAM: the API key only, no signature ("Start/Keepalive/Close User Data Stream").
    "userDataStream.start": ("POST", "/fapi/v1/listenKey"),
    "userDataStream.ping": ("PUT", "/fapi/v1/listenKey"),
    "userDataStream.stop": ("DELETE", "/fapi/v1/listenKey"),
}


SESSION_METHODS: Final = ("session.logon", "session.status", "session.logout")
SESSION_WEIGHT: Final = 2


class Host(Protocol):
    """What the WebSocket API serves from (the Simulator): its routes, limits, faults and keys."""

    config: SimConfig
    faults: FaultSet
    auth: Auth
    request_counts: collections.Counter[str]
    rate_limited: collections.Counter[int]

    def server_time_ms(self) -> int: ...
    def route(self, method: str, path: str) -> Endpoint: ...
    def count_request(self, ip: str, weight: int, endpoint: Endpoint, headers: dict[str, str]) -> Verdict: ...


@dataclass(slots=True)
class Session:
    """One connection's authentication: the API key ``session.logon`` tied to it, if any."""

    connected_since: int
    api_key: str | None = None
    authorized_since: int | None = None

    def status(self, server_time: int) -> dict[str, Any]:
        return {
            "apiKey": self.api_key,
            "authorizedSince": self.authorized_since,
            "connectedSince": self.connected_since,
            "returnRateLimits": True,
            "serverTime": server_time,
        }


def signed_payload(params: dict[str, str]) -> bytes:
    """What a WebSocket API request signs: its params but the signature, sorted, ``k=v&...``."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "signature").encode()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class WsApi:
    """Serves ``/ws-fapi/v1`` for one :class:`Host` (see the module docstring)."""

    def __init__(self, sim: Host) -> None:
        self._sim = sim
        self.sockets: set[web.WebSocketResponse] = set()

    async def serve(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=None, autoping=True, compress=False)
        await ws.prepare(request)
        self.sockets.add(ws)
        ip = request.remote or ""
        session = Session(connected_since=self._sim.server_time_ms())
        answering: set[asyncio.Task[bool]] = set()
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                # Each request is answered on its own: one waiting out the configured latency
                # (a network delay) does not hold the next one back, as on Binance, where
                # answers come back as they are ready (matched to requests by id).
                task = asyncio.create_task(self._answer(ws, message.data, ip, session))
                answering.add(task)
                task.add_done_callback(answering.discard)
        finally:
            self.sockets.discard(ws)
            for task in list(answering):
                task.cancel()
        return ws

    async def close_all(self) -> None:
        for ws in list(self.sockets):
            await ws.close()

    async def _answer(self, ws: web.WebSocketResponse, raw: str, ip: str, session: Session) -> bool:
        """Process one request; False when the socket was closed (a drop fault)."""
        try:
            request = orjson.loads(raw)
            ident, method, raw_params = request.get("id"), request.get("method"), request.get("params") or {}
            if not isinstance(raw_params, dict):
                raise ValueError("params")
        except (orjson.JSONDecodeError, ValueError, AttributeError):
            await ws.send_str(_reply(None, 400, {"code": -1000, "msg": "Invalid JSON request"}, []))
            return True
        sim = self._sim
        if method in SESSION_METHODS:
            await ws.send_str(self._session(session, str(method), ident, raw_params, ip))
            return True
        route = METHODS.get(str(method))
        if route is None:
            await ws.send_str(_reply(ident, 400, {"code": -1102, "msg": f"Unknown method '{method}'."}, []))
            return True
        http_method, path = route
        endpoint = sim.route(http_method, path)
        sim.request_counts[f"WS {method}"] += 1
        params = {k: _text(v) for k, v in raw_params.items()}
        typed = Params(params)
        headers: dict[str, str] = {}
        verdict = sim.count_request(ip, endpoint.weight_of(typed), endpoint, headers)
        # returnRateLimits=false: the answer carries no rateLimits ("Request format", WebSocket API).
        limits = _rate_limits(sim, verdict) if params.get("returnRateLimits") != "false" else None
        if not verdict.allowed:
            sim.rate_limited[verdict.status] += 1
            refused = {"code": verdict.code, "msg": verdict.msg}
            await ws.send_str(_reply(ident, verdict.status, refused, limits))
            return True
        plan = sim.faults.plan(http_method, path)
        delay_ms = sim.config.latency_ms + plan.delay_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if plan.before is not None:
            if plan.before.kind.startswith("drop"):
                await ws.close()
                return False
            body = plan.before.body(path, sim.server_time_ms())
            await ws.send_str(_reply(ident, plan.before.status, body, limits))
            return True
        try:
            if not endpoint.signed:
                sim.auth.key_of(params.get("apiKey") or session.api_key or "", ip)
            elif session.api_key is not None and "apiKey" not in params and "signature" not in params:
                # Authenticated by session.logon: the timestamp and recvWindow are still checked.
                sim.auth.key_of(session.api_key, ip)
                sim.auth.verify_signed(None, typed, b"")
            else:
                secret = sim.auth.key_of(params.get("apiKey", ""), ip)
                sim.auth.verify_signed(secret, typed, signed_payload(params))
            business = {
                k: v for k, v in params.items() if k not in ("apiKey", "signature", "returnRateLimits")
            }
            result: Any = endpoint.handler(Params(business))
            if isinstance(result, bytes):
                result = orjson.loads(result)
            answer = _reply(ident, 200, None, limits, result)
        except SimError as exc:
            answer = _reply(ident, exc.status, {"code": exc.code, "msg": exc.msg}, limits)
        except Exception:
            log.exception("sim.ws_api_failed", extra={"kv": {"method": method}})
            unknown = {"code": -1000, "msg": "An unknown error occured while processing the request."}
            answer = _reply(ident, 500, unknown, limits)
        if plan.after is not None:
            # Processed (an order may now exist); the answer is lost, cut off or replaced.
            fault = plan.after
            if fault.kind.startswith("drop"):
                await ws.close()
                return False
            if fault.kind == "truncated_after":
                answer = fault.cut(answer.encode()).decode(errors="ignore")
            else:
                body = fault.body(path, sim.server_time_ms())
                # A 2xx answer carries its body as the result, any other as the error.
                ok = 200 <= fault.status < 300
                answer = _reply(ident, fault.status, None if ok else body, limits, body if ok else None)
        await ws.send_str(answer)
        return True

    def _session(self, session: Session, method: str, ident: Any, raw_params: dict[str, Any], ip: str) -> str:
        """``session.logon`` / ``session.status`` / ``session.logout`` (weight 2 each)."""
        sim = self._sim
        sim.request_counts[f"WS {method}"] += 1
        params = {k: _text(v) for k, v in raw_params.items()}
        counted = Endpoint(lambda p: b"{}", SESSION_WEIGHT, signed=method == "session.logon")
        verdict = sim.count_request(ip, SESSION_WEIGHT, counted, {})
        limits = _rate_limits(sim, verdict)
        if not verdict.allowed:
            sim.rate_limited[verdict.status] += 1
            return _reply(ident, verdict.status, {"code": verdict.code, "msg": verdict.msg}, limits)
        if method == "session.logon":
            try:
                api_key = params.get("apiKey", "")
                secret = sim.auth.key_of(api_key, ip)
                if not signing.is_ed25519(secret):
                    raise SimError(-1002, "You are not authorized to execute this request.", 401)
                sim.auth.verify_signed(secret, Params(params), signed_payload(params))
            except SimError as exc:
                return _reply(ident, exc.status, {"code": exc.code, "msg": exc.msg}, limits)
            session.api_key = api_key
            session.authorized_since = sim.server_time_ms()
        elif method == "session.logout":
            session.api_key = session.authorized_since = None
        return _reply(ident, 200, None, limits, session.status(sim.server_time_ms()))


def _rate_limits(sim: Host, verdict: Any) -> list[dict[str, Any]]:
    limits = sim.config.limits
    return [
        _limit("REQUEST_WEIGHT", "MINUTE", 1, limits.weight_per_minute, verdict.used_weight),
        _limit("ORDERS", "SECOND", 10, limits.orders_per_10s, verdict.orders_10s),
        _limit("ORDERS", "MINUTE", 1, limits.orders_per_minute, verdict.orders_1m),
    ]


def _limit(kind: str, interval: str, num: int, limit: int, count: int) -> dict[str, Any]:
    return {"rateLimitType": kind, "interval": interval, "intervalNum": num, "limit": limit, "count": count}


def _reply(
    ident: Any,
    status: int,
    error: dict[str, Any] | None,
    limits: list[dict[str, Any]] | None,
    result: Any = None,
) -> str:
    body: dict[str, Any] = {"id": ident, "status": status}
    if error is not None:
        body["error"] = error
    else:
        body["result"] = result
    if limits is not None:
        body["rateLimits"] = limits
    return orjson.dumps(body).decode()
