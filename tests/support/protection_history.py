"""Protection read from the simulator's own history (never the service's records): whether a stop
covered the whole position at every moment, and whether each stop cancelled was replaced first."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from support.desk import Desk

D = Decimal


def stops_history(desk: Desk, symbol: str = "BTCUSDT") -> list[dict[str, Any]]:
    """Every stop-loss of ours on ``symbol`` the simulator ever held, in placement order."""
    return [
        a
        for a in desk.sim.state()["algoOrders"]
        if a["symbol"] == symbol and a["orderType"] == "STOP_MARKET" and a["clientAlgoId"].startswith("qx")
    ]


def covered_at_every_moment(desk: Desk, symbol: str = "BTCUSDT") -> None:
    """From the first stop on: at each trade and each placement or cancel of a stop, some armed stop
    covers the whole position; every stop cancelled while a position stood had a successor placed
    before it went (make before break)."""
    trades = sorted((t for t in desk.sim.state()["trades"] if t["symbol"] == symbol), key=lambda t: t["id"])
    stops = stops_history(desk, symbol)
    assert stops, "no stop was ever placed"
    flat_at = trades[-1]["time"] if desk.position(symbol) == 0 else None
    for old in stops:
        if old["algoStatus"] != "CANCELED" or (flat_at is not None and old["updateTime"] >= flat_at):
            continue  # a stop cancelled once the position was gone needs no successor
        successors = [s for s in stops if s["algoId"] > old["algoId"]]
        assert any(s["createTime"] <= old["updateTime"] for s in successors), (old, successors)
    # An entry stands without its stop for the time-to-protected: counted from the first stop.
    since = min(s["createTime"] for s in stops)
    moments = {t["time"] for t in trades}
    moments |= {s["createTime"] for s in stops} | {s["updateTime"] for s in stops}
    for at in sorted(m for m in moments if m >= since):
        position = sum(
            (D(t["qty"]) if t["side"] == "BUY" else -D(t["qty"]) for t in trades if t["time"] <= at), D(0)
        )
        if position == 0:
            continue
        armed = [
            s for s in stops if s["createTime"] <= at and (s["algoStatus"] == "NEW" or s["updateTime"] >= at)
        ]
        assert any(s.get("closePosition") or D(s["quantity"]) >= abs(position) for s in armed), (
            at,
            position,
            armed,
        )


async def protection_events(desk: Desk) -> list[dict[str, Any]]:
    """The ``protection.changed`` entries of the position stream, in order."""
    import json

    rows = await desk.redis.xrange(desk.names["position_stream"])
    return [
        json.loads(fields[b"payload"])
        for _sid, fields in rows
        if fields.get(b"event_type") == b"protection.changed"
    ]
