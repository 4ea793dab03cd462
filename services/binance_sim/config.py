"""SimConfig: everything the simulator is started with (all fields defaulted)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from binance_sim.book import BookConfig
from binance_sim.funding import FundingConfig
from binance_sim.ratelimit import Limits
from binance_sim.walk import WalkConfig

DEFAULT_API_KEY = "quantum-sim-key"
DEFAULT_API_SECRET = "quantum-sim-secret"  # noqa: S105 - a well-known local test pair, not a secret


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Settings of one simulator instance.

    ``credentials`` adds further key/secret pairs to the default one. ``latency_ms`` delays every
    response. ``slippage_bps`` moves MARKET fills away from the mark (against the taker). ``book``
    shapes the synthetic order book MARKET orders walk (default: one level of unlimited depth, i.e.
    one trade at the mark plus slippage). ``walk`` moves the marks on a timer (default off).
    ``funding`` sets the funding interval and whether the server settles by itself (default: each
    symbol's own, 8 h or the market state's ``fundingIntervalHours``,
    settled only on ``POST /_sim/funding``). ``liquidation`` liquidates positions whose margin falls
    to their maintenance margin at a mark move (default on).
    ``state_path`` keeps the account (orders, positions, wallet, trades) across restarts.
    ``listen_key_lifetime_ms`` is how long a listenKey lives without a keepalive (Binance: 60 min);
    ``stream_ping_interval_s`` how often the server pings user-stream sockets (Binance: 3 min);
    ``stream_max_connection_s`` how long one socket lives before the server closes it (Binance: 24 h).
    ``trigger_delay_ms`` is how long a crossed algo order stays TRIGGERING before its order is placed.
    ``max_algo_orders_per_symbol`` restores a per-symbol limit of open conditional orders (Binance removed
    its MAX_NUM_ALGO_ORDERS filter of 10 on 2025-12-29; default None: only 200 per account).
    ``margin_call_ratio``: the margin ratio (maintenance margin / margin balance) at which MARGIN_CALL is
    pushed (Binance documents no threshold; 0.8 by default).
    ``loopback_only_control`` refuses ``/_sim/`` requests that do not come from 127.0.0.1 / ::1.
    """

    api_key: str = DEFAULT_API_KEY
    api_secret: str = DEFAULT_API_SECRET
    credentials: dict[str, str] = field(default_factory=dict)
    # API keys that sign with a private key: API key -> the public key in PEM (Ed25519 or RSA).
    # Such a key's requests are verified against it instead of an HMAC secret.
    public_keys: dict[str, str] = field(default_factory=dict)
    latency_ms: int = 0
    rate_limits: bool = True
    limits: Limits = field(default_factory=Limits)
    slippage_bps: Decimal = Decimal("0")
    book: BookConfig = field(default_factory=BookConfig)
    walk: WalkConfig = field(default_factory=WalkConfig)
    funding: FundingConfig = field(default_factory=FundingConfig)
    liquidation: bool = True
    exchange_info_path: Path | None = None
    market_state_path: Path | None = None
    loopback_only_control: bool = True
    # Keep the account in this file across restarts (a paper account); None: in memory only.
    state_path: Path | None = None
    listen_key_lifetime_ms: int = 60 * 60 * 1000
    stream_ping_interval_s: float = 180.0
    stream_max_connection_s: float = 24 * 60 * 60
    trigger_delay_ms: int = 5
    max_algo_orders_per_symbol: int | None = None
    margin_call_ratio: Decimal = Decimal("0.8")

    def secrets(self) -> dict[str, str]:
        """Every accepted API key mapped to its secret."""
        return {**self.credentials, self.api_key: self.api_secret}
