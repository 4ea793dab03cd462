"""setup_logging: JSON line shape, text format, rotating file, and redaction of known secrets."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from quantum_exec.core.settings import Settings
from quantum_exec.ops.logs import REDACTED, get_logger, redact, setup_logging

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
REDIS_PASSWORD = "s3cr3t-redis-pw"
SECRETS = (API_KEY, API_SECRET, REDIS_PASSWORD)


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    setup_state_reset()


def setup_state_reset() -> None:
    # Forget the test secrets so later tests in the session see the default redactor.
    from quantum_exec.ops import logs

    logs._REDACTOR.set_secrets(())


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "redis_url": f"redis://default:{REDIS_PASSWORD}@redis.internal:6379/0",
    }
    values.update(overrides)
    return Settings(**values)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_shape() -> None:
    out = io.StringIO()
    setup_logging(settings(), stream=out)
    get_logger("quantum_exec.execution.executor").info(
        "entry.filled", intent_id="i-1", symbol="BTCUSDT", quantity=Decimal("0.001"), latency_ms=12.5
    )
    get_logger("quantum_exec.execution.executor").debug("not.shown")
    [line] = lines(out)
    assert list(line)[:4] == ["ts", "level", "logger", "event"]
    assert line["ts"].endswith("Z") and "T" in line["ts"]
    assert line["level"] == "info"
    assert line["logger"] == "quantum_exec.execution.executor"
    assert line["event"] == "entry.filled"
    assert line["intent_id"] == "i-1"
    assert line["quantity"] == "0.001"  # exact text, never a float
    assert line["latency_ms"] == 12.5


def test_json_exception_and_reserved_field_names() -> None:
    out = io.StringIO()
    setup_logging(settings(log_level="debug"), stream=out)
    log = get_logger("t")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("loop.crashed", event="shadowed", level=3)
    [line] = lines(out)
    assert line["event"] == "loop.crashed" and line["event_"] == "shadowed" and line["level_"] == 3
    assert line["level"] == "error"
    assert isinstance(line["exc"], str)
    assert "Traceback" in line["exc"] and "RuntimeError: boom" in line["exc"]
    assert "\n" not in out.getvalue().rstrip("\n")  # one event per line, traceback included


def test_text_format() -> None:
    out = io.StringIO()
    setup_logging(settings(log_format="text"), stream=out)
    get_logger("quantum_exec.stream.consumer").warning("claim.done", claimed=3, note="two words", empty="")
    text = out.getvalue().rstrip("\n")
    ts, level, logger, event, *fields = text.split(" ", 4)
    assert ts.endswith("Z")
    assert level == "WARNING"
    assert logger == "quantum_exec.stream.consumer"
    assert event == "claim.done"
    assert fields == ['claimed=3 note="two words" empty=""']


def test_secrets_are_redacted_everywhere(tmp_path: Path) -> None:
    out = io.StringIO()
    log_file = tmp_path / "logs" / "exec.log"
    extra = "an-extra-token-value"
    setup_logging(settings(log_file=log_file), secrets=[extra], stream=out)
    log = get_logger("quantum_exec.exchange.gateway")
    log.info(
        f"event with {API_KEY}",
        url=f"https://fapi.binance.com/fapi/v1/order?signature=x&apiKey={API_KEY}",
        headers={"X-MBX-APIKEY": API_KEY, API_SECRET: "as a key"},
        nested=[{"redis": f"redis://default:{REDIS_PASSWORD}@redis.internal:6379/0"}],
        extra=extra,
    )
    logging.getLogger("aiohttp.client").error("plain %s message with %s", API_SECRET, REDIS_PASSWORD)
    try:
        raise ConnectionError(f"cannot connect to redis://:{REDIS_PASSWORD}@host")
    except ConnectionError:
        log.exception("redis.lost")

    for output in (out.getvalue(), log_file.read_text()):
        for secret in (*SECRETS, extra):
            assert secret not in output
        assert output.count(REDACTED) >= 7
    parsed = lines(out)
    assert parsed[0]["headers"] == {"X-MBX-APIKEY": REDACTED, REDACTED: "as a key"}
    assert parsed[1]["event"] == f"plain {REDACTED} message with {REDACTED}"
    assert "ConnectionError" in parsed[2]["exc"]
    # Other modules (e.g. /readyz error bodies) use the same redactor.
    assert redact(f"x {API_KEY} y") == f"x {REDACTED} y"


def test_redaction_ignores_letter_case(tmp_path: Path) -> None:
    out = io.StringIO()
    setup_logging(settings(), stream=out)
    get_logger("quantum_exec.stream.consumer").warning(
        "intent.meta", meta={"note": f"key {API_KEY.upper()} and {API_SECRET.lower()}"}
    )
    text = out.getvalue()
    for secret in SECRETS:
        assert secret.upper() not in text and secret.lower() not in text
    assert lines(out)[0]["meta"]["note"] == f"key {REDACTED} and {REDACTED}"


def test_file_handler_only_when_configured_and_setup_is_idempotent(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    setup_logging(settings(), stream=io.StringIO())
    setup_logging(settings(), stream=io.StringIO())
    assert len(root.handlers) == before + 1
    log_file = tmp_path / "exec.log"
    setup_logging(settings(log_file=log_file, log_format="text"), stream=io.StringIO())
    assert len(root.handlers) == before + 2
    get_logger("t").info("to.file", n=1)
    [line] = [orjson.loads(x) for x in log_file.read_text().splitlines()]  # the file is JSON always
    assert line["event"] == "to.file"


def test_short_secret_is_reported_not_redacted() -> None:
    out = io.StringIO()
    setup_logging(settings(redis_url="redis://:pw@localhost:6379/0"), stream=out)
    [line] = lines(out)
    assert line["event"] == "logging.secret_too_short"
    assert "pw" not in orjson.dumps({k: v for k, v in line.items() if k != "event"}).decode()
