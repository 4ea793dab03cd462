"""The WebSocket API answer's envelope, read at the edge: what is an answer and what is unreadable."""

from __future__ import annotations

from typing import Any

import pytest

from quantum_exec.exchange.ws_api import Answer, Unreadable, decode_frame

LIMITS = [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300, "count": 1}]


@pytest.mark.parametrize(
    "frame", [b'{"id":"qx1","status":200,"res', b"[1, 200]", b'"qx1"', b"200", b"null", b"", "\u00e9"]
)
def test_a_frame_that_is_no_json_object_is_no_answer(frame: bytes | str) -> None:
    assert decode_frame(frame) is None


def test_a_json_object_is_an_answer_whatever_its_id() -> None:
    assert decode_frame('{"id": null, "status": 400}') == {"id": None, "status": 400}


def test_binances_envelopes_read() -> None:
    ok = Answer.of({"id": "qx1", "status": 200, "result": {"orderId": 7}, "rateLimits": LIMITS})
    assert ok == Answer(200, result={"orderId": 7}, rate_limits=LIMITS)
    refused = Answer.of(
        {"id": "qx2", "status": 400, "error": {"code": -2019, "msg": "Margin is insufficient."}}
    )
    assert refused == Answer(400, code=-2019, msg="Margin is insufficient.")
    # An error without a code (a 503 body as Binance sends it) keeps its status and message.
    assert Answer.of({"id": "qx3", "status": 503, "error": {"msg": "Unknown error"}}).code is None


@pytest.mark.parametrize(
    "body",
    [
        {"id": "qx1", "result": {"orderId": 7}},  # no status
        {"id": "qx1", "status": "200", "result": {"orderId": 7}},  # not an integer
        {"id": "qx1", "status": True, "result": {"orderId": 7}},
        {"id": "qx1", "status": 200},  # a 200 without a result
        {"id": "qx1", "status": 200, "error": {"code": -1000, "msg": "?"}},
        {"id": "qx1", "status": 400},  # an error status without an error
        {"id": "qx1", "status": 503, "error": "Service Unavailable"},
    ],
)
def test_an_envelope_that_is_not_binances_is_unreadable(body: dict[str, Any]) -> None:
    with pytest.raises(Unreadable):
        Answer.of(body)
