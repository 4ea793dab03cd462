"""One frozen settings object, read once at start from the environment (``QUANTUM_*``).

Secrets are ``SecretStr`` and never printed. A bad value fails at start with a message that names
the environment variable (see :func:`load_settings`).
"""

from __future__ import annotations

import os
import socket
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from quantum_exec.core.config_checks import (
    contradictions,
    env_file_problems,
    redis_url_problem,
    unknown_variables,
)
from quantum_exec.core.errors import ConfigError

ENV_PREFIX = "QUANTUM_"
DEFAULT_ENV_FILE = Path("/etc/quantum/execution.env")
# A bearer token that can be guessed protects nothing (issue #25).
MIN_TOKEN_LENGTH = 16


class ExchangeEnv(StrEnum):
    SIM = "sim"
    TESTNET = "testnet"
    DEMO = "demo"
    LIVE = "live"


class MarginType(StrEnum):
    ISOLATED = "ISOLATED"
    CROSSED = "CROSSED"


class LeveragePolicy(StrEnum):
    CAP = "cap"
    REJECT = "reject"


class MaxQtyPolicy(StrEnum):
    SPLIT = "split"  # into child orders at most maxQty each (a MARKET entry or a CLOSE)
    REJECT = "reject"
    CLAMP = "clamp"


class OrderTransport(StrEnum):
    REST = "rest"
    WEBSOCKET = "websocket"  # Binance's WebSocket API (ws-fapi), REST when the socket is down


class ProtectionTiming(StrEnum):
    AFTER_FILL = "after_fill"  # SL/TP placed once the entry's fill is known
    WITH_ENTRY = "with_entry"  # closePosition SL/TP sent beside the MARKET entry (absolute triggers)


class ProtectionMode(StrEnum):
    QUANTITY = "quantity"
    CLOSE_POSITION = "close_position"


class ProtectionFailurePolicy(StrEnum):
    CLOSE = "close"
    KEEP = "keep"


class DailyLossAction(StrEnum):
    REDUCE = "reduce"  # REDUCING: only intents that reduce exposure
    HALT = "halt"  # HALTED: nothing new, working entries cancelled, protective legs kept
    HALT_FLATTEN = "halt_flatten"  # HALTED, and every position closed


class OppositePolicy(StrEnum):
    NET = "net"
    REJECT = "reject"


class WorkingType(StrEnum):
    MARK_PRICE = "MARK_PRICE"
    CONTRACT_PRICE = "CONTRACT_PRICE"


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


def default_state_dir(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/quantum-exec`` (or ``~/.local/state/quantum-exec``)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(base) / "quantum-exec"


def default_consumer_name() -> str:
    """Stable per instance: the host name plus the systemd unit (or ``manual``), never random."""
    unit = os.environ.get("QUANTUM_UNIT_NAME") or "quantum-execution"
    return f"{socket.gethostname()}:{unit}"


class Settings(BaseModel):
    """Effective configuration of one service instance."""

    # Only explicit values: load_settings() maps the environment, so constructing Settings in a
    # test never picks up whatever the developer's shell happens to export.
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # Redis and streams
    # May embed a password: kept out of repr(); masked() shows it with the password hidden.
    redis_url: str | None = Field(default=None, repr=False)
    # Redis behind Sentinel (instead of redis_url): host:port of each sentinel and the master's name.
    redis_sentinels: tuple[str, ...] = ()
    redis_sentinel_master: str | None = None
    # Password of the Redis servers (a URL's own password wins; Sentinel: the servers it names),
    # and of the sentinels themselves.
    redis_password: SecretStr | None = Field(default=None, repr=False)
    redis_sentinel_password: SecretStr | None = Field(default=None, repr=False)
    # TLS to the sentinels and the servers they name (a URL says it with rediss://).
    redis_tls: bool = False
    redis_tls_ca_file: Path | None = None
    intent_stream: str = "quantum:stream:trade.intent"
    consumer_group: str = "quantum:group:execution:trade.intent"
    result_stream: str = "quantum:stream:execution.result"
    dlq_stream: str = "quantum:stream:trade.intent.dlq"
    position_stream: str = "quantum:stream:position.event"
    key_prefix: str = "quantum:exec"
    consumer_name: str = Field(default_factory=default_consumer_name)
    result_maxlen: int = Field(default=100_000, ge=100)
    read_count: int = Field(default=64, ge=1, le=1000)
    block_ms: int = Field(default=1000, ge=1, le=60_000)
    max_concurrency: int = Field(default=32, ge=1, le=1024)
    max_deliveries: int = Field(default=5, ge=1)
    # Attempts in which the process died while executing the intent, before it is repaired and
    # dead-lettered as poison (deliveries that never began executing do not count).
    max_attempts: int = Field(default=5, ge=1)
    claim_idle_ms: int = Field(default=60_000, ge=1000)
    claim_interval_s: float = Field(default=5.0, gt=0)
    claim_page_size: int = Field(default=100, ge=1)
    claim_max_pages: int = Field(default=10, ge=1)
    idempotency_ttl_days: int = Field(default=7, ge=1)
    lease_ttl_ms: int = Field(default=30_000, ge=1000)
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    redis_reconnect_max_s: float = Field(default=5.0, gt=0)

    # Exchange
    exchange: ExchangeEnv = ExchangeEnv.SIM
    binance_base_url: str | None = None
    # User data stream root (wss://...); unset = the environment's (sim: the simulator's address).
    binance_stream_url: str | None = None
    # Follow the account over the user data stream (live OCO, fills, position events); off = REST only.
    user_stream: bool = True
    # A LIMIT entry works at most this long (also without expire_after_s); then its remainder is cancelled.
    working_order_max_s: float = Field(default=300.0, gt=0, le=86_400)
    # A fill that stands without its SL/TP longer than this is counted, logged, alerted and shown.
    unprotected_alert_s: float = Field(default=5.0, gt=0)
    # Reject BUY/SELL intents without a stop-loss instead of opening a naked position.
    require_protection: bool = False
    # The account lease (one instance acts on account events): taken over this long after its holder died.
    account_lease_ttl_s: float = Field(default=3.0, ge=0.5, le=60)
    # How long start-up waits for the first resync and reconciliation before consuming anyway (REST fallback).
    user_stream_start_timeout_s: float = Field(default=10.0, ge=0)
    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("BINANCE_API_KEY", "QUANTUM_API_KEY")
    )
    api_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("BINANCE_API_SECRET", "QUANTUM_API_SECRET")
    )
    # An Ed25519 (Binance's recommended key type) or RSA private key in PEM, instead of the HMAC
    # secret: it signs every REST request. The passphrase of an encrypted key beside it.
    private_key_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("BINANCE_PRIVATE_KEY_FILE", "QUANTUM_PRIVATE_KEY_FILE")
    )
    private_key_passphrase: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("BINANCE_PRIVATE_KEY_PASSPHRASE", "QUANTUM_PRIVATE_KEY_PASSPHRASE"),
        repr=False,
    )
    live_confirm: str = ""
    request_timeout_s: float = Field(default=10.0, gt=0)
    recv_window_ms: int = Field(default=5000, ge=1, le=60_000)
    exchange_info_refresh_s: float = Field(default=3600.0, gt=0)
    order_lookup_attempts: int = Field(default=6, ge=1)
    order_lookup_interval_s: float = Field(default=0.25, gt=0)
    allow_non_perpetual: bool = False
    # Pace requests below the exchange's published limits (off only for benchmarks against a
    # simulator whose limits are switched off).
    rate_limit_pacing: bool = True
    # Instances of one account share the pacing budget through Redis (each keeps to 1/N of it).
    shared_pacing: bool = True

    # Execution policy
    default_leverage: int = Field(default=1, ge=1, le=125)
    default_margin_type: MarginType = MarginType.ISOLATED
    leverage_policy: LeveragePolicy = LeveragePolicy.CAP
    max_qty_policy: MaxQtyPolicy = MaxQtyPolicy.SPLIT
    protection_mode: ProtectionMode = ProtectionMode.QUANTITY
    # with_entry: a MARKET entry on a flat symbol with absolute stop_loss/take_profit gets its
    # closePosition legs in the same round trip as the entry (see README "Protection timing").
    protection_timing: ProtectionTiming = ProtectionTiming.AFTER_FILL
    # How orders travel: REST, or Binance's WebSocket API (place/status/cancel of orders and algo
    # orders over one signed socket; REST while it is down, and for everything else).
    order_transport: OrderTransport = OrderTransport.REST
    binance_ws_api_url: str | None = None
    protection_failure_policy: ProtectionFailurePolicy = ProtectionFailurePolicy.CLOSE
    protection_retries: int = Field(default=2, ge=0, le=10)
    # A BUY/SELL meeting an opposite one-way position: net against it (reduce, close or flip),
    # or reject the intent before anything is sent.
    opposite_policy: OppositePolicy = OppositePolicy.NET
    working_type: WorkingType = WorkingType.MARK_PRICE
    price_protect: bool = True

    # Pre-trade guards
    intent_ttl_s: float = Field(default=120.0, gt=0)
    # A timestamp further ahead of our clock than this is rejected (INVALID_FIELD).
    max_clock_skew_s: float = Field(default=5.0, ge=0)
    symbol_allowlist: frozenset[str] = frozenset()
    max_notional_usd: Decimal = Field(default=Decimal("50000"), gt=0)
    max_leverage: int = Field(default=20, ge=1, le=125)

    # Account risk governor (quantum_exec.risk): every limit optional, changeable at run time
    # through the control API (POST /api/control/limits).
    risk_stream: str = "quantum:stream:risk.event"
    risk_max_daily_loss_usd: Decimal | None = Field(default=None, gt=0)
    risk_on_daily_loss: DailyLossAction = DailyLossAction.REDUCE
    risk_max_drawdown_pct: Decimal | None = Field(default=None, gt=0, le=100)
    risk_max_gross_notional_usd: Decimal | None = Field(default=None, gt=0)
    risk_max_symbol_notional_usd: Decimal | None = Field(default=None, gt=0)
    risk_max_open_positions: int | None = Field(default=None, ge=1)
    risk_max_leverage: int | None = Field(default=None, ge=1, le=125)
    risk_min_liq_distance_pct: Decimal | None = Field(default=None, gt=0, lt=100)
    risk_max_intents_per_min: int | None = Field(default=None, ge=1)
    # How often the account-lease holder evaluates the day's loss, drawdown and liquidation distance.
    risk_check_interval_s: float = Field(default=1.0, gt=0, le=60)
    # Host names (besides loopback) the control API answers to, e.g. the TLS proxy's name.
    control_hosts: frozenset[str] = frozenset()

    # Operations
    # Loopback by default: the port serves the book; the container image binds 0.0.0.0 itself.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    # Bearer token for the read-only /api/* (positions, orders, trades, PnL). Unset: loopback only.
    api_token: SecretStr | None = Field(default=None, repr=False)
    # A scrape-only bearer token: /metrics with it includes the per-symbol PnL and notional series.
    metrics_token: SecretStr | None = Field(default=None, repr=False)
    # Closed trades older than this are trimmed from the ledger stream.
    ledger_retention_days: int = Field(default=365, ge=1)
    log_format: LogFormat = LogFormat.JSON
    log_level: str = "INFO"
    log_file: Path | None = None
    watchdog: bool = True

    # Embedded defaults: where `serve` keeps the private Redis's data (and the paper account);
    # unset = a throwaway directory (`serve` fills in default_state_dir()).
    state_dir: Path | None = None
    # The embedded Redis is for local paper trading: with a real exchange (live, demo, testnet)
    # QUANTUM_REDIS_URL is required unless this says the embedded one is wanted all the same.
    allow_embedded_redis: bool = False

    # Embedded simulator (QUANTUM_EXCHANGE=sim without QUANTUM_BINANCE_BASE_URL)
    sim_latency_ms: int = Field(default=0, ge=0)
    sim_rate_limits: bool = True

    @field_validator("symbol_allowlist", mode="before")
    @classmethod
    def _split_symbols(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(s.strip().upper() for s in value.split(",") if s.strip())
        return value

    @field_validator("control_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(h.strip().lower() for h in value.split(",") if h.strip())
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _split_sentinels(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(s.strip() for s in value.split(",") if s.strip())
        for address in value:
            host, sep, port = str(address).rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{address!r} is not host:port (give host:port,host:port,...)")
        return value

    @field_validator("binance_base_url")
    @classmethod
    def _strip_fapi(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        value = value.rstrip("/")
        if value.endswith("/fapi"):
            raise ValueError("give the REST root without the /fapi path, e.g. http://127.0.0.1:8765")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_form(cls, value: str | None) -> str | None:
        if value:
            problem = redis_url_problem(value)
            if problem is not None:
                raise ValueError(f"{mask_url_password(value)} {problem}")
        return value

    @field_validator("api_token", "metrics_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"shorter than {MIN_TOKEN_LENGTH} characters: use a random one, e.g. `openssl rand -hex 24`"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value

    @model_validator(mode="after")
    def _one_redis(self) -> Settings:
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError(
                "QUANTUM_REDIS_SENTINELS needs QUANTUM_REDIS_SENTINEL_MASTER (the name monitored)"
            )
        if self.redis_sentinel_master and not self.redis_sentinels:
            raise ValueError("QUANTUM_REDIS_SENTINEL_MASTER needs QUANTUM_REDIS_SENTINELS (host:port,...)")
        if self.redis_sentinels and self.redis_url:
            raise ValueError("set either QUANTUM_REDIS_URL or QUANTUM_REDIS_SENTINELS, not both")
        if self.redis_cluster:
            problem = cluster_key_problem(self)
            if problem is not None:
                raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        found = contradictions(dict(self))
        if found:
            raise ValueError("; ".join(found))
        return self

    @model_validator(mode="after")
    def _live_needs_confirmation(self) -> Settings:
        if self.exchange is ExchangeEnv.LIVE and self.live_confirm != "yes":
            raise ValueError("QUANTUM_EXCHANGE=live trades real money and requires QUANTUM_LIVE_CONFIRM=yes")
        if self.exchange is not ExchangeEnv.SIM and (
            self.api_key is None or (self.api_secret is None and self.private_key_file is None)
        ):
            raise ValueError(
                f"QUANTUM_EXCHANGE={self.exchange.value} needs BINANCE_API_KEY and BINANCE_API_SECRET "
                "(or BINANCE_PRIVATE_KEY_FILE for an Ed25519 or RSA key)"
            )
        if self.private_key_file is not None and not self.private_key_file.is_file():
            raise ValueError(f"BINANCE_PRIVATE_KEY_FILE: {self.private_key_file} is not a readable file")
        return self

    @model_validator(mode="after")
    def _embedded_redis_is_for_paper(self) -> Settings:
        if self.exchange is not ExchangeEnv.SIM and self.embedded_redis and not self.allow_embedded_redis:
            raise ValueError(
                f"QUANTUM_EXCHANGE={self.exchange.value} needs QUANTUM_REDIS_URL (or "
                "QUANTUM_REDIS_SENTINELS): the embedded Redis is for local paper trading; set "
                "QUANTUM_ALLOW_EMBEDDED_REDIS=true to use it with a real exchange all the same"
            )
        return self

    @model_validator(mode="after")
    def _exchange_over_tls(self) -> Settings:
        # Keys, signatures and the account's orders never travel in clear text to a real exchange.
        if self.exchange is ExchangeEnv.SIM:
            return self
        for variable, url in (
            ("QUANTUM_BINANCE_BASE_URL", self.binance_base_url),
            ("QUANTUM_BINANCE_STREAM_URL", self.binance_stream_url),
            ("QUANTUM_BINANCE_WS_API_URL", self.binance_ws_api_url),
        ):
            if url and not url.lower().startswith(("https://", "wss://")):
                raise ValueError(
                    f"{variable}={url} is not encrypted: QUANTUM_EXCHANGE={self.exchange.value} needs "
                    "https:// (wss:// for WebSocket URLs)"
                )
        return self

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url and not self.redis_sentinels

    @property
    def redis_cluster(self) -> bool:
        """``QUANTUM_REDIS_URL=redis+cluster://`` (or ``rediss+cluster://``): a Redis Cluster."""
        return bool(self.redis_url) and str(self.redis_url).split("://", 1)[0] in CLUSTER_SCHEMES

    @property
    def embedded_sim(self) -> bool:
        return self.exchange is ExchangeEnv.SIM and self.binance_base_url is None

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain values, secrets masked, for ``--print-config``."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump(mode="json").items():
            field_value = getattr(self, name)
            if isinstance(field_value, SecretStr):
                out[name] = "**********" if field_value.get_secret_value() else ""
            elif name == "redis_url" and value:
                out[name] = mask_url_password(str(value))
            else:
                out[name] = value
        return out


CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})
# (setting, variable, default name without a tag) of every key the service's scripts combine.
_TAGGED = (
    ("intent_stream", "QUANTUM_INTENT_STREAM", "stream:trade.intent"),
    ("result_stream", "QUANTUM_RESULT_STREAM", "stream:execution.result"),
    ("dlq_stream", "QUANTUM_DLQ_STREAM", "stream:trade.intent.dlq"),
    ("position_stream", "QUANTUM_POSITION_STREAM", "stream:position.event"),
    ("risk_stream", "QUANTUM_RISK_STREAM", "stream:risk.event"),
    ("key_prefix", "QUANTUM_KEY_PREFIX", "exec"),
)


def hash_tag(key: str) -> str | None:
    """The hash tag of a key as Redis Cluster reads it (``{...}``, first one, non-empty), or None."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]


def cluster_key_problem(settings: Settings) -> str | None:
    """Why the stream names and key prefix cannot live in one Redis Cluster slot, or None.

    The atomic scripts (publish + record + ack, lease + begin, event claim + publish) combine
    the streams with the internal keys, and a script's keys must all hash to one slot.
    """
    tags = {var: hash_tag(str(getattr(settings, field))) for field, var, _ in _TAGGED}
    if len(set(tags.values())) == 1 and None not in tags.values():
        return None
    found = [t for t in tags.values() if t is not None]
    tag = max(set(found), key=found.count) if found else "quantum"
    now = ", ".join(f"{var}={getattr(settings, f)}" for f, var, _ in _TAGGED)
    wanted = " ".join(f"{var}={{{tag}}}:{name}" for _, var, name in _TAGGED)
    return (
        "QUANTUM_REDIS_URL is a Redis Cluster: the stream names and the key prefix must share one "
        f"hash tag so every script's keys are in one slot; set {wanted} (producers and consumers "
        f"use the same stream names). Now: {now}"
    )


def mask_url_password(url: str) -> str:
    """``url`` with its passwords shown as ``****``: in the userinfo and in a query parameter
    (``?password=``, which redis-py reads as well)."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    rest, mark, query = rest.partition("?")
    if "@" in rest:
        creds, host = rest.rsplit("@", 1)
        rest = f"{creds.split(':', 1)[0]}:****@{host}"
    if query:
        parts = query.split("&")
        query = "&".join(f"{p.partition('=')[0]}=****" if _is_password_param(p) else p for p in parts)
    return f"{scheme}://{rest}{mark}{query}"


def url_query_passwords(url: str) -> list[str]:
    """The values of a URL's password query parameters (decoded and as written)."""
    found: list[str] = []
    for part in url.partition("?")[2].split("&"):
        value = part.partition("=")[2]
        if _is_password_param(part) and value:
            found.extend({value, unquote_plus(value)})
    return found


def _is_password_param(part: str) -> bool:
    return "password" in unquote_plus(part.partition("=")[0]).lower()


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a systemd-style EnvironmentFile (KEY=VALUE lines, # comments, optional quotes)."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


# The secrets systemd may pass as credentials (files named after the variables).
CREDENTIAL_NAMES = (
    "BINANCE_API_KEY",
    "BINANCE_API_SECRET",
    "BINANCE_PRIVATE_KEY_PASSPHRASE",
    "QUANTUM_API_TOKEN",
    "QUANTUM_METRICS_TOKEN",
    "QUANTUM_REDIS_PASSWORD",
    "QUANTUM_REDIS_SENTINEL_PASSWORD",
)


def read_credentials(directory: str | None) -> dict[str, str]:
    """Secrets passed by systemd ``LoadCredential=`` (files named after the variables)."""
    found: dict[str, str] = {}
    if not directory:
        return found
    for name in CREDENTIAL_NAMES:
        path = Path(directory) / name
        if path.is_file():
            found[name] = path.read_text(encoding="utf-8").strip()
    # The private key itself as a credential: its path is passed on, never its content.
    key = Path(directory) / "BINANCE_PRIVATE_KEY"
    if key.is_file():
        found["BINANCE_PRIVATE_KEY_FILE"] = str(key)
    return found


def env_var_names(field: str) -> tuple[str, ...]:
    """The environment variables that set ``field``, in order of preference."""
    if field in {"api_key", "api_secret", "private_key_file", "private_key_passphrase"}:
        return (f"BINANCE_{field.upper()}", f"{ENV_PREFIX}{field.upper()}")
    return (f"{ENV_PREFIX}{field.upper()}",)


def configuration_warnings(env_file: Path | None, environ: dict[str, str] | None = None) -> list[str]:
    """What in the environment and the env file sets nothing: misspelt names, malformed lines."""
    env = dict(os.environ if environ is None else environ)
    names = set(env)
    problems = []
    if env_file is not None:
        problems.extend(env_file_problems(env_file))
        names |= set(read_env_file(env_file))
    known = [var for field in Settings.model_fields for var in env_var_names(field)]
    problems.extend(unknown_variables(names, known))
    return problems


def load_settings(
    env_file: Path | None = None, environ: dict[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build the settings: EnvironmentFile < process environment < systemd credentials < overrides.

    Raises :class:`ConfigError` naming the offending variable when a value is invalid.
    """
    env = dict(os.environ if environ is None else environ)
    merged: dict[str, str] = {}
    if env_file is not None:
        merged.update(read_env_file(env_file))
    merged.update(env)
    # Credentials from systemd win over the environment: they are the documented channel.
    merged.update(read_credentials(env.get("CREDENTIALS_DIRECTORY")))
    values: dict[str, Any] = {}
    for field in Settings.model_fields:
        for var in env_var_names(field):
            if var in merged and merged[var] != "":
                values[field] = merged[var]
                break
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{env_var_names(str(err['loc'][0]))[0]}: {message}" if err["loc"] else message)
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
