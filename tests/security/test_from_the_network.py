"""Attacks on the metrics port from another host (issue #25), made real with network namespaces.

The test makes two namespaces joined by a veth pair on documentation addresses (RFC 5737): the
"host", 192.0.2.1, runs a real ``quantum-exec serve`` on its embedded defaults (Redis on a unix
socket, the simulator on the namespace's own loopback), and the "peer", 192.0.2.2, sends every
request, so the source address is a network peer's, never loopback. Nothing leaves the machine:
the link is private to the test and removed after it. Skipped, with the reason, where namespaces
cannot be made (not root, no ``ip``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from security.serve_proc import Serve
from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

HOST_ADDRESS = "192.0.2.1"
PEER_ADDRESS = "192.0.2.2"
PORT = 9108
API_TOKEN = "network-token-for-the-security-suite"
CONFIDENTIAL = ("quantum_exec_open_position_notional", "quantum_exec_ledger_net_pnl")

_PROBE = """
import json, sys, urllib.request, urllib.error
url, headers = sys.argv[1], json.loads(sys.argv[2])
try:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode(errors="replace")}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode(errors="replace")}))
except OSError as e:
    print(json.dumps({"status": None, "body": type(e).__name__ + ": " + str(e)}))
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def link() -> Iterator[tuple[str, str]]:
    """(host namespace, peer namespace), joined by a veth pair: 192.0.2.1 <-> 192.0.2.2."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's ip")
    tag = uuid.uuid4().hex[:6]
    host, peer = f"qx-host-{tag}", f"qx-peer-{tag}"
    made: list[str] = []
    try:
        for namespace in (host, peer):
            _ip("netns", "add", namespace)
            made.append(namespace)
        _ip("link", "add", f"qxh{tag}", "type", "veth", "peer", "name", f"qxp{tag}")
        for namespace, dev, address in ((host, f"qxh{tag}", HOST_ADDRESS), (peer, f"qxp{tag}", PEER_ADDRESS)):
            _ip("link", "set", dev, "netns", namespace)
            _ip("netns", "exec", namespace, "ip", "addr", "add", f"{address}/24", "dev", dev)
            _ip("netns", "exec", namespace, "ip", "link", "set", dev, "up")
            _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
    except subprocess.CalledProcessError as exc:
        for namespace in made:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
        pytest.skip(f"cannot make network namespaces here: {exc.stderr.decode().strip()}")
    try:
        yield host, peer
    finally:
        for namespace in made:  # deleting a namespace removes its end of the pair, and so both
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)


def probe(namespace: str, url: str, headers: dict[str, str] | None = None) -> tuple[int | None, str]:
    """GET ``url`` from inside ``namespace``: (status, body); status None when nothing answered."""
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", _PROBE, url, json.dumps(headers or {})],
        capture_output=True,
        text=True,
        timeout=30,
    )
    answer = json.loads(done.stdout)
    return answer["status"], answer["body"]


def serve_in(host: str, tmp: Path, **env: str) -> Serve:
    """A real ``serve`` on the embedded defaults inside the host namespace, ready."""
    served = Serve(tmp, wrap=("ip", "netns", "exec", host), QUANTUM_METRICS_PORT=str(PORT), **env)
    served.start()
    wait_until(
        lambda: probe(host, f"http://127.0.0.1:{PORT}/readyz")[0] == 200, 90, "serve ready in its namespace"
    )
    return served


def series(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


@pytest.fixture
def host_default(link: tuple[str, str], tmp_path: Path) -> Iterator[Serve]:
    served = serve_in(link[0], tmp_path)
    yield served
    served.stop()


def test_the_default_port_cannot_be_reached_from_the_network(
    link: tuple[str, str], host_default: Serve
) -> None:
    host, peer = link
    assert probe(host, f"http://127.0.0.1:{PORT}/healthz")[0] == 200  # it runs, on loopback
    for path in ("/healthz", "/metrics", "/api/positions"):
        status, body = probe(peer, f"http://{HOST_ADDRESS}:{PORT}{path}")
        assert status is None and "refused" in body.lower(), (path, body)


def test_an_opened_port_without_a_token_serves_the_network_no_book(
    link: tuple[str, str], tmp_path: Path
) -> None:
    host, peer = link
    served = serve_in(host, tmp_path, QUANTUM_METRICS_HOST="0.0.0.0")
    try:
        base = f"http://{HOST_ADDRESS}:{PORT}"
        assert probe(peer, f"{base}/healthz")[0] == 200  # the port really is open to the peer
        for path in ("/api/positions", "/api/trades", "/api/results", "/"):
            status, body = probe(peer, f"{base}{path}")
            assert status == 403, (path, status, body)
        # A Host header naming loopback does not make a network peer local.
        assert probe(peer, f"{base}/api/positions", {"Host": f"localhost:{PORT}"})[0] == 403
        status, text = probe(peer, f"{base}/metrics")
        assert status == 200 and "quantum_exec_intents" in series(text)
        assert not set(CONFIDENTIAL) & series(text)
    finally:
        served.stop()


def test_an_opened_port_with_a_token_wants_it_from_the_network(link: tuple[str, str], tmp_path: Path) -> None:
    host, peer = link
    served = serve_in(host, tmp_path, QUANTUM_METRICS_HOST="0.0.0.0", QUANTUM_API_TOKEN=API_TOKEN)
    try:
        url = f"http://{HOST_ADDRESS}:{PORT}/api/positions"
        assert probe(peer, url)[0] == 401
        assert probe(peer, url, {"Authorization": "Bearer not-the-token-at-all-here"})[0] == 401
        status, body = probe(peer, url, {"Authorization": f"Bearer {API_TOKEN}"})
        assert status == 200, body
        assert isinstance(json.loads(body), (list, dict))
    finally:
        served.stop()
