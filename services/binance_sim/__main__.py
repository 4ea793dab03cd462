"""``python -m binance_sim --host … --port …``: run the simulator standalone."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from binance_sim.options import build_parser, config_from_args
from binance_sim.runner import serve_forever


class KvFormatter(logging.Formatter):
    """The event, then its structured fields as ``key=value`` (the service's text format)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "kv", None) or {}
        line = super().format(record)
        return " ".join([line, *(f"{k}={v}" for k, v in fields.items())])


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the flags and serve until SIGINT/SIGTERM."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    handler = logging.StreamHandler()
    handler.setFormatter(KvFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    serve_forever(config, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
