"""What a sender controls reaches the text log (the gateway logs the source name of the URL path
and a forwarded address): it must not carry terminal control sequences or forge a line there."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from quantum_exec.core.settings import Settings
from quantum_exec.ops.logs import get_logger, setup_logging


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    "name",
    [
        "\x1b[2J\x1b[31mHALTED",  # ESC: clear the operator's screen, paint a fake line red
        "tv\x9b2J",  # C1 CSI, the 8-bit ESC [
        "tv\x7f\x7f\x7fbot",  # DEL: erase what came before on some terminals
        "a\u2028b\u200bc",  # line separator, zero-width space
        "\U000e0041tag",  # an invisible tag character (outside the BMP)
    ],
)
def test_a_source_name_from_the_path_is_escaped_in_the_text_log(name: str) -> None:
    out = io.StringIO()
    setup_logging(Settings(log_format="text"), stream=out)
    get_logger("quantum_exec.webhooks.server").info(
        "gateway.refused", source=name, remote="127.0.0.1", status=401
    )
    line = out.getvalue().rstrip("\n")
    assert "\n" not in line and all(c.isprintable() for c in line), repr(line)
    # Still readable: the printable part is there, the rest as JSON escapes.
    assert name[-3:] in line or "\\u" in line, line
