"""What every ``quantum-exec`` subcommand shares: settings from the environment, the event loop,
and where a running service listens."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from quantum_exec.core.errors import ConfigError
from quantum_exec.core.settings import DEFAULT_ENV_FILE, Settings, load_settings

Handler = Callable[[argparse.Namespace], int]


def env_file_arg(value: str | None) -> Path | None:
    if value is not None:
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"--env-file {value}: no such file")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"--env-file {value}: not readable by this user")
        return path
    # Under systemd the unit's EnvironmentFile is already in the environment, and the file itself
    # (0600 root) is not readable by the service's user: the default is used only when readable.
    if DEFAULT_ENV_FILE.is_file() and os.access(DEFAULT_ENV_FILE, os.R_OK):
        return DEFAULT_ENV_FILE
    return None


# The QUANTUM_* names and env-file lines already reported by this process: each said once.
_REPORTED: set[str] = set()


def report_configuration(env_file: Path | None) -> None:
    """Say on stderr, one line each and once per process, what in the environment and the env file
    sets nothing (a misspelt ``QUANTUM_*`` name, a malformed line). ``serve`` logs them instead."""
    from quantum_exec.core.settings import configuration_warnings

    for problem in configuration_warnings(env_file):
        if problem not in _REPORTED:
            _REPORTED.add(problem)
            sys.stderr.write(f"quantum-exec: warning: {problem}\n")


def settings_from(args: argparse.Namespace, *, report: bool = True, **overrides: Any) -> Settings:
    if getattr(args, "log_format", None):
        overrides["log_format"] = args.log_format
    if getattr(args, "log_level", None):
        overrides["log_level"] = args.log_level
    env_file = env_file_arg(getattr(args, "env_file", None))
    if report:
        report_configuration(env_file)
    return load_settings(env_file, **overrides)


def add_settings_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env-file",
        metavar="PATH",
        help=f"EnvironmentFile with QUANTUM_* settings (default {DEFAULT_ENV_FILE} when present)",
    )


def add_log_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=["json", "text"], help="log line format (default json)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level")


def run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)


def local_settings(args: argparse.Namespace) -> Settings:
    """Settings to ask the running service over HTTP: where its metrics port is, and the token.

    A client needs no exchange credentials: without them in its own environment it must still
    ask the service rather than fail. An embedded ``serve`` in another terminal records where it
    listens (as for submit/results); ``QUANTUM_METRICS_PORT`` wins.
    """
    from quantum_exec.app.runtime import read_endpoints

    try:
        settings = settings_from(args)
    except ConfigError as refused:
        port = os.environ.get("QUANTUM_METRICS_PORT", "9108")
        try:
            settings = Settings(
                metrics_port=int(port) if port.isdigit() else 9108,
                api_token=os.environ.get("QUANTUM_API_TOKEN") or None,
            )
        except ValueError:  # the client's own settings are bad too (a short token): say why, once
            raise refused from None
    recorded = read_endpoints().get("metrics_port")
    if "QUANTUM_METRICS_PORT" not in os.environ and isinstance(recorded, int):
        settings = settings.model_copy(update={"metrics_port": recorded})
    return settings


def with_reader_settings(handler: Callable[[argparse.Namespace, Settings], int]) -> Handler:
    """Run a read command with the settings it needs: where the API listens and its token."""

    def run_it(args: argparse.Namespace) -> int:
        return int(handler(args, local_settings(args)))

    return run_it


def redis_url(settings: Settings) -> str | None:
    """The URL of the Redis to use; None when Sentinel names it."""
    if settings.redis_url or settings.redis_sentinels:
        return settings.redis_url
    from quantum_exec.app.runtime import read_endpoints, runtime_file

    url = read_endpoints().get("redis_url")
    if not url:
        raise ConfigError(
            "QUANTUM_REDIS_URL is not set and no running `quantum-exec serve` with an embedded Redis "
            f"was found ({runtime_file()}); start `quantum-exec serve` or set QUANTUM_REDIS_URL"
        )
    return str(url)


@contextlib.asynccontextmanager
async def redis_errors(settings: Settings, url: str | None) -> AsyncIterator[None]:
    """Redis refusing or unreachable, as the one line naming the setting (ConfigError)."""
    from redis import exceptions

    from quantum_exec.core.config_checks import db_out_of_range
    from quantum_exec.core.redis_client import location

    where = location(settings, url)
    source = "check QUANTUM_REDIS_SENTINELS" if settings.redis_sentinels else "check QUANTUM_REDIS_URL"
    if not settings.redis_url and not settings.redis_sentinels:
        source = "the `quantum-exec serve` that recorded it has stopped? start it or set QUANTUM_REDIS_URL"
    try:
        yield
    except exceptions.AuthenticationError as exc:
        raise ConfigError(f"Redis at {where} refused the password ({exc}): QUANTUM_REDIS_PASSWORD") from None
    except exceptions.ResponseError as exc:
        if "DB index is out of range" in str(exc):
            raise ConfigError(db_out_of_range(url or "")) from None
        raise ConfigError(f"Redis at {where} answered an error: {exc}") from None
    except (exceptions.ConnectionError, exceptions.TimeoutError, OSError) as exc:
        if "DB index is out of range" in str(exc):
            raise ConfigError(db_out_of_range(url or "")) from None
        raise ConfigError(f"Redis at {where} is not reachable ({exc}); {source}") from None
