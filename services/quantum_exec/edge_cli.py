"""``quantum-exec gateway`` and ``quantum-exec notify``: the two processes at the edge.

The gateway takes intents over HTTP (``quantum_exec.webhooks``); the notifier sends trade notices
to Telegram, Slack/Discord or a webhook (``quantum_exec.notify``). Each is its own process: an
exposed endpoint or a slow chat API never shares a process with the order path.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantum_exec.settings import Settings

SettingsOf = Callable[..., Settings]


class EdgeCommands:
    """The two commands, given the CLI's own helpers (settings, Redis URL, env file, event loop)."""

    def __init__(
        self,
        settings_of: SettingsOf,
        redis_url_of: Callable[[Settings], str | None],
        env_file_of: Callable[[str | None], Path | None],
        run: Callable[[Any], Any],
    ) -> None:
        self._settings_of = settings_of
        self._redis_url_of = redis_url_of
        self._env_file_of = env_file_of
        self._run = run

    def _prepare(self, args: argparse.Namespace, extra_secrets: list[str]) -> tuple[Settings, str | None]:
        from quantum_exec.ops.logs import secret_values, setup_logging

        # Neither process talks to the exchange: it is never configured here, whatever the file says.
        settings = self._settings_of(
            args, exchange="sim", api_key=None, api_secret=None, private_key_file=None
        )
        setup_logging(settings, secrets=[*secret_values(settings), *extra_secrets])
        return settings, self._redis_url_of(settings)

    def gateway(self, args: argparse.Namespace) -> int:
        from dataclasses import replace

        from quantum_exec.edge_env import merged_environment
        from quantum_exec.webhooks.config import gateway_config
        from quantum_exec.webhooks.run import run_gateway

        env = merged_environment(self._env_file_of(args.env_file))
        config = gateway_config(env)
        if args.host:
            config = replace(config, host=args.host)
        if args.port is not None:
            config = replace(config, port=args.port)
        settings, redis_url = self._prepare(args, config.secrets())
        from quantum_exec.ops.secrets_check import check_secret_file_permissions

        sources = env.get("QUANTUM_GATEWAY_SOURCES", "").strip()
        # The sources' file holds every producer's secret: others may not read it.
        check_secret_file_permissions([None if sources.startswith("{") else sources])
        return int(self._run(run_gateway(settings, config, redis_url)))

    def notify(self, args: argparse.Namespace) -> int:
        from quantum_exec.edge_env import merged_environment
        from quantum_exec.notify.config import notify_config
        from quantum_exec.notify.run import run_notifier

        config = notify_config(merged_environment(self._env_file_of(args.env_file)))
        settings, redis_url = self._prepare(args, config.secrets())
        return int(self._run(run_notifier(settings, config, redis_url)))


def add_commands(
    sub: Any,
    add_settings_args: Callable[[argparse.ArgumentParser], None],
    add_log_args: Callable[[argparse.ArgumentParser], None],
    commands: EdgeCommands,
) -> None:
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
    p.set_defaults(func=commands.gateway)

    p = sub.add_parser(
        "notify",
        help="trade notices out: Telegram, Slack/Discord, a JSON webhook",
        description="Follow the result, position, ledger, risk and dead-letter streams and send one "
        "line per notable event (QUANTUM_NOTIFY_*); exactly once across restarts.",
    )
    add_settings_args(p)
    add_log_args(p)
    p.set_defaults(func=commands.notify)
