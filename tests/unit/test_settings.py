"""Settings: read once from the environment, errors name the variable, secrets never shown."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from quantum_exec.errors import ConfigError
from quantum_exec.settings import ExchangeEnv, load_settings, read_env_file


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
    ],
)
def test_bad_values_fail_at_start_naming_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ=environ)


def test_live_starts_only_when_confirmed() -> None:
    env = {"QUANTUM_EXCHANGE": "live", "BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"}
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
