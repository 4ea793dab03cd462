"""Where a running ``serve`` says which private endpoints it started.

With the embedded defaults the Redis server and the simulator listen on free ports chosen at
start. ``serve`` writes them to a small JSON file in the user's runtime directory so that
``quantum-exec submit`` and ``results`` in another terminal find the same Redis without any
configuration. An explicit ``QUANTUM_REDIS_URL`` always wins.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson


def runtime_file() -> Path:
    """``$XDG_RUNTIME_DIR/quantum-exec/endpoints.json`` (or a per-user temp dir)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(
        tempfile.gettempdir(), f"quantum-exec-{os.getuid()}"
    )
    return Path(base) / "quantum-exec" / "endpoints.json"


def write_endpoints(**endpoints: Any) -> Path:
    """Record the endpoints of this process (owner-only permissions)."""
    path = runtime_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({**endpoints, "pid": os.getpid()}))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def read_endpoints() -> dict[str, Any]:
    """The endpoints of a running ``serve``, or ``{}`` when none is running."""
    path = runtime_file()
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
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
    path = runtime_file()
    with contextlib.suppress(OSError, orjson.JSONDecodeError):
        if orjson.loads(path.read_bytes()).get("pid") == os.getpid():
            path.unlink()
