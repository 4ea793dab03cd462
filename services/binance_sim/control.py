"""The simulator's control surface, ``/_sim/*``: what tests and operators use to move the market, inject
faults and read the account (JSON bodies only, loopback only, no foreign ``Origin``).

Each action calls the :class:`~binance_sim.server.Simulator` method of the same name, which Python
tests call directly.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol

import orjson
from aiohttp import web

from binance_sim import errors
from binance_sim.config import SimConfig
from binance_sim.engine import Engine
from binance_sim.errors import SimError
from binance_sim.faults import FaultSet
from binance_sim.httpio import JSON_TYPE, json_response
from binance_sim.income import IncomeRow
from binance_sim.market import fmt

_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


class Controls(Protocol):
    """What the control surface drives (the Simulator)."""

    config: SimConfig
    engine: Engine
    faults: FaultSet

    def state(self) -> dict[str, Any]: ...
    def reset(self) -> None: ...
    async def move_mark_and_trigger(self, symbol: str, price: Decimal, **reference: Any) -> None: ...
    def settle_funding(self) -> list[IncomeRow]: ...
    def set_funding_rate(self, symbol: str, rate: Decimal | str) -> None: ...
    def walk_step(self, steps: int = 1) -> None: ...
    def set_liquidation(self, enabled: bool) -> None: ...
    def auto_deleverage(
        self,
        symbol: str,
        position_side: str = "BOTH",
        quantity: Decimal | str | None = None,
        price: Decimal | str | None = None,
    ) -> dict[str, Any]: ...
    def settle_symbol(self, symbol: str, price: Decimal | str) -> list[dict[str, Any]]: ...
    def set_faults(self, spec: dict[str, Any] | None = None, /, **fields: Any) -> None: ...
    def set_balance(self, asset: str, balance: Decimal | str) -> None: ...
    def set_rate_limits(self, enabled: bool) -> None: ...


async def handle(sim: Controls, request: web.Request, path: str) -> web.Response:
    """Serve one ``/_sim/`` request (loopback and JSON only)."""
    if sim.config.loopback_only_control and request.remote not in _LOOPBACK:
        return json_response({"code": -2015, "msg": "The control API only answers on loopback."}, 403)
    refusal = _cross_site_refusal(request)
    if refusal is not None:
        return refusal
    try:
        body = await _control_body(request)
        action = (request.method, path)
        if action == ("GET", "/_sim/state"):
            return json_response(sim.state(), 200)
        if action == ("POST", "/_sim/reset"):
            sim.reset()
            return json_response({"code": 200, "msg": "success"}, 200)
        if action == ("POST", "/_sim/markPrice"):
            symbol = str(body.get("symbol", ""))
            prices = body.get("prices")
            if prices is None:
                prices = [body.get("price")]
            if not isinstance(prices, list) or not prices:
                raise errors.mandatory("price")
            reference = {
                name: None if body.get(key) is None else _decimal(body[key], key)
                for name, key in (("index", "indexPrice"), ("last", "lastPrice"))
            }
            for price in prices:
                await sim.move_mark_and_trigger(symbol, _decimal(price, "price"), **reference)
            return json_response({"symbol": symbol, "markPrice": str(sim.engine.mark(symbol))}, 200)
        if action == ("POST", "/_sim/trade"):
            traded = sim.engine.trade_against(
                str(body.get("symbol", "")),
                str(body.get("origClientOrderId", "")),
                _decimal(body.get("quantity"), "quantity"),
            )
            return json_response(traded, 200)
        if action == ("POST", "/_sim/funding"):
            return json_response({"rows": [row.to_json() for row in sim.settle_funding()]}, 200)
        if action == ("POST", "/_sim/fundingRate"):
            sim.set_funding_rate(str(body.get("symbol", "")), _decimal(body.get("rate"), "rate"))
            return json_response({"code": 200, "msg": "success"}, 200)
        if action == ("POST", "/_sim/walk"):
            steps = body.get("steps", 1)
            if isinstance(steps, str) and steps.isdigit():
                steps = int(steps)
            if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 10_000:
                raise errors.invalid_value("steps")
            sim.walk_step(steps)
            return json_response({"markPrices": {s: fmt(p) for s, p in sim.engine.marks.items()}}, 200)
        if action == ("POST", "/_sim/liquidation"):
            enabled = body.get("enabled")
            if not isinstance(enabled, bool):
                raise errors.invalid_value("enabled")
            sim.set_liquidation(enabled)
            return json_response({"enabled": enabled}, 200)
        if action == ("POST", "/_sim/adl"):
            adl = sim.auto_deleverage(
                str(body.get("symbol", "")),
                str(body.get("positionSide", "BOTH")),
                None if body.get("quantity") is None else _decimal(body["quantity"], "quantity"),
                None if body.get("price") is None else _decimal(body["price"], "price"),
            )
            return json_response(adl, 200)
        if action == ("POST", "/_sim/settle"):
            settled = sim.settle_symbol(str(body.get("symbol", "")), _decimal(body.get("price"), "price"))
            return json_response({"orders": settled}, 200)
        if action == ("POST", "/_sim/faults"):
            sim.set_faults(body)
            return json_response(sim.faults.to_json(), 200)
        if action == ("GET", "/_sim/faults"):
            return json_response(sim.faults.to_json(), 200)
        if action == ("POST", "/_sim/balance"):
            sim.set_balance(str(body.get("asset", "USDT")), _decimal(body.get("balance"), "balance"))
            return json_response({"code": 200, "msg": "success"}, 200)
        if action == ("POST", "/_sim/rateLimits"):
            enabled = body.get("enabled")
            if not isinstance(enabled, bool):
                raise errors.invalid_value("enabled")
            sim.set_rate_limits(enabled)
            return json_response({"enabled": enabled}, 200)
    except SimError as exc:
        return json_response({"code": exc.code, "msg": exc.msg}, exc.status)
    return json_response({"code": -5000, "msg": f"Path {path}, Method {request.method} is invalid"}, 404)


def _decimal(value: Any, name: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise errors.mandatory(name) from None
    if not result.is_finite():
        raise errors.mandatory(name)
    return result


def _cross_site_refusal(request: web.Request) -> web.Response | None:
    """Refuse what a web page can send to 127.0.0.1 without CORS: a foreign ``Origin`` (browsers send
    one with every cross-site POST, body or not) and a ``text/plain`` or form body (a "simple"
    request needs no preflight). Tools send JSON and no Origin."""
    origin = request.headers.get("Origin")
    if origin is not None and origin not in (f"http://{request.host}", f"https://{request.host}"):
        return json_response({"code": -2015, "msg": f"Origin {origin} may not use the control API."}, 403)
    if request.body_exists and request.content_type != JSON_TYPE:
        return json_response(
            {"code": -1130, "msg": "Control bodies must be Content-Type: application/json."}, 415
        )
    return None


async def _control_body(request: web.Request) -> dict[str, Any]:
    body: dict[str, Any] = dict(request.query)
    if request.body_exists:
        try:
            parsed = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise SimError(-1130, "Control body is not valid JSON.") from None
        if not isinstance(parsed, dict):
            raise SimError(-1130, "Control body must be a JSON object.")
        body.update(parsed)
    return body
