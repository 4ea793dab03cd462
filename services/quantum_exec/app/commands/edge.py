"""``quantum-exec gateway`` and ``quantum-exec notify``: the two processes at the edge.

The gateway takes intents over HTTP (``quantum_exec.webhooks``); the notifier sends trade notices
to Telegram, Slack/Discord or a webhook (``quantum_exec.notify``). Each is its own process: an
exposed endpoint or a slow chat API never shares a process with the order path. Neither talks to
the exchange, so the exchange settings (and keys) of a shared EnvironmentFile are ignored.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from quantum_exec.app.commands.common import (
    add_log_args,
    add_settings_args,
    env_file_arg,
    redis_url,
    report_configuration,
    run,
    settings_from,
)
from quantum_exec.core.settings import Settings


def _prepare(args: argparse.Namespace, extra_secrets: list[str]) -> tuple[Settings, str | None]:
    from quantum_exec.ops.logs import secret_values, setup_logging

    settings = settings_from(args, exchange="sim", api_key=None, api_secret=None, private_key_file=None)
    setup_logging(settings, secrets=[*secret_values(settings), *extra_secrets])
    return settings, redis_url(settings)


def cmd_gateway(args: argparse.Namespace) -> int:
    from quantum_exec.core.edge_env import merged_environment
    from quantum_exec.ops.secrets_check import check_secret_file_permissions
    from quantum_exec.webhooks.config import gateway_config
    from quantum_exec.webhooks.run import run_gateway

    report_configuration(env_file_arg(args.env_file))  # before its own settings can refuse
    env = merged_environment(env_file_arg(args.env_file))
    config = gateway_config(env)
    if args.host:
        config = replace(config, host=args.host)
    if args.port is not None:
        config = replace(config, port=args.port)
    settings, url = _prepare(args, config.secrets())
    sources = env.get("QUANTUM_GATEWAY_SOURCES", "").strip()
    # The sources' file holds every producer's secret, and so may the EnvironmentFile (inline):
    # others may not read them.
    check_secret_file_permissions([env_file_arg(args.env_file), None if sources.startswith("{") else sources])
    return int(run(run_gateway(settings, config, url)))


def cmd_notify(args: argparse.Namespace) -> int:
    from quantum_exec.core.edge_env import merged_environment
    from quantum_exec.notify.config import notify_config
    from quantum_exec.notify.run import run_notifier
    from quantum_exec.ops.secrets_check import check_secret_file_permissions

    report_configuration(env_file_arg(args.env_file))  # before its own settings can refuse
    env = merged_environment(env_file_arg(args.env_file))
    config = notify_config(env)
    settings, url = _prepare(args, config.secrets())
    # The bot token and webhook URLs (and a Redis password) may be in the EnvironmentFile.
    check_secret_file_permissions([env_file_arg(args.env_file)])
    if "QUANTUM_METRICS_PORT" not in env:
        # Beside an embedded `serve`: its /metrics is where it recorded it (as `check` finds it).
        from quantum_exec.app.runtime import read_endpoints

        recorded = read_endpoints().get("metrics_port")
        if isinstance(recorded, int):
            settings = settings.model_copy(update={"metrics_port": recorded})
    return int(run(run_notifier(settings, config, url)))


def add_commands(sub: Any) -> None:
    """Register ``gateway`` and ``notify`` on the CLI's subparsers."""
    p = sub.add_parser(
        "gateway",
        help="HTTP webhooks in: signed producers and TradingView alerts onto the intent stream",
        description="Serve POST /v1/intents/<source> (QUANTUM_GATEWAY_SOURCES) on its own port; "
        "TLS is left to a proxy in front (README: Signal gateway).",
    )
    add_settings_args(p)
    add_log_args(p)
    p.add_argument("--host", help="address to listen on (QUANTUM_GATEWAY_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (QUANTUM_GATEWAY_PORT, default 9110)")
    p.set_defaults(func=cmd_gateway)

    p = sub.add_parser(
        "notify",
        help="trade notices out: Telegram, Slack/Discord, a JSON webhook",
        description="Follow the result, position, ledger, risk and dead-letter streams and send one "
        "line per notable event (QUANTUM_NOTIFY_*); exactly once across restarts.",
    )
    add_settings_args(p)
    add_log_args(p)
    p.set_defaults(func=cmd_notify)
