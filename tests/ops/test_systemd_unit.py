"""The systemd units (one instance, and the template for several): systemd-analyze verify, the
directives we rely on, MemoryDenyWriteExecute."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from quantum_exec.core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "quantum-execution.service"
TEMPLATE = ROOT / "deploy" / "systemd" / "quantum-execution@.service"
# The template as systemd loads one instance of it (the instance name is the metrics port).
INSTANCE = "quantum-execution@9108.service"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (systemd allows a key several times)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "min": 60.0}
    for suffix, factor in units.items():
        if value.endswith(suffix) and value[: -len(suffix)].isdigit():
            return int(value[: -len(suffix)]) * factor
    return float(value)


@pytest.mark.parametrize(("unit", "name"), [(UNIT, UNIT.name), (TEMPLATE, INSTANCE)])
def test_systemd_analyze_verify(tmp_path: Path, unit: Path, name: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd): unit not verified")
    # verify insists that ExecStart's binary exists. Point it at this checkout's console script (the
    # same `quantum-exec serve`, only installed elsewhere); every other line is checked as shipped.
    script = Path(sys.executable).parent / "quantum-exec"
    if not script.exists():
        pytest.skip(f"{script} missing: install the package (pip install -e .) to verify the unit")
    text = unit.read_text()
    shipped = "ExecStart=/opt/quantum-exec/venv/bin/quantum-exec serve"
    assert shipped in text
    copy = tmp_path / name
    copy.write_text(text.replace(shipped, f"ExecStart={script} serve"))
    proc = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and unparsable values: any diagnostic about our file fails.
    diagnostics = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 0, diagnostics
    assert diagnostics == []


@pytest.mark.parametrize("unit", [UNIT, TEMPLATE], ids=["single", "template"])
def test_required_directives(unit: Path) -> None:
    service = parse_unit(unit)["Service"]

    def one(key: str) -> str:
        assert key in service, f"{key}= missing"
        return service[key][-1]

    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("ExecStart").endswith("/quantum-exec serve")
    assert one("Restart") == "on-failure"
    assert "/etc/quantum/execution.env" in service["EnvironmentFile"]
    assert set(service["LoadCredential"]) == {
        "BINANCE_API_KEY:/etc/quantum/credentials/binance_api_key",
        "BINANCE_API_SECRET:/etc/quantum/credentials/binance_api_secret",
    }
    # systemd SIGKILLs after TimeoutStopSec: it must leave room for the shutdown grace period.
    assert seconds(one("TimeoutStopSec")) > Settings().shutdown_grace_s + 5
    # The consumer feeds the watchdog at least once per BLOCK read; keep a wide margin over it.
    assert seconds(one("WatchdogSec")) >= 10 * Settings().block_ms / 1000
    assert one("DynamicUser") == "yes" or one("User") not in {"", "root", "0"}
    assert one("CapabilityBoundingSet") == ""
    assert one("AmbientCapabilities") == ""
    assert one("UMask") == "0077"
    assert one("RestrictAddressFamilies").split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    assert "@system-service" in service["SystemCallFilter"]
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ):
        assert one(key) == "yes", key
    assert one("ProtectSystem") == "strict"
    assert one("SystemCallArchitectures") == "native"
    # Loopback only unless a drop-in allows the operator's Redis and Binance (README).
    assert service["IPAddressDeny"] == ["any"]
    assert service["IPAddressAllow"] == ["localhost"]
    assert one("PrivateUsers") == "yes"
    assert one("ProcSubset") == "pid"


@pytest.mark.parametrize(("unit", "name"), [(UNIT, UNIT.name), (TEMPLATE, INSTANCE)])
def test_security_exposure_stays_at_most_1_5(tmp_path: Path, unit: Path, name: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd): exposure not scored")
    copy = tmp_path / name
    copy.write_text(unit.read_text())
    proc = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in proc.stderr and "unrecognized" in proc.stderr:
        pytest.skip("systemd-analyze too old for --offline (systemd >= 250)")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match[1]) <= 1.5, proc.stdout


def test_the_network_drop_in_example_is_a_valid_service_section() -> None:
    example = ROOT / "deploy" / "systemd" / "network.conf.example"
    assert list(parse_unit(example)) == ["Service"]
    assert "IPAddressAllow=" in example.read_text()


def test_the_template_is_the_single_unit_plus_the_instance_settings() -> None:
    """Everything but the instance lines stays in step with the tested single-instance unit."""
    single, template = parse_unit(UNIT), parse_unit(TEMPLATE)
    assert single.keys() == template.keys()
    for section, directives in template.items():
        differs = {
            k
            for k in directives.keys() | single[section].keys()
            if directives.get(k) != single[section].get(k)
        }
        assert differs <= {"Description", "EnvironmentFile", "Environment"}, (section, differs)
    service = template["Service"]
    assert service["EnvironmentFile"] == [
        *single["Service"]["EnvironmentFile"],
        "-/etc/quantum/execution.%i.env",
    ]
    assert set(service["Environment"]) == {"QUANTUM_UNIT_NAME=%n", "QUANTUM_METRICS_PORT=%i"}


def test_template_instances_get_distinct_consumer_names_and_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = parse_unit(TEMPLATE)["Service"]["Environment"]
    seen = set()
    for port in ("9108", "9109"):
        unit_name = f"quantum-execution@{port}.service"
        values = dict(e.replace("%n", unit_name).replace("%i", port).split("=", 1) for e in environment)
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        settings = load_settings(environ=values)
        seen.add((settings.consumer_name, settings.metrics_port))
        assert settings.consumer_name.endswith(f":{unit_name}") and settings.metrics_port == int(port)
    assert len({name for name, _ in seen}) == len({port for _, port in seen}) == 2


def test_exec_start_is_the_packaged_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    command = parse_unit(UNIT)["Service"]["ExecStart"][-1].split()
    assert Path(command[0]).name in scripts
    assert command[1:] == ["serve"]


MDWE_PROBE = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("a writable+executable mapping was allowed: MDWE is not in force")
except OSError:
    pass
import asyncio, aiohttp, orjson, hiredis, redis.asyncio, uvloop, pydantic, binance
import Crypto.Hash.SHA256, Crypto.Hash.HMAC
import quantum_exec.ops.health, quantum_exec.ops.logs, quantum_exec.ops.notify, quantum_exec.core.settings
orjson.dumps({"x": 1}); hiredis.Reader().feed(b"+OK\\r\\n")
assert ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda v: v + 1)(1) == 2  # a libffi closure
async def main():
    server = quantum_exec.ops.health.MetricsServer("127.0.0.1", 0)
    await server.start()
    async with aiohttp.ClientSession() as s, s.get(server.url + "/metrics") as r:
        assert r.status == 200
    await server.stop()
uvloop.run(main())
print("ok")
"""


def test_stack_runs_under_memory_deny_write_execute() -> None:
    """MemoryDenyWriteExecute=yes must not break the interpreter or a native extension we load.

    systemd enforces it with seccomp; Linux >= 6.3 offers the same rule as prctl(PR_SET_MDWE),
    which a plain subprocess can set on itself without root or systemd.
    """
    proc = subprocess.run([sys.executable, "-c", MDWE_PROBE], capture_output=True, text=True, timeout=60)
    if proc.returncode == 77:
        pytest.skip("kernel without PR_SET_MDWE (< 6.3): MemoryDenyWriteExecute not checked here")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
