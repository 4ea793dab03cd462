"""Shared pieces of the benchmark: the 50-symbol fixture, the workload, child processes, statistics.

Process layout (2 cores): the simulator, Redis, the service under test and the naive baseline each
run in their own process; this harness only publishes intents and reads results, so it never
shares an event loop with the code it measures.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import redis

API_KEY = "quantum-sim-key"
API_SECRET = "quantum-sim-secret"
INTENT_STREAM = "quantum:stream:trade.intent"
RESULT_STREAM = "quantum:stream:execution.result"
BENCH_SYMBOLS = tuple(f"B{i:02d}USDT" for i in range(50))
TEMPLATE_SYMBOL = "LINKUSDT"
POSITION_USD = 500.0
LEVERAGE = 5
START_DEADLINE_S = 30.0
BALANCE = "1000000000"


def out(text: str = "") -> None:
    """Progress and tables go to stdout, unbuffered."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# -- fixture -----------------------------------------------------------------------------------


def mark_of(index: int) -> Decimal:
    """A mark price per synthetic symbol (10.000 .. 34.500, tick 0.001 like the template)."""
    return Decimal(10) + Decimal(index) / 2


def write_fixture(directory: Path) -> tuple[Path, Path]:
    """exchange_info/market_state of the shipped fixture plus B00USDT..B49USDT cloned from LINKUSDT."""
    fixtures = resources.files("binance_sim") / "fixtures"
    info = json.loads((fixtures / "exchange_info.json").read_text())
    state = json.loads((fixtures / "market_state.json").read_text())
    template = next(s for s in info["symbols"] if s["symbol"] == TEMPLATE_SYMBOL)
    for index, symbol in enumerate(BENCH_SYMBOLS):
        clone = copy.deepcopy(template)
        clone["symbol"] = clone["pair"] = symbol
        clone["baseAsset"] = symbol.removesuffix("USDT")
        info["symbols"].append(clone)
        state["markPrices"][symbol] = str(mark_of(index))
        state["maxLeverage"][symbol] = 50
    directory.mkdir(parents=True, exist_ok=True)
    info_path, state_path = directory / "exchange_info.json", directory / "market_state.json"
    info_path.write_text(json.dumps(info))
    state_path.write_text(json.dumps(state))
    return info_path, state_path


# -- workload ----------------------------------------------------------------------------------


def open_intent(intent_id: str, symbol: str, side: str) -> dict[str, Any]:
    """One open as a strategy sends it: $500 at leverage 5, the reference price, SL 2 % / TP 4 %.

    BENCH_PROTECTION_TIMING=with_entry: absolute triggers (2 % / 4 % from the reference), which the
    service can send beside the entry; percentages otherwise (placed after the fill).
    """
    mark = float(mark_of(BENCH_SYMBOLS.index(symbol)))
    intent: dict[str, Any] = {
        "intent_id": intent_id,
        "symbol": symbol,
        "side": side,
        "position_size_usd": POSITION_USD,
        "entry_price": mark,
        "leverage": LEVERAGE,
    }
    if os.environ.get("BENCH_PROTECTION_TIMING") == "with_entry":
        sign = 1 if side == "BUY" else -1
        intent["stop_loss"] = round(mark * (1 - 0.02 * sign), 6)
        intent["take_profit"] = round(mark * (1 + 0.04 * sign), 6)
    else:
        intent["stop_loss_pct"], intent["take_profit_pct"] = 2, 4
    return intent


def workload(tag: str, count: int, symbols: Sequence[str] = BENCH_SYMBOLS) -> list[dict[str, Any]]:
    """``count`` intents: rounds of one open per symbol (BUY, then SELL next round) then one CLOSE each.

    Every symbol alternates open and close, so protective orders never pile up (the exchange allows
    200 open conditional orders) and each open lands on a symbol whose leverage is already set.
    """
    intents: list[dict[str, Any]] = []
    n = 0
    rnd = 0
    while len(intents) < count:
        side = "BUY" if rnd % 2 == 0 else "SELL"
        for phase in ("open", "close"):
            for symbol in symbols:
                n += 1
                if phase == "open":
                    intents.append(open_intent(f"{tag}-{n}", symbol, side))
                else:
                    intents.append({"intent_id": f"{tag}-{n}", "symbol": symbol, "side": "CLOSE"})
        rnd += 1
    return intents[:count]


def opens_workload(tag: str, count: int, symbols: Sequence[str] = BENCH_SYMBOLS) -> list[dict[str, Any]]:
    """``count`` opens, one symbol after the other (half the symbols long, half short, always the
    same side): repeated signals on warm symbols, each adding to a position that already holds
    our protection. No CLOSE: every intent costs the account 3 orders (entry, SL, TP)."""
    return [
        open_intent(f"{tag}-{n}", symbols[n % len(symbols)], "BUY" if n % len(symbols) % 2 == 0 else "SELL")
        for n in range(count)
    ]


def whole_rounds(count: int, symbols: int = len(BENCH_SYMBOLS)) -> int:
    """``count`` rounded up to whole open+close rounds, so every position ends closed."""
    size = 2 * symbols
    return max(size, math.ceil(count / size) * size)


# -- child processes ---------------------------------------------------------------------------


@dataclass
class Child:
    """A child process we started (ended by its own id only)."""

    proc: subprocess.Popen[str]
    log_path: Path | None = None

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(timeout=10)
        return self.proc.returncode

    @property
    def pid(self) -> int:
        return self.proc.pid


def _env() -> dict[str, str]:
    root = Path(__file__).resolve().parent.parent
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


def start_child(args: list[str], log_path: Path, ready_prefix: str) -> tuple[Child, str]:
    """Start ``python -m <args>``; stderr goes to ``log_path``, stdout must print ``ready_prefix...``."""
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=_env(),
    )
    log.close()
    child = Child(proc, log_path)
    assert proc.stdout is not None
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(ready_prefix):
            return child, line[len(ready_prefix) :].strip()
    child.stop()
    tail = log_path.read_text()[-3000:] if log_path.exists() else ""
    raise RuntimeError(f"{' '.join(args)} did not start:\n{tail}")


@dataclass
class Sim:
    """The simulator in its own process, with its control surface."""

    child: Child
    url: str
    latency_ms: int
    http: Any = field(default=None)

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        import urllib.request

        data = orjson.dumps(body or {})
        req = urllib.request.Request(
            f"{self.url}/_sim/{path}", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as reply:
            return orjson.loads(reply.read())

    def state(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/_sim/state", timeout=60) as reply:
            result: dict[str, Any] = orjson.loads(reply.read())
            return result

    def measure_rtt(self, samples: int = 200) -> dict[int, float]:
        """Round trip of an unsigned GET /fapi/v1/time on a kept-alive connection, ms (p50, p90)."""
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        times: list[float] = []
        try:
            for _ in range(samples):
                started = time.perf_counter()
                conn.request("GET", "/fapi/v1/time")
                conn.getresponse().read()
                times.append((time.perf_counter() - started) * 1000)
        finally:
            conn.close()
        return {50: pct(times, 50), 90: pct(times, 90)}

    def fresh(self, *, rate_limits: bool) -> None:
        """Back to the starting account, funded so fees never run the wallet dry."""
        self.control("reset")
        self.control("rateLimits", {"enabled": rate_limits})
        self.control("balance", {"asset": "USDT", "balance": BALANCE})
        # BENCH_STREAM_REORDER=SEED:MAX_MS: the user-stream events of different types leave in a
        # seeded order (the simulator's reorder fault), to measure what it costs the follower.
        reorder = os.environ.get("BENCH_STREAM_REORDER")
        if reorder:
            seed, max_ms = (int(x) for x in reorder.split(":"))
            self.control("faults", {"stream_reorder": {"seed": seed, "max_delay_ms": max_ms}})


def start_sim(workdir: Path, info: Path, state: Path, latency_ms: int, rate_limits: bool) -> Sim:
    args = [
        "bench.simserver",
        "--latency-ms",
        str(latency_ms),
        "--exchange-info",
        str(info),
        "--market-state",
        str(state),
    ]
    if not rate_limits:
        args.append("--no-rate-limits")
    child, url = start_child(args, workdir / f"sim-{latency_ms}ms.log", "SIM ")
    sim = Sim(child, url, latency_ms)
    sim.fresh(rate_limits=rate_limits)
    return sim


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    if os.environ.get("BENCH_KEEP_WORKDIR"):
        # Keep the logs of every process (worker, simulator) for a look afterwards.
        kept = Path(tempfile.mkdtemp(prefix="quantum-bench-"))
        out(f"work directory kept: {kept}")
        yield kept
        return
    with tempfile.TemporaryDirectory(prefix="quantum-bench-") as name:
        yield Path(name)


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, protocol=2)


# -- /proc -------------------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


# -- statistics --------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Percentile ``q`` (0..100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else float("nan")
