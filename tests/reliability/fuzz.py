"""Hypothesis-driven bad input through the running service, end to end.

Every generated stream entry is *invalid by construction*: either undecodable (no payload field,
invalid UTF-8, not JSON, not an object, nested beyond any parser, over 1 MiB) or a decodable
intent with at least one defect that no valid intent has (wrong types, missing fields, NaN and
Infinity, huge, negative and zero sizes, SL/TP on the wrong side, unknown, non-trading and
non-perpetual symbols, invalid leverage, oversized strings, stale timestamps, CLOSE without a
position). Entries are XADDed in pipelined batches and answered in bulk; for each batch:

* the service process is still alive (and at the end stops cleanly with exit code 0);
* every entry has exactly one result, matched by its stream id, ``rejected`` with a reason code;
* an undecodable entry's result says ``INVALID_PAYLOAD`` and the entry is in the dead-letter stream;
* nothing at all reached the exchange: no order, no algo order, no position, no leverage change.

Shrinking is off: a failing batch is reported as generated (the service is stateful).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from reliability.harness import Rig, ServiceProcess, SimProcess, Streams, find_secrets, secret_blobs

UNDECODABLE = "undecodable"
REJECTED = "rejected"

KNOWN = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
PRICE = {"BTCUSDT": 95234.5, "ETHUSDT": 3105.42, "SOLUSDT": 141.23}


@dataclass(frozen=True)
class Case:
    fields: dict[bytes, bytes]
    expect: str  # UNDECODABLE or REJECTED
    defect: str


@dataclass
class FuzzFigures:
    cases: int = 0
    batches: int = 0
    undecodable: int = 0
    rejected: int = 0
    defects: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    secrets_found: list[str] = field(default_factory=list)
    exit_code: int | None = None


# ---------------------------------------------------------------------------------------------
# strategies

# Unique per case (hypothesis repeats drawn values on purpose): a repeated intent_id is a producer
# retry, answered once, which this oracle would count as a missing answer.
_SERIAL = itertools.count()
_uid = st.just(None).map(lambda _: f"{time.time_ns():x}{next(_SERIAL)}")
_junk_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_junk_container = st.one_of(
    st.lists(_junk_scalar, max_size=4), st.dictionaries(st.text(max_size=5), _junk_scalar, max_size=3)
)
_wrong_type = st.one_of(st.booleans(), st.integers(), _junk_container)


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"n": value}
    return value


def _envelope(payload_bytes: bytes, name: bytes = b"payload") -> dict[bytes, bytes]:
    return {
        b"event_type": b"trade.intent",
        name: payload_bytes,
        b"timestamp": datetime.now(UTC).isoformat().encode(),
        b"source": b"fuzz",
    }


@st.composite
def _base_intent(draw: st.DrawFn) -> dict[str, Any]:
    symbol = draw(st.sampled_from(KNOWN))
    side = draw(st.sampled_from(("BUY", "SELL", "buy", "sell")))
    key = draw(st.sampled_from(("side", "action")))
    payload: dict[str, Any] = {"intent_id": "f-" + draw(_uid), "symbol": symbol, key: side}
    if draw(st.booleans()):
        payload["position_size_usd"] = draw(st.sampled_from((200, 350.5, 500)))
    else:
        payload["quantity"] = {"BTCUSDT": 0.003, "ETHUSDT": 0.1, "SOLUSDT": 2}[symbol]
    if draw(st.booleans()):
        payload["leverage"] = draw(st.integers(1, 5))
    if draw(st.booleans()):
        payload["stop_loss_pct"] = draw(st.sampled_from((1, 2.5)))
        payload["take_profit_pct"] = draw(st.sampled_from((2, 4)))
    if draw(st.booleans()):
        payload["confidence"] = draw(st.floats(0, 1))
    return payload


def _size_key(p: dict[str, Any]) -> str:
    return "position_size_usd" if "position_size_usd" in p else "quantity"


def _side_key(p: dict[str, Any]) -> str:
    return "side" if "side" in p else "action"


def _is_long(p: dict[str, Any]) -> bool:
    return str(p.get("side", p.get("action"))).upper() == "BUY"


# Each defect: name -> function(draw, payload) mutating a valid base intent into an invalid one.
def _d_missing_symbol(draw: st.DrawFn, p: dict[str, Any]) -> None:
    del p["symbol"]


def _d_symbol_type(draw: st.DrawFn, p: dict[str, Any]) -> None:
    p["symbol"] = draw(st.one_of(_wrong_type, st.just(_nested(draw(st.integers(2, 200))))))


def _d_unknown_symbol(draw: st.DrawFn, p: dict[str, Any]) -> None:
    p["symbol"] = draw(st.sampled_from(("ZZZUSDT", "BTC", "", "  ", "BTCUSDT ETH", "btc/usdt", "DOGE\x00")))


def _d_not_trading(draw: st.DrawFn, p: dict[str, Any]) -> None:
    p["symbol"] = draw(st.sampled_from(("SRMUSDT", "BTCUSDT_260327")))


def _d_huge_symbol(draw: st.DrawFn, p: dict[str, Any]) -> None:
    p["symbol"] = "BTC" * draw(st.integers(20, 40_000))


def _d_missing_side(draw: st.DrawFn, p: dict[str, Any]) -> None:
    del p[_side_key(p)]


def _d_side_value(draw: st.DrawFn, p: dict[str, Any]) -> None:
    p[_side_key(p)] = draw(st.one_of(st.sampled_from(("HOLD", "", "BUYY", "BUY SELL", "FLAT")), _wrong_type))


def _d_missing_size(draw: st.DrawFn, p: dict[str, Any]) -> None:
    del p[_size_key(p)]


def _d_size_value(draw: st.DrawFn, p: dict[str, Any]) -> None:
    p[_size_key(p)] = draw(
        st.one_of(
            st.sampled_from((0, -1, -0.0, -500, 1e300, 10**400, "abc", "", "1e400", "NaN", "-Infinity")),
            st.floats(max_value=0),
            st.integers(max_value=0),
            _junk_container,
            st.booleans(),
        )
    )


def _d_size_tiny_or_huge(draw: st.DrawFn, p: dict[str, Any]) -> None:
    key = _size_key(p)
    tiny_or_huge = (1e-9, 0.0001, 1, 5e7, 1e14) if key == "position_size_usd" else (1e-9, 0.0001, 5e7, 1e14)
    p[key] = draw(st.sampled_from(tiny_or_huge))


def _d_leverage(draw: st.DrawFn, p: dict[str, Any]) -> None:
    p["leverage"] = draw(
        st.one_of(
            st.integers(max_value=0),
            st.integers(min_value=21, max_value=10**9),
            st.sampled_from((2.5, "x", "ten", -3.0)),
            _junk_container,
        )
    )


def _d_sl_wrong_side(draw: st.DrawFn, p: dict[str, Any]) -> None:
    price = PRICE[p["symbol"]] if isinstance(p.get("symbol"), str) and p["symbol"] in PRICE else 1.0
    long = _is_long(p)
    p.pop("stop_loss_pct", None)
    p.pop("take_profit_pct", None)
    if draw(st.booleans()):
        p["stop_loss"] = price * (1.2 if long else 0.8)  # a stop on the profit side
    else:
        p["take_profit"] = price * (0.8 if long else 1.2)  # a target on the loss side


def _d_pct_invalid(draw: st.DrawFn, p: dict[str, Any]) -> None:
    key = draw(st.sampled_from(("stop_loss_pct", "take_profit_pct")))
    p[key] = draw(st.sampled_from((0, -1, -50, 100, 250, 1e9, "x", [1])))


def _d_trigger_junk(draw: st.DrawFn, p: dict[str, Any]) -> None:
    key = draw(st.sampled_from(("stop_loss", "take_profit")))
    p[key] = draw(st.one_of(st.sampled_from((0, -1, "NaN", "inf", 1e308)), _junk_container))


def _d_stale(draw: st.DrawFn, p: dict[str, Any]) -> None:
    age = draw(st.integers(3600, 10**6))
    stamp = datetime.now(UTC) - timedelta(seconds=age)
    p["timestamp"] = draw(st.sampled_from((stamp.isoformat(), int(stamp.timestamp() * 1000))))


def _d_timestamp_junk(draw: st.DrawFn, p: dict[str, Any]) -> None:
    p["timestamp"] = draw(st.one_of(st.sampled_from(("yesterday", "2024-13-45T99:00:00")), _junk_container))


def _d_margin_type(draw: st.DrawFn, p: dict[str, Any]) -> None:
    p["margin_type"] = draw(st.one_of(st.sampled_from(("MARGIN", "isolatedd", "BOTH")), _wrong_type))


def _d_close_flat(draw: st.DrawFn, p: dict[str, Any]) -> None:
    p[_side_key(p)] = "CLOSE"


def _d_intent_id_junk(draw: st.DrawFn, p: dict[str, Any]) -> None:
    # plus another defect: an odd intent_id alone may be a valid intent
    p["intent_id"] = draw(st.sampled_from(("x" * 5000, "a/b\\c", "id with spaces " + draw(_uid), "é" * 70)))
    p["symbol"] = draw(st.sampled_from(("ZZZUSDT", 12, None)))


DEFECTS: dict[str, Callable[[st.DrawFn, dict[str, Any]], None]] = {
    "missing_symbol": _d_missing_symbol,
    "symbol_wrong_type_or_nested": _d_symbol_type,
    "unknown_symbol": _d_unknown_symbol,
    "non_trading_symbol": _d_not_trading,
    "oversized_symbol": _d_huge_symbol,
    "missing_side": _d_missing_side,
    "invalid_side": _d_side_value,
    "missing_size": _d_missing_size,
    "size_zero_negative_nan_inf_huge": _d_size_value,
    "size_below_min_or_above_limit": _d_size_tiny_or_huge,
    "invalid_leverage": _d_leverage,
    "sl_tp_wrong_side": _d_sl_wrong_side,
    "invalid_pct": _d_pct_invalid,
    "invalid_trigger": _d_trigger_junk,
    "stale_timestamp": _d_stale,
    "invalid_timestamp": _d_timestamp_junk,
    "invalid_margin_type": _d_margin_type,
    "odd_intent_id": _d_intent_id_junk,
    "close_without_position": _d_close_flat,  # last: hypothesis favours the first entries
}


@st.composite
def _decodable_case(draw: st.DrawFn) -> Case:
    payload = draw(_base_intent())
    names = draw(st.lists(st.sampled_from(list(DEFECTS)), min_size=1, max_size=3, unique=True))
    for name in names:
        DEFECTS[name](draw, payload)
    raw = orjson.dumps(payload) if _fits(payload) else None
    if raw is None:
        raw = json.dumps(payload).encode()  # Python producers write NaN / Infinity / huge ints
    if draw(st.integers(0, 9)) == 0:
        # The float written the way json.dumps writes NaN / Infinity (not JSON, yet accepted).
        # Values only (``:"NaN"``): an object key "NaN" unquoted would make the JSON undecodable.
        raw = raw.replace(b':"NaN"', b":NaN").replace(b':"-Infinity"', b":-Infinity")
    fields = _envelope(raw, draw(st.sampled_from((b"payload", b"payload", b"data", b"json"))))
    if draw(st.integers(0, 9)) == 0:
        fields[b"\xff\xfeextra"] = b"\xc3\x28 invalid utf-8 outside the payload"
    return Case(fields, REJECTED, "+".join(names))


def _fits(payload: dict[str, Any]) -> bool:
    try:
        orjson.dumps(payload)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True


@st.composite
def _undecodable_case(draw: st.DrawFn) -> Case:
    kind = draw(
        st.sampled_from(
            ("no_payload", "invalid_utf8", "not_json", "not_object", "too_deep", "too_large", "empty")
        )
    )
    if kind == "no_payload":
        fields = {
            draw(
                st.binary(min_size=1, max_size=12).filter(lambda b: b not in (b"payload", b"data", b"json"))
            ): (draw(st.binary(max_size=50)))
        }
        return Case(fields, UNDECODABLE, kind)
    if kind == "invalid_utf8":
        good = orjson.dumps({"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 200})
        cut = draw(st.integers(1, len(good) - 2))
        raw = good[:cut] + draw(
            st.sampled_from((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"))
        )
        raw += good[cut:]
    elif kind == "not_json":
        raw = draw(
            st.one_of(
                st.sampled_from((b"{", b"{'symbol': 'BTCUSDT'}", b"symbol=BTCUSDT", b'{"a":1}}', b"nul")),
                st.binary(min_size=1, max_size=200).filter(lambda b: not _json_object(b)),
            )
        )
    elif kind == "not_object":
        raw = json.dumps(draw(st.one_of(_junk_scalar, st.lists(_junk_scalar, max_size=5)))).encode()
    elif kind == "too_deep":
        depth = draw(st.integers(1100, 5000))
        raw = b'{"symbol":' * depth + b'"BTCUSDT"' + b"}" * depth
    elif kind == "too_large":
        raw = b'{"symbol":"BTCUSDT","side":"BUY","position_size_usd":200,"pad":"' + b"x" * (1 << 20) + b'"}'
    else:
        raw = b""
    return Case(_envelope(raw), UNDECODABLE, kind)


def _json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw.decode("utf-8")), dict)
    except (ValueError, RecursionError):
        return False


CASES = st.one_of(_decodable_case(), _decodable_case(), _decodable_case(), _undecodable_case())


# ---------------------------------------------------------------------------------------------
# the run


def run_fuzz(
    work: Path,
    cases: int,
    *,
    batch: int = 100,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
) -> FuzzFigures:
    figures = FuzzFigures()
    started = time.monotonic()
    with Rig(work) as rig:
        sim, streams = rig.sim, rig.streams
        service = rig.service("rel-fuzz")
        initial = sim.state()
        service.start()

        @settings(
            max_examples=max(1, cases // batch),
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(CASES, min_size=batch, max_size=batch))
        def one_batch(generated: list[Case]) -> None:
            _check_batch(generated, service, sim, streams, figures)
            if progress and figures.batches % 10 == 0:
                progress(f"  {figures.cases} fuzz cases")

        hypothesis_seed(seed)(one_batch)()
        figures.secrets_found = find_secrets(
            {**secret_blobs(streams, [service]), "metrics": service.scrape_metrics()}
        )
        figures.exit_code = service.terminate()
        final = sim.state()
        assert final["orders"] == [] and final["algoOrders"] == [] and final["positions"] == []
        assert final["leverage"] == initial["leverage"], "a leverage change reached the exchange"
    figures.seconds = time.monotonic() - started
    return figures


def _check_batch(
    cases: list[Case], service: ServiceProcess, sim: SimProcess, streams: Streams, figures: FuzzFigures
) -> None:
    ids = streams.publish_raw_many([c.fields for c in cases])
    expected = dict(zip(ids, cases, strict=True))
    by_stream: dict[str, list[Any]] = {}

    def answered() -> bool:
        assert service.alive, f"the service died: {service.tail()}"
        by_stream.clear()
        for result in streams.results():
            by_stream.setdefault(result.stream_id or "", []).append(result)
        return all(sid in by_stream for sid in ids) and streams.pending() == 0

    deadline = time.monotonic() + 120
    while not answered():
        assert time.monotonic() < deadline, (
            f"unanswered: {[(sid, expected[sid].defect) for sid in ids if sid not in by_stream][:10]}"
        )
        time.sleep(0.05)
    dead = {f[b"stream_id"].decode() for f in streams.dead_letters()}
    problems: list[str] = []
    for sid, case in expected.items():
        results = by_stream[sid]
        if len(results) != 1:
            problems.append(f"{sid} {case.defect}: {len(results)} results")
            continue
        result = results[0]
        code = result.error.code if result.error else ""
        if result.status.value != "rejected" or not code:
            problems.append(f"{sid} {case.defect}: {result.status.value} {code!r}")
        if code == "INTERNAL_ERROR":
            problems.append(f"{sid} {case.defect}: internal error")
        if case.expect == UNDECODABLE:
            if code != "INVALID_PAYLOAD" or sid not in dead:
                problems.append(f"{sid} {case.defect}: undecodable but {code!r}, dead-lettered={sid in dead}")
            figures.undecodable += 1
        else:
            if sid in dead:
                message = result.error.message if result.error else ""
                problems.append(f"{sid} {case.defect}: decodable but dead-lettered ({code}: {message[:300]})")
            figures.rejected += 1
        figures.reasons[code] += 1
        figures.defects[case.defect.split("+")[0]] += 1
    state = sim.state()
    if state["orders"] or state["algoOrders"] or state["positions"]:
        problems.append(f"orders reached the exchange: {state['orders'][:3]} {state['algoOrders'][:3]}")
    figures.cases += len(cases)
    figures.batches += 1
    assert not problems, "\n".join(problems[:20])
