"""Reliability harness: the real service as a process, the simulator as a process, a real Redis.

Everything here is synchronous and talks to the pieces the way an operator would: the service is
``quantum-exec serve`` in a subprocess (SIGKILL / SIGSTOP / SIGTERM), the simulator is
``python -m binance_sim`` in its own process (it outlives every service process), Redis is a
private redis-server. The final verdict is computed from the simulator's full state
(``GET /_sim/state``) and the result stream only, never from what the service says about itself.

Used by the CI-short tests in this folder and by ``scripts/soak.py`` (the long form).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import redis
from redis.sentinel import Sentinel

from quantum_exec.app.embedded import EmbeddedRedis
from quantum_exec.contracts import ExecutionResult, decode_result_fields, encode_intent_fields
from quantum_exec.core.ids import client_order_id
from support.redis_ha import MASTER_NAME, SentinelSet
from support.waiting import wait_until

# Known credentials: the service runs with them and they must never appear in its output.
API_KEY = "relKEY7f3a9c1e5b2d8f4a6c0e9b7d5f3a1c8e2b4d6f0a9c7e5b3d1f8a6c4e2b0d9f7a"
API_SECRET = "relSECRETe1d2c3b4a5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
SECRETS = (API_KEY, API_SECRET)

# Symbols the crash test trades (all TRADING perpetuals of the simulator's fixtures).
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "LINKUSDT")
FINAL_RESULT_STATUSES = frozenset({"filled", "partial", "rejected", "failed"})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(url: str, body: Any = None, timeout_s: float = 10.0) -> Any:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout_s) as reply:
        raw = reply.read()
    return orjson.loads(raw) if raw else None


# --------------------------------------------------------------------------------------------
# the simulator process


class SimProcess:
    """``python -m binance_sim`` on a free port with the known credentials; rate limits optional."""

    def __init__(self, workdir: Path, *, rate_limits: bool = False) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.rate_limits = rate_limits
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SimProcess:
        args = [
            sys.executable,
            "-m",
            "binance_sim",
            "--port",
            str(self.port),
            "--api-key",
            API_KEY,
            "--api-secret",
            API_SECRET,
        ]
        if not self.rate_limits:
            args.append("--no-rate-limits")
        log = (self.workdir / f"sim-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._up, 20, "simulator up", poll_s=0.05)
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"simulator exited with {self.proc.returncode}")
        try:
            _http(self.base_url + "/fapi/v1/ping", timeout_s=1)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = _http(self.base_url + "/_sim/state")
        return state

    def faults(self, faults: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        _http(self.base_url + "/_sim/faults", {"faults": faults or [], **extra})

    def mark(self, symbol: str, price: Decimal | str) -> None:
        _http(self.base_url + "/_sim/markPrice", {"symbol": symbol, "price": str(price)})


# --------------------------------------------------------------------------------------------
# the service process


@dataclass
class Names:
    """Unique stream/group/prefix names of one scenario."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def intent_stream(self) -> str:
        return f"rel:{self.tag}:intent"

    @property
    def consumer_group(self) -> str:
        return f"rel:{self.tag}:group"

    @property
    def result_stream(self) -> str:
        return f"rel:{self.tag}:result"

    @property
    def dlq_stream(self) -> str:
        return f"rel:{self.tag}:dlq"

    @property
    def key_prefix(self) -> str:
        return f"rel:{self.tag}:exec"


class ServiceProcess:
    """One ``quantum-exec serve`` process; every start writes its own log file in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        redis_url: str,
        sim: SimProcess,
        names: Names,
        *,
        consumer: str = "rel-a",
        **env: Any,
    ) -> None:
        self.workdir = workdir
        self.redis_url = redis_url
        self.sim = sim
        self.names = names
        self.consumer = consumer
        self.extra_env = {k.upper(): str(v) for k, v in env.items()}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.metrics_port: int | None = None
        self.starts = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
        env.pop("NOTIFY_SOCKET", None)
        self.metrics_port = free_port()
        env.update(
            {
                "QUANTUM_REDIS_URL": self.redis_url,
                "QUANTUM_BINANCE_BASE_URL": self.sim.base_url,
                "BINANCE_API_KEY": API_KEY,
                "BINANCE_API_SECRET": API_SECRET,
                "QUANTUM_CONSUMER_NAME": self.consumer,
                "QUANTUM_INTENT_STREAM": self.names.intent_stream,
                "QUANTUM_CONSUMER_GROUP": self.names.consumer_group,
                "QUANTUM_RESULT_STREAM": self.names.result_stream,
                "QUANTUM_DLQ_STREAM": self.names.dlq_stream,
                "QUANTUM_KEY_PREFIX": self.names.key_prefix,
                "QUANTUM_METRICS_HOST": "127.0.0.1",
                "QUANTUM_METRICS_PORT": str(self.metrics_port),
                "QUANTUM_CLAIM_IDLE_MS": "1000",
                "QUANTUM_CLAIM_INTERVAL_S": "0.2",
                "QUANTUM_LEASE_TTL_MS": "2000",
                "QUANTUM_BLOCK_MS": "200",
                "QUANTUM_RECV_WINDOW_MS": "2000",
                "QUANTUM_REQUEST_TIMEOUT_S": "3",
                "QUANTUM_ORDER_LOOKUP_INTERVAL_S": "0.05",
                "QUANTUM_SHUTDOWN_GRACE_S": "10",
                "QUANTUM_REDIS_RECONNECT_MAX_S": "0.5",
                "QUANTUM_LOG_FORMAT": "json",
                "QUANTUM_LOG_LEVEL": "INFO",
                "QUANTUM_WATCHDOG": "false",
                "QUANTUM_DEFAULT_LEVERAGE": "2",
            }
        )
        env.update(self.extra_env)
        if "QUANTUM_REDIS_SENTINELS" in env:
            del env["QUANTUM_REDIS_URL"]  # one or the other: the sentinels name the master
        return env

    def start(self, *, wait_ready: bool = True) -> ServiceProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.log_path = self.workdir / f"service-{self.consumer}-{self.starts:04d}.log"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quantum_exec.app.cli", "serve"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        if wait_ready:
            # Generous: the service paces itself below the exchange's weight limit (the simulator's
            # headers stay truthful with limits off), so after many restarts a start may wait for
            # the 1-minute window.
            try:
                wait_until(self.ready, 90, f"service {self.consumer} ready", poll_s=0.05)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; log tail: {self.tail()}") from None
        return self

    def ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"service exited with {self.proc and self.proc.returncode}: {self.tail()}")
        assert self.log_path is not None
        return b'"service.started"' in self.log_path.read_bytes()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup at all."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM and wait for the drain; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"service did not stop within {timeout_s}s") from None
        return int(self.proc.returncode)

    def scrape_metrics(self) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            return bytes(reply.read())

    def tail(self, n: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def logs(self) -> list[Path]:
        return sorted(self.workdir.glob(f"service-{self.consumer}-*.log"))


# --------------------------------------------------------------------------------------------
# Redis side: publishing and reading back


class Streams:
    """The test's own Redis client over one scenario's names (a producer and a results reader)."""

    def __init__(self, url: str, names: Names, client: redis.Redis | None = None) -> None:
        self.client = (
            client if client is not None else redis.Redis.from_url(url, protocol=2, socket_timeout=10)
        )
        self.names = names

    def close(self) -> None:
        self.client.close()

    def publish(self, payload: dict[str, Any]) -> str:
        return self.publish_many([payload])[0]

    def publish_many(self, payloads: list[dict[str, Any]]) -> list[str]:
        # Tried again once the client found the master (after a failover its first call fails);
        # an entry sent twice is one intent answered once (the consumer dedupes by intent_id).
        for tries_left in range(3, 0, -1):
            pipe = self.client.pipeline(transaction=False)
            for payload in payloads:
                pipe.xadd(self.names.intent_stream, encode_intent_fields(payload, "reliability"))  # type: ignore[arg-type]
            try:
                return [sid.decode() for sid in pipe.execute()]
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                if tries_left == 1:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def publish_raw_many(self, entries: list[dict[bytes, bytes]]) -> list[str]:
        pipe = self.client.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd(self.names.intent_stream, fields)  # type: ignore[arg-type]
        return [sid.decode() for sid in pipe.execute()]

    def result_rows(self) -> list[tuple[str, dict[bytes, bytes]]]:
        return [(sid.decode(), f) for sid, f in self.client.xrange(self.names.result_stream)]

    def results(self) -> list[ExecutionResult]:
        return [decode_result_fields(f) for _sid, f in self.result_rows()]

    def result_count(self) -> int:
        try:
            return int(self.client.xlen(self.names.result_stream))
        except redis.exceptions.ConnectionError:
            return -1

    def dead_letters(self) -> list[dict[bytes, bytes]]:
        return [f for _sid, f in self.client.xrange(self.names.dlq_stream)]

    def pending(self) -> int:
        try:
            info = self.client.xpending(self.names.intent_stream, self.names.consumer_group)
        except redis.exceptions.ResponseError:
            return -1  # no group yet
        return int(info["pending"])

    def idem_state(self, intent_id: str) -> str | None:
        """The intent's record state (None also while Redis is unreachable: a failover)."""
        try:
            value = self.client.hget(f"{self.names.key_prefix}:idem:{intent_id}", "state")
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return None
        return value.decode() if value is not None else None

    def replicated(self, timeout_ms: int = 1000) -> bool:
        """WAIT until a replica has every write so far (True at once without replicas)."""
        info = self.client.info("replication")
        if int(info.get("connected_slaves", 0)) == 0:
            return True
        return int(self.client.execute_command("WAIT", 1, timeout_ms)) >= 1

    def wait_answered(self, intent_ids: set[str], timeout_s: float) -> list[ExecutionResult]:
        """Wait until every intent id has a result and nothing is pending in the group."""
        results: list[ExecutionResult] = []

        def answered() -> bool:
            nonlocal results
            try:
                results = self.results()
                pending = self.pending()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                return False
            have = {r.intent_id for r in results}
            return intent_ids <= have and pending == 0

        wait_until(answered, timeout_s, f"results for {len(intent_ids)} intents", poll_s=0.1)
        return results


# --------------------------------------------------------------------------------------------
# the verdict: computed from the simulator's state and the result stream only


@dataclass
class Verdict:
    intents: int = 0
    results: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated_results: list[str] = field(default_factory=list)
    unexpected_results: list[str] = field(default_factory=list)
    duplicated_entries: list[str] = field(default_factory=list)
    entry_mismatch: list[str] = field(default_factory=list)
    foreign_orders: list[str] = field(default_factory=list)
    unprotected: list[str] = field(default_factory=list)
    reported_unprotected: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    explained_orphans: int = 0
    filled: int = 0
    open_positions: int = 0

    @property
    def violations(self) -> dict[str, list[str]]:
        found = {
            "lost": self.lost,
            "duplicated_results": self.duplicated_results,
            "unexpected_results": self.unexpected_results,
            "duplicated_entries": self.duplicated_entries,
            "entry_mismatch": self.entry_mismatch,
            "foreign_orders": self.foreign_orders,
            "unprotected": self.unprotected,
            "orphans": self.orphans,
        }
        return {k: v for k, v in found.items() if v}

    def assert_clean(self) -> None:
        assert not self.violations, f"guarantees broken: {self.violations}"


def verdict(
    intents: dict[str, dict[str, Any]], results: list[ExecutionResult], state: dict[str, Any]
) -> Verdict:
    """Check the three promises for ``intents`` (intent_id -> payload, in publish order).

    * exactly one final result per intent;
    * at most one entry order per intent, exactly one when the result says it filled;
    * every open position is covered by open SL *and* TP orders on the closing side for its whole
      size, unless a result on that symbol loudly reports it (``unprotected``/``partial``);
    * no orphan: an open protective order on a flat symbol is only allowed when its sibling leg
      already fired (Binance has no OCO: the survivor stays until the next intent on the symbol,
      which cancels it) and no later intent on that symbol has been executed since.
    """
    v = Verdict(intents=len(intents), results=len(results))
    per_id = Counter(r.intent_id for r in results)
    by_id = {r.intent_id: r for r in results}
    v.lost = sorted(i for i in intents if per_id[i] == 0)
    v.duplicated_results = sorted(i for i, n in per_id.items() if n > 1)
    v.unexpected_results = sorted(str(i) for i in per_id if i not in intents)
    v.unexpected_results += [
        f"{r.intent_id}:status={r.status}" for r in results if r.status.value not in FINAL_RESULT_STATUSES
    ]

    orders = state["orders"]
    by_client = Counter(o["clientOrderId"] for o in orders)
    role_of: dict[str, tuple[str, str]] = {}
    for intent_id in intents:
        for role in ("entry", "close", "flatten"):
            role_of[client_order_id(intent_id, role)] = (intent_id, role)
    for o in orders:
        cid = o["clientOrderId"]
        if cid in role_of:
            continue
        if o.get("origType") in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            continue  # placed by the exchange when one of our protective orders fired
        v.foreign_orders.append(f"{o['symbol']}:{cid}:{o['type']}")
    for intent_id, payload in intents.items():
        role = "close" if str(payload.get("side")).upper() == "CLOSE" else "entry"
        n = by_client[client_order_id(intent_id, role)]
        if n > 1:
            v.duplicated_entries.append(f"{intent_id} ({n} {role} orders)")
        result = by_id.get(intent_id)
        if result is None:
            continue
        if result.status.value in ("filled", "partial"):
            v.filled += 1
            if n != 1:
                v.entry_mismatch.append(f"{intent_id}: result {result.status.value}, {n} {role} orders")
        elif result.status.value == "rejected" and n != 0:
            v.entry_mismatch.append(f"{intent_id}: rejected but {n} {role} orders exist")

    # protection and orphans
    algos = state["algoOrders"]
    by_algo_client = {a["clientAlgoId"]: a for a in algos}
    positions: dict[str, Decimal] = defaultdict(Decimal)
    for p in state["positions"]:
        positions[p["symbol"]] += Decimal(str(p["positionAmt"]))
    loud = {
        r.symbol
        for r in results
        if r.protection.value in ("unprotected", "partial")
        and r.status.value in ("filled", "partial", "failed")
    }
    open_algos = [a for a in algos if a["algoStatus"] == "NEW"]
    for symbol, amount in positions.items():
        if amount == 0:
            continue
        v.open_positions += 1
        closing = "SELL" if amount > 0 else "BUY"
        cover = {
            kind: sum(
                (
                    Decimal(str(a["quantity"]))
                    for a in open_algos
                    if a["symbol"] == symbol and a["side"] == closing and a["orderType"] == kind
                ),
                Decimal(0),
            )
            for kind in ("STOP_MARKET", "TAKE_PROFIT_MARKET")
        }
        if all(q >= abs(amount) for q in cover.values()):
            continue
        if symbol in loud:
            v.reported_unprotected.append(symbol)
        else:
            v.unprotected.append(
                f"{symbol}: position {amount}, open SL {cover['STOP_MARKET']}, "
                f"TP {cover['TAKE_PROFIT_MARKET']}"
            )

    leg_of: dict[str, tuple[str, str]] = {}
    for intent_id in intents:
        # A leg and its replacement (the live OCO's make before break), under the id numbered 1.
        for child in (None, 1):
            leg_of[client_order_id(intent_id, "sl", child)] = (intent_id, "tp")
            leg_of[client_order_id(intent_id, "tp", child)] = (intent_id, "sl")
    order_index = {i: n for n, i in enumerate(intents)}
    last_executed: dict[str, int] = {}
    last_close: dict[str, int] = {}
    for intent_id, payload in intents.items():
        result = by_id.get(intent_id)
        if result is not None and result.status.value in ("filled", "partial", "failed"):
            symbol = str(payload.get("symbol", "")).upper()
            last_executed[symbol] = max(last_executed.get(symbol, -1), order_index[intent_id])
            if str(payload.get("side")).upper() == "CLOSE":
                last_close[symbol] = max(last_close.get(symbol, -1), order_index[intent_id])
    for a in open_algos:
        symbol = a["symbol"]
        amount = positions.get(symbol, Decimal(0))
        owner = leg_of.get(a["clientAlgoId"])
        if owner is None:
            v.orphans.append(f"{symbol}:{a['clientAlgoId']} (not ours)")
            continue
        intent_id, sibling_kind = owner
        closing_ok = amount != 0 and a["side"] == ("SELL" if amount > 0 else "BUY")
        if closing_ok and order_index[intent_id] > last_close.get(symbol, -1):
            continue  # protects the live position (one of the opens since the last CLOSE: pyramiding)
        copies = [by_algo_client.get(client_order_id(intent_id, sibling_kind, c)) for c in (None, 1)]
        fired_copies = [c for c in copies if c is not None and c["algoStatus"] in ("TRIGGERED", "FINISHED")]
        sibling = fired_copies[0] if fired_copies else copies[0] or copies[1]
        fired = bool(fired_copies)
        if fired and order_index[intent_id] == last_executed.get(symbol):
            v.explained_orphans += 1  # the next intent on the symbol cancels it
            continue
        v.orphans.append(
            f"{symbol}:{a['clientAlgoId']} of {intent_id} (position {amount}, sibling "
            f"{sibling['algoStatus'] if sibling else 'absent'})"
        )
    return v


def find_secrets(blobs: dict[str, bytes]) -> list[str]:
    """Names of the blobs in which the API key or secret (or a long prefix of either) appears."""
    needles = [s.encode() for s in SECRETS] + [s[:16].encode() for s in SECRETS]
    return sorted(name for name, blob in blobs.items() if any(n in blob for n in needles))


def stream_bytes(streams: Streams, name: str) -> bytes:
    rows = streams.client.xrange(name)
    return b"\n".join(k + b"=" + v for _sid, fields in rows for k, v in fields.items())


def secret_blobs(streams: Streams, services: list[ServiceProcess]) -> dict[str, bytes]:
    blobs = {
        "results": stream_bytes(streams, streams.names.result_stream),
        "dead_letters": stream_bytes(streams, streams.names.dlq_stream),
    }
    for service in services:
        for path in service.logs():
            blobs[f"log:{path.name}"] = path.read_bytes()
    return blobs


@contextlib.contextmanager
def workdir(prefix: str = "quantum-rel-") -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as path:
        yield Path(path)


class Rig:
    """One scenario's world: a private Redis, the simulator process, the streams, the services.

    ``with Rig(work) as rig:`` starts them; leaving the block kills every service it made (a
    frozen one is resumed first), closes the streams and stops the simulator and Redis.
    """

    def __init__(self, work: Path, *, persistent: bool = False, sentinel: bool = False) -> None:
        self.work = work
        self.names = Names()
        self.redis = EmbeddedRedis(persistent=persistent)
        # With ``sentinel``: a Sentinel-watched master and replica instead (:meth:`fail_over`).
        self.sentinel = sentinel
        self.ha: SentinelSet | None = None
        self.sim: SimProcess
        self.streams: Streams
        self.services: list[ServiceProcess] = []

    def __enter__(self) -> Rig:
        if self.sentinel:
            self.ha = SentinelSet()
        else:
            self.redis.start()
        try:
            self.sim = SimProcess(self.work).start()
            self.streams = self._streams()
        except BaseException:
            self._stop_redis()
            raise
        return self

    def _streams(self) -> Streams:
        if self.ha is None:
            return Streams(self.redis.url, self.names)
        sentinels = Sentinel([("127.0.0.1", s.port) for s in self.ha.sentinels], socket_timeout=2)
        client = sentinels.master_for(MASTER_NAME, protocol=2, socket_timeout=10)
        return Streams("", self.names, client)

    @property
    def redis_url(self) -> str:
        return self.redis.url if self.ha is None else f"redis://{self.ha.master.address}"

    def fail_over(self) -> float:
        """The Sentinel master SIGKILLed and the replica promoted (seconds it took); see
        :meth:`SentinelSet.fail_over`."""
        assert self.ha is not None, "a Rig(sentinel=True) only"
        return self.ha.fail_over()

    def _stop_redis(self) -> None:
        if self.ha is not None:
            self.ha.stop()
        else:
            self.redis.stop()

    def service(self, consumer: str, **env: Any) -> ServiceProcess:
        """A service process (not started) of this rig under the stable ``consumer`` name;
        ``env`` sets more QUANTUM_* variables (``intent_ttl_s=600``)."""
        if self.ha is not None:
            env = {"redis_sentinels": self.ha.addresses, "redis_sentinel_master": MASTER_NAME, **env}
        service = ServiceProcess(
            self.work,
            self.redis_url,
            self.sim,
            self.names,
            consumer=consumer,
            **{f"quantum_{k}": v for k, v in env.items()},
        )
        self.services.append(service)
        return service

    def __exit__(self, *exc: object) -> None:
        try:
            for service in self.services:
                if service.alive:
                    service.resume()
                service.kill()
            self.streams.close()
            self.sim.stop()
        finally:
            self._stop_redis()
