"""``quantum-exec``: one entry point for the service, the simulator and the everyday tools.

Each group of subcommands lives in its own module under ``quantum_exec.app.commands`` and registers
itself with ``add_commands(sub)``; a new group is one more name in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from quantum_exec import __version__
from quantum_exec.core.errors import ConfigError, QuantumError

DESCRIPTION = """\
quantum-exec executes TradeIntents from a Redis stream on Binance USD-M futures: MARKET entry,
STOP_MARKET + TAKE_PROFIT_MARKET protection, one ExecutionResult per intent.

With nothing configured it runs on embedded defaults: a private redis-server and the local
exchange simulator. Try:  quantum-exec demo
"""

EPILOG = """\
Settings come from QUANTUM_* environment variables (and the --env-file); see
etc/quantum/execution.env.example. `quantum-exec serve --print-config` shows them.
"""

# The order here is the order of `quantum-exec --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "quantum_exec.app.commands.service",  # serve, demo, sim, check
    "quantum_exec.app.commands.intents",  # submit, results, schema
    "quantum_exec.app.commands.book",  # positions, trades, summary
    "quantum_exec.app.commands.edge",  # gateway, notify
    "quantum_exec.app.commands.control",  # halt, reduce, resume, limits
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Every command name and its help on one line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=20, width=100)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantum-exec",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"quantum-exec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, title="commands")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``quantum-exec`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        sys.stderr.write(f"quantum-exec: {exc}\n")
        return 2
    except QuantumError as exc:
        sys.stderr.write(f"quantum-exec: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
