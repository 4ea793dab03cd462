"""The gateway's and the notifier's systemd units and environment examples: verified by systemd,
hardened exactly like the service's unit, no exchange key anywhere near them, every variable the
code reads documented."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quantum_exec.core.edge_env import merged_environment
from quantum_exec.core.settings import read_env_file
from quantum_exec.notify.config import notify_config
from quantum_exec.webhooks.config import gateway_config

ROOT = Path(__file__).resolve().parents[2]
SERVICE_UNIT = ROOT / "deploy" / "systemd" / "quantum-execution.service"
UNITS = {
    "gateway": ROOT / "deploy" / "systemd" / "quantum-gateway.service",
    "notify": ROOT / "deploy" / "systemd" / "quantum-notify.service",
}
EXAMPLES = {
    "gateway": ROOT / "etc" / "quantum" / "gateway.env.example",
    "notify": ROOT / "etc" / "quantum" / "notify.env.example",
}
# Everything that confines the process is the service unit's, unchanged.
HARDENING = [
    "NoNewPrivileges",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "RestrictAddressFamilies",
    "IPAddressDeny",
    "IPAddressAllow",
    "PrivateUsers",
    "ProcSubset",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "RemoveIPC",
    "MemoryDenyWriteExecute",
    "SystemCallFilter",
    "SystemCallErrorNumber",
    "SystemCallArchitectures",
    "DynamicUser",
    "UMask",
]


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.mark.parametrize("command", sorted(UNITS))
def test_the_unit_is_the_command_hardened_like_the_service_without_exchange_keys(command: str) -> None:
    service = parse_unit(UNITS[command])["Service"]
    reference = parse_unit(SERVICE_UNIT)["Service"]
    assert service["ExecStart"] == [f"/opt/quantum-exec/venv/bin/quantum-exec {command}"]
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    assert service["Restart"] == ["on-failure"]
    for key in HARDENING:
        assert service.get(key) == reference.get(key), key
    assert service["User"] != reference["User"]  # its own user: nothing of the service's state
    text = UNITS[command].read_text()
    assert "BINANCE" not in text and "execution.env" not in text
    assert all(c.startswith("QUANTUM_") for c in service["LoadCredential"])


@pytest.mark.parametrize("command", sorted(UNITS))
def test_systemd_verifies_the_unit_and_scores_it(tmp_path: Path, command: str) -> None:
    analyze = shutil.which("systemd-analyze")
    script = Path(sys.executable).parent / "quantum-exec"
    if analyze is None or not script.exists():
        pytest.skip("systemd-analyze or the installed console script missing: unit not verified")
    shipped = f"ExecStart=/opt/quantum-exec/venv/bin/quantum-exec {command}"
    copy = tmp_path / UNITS[command].name
    copy.write_text(UNITS[command].read_text().replace(shipped, f"ExecStart={script} {command}"))
    proc = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and (proc.stdout + proc.stderr).strip() == "", proc.stdout + proc.stderr
    proc = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    if match is None and "--offline" in proc.stderr:
        pytest.skip("systemd-analyze too old for --offline")
    assert match is not None and float(match[1]) <= 1.5, proc.stdout


def _read_by_code(prefix: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "services" / "quantum_exec").rglob("*.py"):
        found |= set(re.findall(rf'"({prefix}[A-Z0-9_]+)"', path.read_text()))
    return found


@pytest.mark.parametrize(
    ("command", "prefix"), [("gateway", "QUANTUM_GATEWAY_"), ("notify", "QUANTUM_NOTIFY_")]
)
def test_every_variable_the_code_reads_is_documented(command: str, prefix: str) -> None:
    text = EXAMPLES[command].read_text()
    documented = set(re.findall(rf"^#?({prefix}[A-Z0-9_]+)=", text, re.MULTILINE))
    assert documented == _read_by_code(prefix)


def test_the_examples_start_with_their_credentials(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "QUANTUM_GATEWAY_SOURCES").write_text(
        '{"bot": {"kind": "hmac", "secret": "' + "s" * 32 + '"}}'
    )
    (credentials / "QUANTUM_NOTIFY_TELEGRAM_TOKEN").write_text("123:" + "t" * 30 + "\n")
    environ = {"CREDENTIALS_DIRECTORY": str(credentials)}
    gateway = gateway_config(merged_environment(EXAMPLES["gateway"], environ))
    assert (gateway.host, gateway.port, list(gateway.sources)) == ("127.0.0.1", 9110, ["bot"])
    env = merged_environment(EXAMPLES["notify"], {**environ, "QUANTUM_NOTIFY_TELEGRAM_CHAT_ID": "42"})
    notify = notify_config(env)
    assert [c.name for c in notify.channels] == ["telegram"] and notify.secrets() == ["123:" + "t" * 30]
    assert read_env_file(EXAMPLES["notify"]) == {"QUANTUM_REDIS_URL": "redis://127.0.0.1:6379/0"}
