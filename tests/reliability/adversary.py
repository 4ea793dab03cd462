"""The adversarial run: every entry shape killed at each of its steps, a stalled instance resumed
after a takeover, user-stream events of different types in any order, foreign orders on the same
symbols, and (``failover``) the Redis master SIGKILLed while an entry is in flight and a Sentinel
replica promoted (asynchronous replication: the last writes may be lost); the five promises
counted from the simulator's own order history, never from the service's records
(``scripts/adversarial.py`` runs it long; ``test_promises.py`` runs it short).

The promises (design.md §7b):

* P1 exactly one result per intent;
* P2 no entry order is ever placed twice (each of an intent's entry, child and stop-entry ids is
  on the exchange at most once);
* P3 a filled entry is protected on the exchange or closed: every open position is covered by our
  open SL *and* TP on its closing side for its whole size (or a result on the symbol says it is
  not), and a result saying ``protected`` names legs the exchange accepted;
* P4 nothing acts on orders that are not ours: the foreign orders placed beside ours on the same
  symbols are all still open at the end;
* P5 a result never says less than what happened: its executed quantity is at least what the
  exchange filled for the intent's entry (or close) orders, and an intent the exchange filled is
  never ``rejected``.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import redis

from quantum_exec.contracts import ExecutionResult
from quantum_exec.core.ids import MAX_CHILDREN, client_order_id
from reliability.harness import API_KEY, API_SECRET, SYMBOLS, Rig, ServiceProcess, SimProcess, Streams
from support.waiting import poll_until

SHAPES = ("market", "limit", "stop", "twap")
# Where a shape can be killed: the request held by a latency fault, or the state waited for.
STEPS: dict[str, tuple[str, ...]] = {
    "market": ("entry_inflight", "protect_window", "after_result", "stall_takeover", "unknown_entry"),
    # On an open position: the same side again, or the other side (netted against it).
    # then_close: a CLOSE published the instant the pyramid is answered (its fill may still be on
    # the way to the live view: with --fill-lag-ms it is).
    "pyramid": ("entry_inflight", "protect_window", "after_result", "unknown_entry", "then_close"),
    "opposite": ("entry_inflight", "after_result", "stall_takeover", "unknown_entry"),
    "limit": ("resting", "protect_window", "stall_takeover"),
    "stop": ("armed", "entry_inflight", "protect_window"),
    "twap": ("between_slices", "protect_window"),
    "close": ("close_inflight", "after_result", "stall_takeover", "unknown_cancel"),
}
# Above each symbol's minimum notional at the fixture's marks.
QUANTITY = {"BTCUSDT": "0.004", "ETHUSDT": "0.100", "SOLUSDT": "2", "XRPUSDT": "150", "LINKUSDT": "20"}
TICK = {"BTCUSDT": "0.1", "ETHUSDT": "0.01", "SOLUSDT": "0.01", "XRPUSDT": "0.0001", "LINKUSDT": "0.001"}
LEASE_TTL_S = 2.0  # QUANTUM_LEASE_TTL_MS of the harness's services
# With failover on, these shapes may also meet a Redis failover while their order is in flight.
FAILOVER_SHAPES = ("market", "pyramid", "limit", "stop", "twap", "close")
FAILOVER_SHARE = 1 / 3  # of their rounds


@dataclass
class PromiseVerdict:
    """Each promise's violations, as text naming the intent and what the exchange holds."""

    intents: int = 0
    results: int = 0
    p1: list[str] = field(default_factory=list)
    p2: list[str] = field(default_factory=list)
    p3: list[str] = field(default_factory=list)
    p4: list[str] = field(default_factory=list)
    p5: list[str] = field(default_factory=list)
    reported_unprotected: list[str] = field(default_factory=list)

    @property
    def violations(self) -> dict[str, list[str]]:
        found = {"P1": self.p1, "P2": self.p2, "P3": self.p3, "P4": self.p4, "P5": self.p5}
        return {k: v for k, v in found.items() if v}

    def counts(self) -> dict[str, int]:
        return {p: len(getattr(self, p.lower())) for p in ("P1", "P2", "P3", "P4", "P5")}


def _own_order_ids(intent_id: str, role: str) -> list[str]:
    return [client_order_id(intent_id, role)] + [  # type: ignore[arg-type]
        client_order_id(intent_id, role, n)  # type: ignore[arg-type]
        for n in range(1, MAX_CHILDREN + 1)
    ]


def promises(
    intents: dict[str, dict[str, Any]],
    results: list[ExecutionResult],
    state: dict[str, Any],
    foreign: dict[str, str],
) -> PromiseVerdict:
    """The five promises for ``intents`` (intent_id -> payload, publish order) from the simulator's
    ``state``; ``foreign`` maps the client ids of the orders placed beside ours to their kind
    (``order`` or ``algo``)."""
    v = PromiseVerdict(intents=len(intents), results=len(results))
    per_id = Counter(r.intent_id for r in results)
    by_id = {r.intent_id: r for r in results}
    v.p1 += [f"{i}: no result" for i in intents if per_id[i] == 0]
    v.p1 += [f"{i}: {n} results" for i, n in per_id.items() if n > 1]
    v.p1 += [f"{i}: a result for an intent never published" for i in per_id if i not in intents]

    orders, algos = state["orders"], state["algoOrders"]
    by_client = Counter(o["clientOrderId"] for o in orders)
    algo_by_client = Counter(a["clientAlgoId"] for a in algos)
    order_by_id = {int(o["orderId"]): o for o in orders}
    for intent_id, payload in intents.items():
        role = "close" if str(payload.get("side")).upper() == "CLOSE" else "entry"
        ids = _own_order_ids(intent_id, role)
        twice = [f"{cid} x{by_client[cid]}" for cid in ids if by_client[cid] > 1]
        twice += [f"algo {cid} x{algo_by_client[cid]}" for cid in ids[:1] if algo_by_client[cid] > 1]
        if role == "entry" and twice:
            v.p2.append(f"{intent_id}: {', '.join(twice)}")
        # What the exchange filled for the intent's entry (or close): its orders, its children,
        # and the order a stop entry's trigger placed.
        filled = sum(
            (Decimal(o["executedQty"]) for o in orders if o["clientOrderId"] in set(ids)), Decimal(0)
        )
        for a in algos:
            if a["clientAlgoId"] == ids[0] and a.get("actualOrderId"):
                placed = order_by_id.get(int(a["actualOrderId"]))
                if placed is not None:
                    filled += Decimal(placed["executedQty"])
        result = by_id.get(intent_id)
        if result is None:
            continue
        said = result.executed_quantity or Decimal(0)
        if said < filled:
            v.p5.append(f"{intent_id}: exchange filled {filled}, result says {said} ({result.status.value})")
        elif filled > 0 and result.status.value == "rejected":
            v.p5.append(f"{intent_id}: exchange filled {filled}, result says rejected")

    positions: dict[str, Decimal] = defaultdict(Decimal)
    for p in state["positions"]:
        positions[p["symbol"]] += Decimal(str(p["positionAmt"]))
    loud = {
        r.symbol
        for r in results
        if r.protection.value in ("unprotected", "partial")
        and r.status.value in ("filled", "partial", "failed")
    }
    ours_open = [a for a in algos if a["algoStatus"] == "NEW" and str(a["clientAlgoId"]).startswith("qx")]
    for symbol, amount in positions.items():
        if amount == 0:
            continue
        closing = "SELL" if amount > 0 else "BUY"
        summed = {
            kind: sum(
                (
                    abs(amount) if a.get("closePosition") else Decimal(str(a["quantity"]))
                    for a in ours_open
                    if a["symbol"] == symbol and a["side"] == closing and a["orderType"] == kind
                ),
                Decimal(0),
            )
            for kind in ("STOP_MARKET", "TAKE_PROFIT_MARKET")
        }
        if all(q >= abs(amount) for q in summed.values()):
            continue
        if symbol in loud:
            v.reported_unprotected.append(symbol)
        else:
            v.p3.append(
                f"{symbol}: position {amount}, our open SL {summed['STOP_MARKET']}, "
                f"TP {summed['TAKE_PROFIT_MARKET']}"
            )
    algo_status = {a["clientAlgoId"]: a["algoStatus"] for a in algos}
    for result in results:
        if result.protection.value != "protected":
            continue
        for leg in (result.stop_loss, result.take_profit):
            if leg is None or leg.client_algo_id is None:
                continue
            status = algo_status.get(leg.client_algo_id)
            if status is None or status in ("REJECTED", "EXPIRED"):
                v.p3.append(
                    f"{result.intent_id}: result says protected, leg {leg.client_algo_id} is {status}"
                )

    order_status = {o["clientOrderId"]: o["status"] for o in orders}
    for cid, kind in foreign.items():
        status = order_status.get(cid) if kind == "order" else algo_status.get(cid)
        if status != "NEW":
            v.p4.append(f"foreign {kind} {cid} is {status}")
    return v


# --------------------------------------------------------------------------------------------
# the foreign client: another program trading the same account


def signed(sim: SimProcess, method: str, path: str, params: dict[str, Any]) -> Any:
    """One request signed as any Binance client signs it (HMAC-SHA256 of the query string)."""
    query = urllib.parse.urlencode({**params, "timestamp": int(time.time() * 1000), "recvWindow": 5000})
    signature = hmac.new(API_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{sim.base_url}{path}?{query}&signature={signature}",
        method=method,
        headers={"X-MBX-APIKEY": API_KEY},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return orjson.loads(reply.read())


def _fault_rules(sim: SimProcess) -> list[dict[str, Any]]:
    """The simulator's fault rules not yet spent."""
    with urllib.request.urlopen(f"{sim.base_url}/_sim/faults", timeout=10) as reply:
        rules: list[dict[str, Any]] = orjson.loads(reply.read())["faults"]
    return rules


def _price(symbol: str, value: Decimal) -> str:
    return str(value.quantize(Decimal(TICK[symbol])))


def place_foreign(sim: SimProcess, marks: dict[str, Decimal]) -> dict[str, str]:
    """A resting LIMIT far below the market and an untriggerable conditional order on every symbol,
    under client ids that are not ours; returns them (client id -> kind)."""
    foreign: dict[str, str] = {}
    for symbol in SYMBOLS:
        mark = marks[symbol]
        qty = QUANTITY[symbol]
        # The margin type the service trades (Binance refuses to change it while orders are open:
        # -4047), set as an operator sharing the account would have it.
        signed(sim, "POST", "/fapi/v1/marginType", {"symbol": symbol, "marginType": "ISOLATED"})
        cid = f"manual-{symbol.lower()}-limit"
        signed(
            sim,
            "POST",
            "/fapi/v1/order",
            {
                "symbol": symbol,
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": qty,
                "price": _price(symbol, mark * Decimal("0.96")),
                "newClientOrderId": cid,
            },
        )
        foreign[cid] = "order"
        aid = f"manual-{symbol.lower()}-stop"
        signed(
            sim,
            "POST",
            "/fapi/v1/algoOrder",
            {
                "symbol": symbol,
                "algoType": "CONDITIONAL",
                "side": "BUY",
                "type": "STOP_MARKET",
                "quantity": qty,
                "triggerPrice": _price(symbol, mark * Decimal("1.5")),
                "clientAlgoId": aid,
            },
        )
        foreign[aid] = "algo"
    return foreign


# --------------------------------------------------------------------------------------------
# the run


@dataclass
class AdversarialFigures:
    rounds: int = 0
    intents: int = 0
    steps: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    protections: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    # Results that failed inside the service (intent, shape:step, message): each one is a lead.
    internal: list[str] = field(default_factory=list)
    seconds: float = 0.0
    verdict: PromiseVerdict | None = None


def _intent(shape: str, intent_id: str, symbol: str, side: str, mark: Decimal) -> dict[str, Any]:
    long = side == "BUY"
    away = Decimal("0.97") if long else Decimal("1.03")
    toward = Decimal("1.03") if long else Decimal("0.97")
    payload: dict[str, Any] = {
        "intent_id": intent_id,
        "symbol": symbol,
        "side": side,
        "quantity": QUANTITY[symbol],
        "leverage": 3,
        "stop_loss": _price(symbol, mark * away),
        "take_profit": _price(symbol, mark * toward),
        "strategy": "adversarial",
    }
    if shape == "limit":
        payload.update(
            order_type="LIMIT", price=_price(symbol, mark * (Decimal("0.998") if long else Decimal("1.002")))
        )
        payload["expire_after_s"] = 30
    elif shape == "stop":
        payload.update(
            order_type="STOP_MARKET",
            stop_price=_price(symbol, mark * (Decimal("1.002") if long else Decimal("0.998"))),
        )
        payload["expire_after_s"] = 30
    elif shape == "twap":
        payload["execution"] = {"algo": "twap", "slices": 3, "interval_s": 0.5}
    return payload


def run_adversarial(
    work: Path,
    rounds: int,
    *,
    seed: int = 1,
    reorder: bool = True,
    service_env: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    fill_lag_ms: int = 0,
    failover: bool = False,
) -> AdversarialFigures:
    """``rounds`` rounds of one intent each, killed (or stalled) at a chosen step; then one clean
    instance drains everything and the promises are counted from the simulator's state.

    ``fill_lag_ms`` holds every ORDER_TRADE_UPDATE and ACCOUNT_UPDATE back that long behind the
    conditional orders' updates (the live view sees legs before the fills they protect)."""
    rng = random.Random(seed)
    figures = AdversarialFigures()
    started = time.monotonic()
    env = {"intent_ttl_s": 600, **(service_env or {})}
    with Rig(work, sentinel=failover) as rig:
        sim, streams = rig.sim, rig.streams
        marks = {s: Decimal(sim.state()["markPrices"][s]) for s in SYMBOLS}
        foreign = place_foreign(sim, marks)
        if reorder or fill_lag_ms:
            lag = {"ORDER_TRADE_UPDATE": fill_lag_ms, "ACCOUNT_UPDATE": fill_lag_ms} if fill_lag_ms else {}
            sim.faults(
                [],
                stream_reorder={"seed": seed, "max_delay_ms": 40 if reorder else 0, "type_delay_ms": lag},
            )
        services = [rig.service(c, **env) for c in ("adv-a", "adv-b")]
        intents: dict[str, dict[str, Any]] = {}
        open_side: dict[str, str | None] = dict.fromkeys(SYMBOLS, None)
        kills: dict[str, str] = {}
        for n in range(rounds):
            symbol = rng.choice(SYMBOLS)
            mark = Decimal(sim.state()["markPrices"][symbol])
            intent_id = f"adv-{rig.names.tag[:6]}-{n}"
            side = open_side[symbol]
            if side is not None:
                shape = rng.choice(("close", "close", "pyramid", "opposite"))
            else:
                shape = rng.choice(SHAPES)
            if shape == "close":
                payload: dict[str, Any] = {"intent_id": intent_id, "symbol": symbol, "side": "CLOSE"}
            elif shape == "pyramid":
                payload = _intent("market", intent_id, symbol, side or "BUY", mark)
            elif shape == "opposite":
                payload = _intent("market", intent_id, symbol, "SELL" if side == "BUY" else "BUY", mark)
            else:
                payload = _intent(shape, intent_id, symbol, rng.choice(("BUY", "SELL")), mark)
            if failover and shape in FAILOVER_SHAPES and rng.random() < FAILOVER_SHARE:
                step = "redis_failover"
            else:
                step = rng.choice(STEPS[shape])
            figures.steps[f"{shape}:{step}"] += 1
            kills[intent_id] = f"{shape}:{step}"
            intents[intent_id] = payload
            current, other = (services[0], services[1]) if n % 2 == 0 else (services[1], services[0])
            if _round(rng, shape, step, payload, mark, current, other, sim, streams, rig):
                figures.hits[f"{shape}:{step}"] += 1
            sim.faults([])
            if step == "then_close":
                intents[f"{intent_id}-c"] = {"intent_id": f"{intent_id}-c", "symbol": symbol, "side": "CLOSE"}
                open_side[symbol] = None
            elif shape in ("close", "opposite"):
                open_side[symbol] = None  # an opposite entry of the same size nets to flat
            elif shape != "pyramid":
                open_side[symbol] = payload["side"]
            figures.rounds += 1
            if progress is not None:
                progress(f"  round {n + 1}/{rounds}: {shape}:{step}")
        # Every instance gone; one clean instance drains what is left.
        for service in services:
            if service.alive:
                service.resume()
                service.kill()
        final = services[0].start()
        results = streams.wait_answered(set(intents), 180)
        assert final.terminate() == 0, "the clean instance did not stop cleanly"
        state = sim.state()
        figures.intents = len(intents)
        figures.statuses = Counter(r.status.value for r in results)
        figures.protections = Counter(r.protection.value for r in results)
        figures.errors = Counter(f"{r.status.value}:{r.error.code}" for r in results if r.error is not None)
        figures.internal = [
            f"{r.intent_id} ({kills.get(r.intent_id)}): {r.error.message}"
            for r in results
            if r.error is not None and r.error.code == "INTERNAL_ERROR"
        ]
        figures.verdict = promises(intents, results, state, foreign)
    figures.seconds = time.monotonic() - started
    return figures


def _results(streams: Streams) -> list[ExecutionResult]:
    try:
        return streams.results()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return []


def _round(
    rng: random.Random,
    shape: str,
    step: str,
    payload: dict[str, Any],
    mark: Decimal,
    current: ServiceProcess,
    other: ServiceProcess,
    sim: SimProcess,
    streams: Streams,
    rig: Rig,
) -> bool:
    """Start ``current``, publish, hit ``step``, kill (or stall); True when the step was hit."""
    intent_id, symbol = payload["intent_id"], payload["symbol"]
    long = payload.get("side") == "BUY"
    entry = client_order_id(intent_id, "close" if shape == "close" else "entry")
    if step in ("entry_inflight", "close_inflight", "stall_takeover", "redis_failover"):
        path = "/fapi/v1/algoOrder" if shape == "stop" else "/fapi/v1/order"
        sim.faults([{"kind": "latency", "ms": 900, "method": "POST", "path": path, "count": 1}])
    elif step == "unknown_entry":
        # Processed, then the answer lost (503, -1007 timeout, garbled or cut-off 200): not killed.
        kind = rng.choice(("unknown_after", "timeout_after", "garbled_after", "truncated_after"))
        sim.faults([{"kind": kind, "method": "POST", "path": "/fapi/v1/order", "count": 1}])
    elif step == "unknown_cancel":
        kind = rng.choice(("unknown_after", "timeout_after", "garbled_after", "truncated_after"))
        sim.faults([{"kind": kind, "method": "DELETE", "path": "/fapi/v1/algoOrder", "count": 1}])
    elif step == "protect_window":
        sim.faults([{"kind": "latency", "ms": 900, "method": "POST", "path": "/fapi/v1/algoOrder"}])
    if not current.alive:
        current.start()
    before = streams.result_count()
    streams.publish_many([payload])

    def on_exchange() -> dict[str, Any] | None:
        state = sim.state()
        digest = entry.split("-")[-1]
        algos = [a for a in state["algoOrders"] if a["clientAlgoId"].split("-")[-1] == digest]
        # The order a stop entry's trigger placed carries an id of the exchange's, not ours.
        triggered = {str(a.get("actualOrderId")) for a in algos if a["clientAlgoId"] == entry}
        found = [
            o
            for o in state["orders"]
            if o["clientOrderId"].split("-")[-1] == digest or str(o["orderId"]) in triggered
        ]
        return {"orders": found, "algos": algos} if (found or algos) else None

    hit = True
    if step in ("entry_inflight", "close_inflight"):
        hit = poll_until(lambda: streams.idem_state(intent_id) == "in_flight", 5)
        time.sleep(rng.uniform(0.1, 0.7))  # an instant inside the 900 ms the request takes
    elif step == "protect_window":
        if shape == "stop":
            poll_until(lambda: on_exchange() is not None, 5)
            sim.mark(symbol, mark * (Decimal("1.004") if long else Decimal("0.996")))
        elif shape == "limit":
            poll_until(lambda: on_exchange() is not None, 5)
            sim.mark(symbol, mark * (Decimal("0.997") if long else Decimal("1.003")))

        def entry_without_legs() -> bool:
            found = on_exchange()
            return bool(found and any(Decimal(o["executedQty"]) > 0 for o in found["orders"]))

        hit = poll_until(entry_without_legs, 8, poll_s=0.01)
    elif step == "redis_failover":
        # The intent is on the replica too (a producer that must not lose it waits for that);
        # the record the service writes next, and what follows, may not be.
        streams.replicated()
        hit = poll_until(lambda: streams.idem_state(intent_id) == "in_flight", 5)
        time.sleep(rng.uniform(0.05, 0.6))  # an instant inside the 900 ms the order request takes
        rig.fail_over()
        # The instance rides the failover (no kill): its intent is answered through the new master.
        answered = poll_until(lambda: intent_id in {r.intent_id for r in _results(streams)}, 30, poll_s=0.1)
        hit = hit and answered
    elif step == "after_result":
        hit = poll_until(lambda: streams.result_count() > before, 10, poll_s=0.005)
    elif step == "then_close":
        hit = poll_until(lambda: streams.result_count() > before, 10, poll_s=0.005)
        streams.publish_many([{"intent_id": f"{intent_id}-c", "symbol": symbol, "side": "CLOSE"}])
        poll_until(lambda: streams.result_count() > before + 1, 10, poll_s=0.01)
    elif step in ("unknown_entry", "unknown_cancel"):
        # Hit when the fault was spent; the instance answers by itself (a result within 10 s: an
        # unknown outcome is looked up at once, never left for a claim a minute later).
        hit = poll_until(lambda: not _fault_rules(sim), 10, poll_s=0.01)
        hit = poll_until(lambda: streams.result_count() > before, 10, poll_s=0.01) and hit
    elif step in ("resting", "armed"):
        hit = poll_until(lambda: on_exchange() is not None, 5)
    elif step == "between_slices":
        hit = poll_until(lambda: len((on_exchange() or {}).get("orders", [])) >= 1, 5, poll_s=0.01)
    if step == "stall_takeover":
        hit = poll_until(lambda: streams.idem_state(intent_id) == "in_flight", 5)
        current.pause()  # SIGSTOP: the instance stalls with its request in flight
        try:
            if not other.alive:
                other.start()
            # The other instance takes the intent over once the stalled one's lease expired.
            poll_until(lambda: streams.result_count() > before, LEASE_TTL_S * 10, poll_s=0.05)
        finally:
            current.resume()  # it wakes up believing it still owns the intent
        # The woken instance acts on what it held (it must do nothing harmful): it is killed once
        # it has logged again, or after 3 s.
        logged = len(current.tail(1_000_000))
        poll_until(lambda: len(current.tail(1_000_000)) > logged, 3.0)
        current.kill()
        return hit
    current.kill()
    # While it is dead the market moves through the resting LIMIT or the armed stop.
    if step == "resting":
        sim.mark(symbol, mark * (Decimal("0.997") if long else Decimal("1.003")))
    elif step == "armed":
        sim.mark(symbol, mark * (Decimal("1.004") if long else Decimal("0.996")))
    return hit
