"""The gateway's pure parts: sources, the HMAC scheme, the TradingView template, the rate limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantum_exec.contracts import parse_intent
from quantum_exec.core.errors import ConfigError
from quantum_exec.webhooks.auth import Refusal, check_hmac, check_secret, sign
from quantum_exec.webhooks.config import gateway_config
from quantum_exec.webhooks.ratelimit import RateLimits
from quantum_exec.webhooks.sources import SourceKind, parse_sources
from quantum_exec.webhooks.tradingview import alert_to_payload, normalise_symbol

SECRET = "s3cret-of-the-desk-bot-0123456789"


def _sources() -> str:
    return json.dumps(
        {
            "bot": {"kind": "hmac", "secret": SECRET, "rate_per_min": 5},
            "tv": {
                "kind": "tradingview",
                "secret": SECRET + "-tv",
                "allow_from": ["52.89.214.238", "10.0.0.0/8"],
            },
        }
    )


def test_sources_inline_and_from_a_file(tmp_path: Path) -> None:
    inline = parse_sources(_sources())
    path = tmp_path / "sources.json"
    path.write_text(_sources())
    from_file = parse_sources(str(path))
    assert inline.keys() == from_file.keys() == {"bot", "tv"}
    assert inline["bot"].kind is SourceKind.HMAC and inline["bot"].rate_per_min == 5
    assert inline["tv"].allows("52.89.214.238") and inline["tv"].allows("10.1.2.3")
    assert not inline["tv"].allows("8.8.8.8") and not inline["tv"].allows(None)
    assert inline["bot"].allows("8.8.8.8")  # no allow-list: any address


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"kind": "hmac", "secret": "short"}, "secret: must be a string of at least 24"),
        ({"kind": "rsa", "secret": SECRET}, "kind: must be hmac or tradingview"),
        ({"kind": "hmac", "secret": SECRET, "rate_per_min": 0}, "rate_per_min: must be an integer >= 1"),
        ({"kind": "hmac", "secret": SECRET, "allow_from": ["not-an-ip"]}, "'not-an-ip' is not an address"),
        ({"kind": "hmac", "secret": SECRET, "sekret": 1}, "unknown key 'sekret'"),
    ],
)
def test_a_bad_source_is_named_and_its_secret_never_echoed(entry: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_sources(json.dumps({"bot": entry}))
    assert named in str(refused.value) and "QUANTUM_GATEWAY_SOURCES['bot']" in str(refused.value)
    assert SECRET not in str(refused.value)


def test_invalid_json_does_not_echo_the_secrets() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_sources('{"bot": {"secret": "' + SECRET + '"')
    assert "not valid JSON" in str(refused.value) and SECRET not in str(refused.value)


def test_config_defaults_and_a_missing_source() -> None:
    config = gateway_config({"QUANTUM_GATEWAY_SOURCES": _sources()})
    assert (config.host, config.port, config.replay_window_s) == ("127.0.0.1", 9110, 60)
    with pytest.raises(ConfigError, match="QUANTUM_GATEWAY_SOURCES: no source"):
        gateway_config({})
    # '²' and '٣' are str.isdigit(): one a crash of int(), the other a port 3 nobody wrote.
    for port in ("http", "²", "-²", "٣", "9١١٠"):
        with pytest.raises(ConfigError, match="QUANTUM_GATEWAY_PORT: must be an integer"):
            gateway_config({"QUANTUM_GATEWAY_SOURCES": _sources(), "QUANTUM_GATEWAY_PORT": port})


def test_hmac_signature_window_and_forgery() -> None:
    source = parse_sources(_sources())["bot"]
    body = b'{"symbol":"BTCUSDT"}'
    now = 1_800_000_000_000
    headers = {"X-Quantum-Timestamp": str(now - 1000), "X-Quantum-Signature": sign(SECRET, now - 1000, body)}
    assert check_hmac(source, headers, body, now, 60_000) == headers["X-Quantum-Signature"]
    forged = {**headers, "X-Quantum-Signature": sign("another-secret-of-24-chars!!", now - 1000, body)}
    late = {"X-Quantum-Timestamp": str(now - 61_000), "X-Quantum-Signature": sign(SECRET, now - 61_000, body)}
    cases = [
        (forged, body, "bad signature"),
        (headers, body + b" ", "bad signature"),  # the body is what is signed
        (late, body, "61.0s old, outside the 60s replay window"),
        ({}, body, "are required"),
        ({**headers, "X-Quantum-Timestamp": "yesterday"}, body, "Unix milliseconds"),
    ]
    for given, sent, reason in cases:
        with pytest.raises(Refusal) as refused:
            check_hmac(source, given, sent, now, 60_000)
        assert refused.value.status == 401 and reason in refused.value.reason
        assert SECRET not in refused.value.reason


def test_tradingview_secret() -> None:
    source = parse_sources(_sources())["tv"]
    check_secret(source, SECRET + "-tv")
    for wrong in (None, "", SECRET, SECRET + "-tv "):
        with pytest.raises(Refusal) as refused:
            check_secret(source, wrong)
        assert refused.value.status == 401


@pytest.mark.parametrize(
    ("ticker", "symbol"),
    [
        ("BTCUSDT.P", "BTCUSDT"),
        ("BINANCE:ETHUSDT.P", "ETHUSDT"),
        ("btcusdtperp", "BTCUSDT"),
        ("SOLUSDT", "SOLUSDT"),
    ],
)
def test_tradingview_symbols_are_normalised(ticker: str, symbol: str) -> None:
    assert normalise_symbol(ticker) == symbol


def test_the_alert_template_becomes_the_producers_intent() -> None:
    alert = {
        "intent_id": "tv-Long-2026-12-06T10:00:00Z",
        "ticker": "BINANCE:BTCUSDT.P",
        "action": "buy",
        "contracts": "0.002",
        "market_position": "long",
        "time": "2026-12-06T10:00:00Z",
        "leverage": 3,
        "stop_loss_pct": 1.5,
    }
    intent = parse_intent(alert_to_payload(alert))
    assert (intent.symbol, intent.side.value, str(intent.quantity), intent.leverage) == (
        "BTCUSDT",
        "BUY",
        "0.002",
        3,
    )
    assert intent.timestamp is not None and intent.meta == {}
    exit_alert = {**alert, "action": "sell", "market_position": "flat"}
    closing = parse_intent(alert_to_payload(exit_alert))
    assert closing.side.value == "CLOSE" and closing.quantity is None


def test_rate_limit_allows_a_minute_then_paces() -> None:
    now = [0.0]
    limits = RateLimits(clock=lambda: now[0])
    assert [limits.take("bot", 3) for _ in range(3)] == [None, None, None]
    assert limits.take("bot", 3) == 20  # one token every 20 s
    assert limits.take("other", 3) is None  # buckets are per source
    now[0] = 20.0
    assert limits.take("bot", 3) is None
    assert limits.take("bot", 3) == 20
