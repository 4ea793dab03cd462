"""Where a running ``serve`` says which private endpoints it started.

With the embedded defaults the Redis server and the simulator listen on free ports chosen at
start. ``serve`` writes them to a small JSON file in the user's runtime directory so that
``quantum-exec submit`` and ``results`` in another terminal find the same Redis without any
configuration. An explicit ``QUANTUM_REDIS_URL`` always wins.

The file says where to send orders and the API token, so nobody else may plant it: without
``XDG_RUNTIME_DIR`` it lives under the shared temp directory, where another user could create
``quantum-exec-<uid>`` first. The directories are created 0700 and checked with ``lstat`` (ours,
not a symlink, closed to group and others); the file is written through ``mkstemp`` and renamed,
and a file that is not ours is ignored.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import orjson

from quantum_exec.core.errors import ConfigError


def runtime_file() -> Path:
    """``$XDG_RUNTIME_DIR/quantum-exec/endpoints.json`` (or a per-user temp dir)."""
    return _runtime_dirs()[-1] / "endpoints.json"


def _runtime_dirs() -> tuple[Path, ...]:
    """The directories this module creates, outermost first (each must be private to the user)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return (Path(xdg) / "quantum-exec",)
    base = Path(tempfile.gettempdir()) / f"quantum-exec-{os.getuid()}"
    return (base, base / "quantum-exec")


def _private_dir_problem(path: Path) -> str | None:
    """Why ``path`` is not a directory only this user controls, or None."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return f"cannot stat it ({exc.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if info.st_uid != os.getuid():
        return f"it is owned by uid {info.st_uid}, not {os.getuid()}"
    if stat.S_IMODE(info.st_mode) & 0o077:
        return f"group or others can use it (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def runtime_dir() -> Path:
    """The private directory of the endpoints file, created 0700; refuses one another user made."""
    dirs = _runtime_dirs()
    dirs[0].parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in dirs:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        problem = _private_dir_problem(path)
        if problem is not None:
            raise ConfigError(
                f"refusing the runtime directory {path}: {problem}; remove it or set XDG_RUNTIME_DIR"
            )
    return dirs[-1]


def write_endpoints(**endpoints: Any) -> Path:
    """Record the endpoints of this process (owner-only permissions, never through a link)."""
    path = runtime_dir() / "endpoints.json"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".endpoints-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps({**endpoints, "pid": os.getpid()}))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _read_own(path: Path) -> bytes | None:
    """The file's bytes when it and its directories belong to this user alone, else None."""
    if any(_private_dir_problem(d) is not None for d in _runtime_dirs()):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            return None
        return file.read()


def read_endpoints() -> dict[str, Any]:
    """The endpoints of a running ``serve``, or ``{}`` when none is running (or the file is not ours)."""
    raw = _read_own(runtime_file())
    if raw is None:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    pid = data.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return {}
        except PermissionError:
            pass
    return data


def clear_endpoints() -> None:
    """Remove the record if it is ours."""
    if read_endpoints().get("pid") == os.getpid():
        with contextlib.suppress(OSError):
            runtime_file().unlink()
