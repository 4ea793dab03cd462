"""Pure rate limiter and fault rules, plus a fuzz test: bad input never escapes as anything but SimError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binance_sim.engine import Engine
from binance_sim.errors import SimError
from binance_sim.faults import FaultSet
from binance_sim.market import load_market
from binance_sim.params import Params
from binance_sim.ratelimit import Limits, RateLimiter

pytestmark = pytest.mark.timeout(60)


def test_weight_window_resets_each_minute() -> None:
    limiter = RateLimiter(Limits(weight_per_minute=10))
    start = 1_800_000_000_000 - 1_800_000_000_000 % 60_000
    assert limiter.check("ip", 10, is_order=False, now_ms=start).allowed
    refused = limiter.check("ip", 1, is_order=False, now_ms=start + 59_000)
    assert (refused.status, refused.code, refused.retry_after_s) == (429, -1003, 1)
    assert limiter.check("ip", 1, is_order=False, now_ms=start + 60_000).used_weight == 1
    assert limiter.check("other-ip", 1, is_order=False, now_ms=start).allowed


def test_ban_after_ignoring_429s() -> None:
    limiter = RateLimiter(Limits(weight_per_minute=1, ban_after_429s=2, ban_s=120))
    now = 1_800_000_000_000
    statuses = [limiter.check("ip", 1, is_order=False, now_ms=now + i).status for i in range(5)]
    assert statuses == [200, 429, 429, 418, 418]
    assert limiter.check("ip", 1, is_order=False, now_ms=now + 121_000).status == 200


def test_fault_counts_and_targeting() -> None:
    faults = FaultSet()
    faults.apply(
        {
            "faults": [
                {"kind": "latency", "ms": 5, "count": 2},
                {"kind": "unknown_after", "method": "POST", "path": "/fapi/v1/order", "count": 1},
                {"kind": "error", "path": "/fapi/v1/*", "status": 500, "code": -1001, "msg": "x"},
            ]
        }
    )
    plan = faults.plan("GET", "/fapi/v1/order")
    assert plan.delay_ms == 5 and plan.before is not None and plan.before.kind == "error"
    plan = faults.plan("POST", "/fapi/v1/order")
    assert plan.delay_ms == 5 and plan.after is not None and plan.after.kind == "unknown_after"
    plan = faults.plan("POST", "/fapi/v1/order")
    assert plan.delay_ms == 0 and plan.after is None and plan.before is not None
    assert [r.kind for r in faults.rules] == ["error"]
    faults.apply({"faults": [], "clock_skew_ms": 1500})
    assert faults.rules == [] and faults.clock_skew_ms == 1500


@pytest.mark.parametrize(
    "spec",
    [
        {"faults": {}},
        {"faults": [{"kind": "latency", "ms": -1}]},
        {"faults": [{"kind": "error", "count": 0}]},
        {"faults": [{"kind": "error", "status": "503"}]},
        {"mode": "merge"},
        {"clock_skew_ms": "5"},
    ],
)
def test_bad_fault_specs_are_refused(spec: dict) -> None:
    with pytest.raises(SimError):
        FaultSet().apply(spec)


KEYS = st.sampled_from(
    [
        "symbol",
        "side",
        "type",
        "quantity",
        "price",
        "timeInForce",
        "reduceOnly",
        "positionSide",
        "newClientOrderId",
        "newOrderRespType",
        "closePosition",
        "triggerPrice",
        "algoType",
        "callbackRate",
        "activatePrice",
        "orderId",
        "origClientOrderId",
        "algoId",
        "clientAlgoId",
        "leverage",
        "marginType",
        "dualSidePosition",
        "limit",
    ]
)
VALUES = st.one_of(
    st.sampled_from(
        [
            "BTCUSDT",
            "SRMUSDT",
            "BUY",
            "SELL",
            "MARKET",
            "LIMIT",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TRAILING_STOP_MARKET",
            "GTC",
            "GTX",
            "IOC",
            "true",
            "false",
            "LONG",
            "BOTH",
            "CONDITIONAL",
            "0.010",
            "95000.0",
            "1",
            "0",
            "125",
            "ISOLATED",
            "1000",
            "-1",
            "1e5",
            "NaN",
        ]
    ),
    st.text(max_size=12),
)
_ENGINE = Engine(load_market(), lambda: 1_800_000_000_000)
_CALLS = [
    _ENGINE.new_order,
    _ENGINE.new_algo_order,
    _ENGINE.query_order,
    _ENGINE.cancel_order,
    _ENGINE.query_algo_order,
    _ENGINE.cancel_algo_order,
    _ENGINE.change_leverage,
    _ENGINE.change_margin_type,
    _ENGINE.change_position_mode,
    _ENGINE.list_all_orders,
    _ENGINE.user_trades,
    _ENGINE.premium_index,
]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=10), st.sampled_from(range(len(_CALLS))))
def test_engine_answers_any_input_with_a_binance_error_or_a_result(raw: dict[str, str], call: int) -> None:
    try:
        _CALLS[call](Params(raw))
    except SimError as exc:
        assert exc.code < 0 and exc.msg
