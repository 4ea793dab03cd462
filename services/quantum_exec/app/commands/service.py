"""``quantum-exec serve | demo | check | sim``: the service, the one-shot demo, the health check and
the exchange simulator."""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from quantum_exec.app.commands.common import (
    add_log_args,
    add_settings_args,
    env_file_arg,
    local_settings,
    run,
    settings_from,
)
from quantum_exec.core.errors import ConfigError
from quantum_exec.core.settings import ExchangeEnv, default_state_dir, mask_url_password


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from(args, report=False)  # logged below, as structured lines
    configured_state_dir = settings.state_dir is not None
    if settings.embedded_redis and settings.state_dir is None:
        # A private Redis that keeps its data: a killed `serve` started again answers every intent.
        settings = settings.model_copy(update={"state_dir": default_state_dir()})
    if args.print_config:
        sys.stdout.write(orjson.dumps(settings.masked(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if settings.state_dir is not None and (settings.embedded_redis or settings.embedded_sim):
        from quantum_exec.app.embedded import check_state_dir

        check_state_dir(
            settings.state_dir,
            variable="QUANTUM_STATE_DIR" if configured_state_dir else "QUANTUM_STATE_DIR (unset: from $HOME)",
        )
    from quantum_exec.app.runtime import clear_endpoints, runtime_dir, write_endpoints
    from quantum_exec.app.service import Service
    from quantum_exec.core import gc_tuning
    from quantum_exec.ops.logs import get_logger, secret_values, setup_logging
    from quantum_exec.ops.secrets_check import check_secret_file_permissions

    if settings.embedded_redis or settings.embedded_sim:
        runtime_dir()  # refuses a directory another user planted, before anything starts
    setup_logging(settings, secrets=secret_values(settings))
    log = get_logger("quantum_exec.app.cli")
    from quantum_exec.core.settings import configuration_warnings

    for problem in configuration_warnings(env_file_arg(args.env_file)):
        log.warning("settings.ignored", problem=problem)
    # A loose EnvironmentFile or private key: refused with real money, a warning elsewhere.
    check_secret_file_permissions(
        [env_file_arg(args.env_file), settings.private_key_file],
        refuse=settings.exchange is ExchangeEnv.LIVE,
    )

    def on_ready() -> None:
        gc_tuning.tune()  # start-up is done: its objects leave the collector's walks
        # Lets `submit`/`results` in another terminal find a private Redis without configuration.
        if settings.embedded_redis or settings.embedded_sim:
            path = write_endpoints(
                redis_url=service.redis_url,
                exchange_url=service.exchange_url,
                metrics_port=service.metrics_port,
            )
            log.info(
                "service.endpoints_recorded",
                path=str(path),
                redis_url=mask_url_password(service.redis_url or ""),
                exchange_url=service.exchange_url,
            )

    service = Service(settings, on_ready=on_ready)
    try:
        return int(run(service.run_until_signal()))
    finally:
        clear_endpoints()


def cmd_demo(args: argparse.Namespace) -> int:
    from quantum_exec.app.demo import run_demo

    settings = settings_from(args, redis_url=None, binance_base_url=None, exchange="sim", metrics_port=0)
    return int(run(run_demo(settings, verbose=args.verbose)))


def cmd_check(args: argparse.Namespace) -> int:
    """One line when ready; one per failing check (or why nothing answers) when not: exit 1."""
    from quantum_exec.ops.health import readiness_report

    ready, report = run(readiness_report(local_settings(args)))
    (sys.stdout if ready else sys.stderr).write(report + "\n")
    return 0 if ready else 1


def cmd_sim(args: argparse.Namespace) -> int:
    import binance_sim
    from quantum_exec.core.settings import Settings
    from quantum_exec.ops.logs import setup_logging

    # The simulator's log lines as the service's (JSON, structured fields), on stderr: stdout's
    # first line is the address it listens on, for scripts to read.
    overrides = {k: getattr(args, k) for k in ("log_format", "log_level") if getattr(args, k, None)}
    setup_logging(Settings(**overrides), stream=sys.stderr)
    try:
        config = binance_sim.config_from_args(args)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    binance_sim.serve_forever(config, host=args.host, port=args.port)
    return 0


def _add_sim(sub: Any) -> None:
    p = sub.add_parser(
        "sim",
        help="run the Binance futures simulator on its own",
        description="A local Binance USD-M futures REST API (paper trading, tests). Control it under /_sim/.",
    )
    add_log_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--api-key", default="quantum-sim-key", help="accepted API key (default quantum-sim-key)")
    p.add_argument(
        "--api-secret", default="quantum-sim-secret", help="accepted API secret (default quantum-sim-secret)"
    )
    p.add_argument(
        "--ed25519-public-key",
        type=Path,
        metavar="FILE",
        help="the API key signs with Ed25519: verify its requests against this public key (PEM)",
    )
    p.add_argument(
        "--rsa-public-key", type=Path, metavar="FILE", help="the API key signs with RSA: its public key (PEM)"
    )
    p.add_argument("--latency-ms", type=int, default=0, help="added to every response (default 0)")
    p.add_argument("--no-rate-limits", action="store_true", help="do not enforce Binance's rate limits")
    p.add_argument(
        "--slippage-bps", type=Decimal, default=Decimal(0), help="MARKET fills this far past the mark"
    )
    p.add_argument(
        "--depth",
        action="append",
        default=[],
        metavar="[SYMBOL=]USDT",
        help="USDT notional per book level (repeatable)",
    )
    p.add_argument("--spread-bps", type=Decimal, default=Decimal(0), help="bid-ask spread of the book")
    p.add_argument(
        "--level-bps", type=Decimal, default=Decimal(0), help="gap between book levels (0: one tick)"
    )
    p.add_argument(
        "--walk", type=Decimal, metavar="VOL", help="random-walk every mark, VOL per step (e.g. 0.001)"
    )
    p.add_argument(
        "--walk-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="time between walk steps (default 1)",
    )
    p.add_argument("--walk-seed", type=int, default=0, help="seed of the walk (the same seed, the same path)")
    p.add_argument(
        "--funding-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="every symbol on this interval (default: each symbol's own, 8 h or 4 h)",
    )
    p.add_argument("--funding-rate", type=Decimal, default=Decimal("0.0001"), help="default funding rate")
    p.add_argument("--no-funding", action="store_true", help="settle funding only on POST /_sim/funding")
    p.add_argument("--no-liquidation", action="store_true", help="never liquidate positions")
    p.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="keep the account in FILE across restarts (a paper account)",
    )
    p.set_defaults(func=cmd_sim)


def add_commands(sub: Any) -> None:
    """Register serve, demo, check and sim."""
    p = sub.add_parser(
        "serve",
        help="run the service (what systemd and Docker start)",
        description="Consume intents, execute, publish results.",
    )
    add_settings_args(p)
    add_log_args(p)
    p.add_argument(
        "--print-config", action="store_true", help="print the effective settings (secrets masked)"
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "demo",
        help="one-shot end-to-end run on the embedded defaults; prints the results",
        description="Start a private Redis, the simulator and the service; publish sample intents "
        "(long, short, one rejected for min notional, one CLOSE); print the results; exit.",
    )
    add_settings_args(p)
    p.add_argument("--verbose", action="store_true", help="show the service's log lines")
    p.set_defaults(func=cmd_demo)

    _add_sim(sub)

    p = sub.add_parser(
        "check",
        help="health check: exit 0 when the running service is ready, 1 otherwise",
        description="Ask the local service's /readyz on QUANTUM_METRICS_PORT.",
    )
    add_settings_args(p)
    p.set_defaults(func=cmd_check)
