"""The control API on the metrics port: ``GET /api/control``, ``POST /api/control/state``,
``POST /api/control/limits`` (issue #28).

State-changing, so always authenticated: without ``QUANTUM_API_TOKEN`` the control API is off
(403 saying so, whatever the client's address); with it, the read API's guard has checked the
bearer token (401, 429) before these handlers run. Then: the ``Host`` must name loopback or one of
``QUANTUM_CONTROL_HOSTS`` (403: a rebinding page cannot send its own host name), and a POST must
be ``Content-Type: application/json`` (415: an HTML form cannot send it without a CORS preflight
this port never answers). A bearer header and no cookie: nothing a browser adds by itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

from quantum_exec.contracts.codec import dumps
from quantum_exec.core.settings import Settings
from quantum_exec.ops.access import Access, json_error, local_host
from quantum_exec.ops.logs import get_logger
from quantum_exec.risk.limits import DEFAULT, LimitError, limit_name, parse_limit
from quantum_exec.risk.states import Request, TradingState, TransitionRefused
from quantum_exec.stream.link import REDIS_DOWN

if TYPE_CHECKING:
    from quantum_exec.risk.governor import Governor

log = get_logger(__name__)

MAX_BODY: Final = 16 * 1024
_STATE_KEYS: Final = frozenset({"state", "flatten", "reason", "force", "who"})


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=dumps(body), content_type="application/json")


class ControlApi:
    """The three routes; ``governor`` None (an injected handler) answers 503."""

    def __init__(self, settings: Settings, access: Access, governor: Governor | None) -> None:
        self._access = access
        self._hosts = settings.control_hosts
        self._governor = governor

    def attach(self, governor: Governor | None) -> None:
        """The governor, once started (the routes are served from the start, 503 meanwhile)."""
        self._governor = governor

    def routes(self) -> dict[str, Any]:
        return {"/api/control": self.show}

    def post_routes(self) -> dict[str, Any]:
        return {"/api/control/state": self.set_state, "/api/control/limits": self.set_limits}

    def _refusal(self, request: web.Request, *, post: bool) -> web.Response | None:
        if not self._access.token_mode:
            return json_error(
                403,
                "the control API is off: it needs QUANTUM_API_TOKEN (sent as Authorization: Bearer), "
                "even on loopback",
                setting="QUANTUM_API_TOKEN",
            )
        host = request.headers.get("Host", "").strip().lower()
        if not local_host(request) and host.rpartition(":")[0] not in self._hosts and host not in self._hosts:
            return json_error(
                403,
                f"Host {host!r} is not this service: the control API answers loopback host names "
                "and QUANTUM_CONTROL_HOSTS",
                setting="QUANTUM_CONTROL_HOSTS",
            )
        if post and request.content_type != "application/json":
            return json_error(
                415, f"Content-Type {request.content_type!r}: the control API takes application/json only"
            )
        if self._governor is None:
            return json_error(503, "the risk governor is not running in this process")
        return None

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        # To its end: read(n) returns what has arrived so far, which is half a body when it comes
        # in two TCP segments (and a halt refused as "not JSON").
        raw = b""
        while chunk := await request.content.read(MAX_BODY + 1 - len(raw)):
            raw += chunk
            if len(raw) > MAX_BODY:
                return json_error(413, f"the body is over {MAX_BODY} bytes")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return json_error(400, f"the body is not JSON: {exc}")
        if not isinstance(body, dict):
            return json_error(400, "the body must be a JSON object")
        return body

    async def show(self, request: web.Request) -> web.StreamResponse:
        refusal = self._refusal(request, post=False)
        if refusal is not None:
            return refusal
        assert self._governor is not None
        try:
            await self._governor.gate.refresh()
        except REDIS_DOWN as exc:
            return _redis_down("the trading state cannot be read", exc)
        return _json(200, self._governor.status())

    async def set_state(self, request: web.Request) -> web.StreamResponse:
        refusal = self._refusal(request, post=True)
        if refusal is not None:
            return refusal
        assert self._governor is not None
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        unknown = sorted(set(body) - _STATE_KEYS)
        if unknown:
            return json_error(400, f"unknown field {unknown[0]!r}; the fields are {sorted(_STATE_KEYS)}")
        try:
            to = TradingState(str(body.get("state", "")).upper())
        except ValueError:
            return json_error(400, f"state={body.get('state')!r}: one of ACTIVE, REDUCING, HALTED")
        flatten, force = body.get("flatten", False), body.get("force", False)
        reason, who = body.get("reason") or "operator", body.get("who") or "api"
        if not isinstance(flatten, bool) or not isinstance(force, bool):
            return json_error(400, "flatten and force are true or false")
        if not isinstance(reason, str) or not isinstance(who, str) or len(reason) > 200 or len(who) > 64:
            return json_error(400, "reason (up to 200 characters) and who (up to 64) are strings")
        if flatten and not self._governor.can_flatten:
            return json_error(409, "a flatten needs the account follower (QUANTUM_USER_STREAM=true)")
        ask = Request(to, reason, f"operator:{who}", flatten=flatten, force=force)
        try:
            moved = await self._governor.store.transition(ask, numbers={"remote": request.remote})
            await self._governor.gate.refresh()
        except TransitionRefused as exc:
            return json_error(409, str(exc))
        except REDIS_DOWN as exc:
            log.warning("risk.control_redis_down", to=to.value, error=type(exc).__name__)
            return _redis_down("the trading state may not have changed: read it (GET) and ask again", exc)
        log.warning(
            "risk.control_state", remote=request.remote, to=to.value, flatten=flatten, changed=bool(moved)
        )
        return _json(200, {**self._governor.status(), "changed": moved is not None})

    async def set_limits(self, request: web.Request) -> web.StreamResponse:
        refusal = self._refusal(request, post=True)
        if refusal is not None:
            return refusal
        assert self._governor is not None
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        who = body.pop("who", None) or "api"
        changes: dict[str, str] = {}
        removed: list[str] = []
        try:
            for key, value in body.items():
                if str(value).strip().lower() == DEFAULT:
                    removed.append(limit_name(key))
                    continue
                name, _parsed = parse_limit(key, value)
                changes[name] = str(value).strip().lower()
        except LimitError as exc:
            return json_error(400, str(exc))
        if not changes and not removed:
            return json_error(400, 'no limit given: {"max_gross_notional_usd": 1000, ...}')
        try:
            await self._governor.store.set_limits(changes, removed, f"operator:{who}")
            await self._governor.gate.refresh()
        except REDIS_DOWN as exc:
            log.warning("risk.control_redis_down", limits=sorted(changes) + removed, error=type(exc).__name__)
            return _redis_down("the limits may not have changed: read them (GET) and ask again", exc)
        return _json(200, self._governor.status())


def _redis_down(what: str, exc: BaseException) -> web.Response:
    """503 naming Redis (the error's type only: its text may quote the URL)."""
    return json_error(503, f"Redis did not answer ({type(exc).__name__}): {what}")
