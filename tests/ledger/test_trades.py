"""The pure ledger: round trips, flips, idempotency, funding, persistence, the summary, queries."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.account.positions import PositionEvent, PositionKind, PositionReason
from quantum_exec.contracts.codec import dumps
from quantum_exec.ledger.query import QueryError, parse_summary_query, parse_trade_query
from quantum_exec.ledger.summary import summarize
from quantum_exec.ledger.trades import Ledger, Trade, covers, trade_from_json, trade_to_json, with_funding
from quantum_exec.ledger.view import format_summary, format_trades, trades_csv

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
D = Decimal


def ev(
    n: int,
    kind: str,
    amount: str,
    price: str,
    qty: str,
    *,
    reason: str = "entry",
    rp: str = "0",
    fee: str = "0",
    asset: str | None = "USDT",
    intent: str | None = None,
    entry: str | None = None,
    symbol: str = "BTCUSDT",
    seconds: int = 0,
) -> PositionEvent:
    return PositionEvent(
        event_id=f"{symbol}:{n}:{n}",
        symbol=symbol,
        kind=PositionKind(kind),
        reason=PositionReason(reason),
        position_amount=D(amount),
        entry_price=D(entry or price),
        price=D(price),
        quantity=D(qty),
        realized_pnl=D(rp),
        commission=D(fee),
        commission_asset=asset,
        intent_id=intent,
        order_id=n,
        time=T0 + timedelta(seconds=seconds or n),
    )


def test_a_long_closed_by_its_target_sums_what_was_booked() -> None:
    ledger = Ledger()
    assert ledger.apply(ev(1, "opened", "0.02", "100000", "0.02", fee="0.8", intent="i-1"), model="m1") == []
    [trade] = ledger.apply(
        ev(
            2,
            "closed",
            "0",
            "102000",
            "0.02",
            reason="take_profit",
            rp="40",
            fee="0.816",
            intent="i-1",
            seconds=92,
        )
    )
    assert (trade.side, trade.status, trade.exit_reason, trade.model) == (
        "LONG",
        "closed",
        "take_profit",
        "m1",
    )
    assert (trade.entry_price, trade.exit_price, trade.max_quantity, trade.closing_quantity) == (
        D("100000"),
        D("102000"),
        D("0.02"),
        D("0.02"),
    )
    assert (trade.realized_pnl, trade.commission, trade.net_pnl) == (D("40"), D("1.616"), D("38.384"))
    assert trade.duration_s == D(91) and trade.intent_ids == ("i-1",) and trade.events == 2
    assert ledger.open_trades() == []


def test_partial_stop_fills_and_pyramiding_weight_the_prices() -> None:
    ledger = Ledger()
    ledger.apply(ev(1, "opened", "0.01", "100", "0.01", intent="a"))
    ledger.apply(ev(2, "increased", "0.03", "103", "0.02", intent="b"))
    ledger.apply(ev(3, "reduced", "0.01", "98", "0.02", reason="stop_loss", rp="-0.08", intent="a"))
    [trade] = ledger.apply(ev(4, "closed", "0", "97", "0.01", reason="stop_loss", rp="-0.05", intent="b"))
    assert trade.entry_price == D("102") and trade.exit_price == (D("0.02") * 98 + D("0.01") * 97) / D("0.03")
    assert (
        trade.max_quantity == D("0.03")
        and trade.realized_pnl == D("-0.13")
        and trade.exit_reason == "stop_loss"
    )
    assert trade.intent_ids == ("a", "b") and trade.events == 4


def test_a_flip_closes_one_trade_and_opens_the_next_splitting_the_commission_exactly() -> None:
    ledger = Ledger()
    ledger.apply(ev(1, "opened", "0.010", "100", "0.010", fee="0.0004", intent="long"), model="m-long")
    [closed] = ledger.apply(
        ev(2, "flipped", "-0.015", "101", "0.025", rp="0.01", fee="0.00101", intent="flip"), model="m-short"
    )
    [short] = ledger.open_trades()
    assert (
        closed.exit_reason == "flip"
        and closed.closing_quantity == D("0.010")
        and closed.realized_pnl == D("0.01")
    )
    assert closed.commission + short.commission == D("0.0004") + D("0.00101")
    assert closed.commission == D("0.00080400") and short.commission == D("0.00060600")
    assert (short.side, short.max_quantity, short.entry_price, short.model) == (
        "SHORT",
        D("0.015"),
        D("101"),
        "m-short",
    )
    assert short.realized_pnl == 0 and short.intent_ids == ("flip",)


def test_replays_are_ignored_and_funding_is_booked_once() -> None:
    ledger = Ledger()
    opened = ev(1, "opened", "-1", "50", "1")
    ledger.apply(opened)
    assert ledger.apply(opened) == []
    ledger.apply_funding("BTCUSDT", D("-0.25"), T0 + timedelta(hours=1), "f-1")
    ledger.apply_funding("BTCUSDT", D("-0.25"), T0 + timedelta(hours=1), "f-1")
    ledger.apply_funding("ETHUSDT", D("5"), T0 + timedelta(hours=1), "f-2")  # nothing open there
    closing = ev(2, "closed", "0", "49", "1", reason="close_intent", rp="1", seconds=7200)
    [trade] = ledger.apply(closing)
    assert ledger.apply(closing) == []
    assert trade.funding == D("-0.25") and trade.net_pnl == D("0.75") and trade.side == "SHORT"


def test_funding_belongs_to_the_trade_open_at_the_settlement() -> None:
    ledger = Ledger()
    ledger.apply(ev(1, "opened", "1", "50", "1"))
    assert not ledger.apply_funding("BTCUSDT", D("-1"), T0 + timedelta(seconds=1), "f-at-open")
    assert ledger.apply_funding("BTCUSDT", D("-0.25"), T0 + timedelta(seconds=5), "f-1")
    [trade] = ledger.apply(ev(2, "closed", "0", "51", "1", reason="close_intent", rp="1", seconds=10))
    assert trade.funding == D("-0.25")
    assert covers(trade, T0 + timedelta(seconds=10)) and not covers(trade, T0 + timedelta(seconds=11))
    assert not ledger.apply_funding("BTCUSDT", D("-0.5"), T0 + timedelta(seconds=10), "f-late")  # closed
    late = with_funding(trade, D("-0.5"))
    assert (late.funding, late.net_pnl) == (D("-0.75"), trade.net_pnl - D("0.5"))


def test_the_open_state_survives_a_restart_exactly() -> None:
    ledger = Ledger()
    ledger.apply(ev(1, "opened", "0.5", "3000.12", "0.5", fee="0.75006", asset="USDT", intent="x"), model="m")
    ledger.apply(ev(2, "increased", "0.6", "3001", "0.1", fee="0.0003", asset="BNB"))
    stored = json.loads(json.dumps(ledger.to_record()))
    again = Ledger.from_record(stored)
    assert again.open_trades() == ledger.open_trades()
    assert again.apply(ev(2, "increased", "0.6", "3001", "0.1")) == []  # still known as applied
    [trade] = again.apply(ev(3, "closed", "0", "3010", "0.6", reason="external", rp="5.868"))
    assert trade.other_commissions == {"BNB": D("0.0003")} and trade.commission == D("0.75006")
    assert trade.exit_reason == "external" and trade.model == "m"


def test_a_close_of_a_position_never_seen_opening_is_skipped_not_crashed() -> None:
    ledger = Ledger()
    assert ledger.apply(ev(1, "closed", "0", "10", "1", reason="liquidation")) == []
    assert ledger.skipped == 1
    ledger.apply(ev(2, "reduced", "2", "10", "1", entry="9"))  # a position from before: opened at its entry
    [trade] = ledger.open_trades()
    assert trade.entry_price == D("9") and trade.max_quantity == D("3")


def _trade(net: str, day: int, symbol: str = "BTCUSDT", model: str | None = "m") -> Trade:
    closed = T0 + timedelta(days=day)
    return Trade(
        trade_id=f"t{day}",
        symbol=symbol,
        side="LONG",
        status="closed",
        max_quantity=D(1),
        closing_quantity=D(1),
        entry_price=D(1),
        exit_price=D(1),
        opened_at=closed - timedelta(seconds=60),
        closed_at=closed,
        duration_s=D(60),
        exit_reason="take_profit",
        realized_pnl=D(net) + 1,
        commission=D(1),
        other_commissions={},
        funding=D(0),
        net_pnl=D(net),
        intent_ids=(),
        model=model,
        strategy=None,
        events=2,
    )


def test_the_summary_figures_by_hand() -> None:
    trades = [
        _trade("10", 0),
        _trade("-4", 1),
        _trade("-8", 2, "ETHUSDT", None),
        _trade("6", 3),
        _trade("3", 3),
    ]
    s = summarize(trades)
    # cumulative: 10, 6, -2, 4, 7 -> peak 10, trough -2: drawdown 12
    assert (s["total_trades"], s["winning_trades"], s["losing_trades"]) == (5, 3, 2)
    assert s["win_rate"] == D("0.6") and s["net_pnl"] == D(7) and s["gross_pnl"] == D(12)
    assert s["profit_factor"] == D("1.5833") and s["expectancy"] == D("1.4") and s["max_drawdown"] == D(12)
    assert s["average_win"] == D(19) / 3 and s["average_loss"] == D(-6)
    assert s["best_trade"] == {"trade_id": "t0", "net_pnl": D(10)} and s["worst_trade"]["net_pnl"] == D(-8)
    assert s["by_model"]["unknown"]["total_trades"] == 1 and s["by_symbol"]["BTCUSDT"]["net_pnl"] == D(15)
    assert s["daily"][-1] == {"date": "2026-12-01", "net_pnl": D(9), "trades": 2}
    empty = summarize([])
    assert empty["win_rate"] == 0 and empty["profit_factor"] is None and empty["total_trades"] == 0
    assert "win rate 60 %" in format_summary(s)
    # No trade: every ratio is undefined and shown as "-", the same way each time.
    headline = format_summary(empty).splitlines()
    assert "win rate -" in headline[0]
    assert headline[2] == "profit factor -  expectancy -  max drawdown 0"


def test_trades_round_trip_through_json_and_csv() -> None:
    trade = _trade("2.50000000", 1)
    assert trade_from_json(json.loads(dumps(trade_to_json(trade)), parse_float=Decimal)) == trade
    csv_text = trades_csv([trade])
    assert csv_text.splitlines()[1].split(",")[15] == "2.50000000"
    assert "take_profit" in format_trades([trade])
    # Prices exactly as booked: a DOGE fill at 0.15997 is not shown as 0.16.
    doge = dataclasses.replace(trade, entry_price=D("0.15997"), exit_price=D("0.16012"))
    [row] = format_trades([doge]).splitlines()[2:]
    assert " 0.15997 " in row and " 0.16012 " in row


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"symbol": "btc usdt"}, "symbol"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-29", "until": "2026-11-28"}, "since"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_queries_name_the_parameter(params: dict[str, str], parameter: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_trade_query(params)
    assert caught.value.parameter == parameter
    body: dict[str, Any] = caught.value.to_json()
    assert body["error"]["parameter"] == parameter and parameter in body["error"]["message"]


def test_queries_parse_dates_and_epoch_ms() -> None:
    q = parse_trade_query(
        {"symbol": "ethusdt", "since": "2026-11-28", "until": "1795939200000", "limit": "5"}
    )
    assert q.symbol == "ETHUSDT" and q.since == datetime(2026, 11, 28, tzinfo=UTC) and q.limit == 5
    assert q.until == datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    with pytest.raises(QueryError):
        parse_summary_query({"limit": "5"})


def test_a_report_of_an_external_position_moves_no_trade() -> None:
    ledger = Ledger()
    ledger.apply(ev(1, "opened", "0.5", "100", "0.5"))
    report = ev(2, "opened", "0.8", "100", "0.3", reason="external").model_copy(update={"order_id": 0})
    assert ledger.apply(report) == []
    [trade] = ledger.open_trades()
    assert trade.max_quantity == D("0.5") and trade.events == 1
