"""The image, built and run for real with podman (marked ``container``; skipped, saying why, without).

No image registry is reachable from CI, so the base is made here: Debian bookworm with its
python3 by debootstrap (about 2 minutes, once: podman keeps it as ``localhost/quantum-exec-base``),
plus the host's CA bundle (outbound HTTPS goes through an interception proxy) for the build's
``pip install``. The Dockerfile is built with ``--build-arg PYTHON_IMAGE=`` that base; podman's
layer cache keeps the dependency layer while requirements.lock is unchanged. See
/work/shared/docs/containers.md for why ``--runtime runc`` and ``default_ulimits = []``.

Then, as a user would: ``demo`` inside; the default command (``serve`` on embedded defaults, state
in the image's volume) to readiness, asked with ``quantum-exec check`` inside; one intent
submitted inside and answered ``filled``/``protected``; SIGTERM; a clean exit 0 with nothing left
in flight. The service runs as UID 10001 throughout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.waiting import poll_until

pytestmark = [pytest.mark.container, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/quantum-exec-base:bookworm"
BASE_CA = "localhost/quantum-exec-base-ca:bookworm"
IMAGE = "localhost/quantum-exec:test"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def _missing() -> str | None:
    if shutil.which("podman") is None:
        return "podman not installed (.ci/run installs podman, runc and debootstrap as root)"
    if shutil.which("runc") is None:
        return "runc not installed (podman's default crun refuses this machine's cgroups)"
    return None


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")  # podman's defaults are refused here
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(
    env: dict[str, str], *args: str, timeout: float = 120, check: bool = True, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", "--runtime", "runc", *args],
        env=env,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: rc {result.returncode}\n{result.stderr[-3000:]}")
    return result


def _exists(env: dict[str, str], image: str) -> bool:
    return podman(env, "image", "exists", image, check=False).returncode == 0


def _image_id(env: dict[str, str], image: str) -> str | None:
    found = podman(env, "image", "inspect", "--format", "{{.Id}}", image, check=False)
    return found.stdout.strip() or None if found.returncode == 0 else None


def _make_base(env: dict[str, str], workdir: Path) -> None:
    if _exists(env, BASE):
        return
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        pytest.skip(f"no {BASE} image and no way to make one (debootstrap as root)")
    rootfs = workdir / "rootfs"
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,python-is-python3,ca-certificates",
            "bookworm",
            str(rootfs),
            "http://deb.debian.org/debian",
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["podman", "--runtime", "runc", "import", "-", BASE],
        env=env,
        stdin=tar.stdout,
        capture_output=True,
        timeout=300,
    )
    tar.wait(timeout=60)
    assert imported.returncode == 0, imported.stderr[-2000:]
    shutil.rmtree(rootfs, ignore_errors=True)


@pytest.fixture(scope="module")
def image(podman_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    workdir = tmp_path_factory.mktemp("image")
    _make_base(podman_env, workdir)
    context = workdir / "ca"
    context.mkdir()
    bundle = context / "ca-certificates.crt"
    shutil.copyfile(HOST_CA, bundle) if HOST_CA.is_file() else bundle.write_text("")
    copy = "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt" if HOST_CA.is_file() else ""
    (context / "Containerfile").write_text(f"FROM {BASE}\n{copy}\n")
    podman(podman_env, "build", "-q", "-t", BASE_CA, str(context), timeout=300)
    previous = _image_id(podman_env, IMAGE)
    started = time.monotonic()
    podman(
        podman_env,
        "build",
        "--format",
        "docker",
        "--network",
        "host",
        "--build-arg",
        f"PYTHON_IMAGE={BASE_CA}",
        "-t",
        IMAGE,
        str(ROOT),
        timeout=900,
    )
    print(f"image built in {time.monotonic() - started:.1f}s")
    # The image the last run built is left untagged (400 MB each run): dropped. Not a prune: the
    # untagged images of the build stage are podman's layer cache (the dependency layer).
    if previous and previous != _image_id(podman_env, IMAGE):
        podman(podman_env, "rmi", previous, check=False, timeout=120)
    return IMAGE


@pytest.fixture
def container(podman_env: dict[str, str], image: str) -> Iterator[str]:
    name = f"qx-test-{uuid.uuid4().hex[:8]}"
    yield name
    podman(podman_env, "rm", "-f", "-v", name, check=False, timeout=120)


def test_demo_runs_in_the_image(podman_env: dict[str, str], image: str) -> None:
    result = podman(podman_env, "run", "--rm", "--network", "none", image, "demo", timeout=300)
    assert "every intent got exactly one result" in result.stdout, result.stdout[-2000:]


def test_default_serve_is_ready_takes_an_intent_and_stops_cleanly_on_sigterm(
    podman_env: dict[str, str], image: str, container: str
) -> None:
    podman(podman_env, "run", "-d", "--network", "none", "--name", container, image)

    def ready() -> bool:
        state = podman(podman_env, "inspect", container, "--format", "{{.State.Running}}").stdout.strip()
        assert state == "true", podman(podman_env, "logs", container, check=False).stderr[-3000:]
        return podman(podman_env, "exec", container, "quantum-exec", "check", check=False).returncode == 0

    assert poll_until(ready, 180, poll_s=1), "serve never became ready (quantum-exec check)"
    status = podman(podman_env, "exec", container, "cat", "/proc/1/status").stdout
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {"10001"}, status
    volume = podman(podman_env, "exec", container, "stat", "-c", "%u %a", "/var/lib/quantum-exec").stdout
    assert volume.split() == ["10001", "700"]

    submitted = podman(
        podman_env,
        "exec",
        container,
        "quantum-exec",
        "submit",
        "--symbol",
        "BTCUSDT",
        "--side",
        "BUY",
        "--size-usd",
        "500",
        "--leverage",
        "3",
        "--sl-pct",
        "1.5",
        "--tp-pct",
        "3",
    ).stdout.strip()

    def answered() -> list[dict[str, object]]:
        out = podman(podman_env, "exec", container, "quantum-exec", "results", "--json").stdout
        return [r for r in map(json.loads, out.splitlines()) if r.get("intent_id") == submitted]

    assert poll_until(answered, 60, poll_s=0.5), f"no result for {submitted}"
    (result,) = answered()
    assert result["status"] == "filled" and result["protection"] == "protected", result

    podman(podman_env, "stop", "-t", "60", container, timeout=120)  # STOPSIGNAL SIGTERM
    assert podman(podman_env, "inspect", container, "--format", "{{.State.ExitCode}}").stdout.strip() == "0"
    logs = podman(podman_env, "logs", container).stdout
    stopped = [json.loads(line) for line in logs.splitlines() if '"service.stopped"' in line]
    assert stopped and stopped[-1]["drained"] is True, logs[-3000:]
    assert "Traceback" not in logs
