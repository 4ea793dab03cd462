"""API keys that sign with Ed25519 (Binance's recommended type) or RSA, end to end over the simulator."""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from Crypto.PublicKey import ECC, RSA
from Crypto.Signature import eddsa

from binance_sim import Simulator
from binance_sim.config import SimConfig
from binance_sim.ws_api import signed_payload
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.errors import ConfigError, PermanentError
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.ops.logs import secret_values
from support.desk import Desk

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ED_KEY = "quantum-ed25519-key"
RSA_KEY = "quantum-rsa-key"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    ed = ECC.generate(curve="ed25519")
    rsa = RSA.generate(2048)
    other = ECC.generate(curve="ed25519")
    files = {
        "ed_private": ed.export_key(
            format="PEM", passphrase=PASSPHRASE, protection="PBKDF2WithHMAC-SHA512AndAES256-CBC"
        ),
        "ed_public": ed.public_key().export_key(format="PEM"),
        "rsa_private": rsa.export_key(format="PEM", pkcs=8).decode(),
        "rsa_public": rsa.public_key().export_key(format="PEM").decode(),
        "other_private": other.export_key(format="PEM"),
        "p256_private": ECC.generate(curve="p256").export_key(format="PEM"),
    }
    paths = {}
    for name, text in files.items():
        paths[name] = folder / f"{name}.pem"
        paths[name].write_text(text)
        paths[name].chmod(0o600)
    return paths


@pytest.fixture
def sim_config(keys: dict[str, Path]) -> SimConfig:
    return SimConfig(
        public_keys={ED_KEY: keys["ed_public"].read_text(), RSA_KEY: keys["rsa_public"].read_text()}
    )


def _keyed(desk: Desk, api_key: str, private: Path, passphrase: str | None = None) -> dict[str, object]:
    return {
        "api_key": api_key,
        "api_secret": None,
        "private_key_file": private,
        "private_key_passphrase": passphrase,
    }


async def test_an_ed25519_key_signs_every_request_of_a_whole_intent(
    desk: Desk, keys: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await desk.service(**_keyed(desk, ED_KEY, keys["ed_private"], PASSPHRASE))
    await desk.publish(
        intent_id="ed-1",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        stop_loss_pct="2",
        take_profit_pct="3",
    )
    result = await desk.result("ed-1")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert desk.sim.request_counts["POST /fapi/v1/order"] == 1
    assert desk.sim.request_counts["POST /fapi/v1/algoOrder"] == 2
    # Nothing of the key reaches a log line.
    settings = desk.settings(**_keyed(desk, ED_KEY, keys["ed_private"], PASSPHRASE))
    hidden = [s for s in secret_values(settings) if len(s) >= 16]
    body = keys["ed_private"].read_text().splitlines()[1]
    assert body in hidden and PASSPHRASE in hidden
    published = ""
    for stream in (desk.names["result_stream"], desk.names["position_stream"]):
        for _sid, fields in await desk.redis.xrange(stream):
            published += b"".join(fields.values()).decode()
    assert "ed-1" in published
    from prometheus_client import generate_latest

    from quantum_exec.ops import metrics

    exposed = generate_latest(metrics.REGISTRY).decode()
    for text in (caplog.text, published, exposed):
        assert not any(h in text for h in hidden)


async def test_an_rsa_key_signs_too(desk: Desk, keys: dict[str, Path]) -> None:
    await desk.service(**_keyed(desk, RSA_KEY, keys["rsa_private"]))
    await desk.publish(intent_id="rsa-1", symbol="ETHUSDT", side="SELL", quantity="0.1", stop_loss_pct="2")
    result = await desk.result("rsa-1")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED


async def test_a_request_signed_by_another_key_is_refused_with_1022(
    sim: Simulator, desk: Desk, keys: dict[str, Path]
) -> None:
    settings = desk.settings(**_keyed(desk, ED_KEY, keys["other_private"]))
    gateway = BinanceGateway(settings, sim.base_url)
    try:
        with pytest.raises(PermanentError) as refused:
            await gateway.positions()
    finally:
        await gateway.close()
    assert refused.value.code == -1022 and "Signature for this request is not valid" in refused.value.message


def test_a_wrong_passphrase_or_key_type_is_a_config_error_naming_the_setting(
    keys: dict[str, Path], desk: Desk
) -> None:
    wrong = desk.settings(**_keyed(desk, ED_KEY, keys["ed_private"], "wrong"))
    with pytest.raises(ConfigError) as bad:
        BinanceGateway(wrong, "http://127.0.0.1:1")
    assert "BINANCE_PRIVATE_KEY_FILE" in str(bad.value) and "PASSPHRASE" in str(bad.value)
    assert keys["ed_private"].read_text().splitlines()[1] not in str(bad.value)
    p256 = desk.settings(**_keyed(desk, ED_KEY, keys["p256_private"]))
    with pytest.raises(ConfigError) as curve:
        BinanceGateway(p256, "http://127.0.0.1:1")
    assert "NIST P-256" in str(curve.value) or "p256" in str(curve.value).lower()


def test_live_accepts_a_private_key_instead_of_a_secret(keys: dict[str, Path]) -> None:
    settings = Settings(
        exchange="testnet",
        api_key="k" * 16,
        private_key_file=keys["ed_private"],
        private_key_passphrase=PASSPHRASE,
        redis_url="redis://127.0.0.1:1",
    )
    assert settings.api_secret is None and settings.private_key_file == keys["ed_private"]
    assert settings.masked()["private_key_passphrase"] == "**********"
    assert PASSPHRASE not in repr(settings)
    with pytest.raises(ValueError, match="BINANCE_PRIVATE_KEY_FILE"):
        Settings(
            exchange="testnet", api_key="k" * 16, private_key_file=keys["ed_private"].with_suffix(".missing")
        )


async def test_the_key_and_its_passphrase_as_systemd_credentials(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    from quantum_exec.core.settings import load_settings

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "BINANCE_PRIVATE_KEY").write_text(keys["ed_private"].read_text())
    (creds / "BINANCE_PRIVATE_KEY_PASSPHRASE").write_text(PASSPHRASE + "\n")
    settings = load_settings(
        environ={
            "CREDENTIALS_DIRECTORY": str(creds),
            "QUANTUM_EXCHANGE": "testnet",
            "BINANCE_API_KEY": "k" * 16,
            "QUANTUM_REDIS_URL": "redis://127.0.0.1:1",
        }
    )
    assert settings.private_key_file == creds / "BINANCE_PRIVATE_KEY"
    assert settings.private_key_passphrase is not None
    assert settings.private_key_passphrase.get_secret_value() == PASSPHRASE
    gateway = BinanceGateway(settings, "http://127.0.0.1:1")  # the key loads with the passphrase
    await gateway.close()


async def test_an_ed25519_key_logs_the_order_socket_on_once_and_orders_travel_unsigned(
    desk: Desk, keys: dict[str, Path]
) -> None:
    service = await desk.service(
        order_transport="websocket", **_keyed(desk, ED_KEY, keys["ed_private"], PASSPHRASE)
    )
    assert service.executor is not None
    ws = service.executor.gateway.ws
    assert ws is not None and ws.logged_on
    await desk.publish(
        intent_id="ed-ws",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        stop_loss_pct="2",
        take_profit_pct="3",
    )
    result = await desk.result("ed-ws")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    counts = desk.sim.request_counts
    assert counts["WS session.logon"] == 1
    assert counts["WS order.place"] == 1 and counts["WS algoOrder.place"] == 2


async def test_an_rsa_key_signs_every_websocket_request_instead(desk: Desk, keys: dict[str, Path]) -> None:
    service = await desk.service(order_transport="websocket", **_keyed(desk, RSA_KEY, keys["rsa_private"]))
    assert service.executor is not None
    ws = service.executor.gateway.ws
    assert ws is not None and ws.connected and not ws.logged_on
    await desk.publish(intent_id="rsa-ws", symbol="ETHUSDT", side="SELL", quantity="0.1", stop_loss_pct="2")
    assert (await desk.result("rsa-ws")).status is ResultStatus.FILLED
    assert desk.sim.request_counts["WS session.logon"] == 0 and desk.sim.request_counts["WS order.place"] == 1


async def test_the_simulator_ties_an_ed25519_key_to_the_connection_as_binance_does(
    sim: Simulator, keys: dict[str, Path]
) -> None:
    """session.logon / status / logout over the raw protocol: only Ed25519 keys may log on, a
    logged-on connection sends orders without apiKey and signature, another one may not."""
    ed = ECC.import_key(keys["ed_private"].read_text(), passphrase=PASSPHRASE)
    other = ECC.import_key(keys["other_private"].read_text())

    def signed(params: dict[str, str], key: ECC.EccKey = ed, api_key: str = ED_KEY) -> dict[str, str]:
        full = {**params, "apiKey": api_key, "timestamp": str(int(time.time() * 1000))}
        full["signature"] = base64.b64encode(eddsa.new(key, "rfc8032").sign(signed_payload(full))).decode()
        return full

    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.002",
        "newOrderRespType": "RESULT",
    }
    url = sim.base_url.replace("http", "ws", 1) + "/ws-fapi/v1"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:

            async def ask(method: str, params: dict[str, str] | None = None) -> dict[str, Any]:
                await ws.send_str(
                    orjson.dumps({"id": method, "method": method, "params": params or {}}).decode()
                )
                return dict(orjson.loads((await ws.receive()).data))

            bare = {**order, "timestamp": str(int(time.time() * 1000))}
            refused = await ask("order.place", bare)
            assert refused["status"] == 401 and refused["error"]["code"] == -2014  # no key yet
            forged = await ask("session.logon", signed({}, key=other))
            assert forged["error"]["code"] == -1022
            hmac_key = await ask(
                "session.logon", {"apiKey": "quantum-sim-key", "timestamp": "1", "signature": "x"}
            )
            assert hmac_key["status"] == 401 and hmac_key["error"]["code"] == -1002
            logon = await ask("session.logon", signed({}))
            assert logon["status"] == 200 and logon["result"]["apiKey"] == ED_KEY
            assert logon["result"]["authorizedSince"] >= logon["result"]["connectedSince"]
            placed = await ask("order.place", {**order, "timestamp": str(int(time.time() * 1000))})
            assert placed["status"] == 200 and placed["result"]["status"] == "FILLED"
            stale = await ask("order.place", {**order, "timestamp": str(int(time.time() * 1000) - 60_000)})
            assert stale["error"]["code"] == -1021  # the timestamp is still checked
            status = await ask("session.status")
            assert status["result"]["apiKey"] == ED_KEY and status["rateLimits"]
            out = await ask("session.logout")
            assert out["result"]["apiKey"] is None and out["result"]["authorizedSince"] is None
            again = await ask("order.place", {**order, "timestamp": str(int(time.time() * 1000))})
            assert again["error"]["code"] == -2014
        # The logon belonged to that connection only.
        async with session.ws_connect(url) as fresh:
            await fresh.send_str(
                orjson.dumps(
                    {
                        "id": 1,
                        "method": "order.place",
                        "params": {**order, "timestamp": str(int(time.time() * 1000))},
                    }
                ).decode()
            )
            assert dict(orjson.loads((await fresh.receive()).data))["error"]["code"] == -2014
    assert sim.request_counts["WS session.logon"] == 3
