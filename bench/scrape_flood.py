"""The metrics port under a scrape flood (issue #25): intent latency quiet against flooded.

One service process with its operations server on (``/metrics``, ``/readyz``, the API), the
light latency load of the latency scenario, and in turn three phases on that same process:
``quiet``; ``flooded``, a second process flooding the service's ``/metrics`` at a fixed rate (open
loop, a pool of kept-alive connections, as many parallel scrapers would); ``control``, the same
flood aimed at a bystander HTTP server in a third process, so the machine carries the same
extra load while the service is left alone. ``flooded`` against ``quiet`` is the figure asked
for; ``flooded`` against ``control`` separates what the service's HTTP server costs the order
path from what two more busy processes cost a 2-core machine. The latency is end-to-end (XADD ->
result committed), p50 per phase, the median over runs.

``python -m bench.scrape_flood <url> <requests/s> <connections> <out.json>`` is the flooder: it
prints ``READY`` after its first answer and writes its counts to ``out.json`` on SIGTERM.
``python -m bench.scrape_flood --bystander <port>`` is the bystander: every request gets the
short 429 the service gives a flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    RESULT_STREAM,
    Child,
    Sim,
    cpu_s,
    median,
    pct,
    start_child,
    whole_rounds,
    workload,
)
from bench.scenarios import (
    Env,
    check_results,
    publish_paced,
    read_results,
    start_worker,
    stop_worker,
    wait_results,
    warm_up,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_flood(env: Env, url: str, rps: float, connections: int, tag: str) -> tuple[Child, Path]:
    outfile = env.workdir / f"flood-{tag}.json"
    child, _ = start_child(
        ["bench.scrape_flood", url, str(rps), str(connections), str(outfile)],
        env.workdir / f"flood-{tag}.stderr",
        "READY",
    )
    return child, outfile


def stop_flood(child: Child, outfile: Path) -> dict[str, Any]:
    code = child.stop(timeout=30)
    if code != 0 or not outfile.exists():
        tail = child.log_path.read_text()[-3000:] if child.log_path else ""
        raise RuntimeError(f"flooder exited with {code}:\n{tail}")
    data: dict[str, Any] = orjson.loads(outfile.read_bytes())
    return data


PHASES = ("quiet", "flooded", "control")


def scrape_flood(
    env: Env, sim: Sim, *, count: int, rate: float, flood_rps: float, connections: int, runs: int
) -> dict[str, Any]:
    """``runs`` rounds of the three phases on one service process; p50 per phase."""
    env.clean()
    sim.fresh(rate_limits=False)
    tag = env.next_tag("flood")
    port, bystander_port = _free_port(), _free_port()
    targets = {
        "flooded": f"http://127.0.0.1:{port}/metrics",
        "control": f"http://127.0.0.1:{bystander_port}/metrics",
    }
    child, outfile = start_worker(
        env, sim, pacing=False, instrument=True, tag=tag, operations=True, metrics_port=port
    )
    bystander, _ = start_child(
        ["bench.scrape_flood", "--bystander", str(bystander_port)], env.workdir / "bystander.stderr", "READY"
    )
    phases: list[dict[str, Any]] = []
    try:
        warm_up(env)
        for run in range(runs):
            for name in PHASES:
                flood = None
                if name in targets:
                    flood = start_flood(env, targets[name], flood_rps, connections, f"{tag}-{run}-{name}")
                cpu0, t0 = cpu_s(child.pid), time.monotonic()
                try:
                    already = env.r.xlen(RESULT_STREAM)
                    intents = workload(f"{tag}-{run}{name[0]}-", whole_rounds(count))
                    sent = publish_paced(env.r, intents, rate)
                    wait_results(env.r, already + len(intents))
                finally:
                    stats = stop_flood(*flood) if flood is not None else None
                busy = (cpu_s(child.pid) - cpu0) / (time.monotonic() - t0)
                phases.append({"phase": name, "sent": sent, "flood": stats, "service_cpu": busy})
    finally:
        bystander.stop()
        data = stop_worker(child, outfile)
    results, _ = read_results(env.r)
    records = {row[0]: row for row in data["records"]}
    ms = 1000.0
    out: dict[str, Any] = {"phases": []}
    for phase in phases:
        e2e = [
            records[sid][3] - at for sid, at in phase["sent"].items() if sid in records and records[sid][3]
        ]
        out["phases"].append(
            {
                "phase": phase["phase"],
                "intents": len(phase["sent"]),
                "e2e_ms": {q: pct(e2e, q) * ms for q in (50, 99)},
                # The service process's CPU use during the phase (1.0 = one core).
                "service_cpu": phase["service_cpu"],
                "flood": phase["flood"],
            }
        )
    for name in PHASES:
        out[f"{name}_p50_ms"] = median([p["e2e_ms"][50] for p in out["phases"] if p["phase"] == name])
    out["ratio"] = out["flooded_p50_ms"] / out["quiet_p50_ms"]
    out["ratio_to_control"] = out["flooded_p50_ms"] / out["control_p50_ms"]
    out["check"] = check_results(results)
    out["params"] = {"rate": rate, "flood_rps": flood_rps, "connections": connections, "runs": runs}
    return out


# -- the flooder ----------------------------------------------------------------------------------


async def bystander(port: int) -> None:
    """An HTTP server that answers every request as the service answers a flood (429)."""
    from aiohttp import web

    async def refuse(request: web.Request) -> web.Response:
        body = b'{"error":{"message":"more than 5 scrapes a second from 127.0.0.1: retry in 1 s"}}'
        return web.Response(
            status=429, body=body, content_type="application/json", headers={"Retry-After": "1"}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    await stop.wait()
    await runner.cleanup()


async def flood(url: str, rps: float, connections: int, out: Path) -> None:
    import aiohttp

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    received = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one() -> None:
            nonlocal received
            started = time.perf_counter()
            try:
                async with session.get(url) as response:
                    received += len(await response.read())
                    statuses[str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - started)

        await one()
        cpu0 = time.process_time()
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        tasks: set[asyncio.Task[None]] = set()
        t0 = time.monotonic()
        sent = 0
        while not stop.is_set():
            due = t0 + sent / rps - time.monotonic()
            if due > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), due)  # the schedule, or SIGTERM
                continue
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        elapsed = time.monotonic() - t0
        cpu = (time.process_time() - cpu0) / elapsed if elapsed else 0.0
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(
        out.write_bytes,
        orjson.dumps(
            {
                "sent": sent,
                "seconds": elapsed,
                "answered_per_s": sum(statuses.values()) / elapsed if elapsed else 0.0,
                "statuses": dict(statuses),
                "scrape_ms": {q: pct(latencies, q) * 1000 for q in (50, 99)},
                "kb_per_scrape": received / max(1, sum(statuses.values())) / 1000,
                # The flooder's own CPU use (1.0 = one core): load the machine carries either way.
                "flooder_cpu": cpu,
            },
            option=orjson.OPT_NON_STR_KEYS,
        ),
    )


def main() -> None:
    runner: Any = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    if sys.argv[1] == "--bystander":
        runner(bystander(int(sys.argv[2])))
        return
    url, rps, connections, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    runner(flood(url, rps, connections, out))


if __name__ == "__main__":
    main()
