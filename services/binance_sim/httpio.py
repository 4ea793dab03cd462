"""Reading a Binance request's parameters and writing JSON answers (shared by the REST routes and the
control surface), faults' answers included."""

from __future__ import annotations

import logging
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from binance_sim import errors
from binance_sim.faults import Fault
from binance_sim.params import Params

JSON_TYPE: Final = "application/json"
log = logging.getLogger("binance_sim")


def json_response(body: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
    """``body`` as a JSON answer."""
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON_TYPE, headers=headers)


def parse_params(raw_query: bytes, raw_body: bytes) -> Params:
    """The query string and form body merged (a parameter sent twice is -1102 as on Binance)."""
    merged: dict[str, str] = {}
    for raw in (raw_query, raw_body):
        if not raw:
            continue
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            raise errors.illegal_chars("body", "form-urlencoded UTF-8") from None
        for key, value in pairs:
            if key in merged:
                raise errors.DUPLICATE_PARAM()
            merged[key] = value
    return Params(merged)


def fault_reply(
    request: web.Request,
    fault: Fault,
    path: str,
    headers: dict[str, str],
    now_ms: int,
    *,
    answer: web.Response | None = None,
) -> web.Response:
    """What a fault makes of a REST answer: a dropped connection, the real ``answer`` cut off, or the
    fault's own status and body."""
    if fault.kind.startswith("drop"):
        log.info("sim.fault", extra={"kv": {"kind": fault.kind, "path": path}})
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)
    if fault.kind == "truncated_after" and answer is not None and isinstance(answer.body, bytes):
        cut = fault.cut(answer.body)
        return web.Response(body=cut, status=answer.status, content_type=JSON_TYPE, headers=headers)
    if fault.retry_after_s is not None:
        headers["Retry-After"] = str(fault.retry_after_s)
    return json_response(fault.body(path, now_ms), fault.status, headers)
