"""What the table commands print, checked on their own (no service)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from quantum_exec.app.results_view import COLUMNS, FOLLOW_WIDTHS
from quantum_exec.core.table import render_table

EXE = str(Path(sys.executable).parent / "quantum-exec")


def test_follow_rows_line_up_under_the_header_printed_first() -> None:
    first = [
        (
            "short-id",
            "BTCUSDT",
            "BUY",
            "filled",
            "0.005",
            "95234.5",
            "93806",
            "98091.5",
            "protected",
            "0.2 USDT",
            "",
        )
    ]
    later = [
        (
            "a-much-longer-intent-id-x",
            "1000PEPEUSDT",
            "SELL",
            "rejected",
            "-",
            "-",
            "-",
            "-",
            "none",
            "-",
            "X: y",
        ),
    ]
    header = render_table(COLUMNS, first, min_widths=FOLLOW_WIDTHS).splitlines()
    more = render_table(COLUMNS, later, min_widths=FOLLOW_WIDTHS).splitlines()[2:]  # rows only
    starts = [i for i, ch in enumerate(header[1]) if ch == "-" and (i == 0 or header[1][i - 1] == " ")]
    for line in (header[0], header[2], *more):
        for start in (s for s in starts[1:] if s < len(line)):  # an empty last cell is trimmed
            assert line[start - 2 : start] == "  " and line[start] != " ", (line, start)


def test_the_simulator_logs_structured_fields_like_the_service(tmp_path: Path) -> None:
    """`quantum-exec sim`: its address alone on stdout's first line, its log lines JSON on stderr
    with the fields as fields (not ``sim.started base_url=...`` inside the event)."""
    with (tmp_path / "sim.err").open("wb") as err:
        sim = subprocess.Popen([EXE, "sim", "--port", "0"], stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert sim.stdout is not None
            url = sim.stdout.readline().split()[3]
        finally:
            sim.send_signal(signal.SIGINT)
            sim.wait(timeout=30)
    records = [json.loads(line) for line in (tmp_path / "sim.err").read_text().splitlines()]
    by_event = {r["event"]: r for r in records}
    assert by_event["sim.started"]["base_url"] == url and by_event["sim.started"]["logger"] == "binance_sim"
    assert by_event["sim.stopped"]["base_url"] == url
