"""A producer (or anyone who can write an intent) tries to get the API secret echoed back: whole, as
the 57-character prefix a validation message keeps, as a 16-character window, as a field name.
No 16-character run of it may appear in a result, a dead letter, ``/api/results`` or the log."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from security.serve_proc import DEAD_LETTERS, INTENTS, RESULTS, Serve
from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Shaped like a Binance HMAC secret: 64 letters and digits.
SECRET = "Zq7TnB4xKc9VwL2mYp5RdF8sHj3GtA6uNe1QvX0bCk7WzM4yPr9DsJ2fLh5gTn8E"
API_KEY = "vK3pQ8nZ2xR7tY5wL9mB4cF6hJ1sD0gA3eU8iO2kP7qN5rT9yW4zX6bM1vC0jH5l"


def runs_of_secret(blob: str) -> list[str]:
    """Every 16-character window of SECRET found in ``blob`` (any letter case)."""
    lowered, secret = blob.lower(), SECRET.lower()
    return [secret[i : i + 16] for i in range(len(secret) - 15) if secret[i : i + 16] in lowered]


def _intent(intent_id: str, **fields: object) -> dict[str, str]:
    payload = {
        "intent_id": intent_id,
        "symbol": "BTCUSDT",
        "side": "BUY",
        "position_size_usd": 200,
        "leverage": 2,
        "stop_loss_pct": 2,
        "take_profit_pct": 4,
        "timestamp": time.time(),
        **fields,
    }
    return {"event_type": "trade.intent", "payload": json.dumps(payload), "source": "test"}


def test_no_run_of_the_secret_is_published_served_or_logged(tmp_path: Path) -> None:
    serve = Serve(tmp_path, BINANCE_API_KEY=API_KEY, BINANCE_API_SECRET=SECRET)
    try:
        endpoints = serve.start()
        client = redis.Redis.from_url(str(endpoints["redis_url"]), protocol=2)
        intents = {
            # Validation quotes the rejected value cut to 57 characters.
            "leak-whole": _intent("leak-whole", position_size_usd=SECRET),
            "leak-prefix": _intent("leak-prefix", stop_loss_pct=SECRET[:57]),
            # A valid intent: the unknown field is echoed in the result's meta.
            "leak-window": _intent("leak-window", note=f"ref {SECRET[24:40]} end"),
        }
        for fields in intents.values():
            client.xadd(INTENTS, fields)
        # Undecodable entries are dead-lettered with their original fields (names included).
        client.xadd(INTENTS, {SECRET: "x"})
        client.xadd(INTENTS, {"payload": json.dumps(SECRET[3:60])})

        def answered() -> bool:
            ids = {json.loads(f[b"payload"]).get("intent_id") for _, f in client.xrange(RESULTS)}
            return set(intents) <= ids and client.xlen(DEAD_LETTERS) >= 2

        wait_until(answered, 60, "a result for each intent and two dead letters")
        published = ""
        for stream in (RESULTS, DEAD_LETTERS):
            for _sid, fields in client.xrange(stream):
                for name, value in fields.items():
                    published += name.decode(errors="replace") + "=" + value.decode(errors="replace") + "\n"
        client.close()
        url = f"http://127.0.0.1:{endpoints['metrics_port']}/api/results?limit=100"
        with urllib.request.urlopen(url, timeout=10) as reply:
            served = reply.read().decode()
    finally:
        serve.stop()
    assert "leak-prefix" in served and "leak-whole" in served
    assert runs_of_secret(published) == []
    assert runs_of_secret(served) == []
    assert runs_of_secret(serve.output()) == []
    assert "[REDACTED]" in published
