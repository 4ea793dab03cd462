"""`quantum-exec results` lists an intent still working (a LIMIT resting on the exchange) as
`working` beside the results, and stops listing it once its one result is published: a real
`serve` on embedded defaults (its Redis, the simulator), the real command."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.test_stop_signals import Serve
from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def rows(serve: Serve) -> list[list[str]]:
    out = serve.cli("results", "-n", "20")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    return [line.split() for line in out.stdout.splitlines()[2:]]


def test_results_lists_a_resting_limit_as_working_until_its_result(tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    try:
        out = serve.cli(
            "submit", "--intent-id", "rest-row", "--symbol", "DOGEUSDT", "--side", "BUY",
            "--quantity", "100", "--type", "LIMIT", "--price", "0.15997", "--expire-after", "20",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr

        def listed() -> bool:
            return any(r[0] == "rest-row" for r in rows(serve))

        wait_until(listed, 30, "the LIMIT listed by `results`")
        [row] = [r for r in rows(serve) if r[0] == "rest-row"]
        assert row[1:4] == ["DOGEUSDT", "BUY", "working"], row
        assert " ".join(row[4:]).endswith("LIMIT at 0.15997, qty 100: no result yet"), row

        # Its expiry ends it: then its result is listed, and no working row any more.
        def answered() -> bool:
            found = [r for r in rows(serve) if r[0] == "rest-row"]
            return len(found) == 1 and found[0][3] != "working"

        wait_until(answered, 60, "the expired LIMIT's result")
    finally:
        serve.close()
