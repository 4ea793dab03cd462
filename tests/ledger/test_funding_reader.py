"""The funding reader alone: a settlement stays owed until the income history lists it, the cursor
is what the history returned, and a row listed after its siblings is taken once, across restarts."""

from __future__ import annotations

import json
from decimal import Decimal

from quantum_exec.exchange.wire import Income
from quantum_exec.ledger.funding import FUNDING_RECHECK, SETTLEMENT_SLACK_MS, FundingReader

T = 1_796_025_600_000  # a settlement (08:00 UTC)


def row(tran_id: str, symbol: str, at: int = T, income: str = "-0.5") -> Income:
    return Income(tran_id, symbol, "FUNDING_FEE", Decimal(income), "USDT", at)


class History:
    """What GET /fapi/v1/income lists right now; records each request's startTime."""

    def __init__(self) -> None:
        self.listed: list[Income] = []
        self.starts: list[int] = []

    async def __call__(self, start_ms: int) -> list[Income]:
        self.starts.append(start_ms)
        return [r for r in self.listed if r.time_ms >= start_ms]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_reported_settlement_is_asked_for_until_listed() -> None:
    history, clock = History(), Clock()
    reader = FundingReader(history, clock=clock)
    assert await reader.new_rows(0) is None  # nothing reported: nothing asked
    assert await reader.new_rows(T + 40) == []  # reported (a little after the rows' time), not listed
    assert reader.through_ms == 0 and reader.answered_ms == 0  # the cursor did not move to the report
    assert await reader.new_rows(T + 40) is None  # not before the recheck is due
    clock.now += FUNDING_RECHECK.delay(0)
    history.listed = [row("1", "BTCUSDT")]
    assert await reader.new_rows(T + 40) == [row("1", "BTCUSDT")]
    assert (reader.through_ms, reader.answered_ms) == (T, T + 40)
    assert await reader.new_rows(T + 40) is None  # answered: no more requests


async def test_a_row_listed_after_its_siblings_is_taken_once_even_after_a_restart() -> None:
    history, clock = History(), Clock()
    reader = FundingReader(history, clock=clock)
    history.listed = [row("1", "BTCUSDT")]
    assert await reader.new_rows(T + 40) == [row("1", "BTCUSDT")]
    history.listed.append(row("2", "ETHUSDT"))  # the ETH row of the same settlement, listed late
    stored = json.loads(json.dumps(reader.to_record()))
    again = FundingReader(history, clock=clock)
    again.load(stored)
    nxt = T + 8 * 3_600_000
    history.listed.append(row("3", "BTCUSDT", nxt))
    assert await again.new_rows(nxt + 40) == [row("2", "ETHUSDT"), row("3", "BTCUSDT", nxt)]
    assert history.starts[-1] == T - SETTLEMENT_SLACK_MS  # read again from before the cursor
    assert again.through_ms == nxt


async def test_a_state_from_before_the_reader_resumes_after_its_cursor() -> None:
    history = History()
    history.listed = [row("1", "BTCUSDT"), row("2", "BTCUSDT", T + 8 * 3_600_000)]
    reader = FundingReader(history, clock=Clock())
    reader.load({"fetched_ms": T + 40})  # the old ledger had taken row 1
    assert await reader.new_rows(T + 8 * 3_600_000 + 40) == [row("2", "BTCUSDT", T + 8 * 3_600_000)]
