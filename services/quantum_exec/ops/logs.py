"""Structured logging: one event per line, key/values beside a short event name.

Use ``log = get_logger(__name__)`` then ``log.info("entry.placed", intent_id=..., symbol=...)``.
:func:`setup_logging` installs the handlers once at start: JSON lines (or a human ``text`` format)
on stdout for journald/Docker, a rotating file only when ``QUANTUM_LOG_FILE`` is set, and a
redaction filter that replaces every known secret value before any handler formats the record.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import os
import re
import sys
import traceback
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import orjson

from quantum_exec.core.settings import Settings, url_query_passwords

REDACTED = "[REDACTED]"
# Shorter values would match all over ordinary text and make the logs unreadable; a secret that
# short offers no protection anyway, so setup_logging() warns about it instead.
MIN_SECRET_LENGTH = 4
# Any run this long of a longer secret is hidden too, not only the whole value: a message that cuts
# a rejected value short (57 characters) or an echo of part of a key must not leak most of it.
MIN_SECRET_RUN = 16
_GRAM = MIN_SECRET_RUN // 2
LOG_FILE_MAX_BYTES = 50 * 1024 * 1024
LOG_FILE_BACKUPS = 5
# Noisy libraries kept at WARNING unless the service itself runs at DEBUG.
QUIET_LOGGERS = ("aiohttp.access", "asyncio", "urllib3", "binance")
_RESERVED = frozenset({"ts", "level", "logger", "event", "exc"})


class StructLogger:
    """A thin adapter that turns keyword arguments into structured fields of the record."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, event: str, exc_info: bool, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, exc_info=exc_info, extra={"kv": fields})

    def debug(self, event: str, /, **fields: Any) -> None:
        self._log(logging.DEBUG, event, False, fields)

    def info(self, event: str, /, **fields: Any) -> None:
        self._log(logging.INFO, event, False, fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        self._log(logging.WARNING, event, False, fields)

    def error(self, event: str, /, **fields: Any) -> None:
        self._log(logging.ERROR, event, False, fields)

    def exception(self, event: str, /, **fields: Any) -> None:
        self._log(logging.ERROR, event, True, fields)

    def is_enabled_for(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)


def get_logger(name: str) -> StructLogger:
    """The structured logger for a module."""
    return StructLogger(logging.getLogger(name))


class Redactor:
    """Replaces known secret values, and any run of :data:`MIN_SECRET_RUN` characters of one, in
    text and in (nested) field values."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._pattern: re.Pattern[str] | None = None
        # Every MIN_SECRET_RUN-character window of each longer secret (lower-cased), and a pattern
        # for the runs of text made only of those secrets' characters: only such runs can hold one.
        self._windows: frozenset[str] = frozenset()
        self._grams: frozenset[str] = frozenset()
        self._candidates: re.Pattern[str] | None = None
        # Cheap first look (ASCII text and secrets): the lower-cased secrets of up to MIN_SECRET_RUN
        # characters, and the _GRAM-grams at multiples of _GRAM of the longer ones. Text holding
        # none of them holds no secret and no MIN_SECRET_RUN-run of one: the scans are skipped.
        self._probes: tuple[str, ...] | None = None

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Replace the known values; longest first so a secret containing another is fully hidden.

        Matching ignores case: a producer echoing a key upper-cased (or a URL-lowered copy of it)
        must not slip it through.
        """
        usable = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        self._secrets = tuple(sorted(usable, key=len, reverse=True))
        # Whole matches for the short ones; a longer secret is hidden by the run scan below.
        short = [s for s in self._secrets if len(s) <= MIN_SECRET_RUN]
        self._pattern = re.compile("|".join(re.escape(s) for s in short), re.IGNORECASE) if short else None
        long = [s.lower() for s in usable if len(s) > MIN_SECRET_RUN]
        self._windows = frozenset(
            s[i : i + MIN_SECRET_RUN] for s in long for i in range(len(s) - MIN_SECRET_RUN + 1)
        )
        self._grams = frozenset(s[i : i + _GRAM] for s in long for i in range(len(s) - _GRAM + 1))
        if all(s.isascii() for s in usable):
            probes = {s.lower() for s in usable if len(s) <= MIN_SECRET_RUN}
            # Any MIN_SECRET_RUN-window of a secret starting at p holds the gram at the next
            # multiple of _GRAM (at most p + _GRAM - 1, ending within the window and the secret).
            probes.update(s[i : i + _GRAM] for s in long for i in range(0, len(s) - _GRAM + 1, _GRAM))
            self._probes = tuple(sorted(probes))
        else:  # a non-ASCII secret can match ASCII text ignoring case (the Kelvin sign): full scans
            self._probes = None
        chars = {c for s in long for c in (*s, *s.upper())}
        self._candidates = (
            re.compile(f"[{''.join(re.escape(c) for c in sorted(chars))}]{{{MIN_SECRET_RUN},}}")
            if chars
            else None
        )

    @property
    def empty(self) -> bool:
        """True when no secret is known (nothing to redact)."""
        return not self._secrets

    def text(self, value: str) -> str:
        """``value`` with every known secret (in any letter case), and every run of
        :data:`MIN_SECRET_RUN` or more characters of one, replaced by ``[REDACTED]``."""
        probes = self._probes
        if probes is not None and value.isascii():
            lowered = value.lower()
            if not any(probe in lowered for probe in probes):
                return value
        if self._pattern is not None:
            value = self._pattern.sub(REDACTED, value)
        if self._candidates is not None:
            value = self._candidates.sub(self._hide_runs, value)
        return value

    def _hide_runs(self, match: re.Match[str]) -> str:
        run = match.group()
        lowered = run.lower()
        if len(lowered) != len(run):  # a letter whose lower case is longer: compare window by window
            lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in run)
        # Any run of MIN_SECRET_RUN characters of a secret holds a whole secret _GRAM-gram at a
        # multiple of _GRAM: most text is dismissed with a few set lookups.
        if not any(lowered[i : i + _GRAM] in self._grams for i in range(0, len(run) - _GRAM + 1, _GRAM)):
            return run
        width = MIN_SECRET_RUN
        spans: list[list[int]] = []
        for i in range(len(run) - width + 1):
            if lowered[i : i + width] in self._windows:
                if spans and i <= spans[-1][1]:
                    spans[-1][1] = i + width
                else:
                    spans.append([i, i + width])
        parts: list[str] = []
        last = 0
        for start, end in spans:
            parts.extend((run[last:start], REDACTED))
            last = end
        parts.append(run[last:])
        return "".join(parts)

    def value(self, value: Any) -> Any:
        """A field value with secrets removed; containers are walked, other objects kept as they are."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        # Anything else is printed by the formatter through str(); check that text now.
        text = str(value)
        redacted = self.text(text)
        return value if redacted == text else redacted


_REDACTOR = Redactor()


def redact(text: str) -> str:
    """``text`` with the secrets known to :func:`setup_logging` removed (e.g. for HTTP error bodies)."""
    return _REDACTOR.text(text)


def redact_fields(fields: Mapping[Any, Any]) -> dict[Any, Any]:
    """Stream entry fields with every known secret removed from their names and values (results,
    dead letters): a producer that echoes a key in an intent field must not get it published back.
    Names too: a dead letter keeps the original field names (``orig.<name>``)."""
    if _REDACTOR.empty:
        return dict(fields)
    return {_redact_entry_text(name): _redact_entry_text(value) for name, value in fields.items()}


def _redact_entry_text(value: Any) -> Any:
    if isinstance(value, bytes):
        text = value.decode("utf-8", "surrogateescape")
        redacted = _REDACTOR.text(text)
        return value if redacted == text else redacted.encode("utf-8", "surrogateescape")
    return _REDACTOR.text(value) if isinstance(value, str) else value


class RedactionFilter(logging.Filter):
    """Rewrites a record in place so that no handler can print a known secret.

    The message is rendered (``msg % args``) and redacted, ``kv`` fields are redacted, and the
    exception is formatted here so its text (which often quotes URLs and arguments) is redacted too.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        red = self._redactor
        record.msg = red.text(record.getMessage())
        record.args = None
        kv = getattr(record, "kv", None)
        if kv:
            record.kv = {k: red.value(v) for k, v in kv.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.exc_text:
            record.exc_text = red.text(record.exc_text)
        if record.stack_info:
            record.stack_info = red.text(record.stack_info)
        return True


# The last whole second formatted, and its text up to the seconds: one tuple, replaced whole (a
# thread logging at the same moment reads one or the other, never half of each).
_SECOND: tuple[int, str] = (-1, "")


def _timestamp(record: logging.LogRecord) -> str:
    """``2026-12-07T05:53:48.123Z``; the text up to the seconds is formatted once per second."""
    global _SECOND
    created = record.created
    second = int(created)
    # As datetime.fromtimestamp: microseconds rounded half to even, a carry into the next second.
    micros = round((created - second) * 1e6)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    cached = _SECOND
    if cached[0] != second:
        cached = _SECOND = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{micros // 1000:03d}Z"


def _exc_text(record: logging.LogRecord) -> str | None:
    if record.exc_text:
        return record.exc_text
    if record.exc_info:
        return "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``event``, the fields, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in (getattr(record, "kv", None) or {}).items():
            # A field never overwrites the envelope; it keeps its value under a suffixed name.
            line[f"{key}_" if key in _RESERVED else key] = value
        exc = _exc_text(record)
        if exc:
            line["exc"] = exc
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=_json_default).decode()
    if text == "" or any(c.isspace() or c in '"=' or not c.isprintable() for c in text):
        # orjson escapes the C0 controls only: DEL, C1 (an 8-bit ESC [), line separators and
        # invisible characters a sender put in a logged value would reach the terminal as they are.
        return "".join(c if c.isprintable() else _json_escape(c) for c in orjson.dumps(text).decode())
    return text


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


class TextFormatter(logging.Formatter):
    """For people: ``ts LEVEL logger event key=value ...`` with the traceback on following lines."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), f"{record.levelname:<7}", record.name, record.getMessage()]
        parts.extend(f"{k}={_text_value(v)}" for k, v in (getattr(record, "kv", None) or {}).items())
        text = " ".join(parts)
        exc = _exc_text(record)
        if exc:
            text = f"{text}\n{exc}"
        if record.stack_info:
            text = f"{text}\n{record.stack_info}"
        return text


def secret_values(settings: Settings) -> list[str]:
    """The secret values a settings object holds: API key and secret, API token, Redis passwords."""
    found: list[str] = []
    for secret in (
        settings.api_key,
        settings.api_secret,
        settings.api_token,
        settings.metrics_token,
        settings.redis_password,
        settings.redis_sentinel_password,
    ):
        if secret is not None and secret.get_secret_value():
            found.append(secret.get_secret_value())
    if settings.redis_url:
        password = urlsplit(settings.redis_url).password
        if password:
            found.extend({password, unquote(password)})
        found.extend(url_query_passwords(settings.redis_url))
    if settings.private_key_passphrase is not None and settings.private_key_passphrase.get_secret_value():
        found.append(settings.private_key_passphrase.get_secret_value())
    found.extend(_key_file_secrets(settings.private_key_file))
    return found


def _key_file_secrets(path: Path | None) -> list[str]:
    """What of a private key file must never be logged: its text and each line of its PEM body."""
    if path is None:
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    body = [line.strip() for line in text.splitlines() if not line.startswith("-----")]
    # Body lines are 64 characters; a short last line ("Xw==") would mangle unrelated text. The
    # body joined on one line is hidden too (how a key pasted into an env var would appear).
    return [text.strip(), "".join(body), *(line for line in body if len(line) >= 16)]


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Opens every log file (the first and each one after a rotation) as 0600, whatever the umask:
    the log holds the order flow, positions and account details."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # A file left by an older version (or created under a loose umask) is tightened too.
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


def setup_logging(settings: Settings, *, secrets: Iterable[str] = (), stream: IO[str] | None = None) -> None:
    """Install the service's handlers on the root logger; safe to call again (replaces them).

    ``secrets`` adds values to redact beyond those in ``settings``; ``stream`` defaults to stdout.
    """
    known = [*secret_values(settings), *secrets]
    _REDACTOR.set_secrets(known)
    redaction = RedactionFilter(_REDACTOR)
    formatter: logging.Formatter = TextFormatter() if settings.log_format.value == "text" else JsonFormatter()

    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(sys.stdout if stream is None else stream)
    console.setFormatter(formatter)
    handlers.append(console)
    if settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Files are read by tools, not people: always JSON whatever the console format is.
        file_handler = PrivateRotatingFileHandler(
            settings.log_file, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
        )
        file_handler.setFormatter(JsonFormatter())
        handlers.append(file_handler)

    # No formatter here shows where a call was made, nor the thread or process: the logging
    # HOWTO's "Optimization" settings skip collecting them (a walk of the stack per record was
    # ~15 % of a record's cost, 2.5 records per intent under load).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_quantum_exec", False)]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.addFilter(redaction)
        handler._quantum_exec = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    level = logging.getLevelName(settings.log_level)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(level if level == logging.DEBUG else logging.WARNING)
    logging.captureWarnings(True)

    too_short = sum(1 for s in known if 0 < len(s) < MIN_SECRET_LENGTH)
    if too_short:
        get_logger(__name__).warning(
            "logging.secret_too_short", count=too_short, min_length=MIN_SECRET_LENGTH, redacted=False
        )
