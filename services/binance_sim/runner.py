"""Running a simulator: on its own loop in a daemon thread (tests, embedded use) or in the foreground
until SIGINT/SIGTERM (the CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from binance_sim.config import SimConfig
from binance_sim.server import Simulator


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


@contextlib.contextmanager
def run_in_thread(config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run a simulator on its own event loop in a daemon thread; yields its base URL."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        sim = Simulator(config)
        stop = asyncio.Event()
        box["loop"] = asyncio.get_running_loop()
        box["stop"] = stop
        box["sim"] = sim
        try:
            box["url"] = await sim.start(host, port)
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            raise
        ready.set()
        try:
            await stop.wait()
        finally:
            await sim.stop()

    def target() -> None:
        with contextlib.suppress(BaseException), asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
        ready.set()

    thread = threading.Thread(target=target, name="binance-sim", daemon=True)
    thread.start()
    ready.wait()
    if "url" not in box:
        raise RuntimeError(f"simulator failed to start: {box.get('error')!r}")
    try:
        yield str(box["url"])
    finally:
        loop: asyncio.AbstractEventLoop = box["loop"]
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(timeout=10)


def serve_forever(config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until SIGINT/SIGTERM, then stop cleanly (the CLI entry point)."""

    async def main() -> None:
        sim = Simulator(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await sim.start(host, port)
        print(
            f"binance_sim listening on {sim.base_url} (REST root; FUTURES_URL = {sim.base_url}/fapi)",
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            await sim.stop()

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main())
