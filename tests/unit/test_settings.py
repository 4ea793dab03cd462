"""Settings: read once from the environment, errors name the variable, secrets never shown."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from quantum_exec.core.errors import ConfigError
from quantum_exec.core.redis_client import location
from quantum_exec.core.settings import ExchangeEnv, hash_tag, load_settings, read_env_file
from quantum_exec.ops.logs import secret_values


def test_defaults_are_the_embedded_sim_setup() -> None:
    settings = load_settings(environ={})
    assert settings.exchange is ExchangeEnv.SIM
    assert settings.embedded_redis and settings.embedded_sim
    assert settings.intent_stream == "quantum:stream:trade.intent"
    assert settings.consumer_group == "quantum:group:execution:trade.intent"
    assert settings.result_stream == "quantum:stream:execution.result"
    assert settings.dlq_stream == "quantum:stream:trade.intent.dlq"
    assert settings.metrics_port == 9108


def test_consumer_name_is_stable_not_random() -> None:
    assert load_settings(environ={}).consumer_name == load_settings(environ={}).consumer_name
    assert load_settings(environ={"QUANTUM_CONSUMER_NAME": "exec-a"}).consumer_name == "exec-a"


def test_environment_values_are_typed() -> None:
    settings = load_settings(
        environ={
            "QUANTUM_MAX_NOTIONAL_USD": "1234.5",
            "QUANTUM_SYMBOL_ALLOWLIST": "btcusdt, ETHUSDT,",
            "QUANTUM_PRICE_PROTECT": "false",
            "QUANTUM_REDIS_URL": "redis://127.0.0.1:6390/0",
        }
    )
    assert settings.max_notional_usd == Decimal("1234.5")
    assert settings.symbol_allowlist == frozenset({"BTCUSDT", "ETHUSDT"})
    assert settings.price_protect is False
    assert not settings.embedded_redis


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"QUANTUM_METRICS_PORT": "not-a-port"}, "QUANTUM_METRICS_PORT"),
        ({"QUANTUM_MAX_LEVERAGE": "500"}, "QUANTUM_MAX_LEVERAGE"),
        ({"QUANTUM_BINANCE_BASE_URL": "http://127.0.0.1:8765/fapi"}, "QUANTUM_BINANCE_BASE_URL"),
        ({"QUANTUM_EXCHANGE": "mainnet"}, "QUANTUM_EXCHANGE"),
        ({"QUANTUM_EXCHANGE": "testnet"}, "BINANCE_API_KEY"),
        (
            {"QUANTUM_EXCHANGE": "live", "BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"},
            "QUANTUM_LIVE_CONFIRM",
        ),
        (
            {"QUANTUM_EXCHANGE": "demo", "BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"},
            "QUANTUM_ALLOW_EMBEDDED_REDIS",
        ),
    ],
)
def test_bad_values_fail_at_start_naming_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ=environ)


def test_live_starts_only_when_confirmed() -> None:
    env = {
        "QUANTUM_EXCHANGE": "live",
        "BINANCE_API_KEY": "k",
        "BINANCE_API_SECRET": "s",
        "QUANTUM_REDIS_URL": "redis://127.0.0.1:6390/0",
    }
    assert load_settings(environ={**env, "QUANTUM_LIVE_CONFIRM": "yes"}).exchange is ExchangeEnv.LIVE


def test_secrets_are_masked_and_never_in_errors() -> None:
    secret = "s3cr3t-value-that-must-not-leak"
    settings = load_settings(
        environ={
            "BINANCE_API_KEY": "key-abc",
            "BINANCE_API_SECRET": secret,
            "QUANTUM_REDIS_URL": f"redis://user:{secret}@127.0.0.1:6390/0",
        }
    )
    shown = str(settings.masked()) + repr(settings) + str(settings)
    assert secret not in shown and "key-abc" not in shown
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={"BINANCE_API_SECRET": secret, "QUANTUM_METRICS_PORT": "x"})
    assert secret not in str(exc.value)


def test_env_file_then_environment_then_credentials(tmp_path: Path) -> None:
    env_file = tmp_path / "execution.env"
    env_file.write_text(
        "# comment\n"
        "QUANTUM_MAX_LEVERAGE=7\n"
        'export QUANTUM_CONSUMER_NAME="from-file"\n'
        "BINANCE_API_KEY=file-key\n"
    )
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "BINANCE_API_KEY").write_text("credential-key\n")
    settings = load_settings(
        env_file, environ={"QUANTUM_CONSUMER_NAME": "from-env", "CREDENTIALS_DIRECTORY": str(creds)}
    )
    assert settings.max_leverage == 7
    assert settings.consumer_name == "from-env"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "credential-key"


def test_read_env_file_parses_systemd_style(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("A=1\n; semicolon comment\nB='two words'\n\nNOEQUALS\nC=\n")
    assert read_env_file(path) == {"A": "1", "B": "two words", "C": ""}


def test_sentinel_settings_are_parsed_and_their_passwords_masked() -> None:
    secret = "sentinel-pass-never-shown"
    settings = load_settings(
        environ={
            "QUANTUM_REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26379,",
            "QUANTUM_REDIS_SENTINEL_MASTER": "quantum",
            "QUANTUM_REDIS_PASSWORD": secret,
            "QUANTUM_REDIS_SENTINEL_PASSWORD": secret + "-2",
            "QUANTUM_REDIS_TLS": "true",
        }
    )
    assert settings.redis_sentinels == ("10.0.0.1:26379", "10.0.0.2:26379")
    assert not settings.embedded_redis and not settings.redis_cluster and settings.redis_tls
    assert secret not in str(settings.masked()) + repr(settings)
    assert location(settings) == "sentinel master quantum via 10.0.0.1:26379,10.0.0.2:26379"
    assert {secret, secret + "-2"} <= set(secret_values(settings))


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"QUANTUM_REDIS_SENTINELS": "a:1"}, "QUANTUM_REDIS_SENTINEL_MASTER"),
        ({"QUANTUM_REDIS_SENTINEL_MASTER": "m"}, "QUANTUM_REDIS_SENTINELS"),
        ({"QUANTUM_REDIS_SENTINELS": "a", "QUANTUM_REDIS_SENTINEL_MASTER": "m"}, "not host:port"),
        (
            {
                "QUANTUM_REDIS_SENTINELS": "a:1",
                "QUANTUM_REDIS_SENTINEL_MASTER": "m",
                "QUANTUM_REDIS_URL": "redis://x",
            },
            "not both",
        ),
    ],
)
def test_sentinel_misconfiguration_fails_at_start(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


def test_cluster_refuses_untagged_names_and_says_how_to_set_them() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={"QUANTUM_REDIS_URL": "redis+cluster://127.0.0.1:7000"})
    message = str(exc.value)
    for expected in (
        "QUANTUM_INTENT_STREAM={quantum}:stream:trade.intent",
        "QUANTUM_RESULT_STREAM={quantum}:stream:execution.result",
        "QUANTUM_DLQ_STREAM={quantum}:stream:trade.intent.dlq",
        "QUANTUM_POSITION_STREAM={quantum}:stream:position.event",
        "QUANTUM_RISK_STREAM={quantum}:stream:risk.event",
        "QUANTUM_KEY_PREFIX={quantum}:exec",
    ):
        assert expected in message
    # One tag differing is refused too; the tag most names carry is the one suggested.
    tagged = {
        "QUANTUM_REDIS_URL": "rediss+cluster://127.0.0.1:7000",
        "QUANTUM_INTENT_STREAM": "{desk}:in",
        "QUANTUM_RESULT_STREAM": "{desk}:out",
        "QUANTUM_DLQ_STREAM": "{desk}:dlq",
        "QUANTUM_POSITION_STREAM": "{desk}:positions",
        "QUANTUM_RISK_STREAM": "{desk}:risk",
        "QUANTUM_KEY_PREFIX": "{other}:exec",
    }
    with pytest.raises(ConfigError, match=r"QUANTUM_KEY_PREFIX=\{desk\}:exec"):
        load_settings(environ=tagged)
    settings = load_settings(environ={**tagged, "QUANTUM_KEY_PREFIX": "{desk}:exec"})
    assert settings.redis_cluster


@pytest.mark.parametrize(
    ("key", "tag"),
    [("{quantum}:stream", "quantum"), ("a{b}c{d}", "b"), ("{}x{y}", None), ("plain", None), ("x{y", None)],
)
def test_hash_tag_reads_keys_like_redis_cluster(key: str, tag: str | None) -> None:
    assert hash_tag(key) == tag
