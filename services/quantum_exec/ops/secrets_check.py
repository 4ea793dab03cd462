"""Start-up check of secret-holding files that other users can read.

The EnvironmentFile may hold ``BINANCE_API_SECRET`` and the Redis password; it should be ``0600``
(systemd reads it as root before dropping privileges). The service calls
:func:`check_secret_file_permissions` once at start with the files it was configured from: with
real money (``live``) a loose file stops the start, elsewhere it is a warning.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from pathlib import Path

from quantum_exec.core.errors import ConfigError
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

_GROUP_OR_OTHER = stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH


def check_secret_file_permissions(paths: Iterable[Path | str | None], *, refuse: bool = False) -> list[str]:
    """Warn (log and return the messages) for each existing file readable or writable by group/others;
    with ``refuse`` raise :class:`ConfigError` instead (one line naming the files).

    Missing paths and ``None`` are skipped: an optional EnvironmentFile may legitimately be absent.
    """
    problems: list[str] = []
    for raw in paths:
        if raw is None:
            continue
        path = Path(raw)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{path}: cannot stat ({exc.strerror})")
            continue
        if not stat.S_ISREG(mode) or not mode & _GROUP_OR_OTHER:
            continue
        who = " and ".join(name for name, bits in (("group", 0o060), ("others", 0o006)) if mode & bits)
        problems.append(
            f"{path} holds secrets but is accessible by {who} (mode {stat.S_IMODE(mode):04o});"
            f" run: chmod 600 {path}"
        )
    if refuse and problems:
        raise ConfigError("; ".join(problems))
    for problem in problems:
        log.warning("secrets.file_permissions", problem=problem)
    return problems
