"""``POST /v1/intents/<source>``: a producer's intent or a TradingView alert onto the intent stream.

The checks, in order, each with its status (the body is ``{"error": {"code", "message"}}``):

1. unknown source or a failed authentication: 401 (one status; the message says which check
   failed, so names can be learned: they are not secrets); a source address outside ``allow_from``: 403;
2. a body over ``QUANTUM_GATEWAY_MAX_BODY_BYTES``: 413 (read no further); a body not complete
   within ``QUANTUM_GATEWAY_BODY_TIMEOUT_S`` of the head: 408; a client gone mid-body: 400;
3. HMAC sources: timestamp outside the replay window, bad signature, or a signature already
   used: 401; TradingView sources: the secret (body ``"secret"`` or ``/v1/intents/<source>/<secret>``);
4. more than the source's ``rate_per_min``: 429 with ``Retry-After``;
5. the body is not a JSON object: 400 ``INVALID_PAYLOAD``; a field the service would refuse: 422
   with the service's own reason code and message (the same decoder and validator); an
   ``intent_id`` in the risk governor's namespace (``risk-*``): 422 ``INVALID_FIELD``;
6. Redis unreachable: 503 with ``Retry-After`` (nothing published);
7. published: 202 ``{"status": "accepted", "intent_id", "stream_id"}``; an ``intent_id`` already
   taken with the same intent: 200 ``{"status": "duplicate"}``; with another intent: 409.

Nothing reaches the stream unless every check passed. Logs name the source, the status and the
intent id; never a body, a header value or a secret.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

import orjson
from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from quantum_exec.contracts import PayloadError, decode_entry, parse_intent
from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.core.ids import GOVERNOR_INTENT_PREFIX
from quantum_exec.ops.logs import get_logger
from quantum_exec.webhooks.auth import Refusal, check_hmac, check_secret, unauthenticated
from quantum_exec.webhooks.config import GatewayConfig
from quantum_exec.webhooks.intake import Intake, Published
from quantum_exec.webhooks.ratelimit import RateLimits
from quantum_exec.webhooks.sources import Source, SourceKind
from quantum_exec.webhooks.tradingview import alert_to_payload

log = get_logger(__name__)

_STATUS_OF: Final = {Published.PUBLISHED: 202, Published.DUPLICATE: 200, Published.CONFLICT: 409}


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def client_address(request: web.Request, trusted: tuple[Any, ...]) -> str | None:
    """The sender: the peer, or behind a trusted proxy the last X-Forwarded-For hop it did not add."""
    peer = request.remote
    if not trusted or not _in(peer, trusted):
        return peer
    # Every X-Forwarded-For line, in order (RFC 9110 5.3: one list): a proxy that adds its own line
    # (HAProxy's option forwardfor) leaves the client's forged one first.
    lines = request.headers.getall("X-Forwarded-For", [])
    hops = [h.strip() for h in ",".join(lines).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return peer


def _in(address: str | None, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in net for net in networks)


class Gateway:
    """The request handler; ``clock_ms`` is the wall clock the replay window is measured on."""

    def __init__(
        self,
        config: GatewayConfig,
        redis: Redis,
        intake: Intake,
        *,
        limits: RateLimits | None = None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._config = config
        self._redis = redis
        self._intake = intake
        self._limits = limits or RateLimits()
        self._clock_ms = clock_ms

    def app(self) -> web.Application:
        # aiohttp's own cap sits above ours, so ours answers first with its message.
        app = web.Application(client_max_size=self._config.max_body_bytes + 1)
        app.router.add_post("/v1/intents/{source}", self.intents)
        app.router.add_post("/v1/intents/{source}/{secret}", self.intents)
        app.router.add_get("/healthz", self.healthz)
        return app

    async def healthz(self, request: web.Request) -> web.Response:
        try:
            await self._redis.ping()
        except Exception as exc:  # any failure of the client is "not healthy", said in one line
            return _json(503, {"status": "redis unavailable", "error": type(exc).__name__})
        return _json(200, {"status": "ok"})

    async def intents(self, request: web.Request) -> web.Response:
        name = request.match_info["source"]
        remote = client_address(request, self._config.trusted_proxies)
        try:
            response = await self._handle(request, name, remote)
        except RedisError as exc:
            # Nothing was published (the XADD is the script's last step, all or nothing): retry later.
            log.warning("gateway.redis_unavailable", source=name[:64], error=type(exc).__name__)
            return _json(
                503,
                {"error": {"code": "UNAVAILABLE", "message": "the intent stream is unreachable: retry"}},
                {"Retry-After": "1"},
            )
        except Refusal as refusal:
            headers = {"Retry-After": str(refusal.retry_after_s)} if refusal.retry_after_s else None
            response = _json(
                refusal.status, {"error": {"code": refusal.code, "message": refusal.reason}}, headers
            )
            if refusal.close:
                response.force_close()
            log.info(
                "gateway.refused",
                source=name[:64],
                remote=remote,
                status=refusal.status,
                reason=refusal.reason,
            )
        return response

    async def _handle(self, request: web.Request, name: str, remote: str | None) -> web.Response:
        source = self._config.sources.get(name)
        if source is None:
            raise unauthenticated("unknown source or bad credentials")
        if not source.allows(remote):
            raise Refusal(403, "FORBIDDEN", f"address {remote} is not in the source's allow_from")
        body = await self._body(request)
        path_secret = request.match_info.get("secret")
        if source.kind is SourceKind.HMAC:
            if path_secret is not None:
                raise unauthenticated("an hmac source signs its requests: no secret in the path")
            await self._check_signature(source, request, body)
        try:
            payload = self._decode(body)
        except Refusal:
            if source.kind is SourceKind.TRADINGVIEW:
                check_secret(source, path_secret)  # unauthenticated first: say nothing of the body
            raise
        if source.kind is SourceKind.TRADINGVIEW:
            given = payload.pop("secret", None)
            check_secret(source, given if isinstance(given, str) else path_secret)
            payload = alert_to_payload(payload)
        wait_s = self._limits.take(source.name, source.rate_per_min)
        if wait_s is not None:
            raise Refusal(
                429,
                "RATE_LIMITED",
                f"more than {source.rate_per_min} requests a minute",
                retry_after_s=wait_s,
            )
        return await self._publish(source, payload, remote)

    async def _body(self, request: web.Request) -> bytes:
        cap = self._config.max_body_bytes
        if request.content_length is not None and request.content_length > cap:
            raise Refusal(
                413, "BODY_TOO_LARGE", f"body of {request.content_length} bytes, above {cap}", close=True
            )
        chunks: list[bytes] = []
        size = 0
        timeout_s = self._config.body_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                while chunk := await request.content.read(8192):
                    size += len(chunk)
                    if size > cap:
                        raise Refusal(413, "BODY_TOO_LARGE", f"body above {cap} bytes", close=True)
                    chunks.append(chunk)
        except TimeoutError:
            raise Refusal(
                408,
                "BODY_TIMEOUT",
                f"body not complete within {timeout_s:g}s ({size} bytes came)",
                close=True,
            ) from None
        except (ConnectionError, ClientPayloadError, HttpProcessingError) as exc:
            # The client left (or broke its chunked encoding) mid-body: nobody reads the answer.
            raise Refusal(
                400,
                "BODY_INCOMPLETE",
                f"body cut after {size} bytes ({type(exc).__name__})",
                close=True,
            ) from None
        return b"".join(chunks)

    async def _check_signature(self, source: Source, request: web.Request, body: bytes) -> None:
        window_ms = self._config.replay_window_s * 1000
        signature = check_hmac(source, request.headers, body, self._clock_ms(), window_ms)
        if not await self._intake.first_use(signature, window_ms):
            raise unauthenticated("this signature was used before (a replay)")

    @staticmethod
    def _decode(body: bytes) -> dict[str, Any]:
        try:
            # The service's own decoder: the same JSON leniency, floats as their exact Decimals.
            return decode_entry({"payload": body})
        except PayloadError as exc:
            raise Refusal(400, ReasonCode.INVALID_PAYLOAD.value, str(exc)) from None

    async def _publish(self, source: Source, payload: dict[str, Any], remote: str | None) -> web.Response:
        if payload.get("intent_id") is None:
            payload["intent_id"] = f"gw-{uuid.uuid4().hex}"
        try:
            intent = parse_intent(payload)  # the service's validation: its reason codes and messages
        except IntentRejected as exc:
            raise Refusal(422, exc.code, exc.message) from None
        if (intent.intent_id or "").startswith(GOVERNOR_INTENT_PREFIX):
            # Taken first, the governor's ids would make its flatten's rounds look done.
            raise Refusal(
                422,
                ReasonCode.INVALID_FIELD.value,
                f"intent_id {intent.intent_id}: {GOVERNOR_INTENT_PREFIX}* ids are the risk governor's own",
            )
        outcome = await self._intake.publish(payload, intent, source.name)
        status = _STATUS_OF[outcome.status]
        log.info(
            "gateway.intent",
            source=source.name,
            remote=remote,
            status=status,
            outcome=outcome.status.value,
            intent_id=outcome.intent_id,
            stream_id=outcome.stream_id,
        )
        if outcome.status is Published.CONFLICT:
            return _json(
                409,
                {
                    "error": {
                        "code": ReasonCode.INTENT_ID_CONFLICT.value,
                        "message": f"intent_id {outcome.intent_id} was used for another intent",
                    }
                },
            )
        body: dict[str, Any] = {
            "status": "accepted" if status == 202 else "duplicate",
            "intent_id": outcome.intent_id,
        }
        if outcome.stream_id:
            body["stream_id"] = outcome.stream_id
        return _json(status, body)
