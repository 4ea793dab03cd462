"""A replaced release or a compromised mirror must not get installed: every dependency, dev tool
and build backend is pinned with its hashes, and every install path (make install and CI, the
image, the systemd install steps) makes pip check them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of each requirement (joined over its continuation lines)."""
    text = re.sub(r"\\\n\s*", " ", lock.read_text())
    found: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert match, f"{lock.name}: not an exact pin: {line}"
        found[canonical(match[1])] = (match[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return found


def names(requirements: list[str]) -> set[str]:
    return {canonical(re.match(r"[A-Za-z0-9._-]+", r)[0]) for r in requirements}  # type: ignore[index]


def test_every_pin_carries_hashes_and_the_locks_agree() -> None:
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    for lock, found in (("requirements.lock", runtime), ("requirements-dev.lock", dev)):
        missing = sorted(name for name, (_, hashes) in found.items() if not hashes)
        assert not missing, f"{lock}: pins without --hash: {missing}"
    assert set(runtime) <= set(dev)
    assert {name: runtime[name][0] for name in runtime} == {name: dev[name][0] for name in runtime}


def test_the_locks_cover_what_the_project_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime_deps = names(project["project"]["dependencies"])
    build_deps = names(project["build-system"]["requires"])
    dev_deps = names(project["project"]["optional-dependencies"]["dev"])
    assert runtime_deps | build_deps <= set(pins(RUNTIME_LOCK))
    assert runtime_deps | build_deps | dev_deps <= set(pins(DEV_LOCK))


def test_every_install_path_checks_the_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q --require-hashes -r requirements-dev.lock" in makefile
    assert "pip install -q --no-deps --no-build-isolation -e ." in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert "pip install --no-deps --no-build-isolation ." in dockerfile
    assert "make install" in (ROOT / ".ci" / "run").read_text()
    unit = (ROOT / "deploy" / "systemd" / "quantum-execution.service").read_text()
    assert "pip install --require-hashes -r requirements.lock" in unit
    everything = makefile + dockerfile + unit
    # No install that resolves versions by itself (a constraint file is not checked for hashes).
    assert "-c requirements" not in everything
