"""Which events are notices and their lines; merging; reading each API's answer (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import SecretStr

from quantum_exec.account.positions import PositionEvent
from quantum_exec.contracts import ExecutionResult, ResultError
from quantum_exec.ledger.trades import Trade
from quantum_exec.notify.channels import Slack, Telegram, Webhook, merge
from quantum_exec.notify.outbox import Queued
from quantum_exec.notify.render import (
    position_notice,
    result_notice,
    risk_notice,
    summary_notice,
    trade_notice,
    user_stream_notice,
)

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
TOKEN = "123456:AAE-the-bot-token-xyz"


def _result(**values: object) -> ExecutionResult:
    return ExecutionResult.model_validate(
        {"symbol": "BTCUSDT", "action": "BUY", "intent_id": "i-1", **values}
    )


def test_results_told_and_not_told() -> None:
    assert result_notice(_result(status="filled", protection="protected")) is None
    assert result_notice(_result(status="filled", action="CLOSE", protection="not_requested")) is None
    rejected = result_notice(
        _result(
            status="rejected",
            error=ResultError(
                code="NOTIONAL_BELOW_MIN", source="validation", message="notional 95.2345 below 100"
            ),
        )
    )
    assert rejected is not None and rejected.event_id == "result:i-1"
    assert rejected.text == "BTCUSDT BUY rejected: NOTIONAL_BELOW_MIN notional 95.2345 below 100 [i-1]"
    emergency = result_notice(
        _result(
            status="filled",
            executed_quantity=Decimal("0.021"),
            avg_price=Decimal("95234.50"),
            protection="closed_emergency",
            emergency_close={
                "client_order_id": "qx-f",
                "side": "SELL",
                "executed_quantity": "0.021",
                "avg_price": "95100.1",
            },
            error={"code": "PROTECTION_FAILED", "source": "exchange", "message": "-2021 would trigger"},
        )
    )
    assert emergency is not None
    assert emergency.text == (
        "BTCUSDT BUY filled, 0.021 @ 95234.5, EMERGENCY CLOSED 0.021 @ 95100.1: "
        "PROTECTION_FAILED -2021 would trigger [i-1]"
    )
    unprotected = result_notice(
        _result(status="filled", executed_quantity="1", avg_price="2", protection="unprotected")
    )
    assert unprotected is not None and "UNPROTECTED POSITION" in unprotected.text


def _event(kind: str, reason: str, amount: str = "0.01") -> PositionEvent:
    return PositionEvent(
        event_id="BTCUSDT:7:9",
        symbol="BTCUSDT",
        kind=kind,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        position_amount=Decimal(amount),
        entry_price=Decimal(95000),
        price=Decimal("93329.90"),
        quantity=Decimal("0.011"),
        realized_pnl=Decimal("-18.3601"),
        commission=Decimal("0.00513314"),
        commission_asset="USDT",
        order_id=7,
        time=NOW,
    )


def test_position_events_partial_fires_and_liquidations_only() -> None:
    partial = position_notice(_event("reduced", "stop_loss"))
    assert partial is not None and partial.text == (
        "BTCUSDT stop loss fired: 0.011 @ 93329.9, realized -18.3601, fee 0.00513314 USDT, position now 0.01"
    )
    assert position_notice(_event("closed", "stop_loss", "0")) is None  # the closed trade tells it
    assert position_notice(_event("opened", "entry")) is None
    liquidation = position_notice(_event("closed", "liquidation", "0"))
    assert liquidation is not None and liquidation.text.startswith("BTCUSDT LIQUIDATION: 0.011")


def _trade(net: str) -> Trade:
    return Trade(
        trade_id="BTCUSDT:1:1",
        symbol="BTCUSDT",
        side="LONG",
        status="closed",
        max_quantity=Decimal("0.021"),
        closing_quantity=Decimal("0.021"),
        entry_price=Decimal("95234.5"),
        exit_price=Decimal("93329.9"),
        opened_at=NOW,
        closed_at=NOW,
        duration_s=Decimal("7980.5"),
        exit_reason="stop_loss",
        realized_pnl=Decimal("-39.9966"),
        commission=Decimal("1.98"),
        other_commissions={},
        funding=Decimal("0"),
        net_pnl=Decimal(net),
        intent_ids=("i-1",),
        model=None,
        strategy=None,
        events=2,
    )


def test_a_closed_trade_with_its_exact_net_pnl() -> None:
    notice = trade_notice(_trade("-41.9766"))
    assert notice is not None and notice.event_id == "trade:BTCUSDT:1:1"
    assert notice.text == (
        "BTCUSDT LONG closed by its stop loss: 0.021 @ 95234.5 -> 93329.9, net PnL -41.9766 USDT "
        "(realized -39.9966, fees 1.98, funding 0) in 2h13m"
    )
    summary = summary_notice(NOW, [_trade("-41.9766"), _trade("10.5")])
    assert summary.event_id == "summary:2026-12-06" and "2 trades" in summary.text


def test_risk_events_and_the_user_stream() -> None:
    # The governor's payloads (issue #28), as published on quantum:stream:risk.event.
    transition = json.dumps(
        {
            "kind": "transition",
            "seq": 3,
            "from": "ACTIVE",
            "to": "HALTED",
            "reason": "daily loss",
            "by": "governor",
            "limit": "max_daily_loss_usd",
            "numbers": {"daily_pnl": -512.30, "max": 500},
            "flatten": None,
            "force": False,
            "time": "2026-12-06T10:00:00+00:00",
        }
    )
    notice = risk_notice("1-0", {"event_type": "risk.event", "payload": transition})
    assert notice.event_id == "risk:1-0"
    assert notice.text == (
        "RISK ACTIVE -> HALTED (daily loss) by governor, limit max_daily_loss_usd: daily_pnl=-512.3, max=500"
    )
    limits = json.dumps(
        {"kind": "limits", "by": "operator", "numbers": {"max_open_positions": "3", "max_leverage": None}}
    )
    assert risk_notice("2-0", {"payload": limits}).text == (
        "RISK limits changed by operator: max_open_positions=3, max_leverage=default"
    )
    done = json.dumps(
        {
            "kind": "flatten_done",
            "from": "HALTED",
            "to": "HALTED",
            "flatten": "f1",
            "reason": "all closed",
            "by": "governor",
            "numbers": {"closes": 2, "positions": 0},
        }
    )
    assert risk_notice("3-0", {"payload": done}).text == (
        "RISK flatten done f1 (all closed) by governor: closes=2, positions=0"
    )
    flat = risk_notice("4-0", {"from": "HALTED", "to": "ACTIVE", "who": "operator"})
    assert flat.text == "RISK HALTED -> ACTIVE by operator"
    down = user_stream_notice(datetime(2026, 12, 6, 9, 58, 55, tzinfo=UTC), NOW, back=False)
    assert down.text.startswith("USER DATA STREAM DOWN since 09:58:55 UTC (65 s)")
    back = user_stream_notice(datetime(2026, 12, 6, 9, 58, 55, tzinfo=UTC), NOW, back=True)
    assert back.text == "user data stream back after 1m05s"


def test_merging_fits_the_channels_limit() -> None:
    batch = [Queued(f"{n}-0", f"e{n}", "result", "x" * 1000) for n in range(10)]
    text, used = merge(batch, 4096)
    assert used == 4 and len(text) == 4 * 1000 + 3
    text, used = merge([Queued("1-0", "e", "result", "y" * 5000)], 4096)
    assert used == 1 and len(text) == 4096 and text.endswith("...")
    text, used = merge(batch[:2], 4096, heading="(resent)")
    assert text.split("\n")[0] == "(resent)" and used == 2


def test_each_apis_request_and_answer_and_the_token_is_never_in_a_detail() -> None:
    telegram = Telegram(SecretStr(TOKEN), "-100", "http://127.0.0.1:1/")
    request = telegram.request("hello", [])
    assert request.url == f"http://127.0.0.1:1/bot{TOKEN}/sendMessage"
    assert request.body == {"chat_id": "-100", "text": "hello", "disable_web_page_preview": True}
    assert telegram.answer(200, {}, b'{"ok": true, "result": {}}').ok
    limited = telegram.answer(
        429,
        {},
        b'{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7",'
        b'"parameters":{"retry_after":7}}',
    )
    assert not limited.ok and limited.retry_after_s == 7 and "429" in limited.detail
    assert (
        TOKEN
        not in telegram.answer(401, {}, b'{"ok":false,"error_code":401,"description":"Unauthorized"}').detail
    )
    slack = Slack(SecretStr("https://hooks.slack.com/services/T/B/X"))
    assert slack.request("hi", []).body == {"text": "hi"}
    assert slack.answer(429, {"Retry-After": "3"}, b"rate_limited").retry_after_s == 3
    hook = Webhook(SecretStr("https://example.org/hook"))
    req = hook.request("a\nb", [Queued("5-0", "e1", "result", "a"), Queued("6-0", "e2", "risk", "b")])
    assert req.headers == {"X-Quantum-Delivery": "6-0"}
    assert req.body["notices"] == [
        {"event_id": "e1", "kind": "result", "text": "a"},
        {"event_id": "e2", "kind": "risk", "text": "b"},
    ]
