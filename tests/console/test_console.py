"""The operator console in a real browser: ``serve`` on embedded defaults, trades on the simulator,
the page in headless Chromium showing exactly what ``/api/*`` says, without a console error.

Needs Debian's ``chromium`` (``.ci/run`` installs it); skipped with the reason where it is absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis import asyncio as aioredis

from quantum_exec.app.api import ReadApi
from quantum_exec.contracts import encode_intent_fields
from quantum_exec.core.settings import Settings
from support.cdp import Browser, browser_binary
from support.waiting import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        browser_binary() is None,
        reason="no chromium on this machine (apt-get install chromium; .ci/run installs it as root)",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "console.png"


@dataclass
class Served:
    url: str
    exchange_url: str
    redis: aioredis.Redis
    proc: subprocess.Popen[bytes]


def _endpoints(runtime: Path) -> dict[str, Any]:
    path = runtime / "quantum-exec" / "endpoints.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _serve(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "quantum_exec.app.cli", "serve"], env=env, stderr=log, stdout=log
    )


def _standalone_sim() -> tuple[subprocess.Popen[str], str]:
    """`quantum-exec sim` on a free port, and its URL (the 4th word of its first line)."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "quantum_exec.app.cli", "sim", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sim.stdout is not None
    return sim, sim.stdout.readline().split()[3]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))},
        "XDG_RUNTIME_DIR": str(runtime),
        "QUANTUM_STATE_DIR": str(tmp_path / "state"),
        "QUANTUM_METRICS_PORT": "0",
        "QUANTUM_METRICS_HOST": "127.0.0.1",
        "QUANTUM_WATCHDOG": "false",
    }
    proc = _serve(env, tmp_path / "serve.log")
    try:
        await wait_for(lambda: "metrics_port" in _endpoints(runtime), 60, "serve recording its endpoints")
        found = _endpoints(runtime)
        redis = aioredis.Redis.from_url(found["redis_url"], protocol=2)
        try:
            yield Served(f"http://127.0.0.1:{found['metrics_port']}", found["exchange_url"], redis, proc)
        finally:
            await redis.aclose()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return json.loads(await response.read(), parse_float=Decimal)


async def _trade(served: Served, session: aiohttp.ClientSession) -> None:
    """A stopped long, a CLOSEd short and an open long with its SL/TP."""
    marks = await _json(session, f"{served.exchange_url}/fapi/v1/premiumIndex")
    mark = {m["symbol"]: Decimal(m["markPrice"]) for m in marks}
    btc = mark["BTCUSDT"]
    q = Decimal("0.1")
    intents = [
        {
            "intent_id": "con-1",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "quantity": "0.010",
            "model": "alpha",
            "stop_loss": str((btc * Decimal("0.98")).quantize(q)),
            "take_profit": str((btc * Decimal("1.05")).quantize(q)),
        },
        {"intent_id": "con-2", "symbol": "ETHUSDT", "side": "SELL", "quantity": "0.300", "model": "beta"},
    ]
    for payload in intents:
        await served.redis.xadd("quantum:stream:trade.intent", encode_intent_fields(payload, "test"))  # type: ignore[arg-type]

    async def results(n: int) -> bool:
        return await served.redis.xlen("quantum:stream:execution.result") >= n

    await wait_for(lambda: results(2), 30, "two results")
    async with session.post(
        f"{served.exchange_url}/_sim/markPrice",
        json={"symbol": "BTCUSDT", "price": str(btc * Decimal("0.97"))},
    ) as response:
        assert response.status == 200
    close = {"intent_id": "con-3", "symbol": "ETHUSDT", "side": "CLOSE"}
    await served.redis.xadd("quantum:stream:trade.intent", encode_intent_fields(close, "test"))  # type: ignore[arg-type]
    await wait_for(lambda: results(3), 30, "the CLOSE result")
    btc_now = btc * Decimal("0.97")
    opened = {
        "intent_id": "con-4",
        "symbol": "BTCUSDT",
        "side": "BUY",
        "quantity": "0.005",
        "model": "alpha",
        "stop_loss": str((btc_now * Decimal("0.98")).quantize(q)),
        "take_profit": str((btc_now * Decimal("1.05")).quantize(q)),
    }
    await served.redis.xadd("quantum:stream:trade.intent", encode_intent_fields(opened, "test"))  # type: ignore[arg-type]
    await wait_for(lambda: results(4), 30, "the last result")

    async def two_closed() -> bool:
        body = await _json(session, f"{served.url}/api/trades/summary")
        return body["total_trades"] >= 2

    await wait_for(two_closed, 20, "two round trips in the ledger")


async def test_the_console_shows_what_the_api_says(served: Served, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(served.url + "/") as page:
            assert page.status == 200
            csp = page.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" in csp and "http" not in csp
        await _trade(served, session)
        summary = await _json(session, f"{served.url}/api/trades/summary")
        trades = await _json(session, f"{served.url}/api/trades?limit=1000")
        positions = await _json(session, f"{served.url}/api/positions")

    profile = tmp_path / "browser"
    profile.mkdir()
    async with Browser(profile) as browser:
        await browser.goto(served.url + "/")

        async def loaded() -> bool:
            script = "!!document.body && document.body.dataset.loaded === 'true'"
            return await browser.evaluate(script) is True

        await wait_for(loaded, 20, "the page showing the data")
        shown = await browser.evaluate(
            """({
              env: document.getElementById('environment').dataset.env,
              net: document.querySelector('[data-field="net pnl"]').textContent,
              trades: document.querySelector('[data-field="trades"]').textContent,
              winRate: document.querySelector('[data-field="win rate"]').textContent,
              profitFactor: document.querySelector('[data-field="profit factor"]').textContent,
              text: document.getElementById('main').textContent,
              negativeZeros: [...document.querySelectorAll('#main td, #main .value')]
                               .map(e => e.textContent.trim()).filter(t => /^-0(\\.0*)?$/.test(t)),
              times: [...document.querySelectorAll('#results tbody tr, #trades tbody tr')]
                       .map(r => r.cells[0].textContent),
              barValues: [...document.querySelectorAll('#daily svg text.barvalue')].map(t => t.textContent),
              chips: [...document.querySelectorAll('#health .chip')].map(c => c.textContent),
              perTrade: Object.fromEntries([...document.querySelectorAll('[data-trade]')]
                          .map(e => [e.dataset.trade, e.textContent])),
              positions: [...document.querySelectorAll('#positions tbody tr')]
                          .map(r => [...r.cells].map(c => c.textContent)),
              results: document.querySelectorAll('#results tbody tr').length,
              curve: !!document.querySelector('#curve svg path.line'),
              bars: document.querySelectorAll('#daily svg rect').length,
              health: document.getElementById('health').textContent,
            })"""
        )
        assert shown["env"] == "sim"
        assert Decimal(shown["net"]) == summary["net_pnl"] and int(shown["trades"]) == summary["total_trades"]
        # Ratios as people read them: a percentage, a factor with two decimals.
        assert shown["winRate"] == f"{(summary['win_rate'] * 100).normalize():f} %"
        factor = summary["profit_factor"]
        assert shown["profitFactor"] == ("-" if factor is None else f"{Decimal(factor):.2f}")
        assert shown["negativeZeros"] == [] and "E-" not in shown["text"]
        # Times in one zone and one format (UTC, said in the headers).
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|open|-", t) for t in shown["times"]), shown[
            "times"
        ]
        assert "closed (UTC)" in shown["text"] and "time (UTC)" in shown["text"]
        # The daily bars carry their values; each fact has one chip.
        assert shown["barValues"] == [f"{Decimal(d['net_pnl']):.2f}" for d in summary["daily"]]
        names = [c.split()[0] for c in shown["chips"]]
        assert len(names) == len(set(names)) and not any(
            c.startswith("exchange rules") for c in shown["chips"]
        )
        closed = {t["trade_id"]: t["net_pnl"] for t in trades["trades"] if t["status"] == "closed"}
        assert {k: Decimal(v) for k, v in shown["perTrade"].items()} == closed
        assert [row[0] for row in shown["positions"]] == [p["symbol"] for p in positions["positions"]]
        [btc] = [p for p in positions["positions"] if p["symbol"] == "BTCUSDT"]
        [row] = [r for r in shown["positions"] if r[0] == "BTCUSDT"]
        assert Decimal(row[2]) == btc["position_amount"] and Decimal(row[3]) == btc["entry_price"]
        [stop] = [o for o in btc["protective_orders"] if o["type"] == "STOP_MARKET"]
        assert (
            Decimal(row[6].split(" ")[0]) == stop["trigger_price"]
            and Decimal(row[6].split("×")[1]) == stop["quantity"]
        )
        assert shown["results"] == 4 and shown["curve"] and shown["bars"] >= 1
        assert "user stream live" in shown["health"]
        assert "every fill protected within 5.0 s" in shown["health"]  # QUANTUM_UNPROTECTED_ALERT_S
        await browser.screenshot(tmp_path / "console.png")
        if os.environ.get("QUANTUM_CONSOLE_SCREENSHOT"):
            await browser.screenshot(SCREENSHOT)

        # 1,000 closed trades: measured in the browser (reported, not asserted as a timing).
        base = json.dumps(
            {k: str(v) if isinstance(v, Decimal) else v for k, v in trades["trades"][-1].items()}
        )
        render = await browser.evaluate(
            f"""(() => {{
              const base = {base};
              const many = Array.from({{length: 1000}}, (_, i) => ({{...base, trade_id: 'synthetic-' + i,
                 net_pnl: String((i % 7) - 3 + 0.25),
                 closed_at: new Date(Date.UTC(2026, 0, 1) + i * 3600e3).toISOString()}}));
              const t0 = performance.now();
              renderTrades({{trades: many}});
              const ms = performance.now() - t0;
              return {{ms, rows: document.querySelectorAll('#trades tbody tr').length}};
            }})()"""
        )
        assert render["rows"] == 1000
        (tmp_path / "render-1000.txt").write_text(f"{render['ms']:.1f} ms\n")
        print(f"console: 1,000 closed trades rendered in {render['ms']:.1f} ms")

        # At 1280 px the results' reason column is on screen (long reasons wrap in it).
        await browser.viewport(1280, 900)
        right = await browser.evaluate(
            "document.querySelector('#results th.reason').getBoundingClientRect().right - window.innerWidth"
        )
        assert right <= 0, f"the reason column ends {right}px past a 1280px window"

        # A narrow window: nothing wider than the screen (tables scroll inside their panels).
        await browser.viewport(380, 800)  # reading scrollWidth below lays the page out anew
        overflow = await browser.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"page {overflow}px wider than a 380px window"
        assert browser.errors == [], browser.errors


@contextlib.asynccontextmanager
async def _page_only(api: ReadApi, *middlewares: Any) -> AsyncIterator[str]:
    """The console and ``/api`` with nothing behind them (every data route answers 503)."""
    app = web.Application(middlewares=[*middlewares, api.guard])
    for path, handler in api.routes().items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def test_errors_read_as_sentences(tmp_path: Path) -> None:
    """With the service gone, the page says so in words instead of going blank."""
    profile = tmp_path / "browser"
    profile.mkdir()
    api = ReadApi(Settings(), book=None, account=None, gateway=None)
    async with _page_only(api) as url, Browser(profile) as browser:
        await browser.goto(url)

        async def banner() -> str:
            script = "document.getElementById('banner') ? document.getElementById('banner').textContent : ''"
            return str(await browser.evaluate(script))

        await wait_for(banner, 20, "an error banner")
        text = await banner()
        assert text.startswith("Down:") and "Traceback" not in text
        assert "status is not available" in text and "(/api/status)" in text
        assert await browser.evaluate("document.getElementById('trades').textContent.trim().length") > 0


async def test_with_a_token_the_page_asks_for_it_and_sends_it(tmp_path: Path) -> None:
    """A token set: the page asks once, keeps it in session storage, and sends it as a bearer."""
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            seen.append(request.headers.get("Authorization", ""))
        return await handler(request)

    profile = tmp_path / "browser"
    profile.mkdir()
    api = ReadApi(Settings(api_token="page-token-0123456789"), book=None, account=None, gateway=None)
    async with _page_only(api, record) as url, Browser(profile) as browser:
        await browser.goto(url)

        async def asking() -> bool:
            script = "!!document.getElementById('login') && !document.getElementById('login').hidden"
            return await browser.evaluate(script) is True

        await wait_for(asking, 20, "the token prompt")
        assert "" in seen and "Bearer page-token-0123456789" not in seen  # refused without it
        await browser.evaluate(
            "document.getElementById('token').value = 'page-token-0123456789';"
            "document.getElementById('login').requestSubmit(); true"
        )
        await wait_for(lambda: "Bearer page-token-0123456789" in seen, 20, "the API asked with the token")
        stored = await browser.evaluate("sessionStorage.getItem('quantum-exec-api-token')")
        assert stored == "page-token-0123456789"


async def test_an_unreachable_exchange_is_a_banner_and_the_rest_is_still_shown(tmp_path: Path) -> None:
    """A standalone simulator killed under a running serve: positions and orders say why they are
    missing, the banner names the exchange's URL, and everything else is drawn."""
    sim, exchange = _standalone_sim()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))},
        "XDG_RUNTIME_DIR": str(runtime),
        "QUANTUM_STATE_DIR": str(tmp_path / "state"),
        "QUANTUM_METRICS_PORT": "0",
        "QUANTUM_WATCHDOG": "false",
        "QUANTUM_BINANCE_BASE_URL": exchange,
    }
    proc = _serve(env, tmp_path / "serve.log")
    profile = tmp_path / "browser"
    profile.mkdir()
    try:
        await wait_for(lambda: "metrics_port" in _endpoints(runtime), 60, "serve recording its endpoints")
        url = f"http://127.0.0.1:{_endpoints(runtime)['metrics_port']}/"
        sim.kill()
        sim.wait()
        async with Browser(profile) as browser:
            await browser.goto(url)

            async def shown() -> Any:
                if not await browser.evaluate("!!document.getElementById('banner')"):
                    return None  # the page is not there yet
                value = await browser.evaluate(
                    """({banner: document.getElementById('banner').textContent,
                        positions: document.getElementById('positions').textContent,
                        orders: document.getElementById('orders').textContent,
                        results: document.getElementById('results').textContent,
                        health: document.getElementById('health').textContent,
                        loaded: document.body.dataset.loaded === 'true'})"""
                )
                return value if "/api/positions" in value["banner"] else None

            await wait_for(shown, 30, "the banner naming the exchange")
            page = await shown()
            assert exchange in page["banner"] and "(/api/positions, /api/orders)" in page["banner"]
            assert page["positions"].startswith("Unavailable:") and exchange in page["positions"]
            assert page["orders"].startswith("Unavailable:")
            assert page["loaded"] and "No result yet" in page["results"] and "redis ok" in page["health"]
    finally:
        sim.kill()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_a_banner_says_when_trading_is_not_active(tmp_path: Path) -> None:
    """The risk governor's state from /api/status: a banner while REDUCING or HALTED, none when ACTIVE."""
    profile = tmp_path / "browser"
    profile.mkdir()
    api = ReadApi(Settings(), book=None, account=None, gateway=None)
    async with _page_only(api) as url, Browser(profile) as browser:
        await browser.goto(url)
        await wait_for(
            lambda: browser.evaluate("typeof renderTrading === 'function'"), 20, "the page's script"
        )
        halted = {
            "state": "HALTED",
            "since": "2026-12-06T12:00:00+00:00",
            "reason": "max_daily_loss_usd: 20.5 reached the limit 20",
            "by": "governor",
            "flatten": "f3",
        }
        shown = await browser.evaluate(
            f"""(() => {{
              renderTrading({{state: {json.dumps(halted)}}});
              const b = document.getElementById('trading');
              const first = [b.hidden, b.dataset.state, b.textContent];
              renderTrading({{state: {{state: 'ACTIVE'}}}});
              return [first, b.hidden];
            }})()"""
        )
        (hidden, state, text), hidden_when_active = shown
        assert hidden is False and state == "HALTED" and hidden_when_active is True
        assert text.startswith("Trading HALTED since 2026-12-06T12:00:00+00:00: max_daily_loss_usd: 20.5")
        assert "(by governor)" in text and "flatten under way" in text
