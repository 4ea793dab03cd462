"""Reading a Binance request's parameters and writing JSON answers (shared by the REST routes and the
control surface)."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from binance_sim import errors
from binance_sim.params import Params

JSON_TYPE: Final = "application/json"


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
