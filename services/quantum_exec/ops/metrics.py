"""Every Prometheus metric of the service, defined in one place.

One prefix, base units (seconds, bytes), ``_total`` counters and low-cardinality labels: never an
order id, intent id or price in a label. The dashboards and alert rules in ``deploy/`` use these
names, so renaming one is a contract change.
"""

from __future__ import annotations

import platform
from typing import Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

PREFIX = "quantum_exec"
M = TypeVar("M", Counter, Gauge, Histogram)
# The *_created series double the exposition for nothing our dashboards or alerts use.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)

# 1 ms .. 10 s, denser where an execution normally lands.
LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)

INTENTS_RECEIVED = Counter(
    f"{PREFIX}_intents_received_total", "Stream entries read from the intent stream.", registry=REGISTRY
)
INTENTS_EXECUTED = Counter(
    f"{PREFIX}_intents_total",
    "Intents finished, by result status and reason code ('ok' when there is no error).",
    ["status", "reason"],
    registry=REGISTRY,
)
RESULTS_PUBLISHED = Counter(
    f"{PREFIX}_results_published_total", "ExecutionResults written to the result stream.", registry=REGISTRY
)
DEAD_LETTERS = Counter(
    f"{PREFIX}_dead_letters_total",
    "Entries moved to the dead-letter stream, by reason.",
    ["reason"],
    registry=REGISTRY,
)
DUPLICATES = Counter(
    f"{PREFIX}_duplicate_intents_total",
    "Intents that already had a final result and were acknowledged without execution.",
    registry=REGISTRY,
)
REDELIVERIES = Counter(
    f"{PREFIX}_redeliveries_total",
    "Entries delivered more than once (own pending or claimed).",
    registry=REGISTRY,
)
CLAIMED = Counter(
    f"{PREFIX}_claimed_total", "Entries taken over from idle consumers by XAUTOCLAIM.", registry=REGISTRY
)
CLAIM_DELETED = Counter(
    f"{PREFIX}_claim_deleted_total",
    "Pending entries XAUTOCLAIM reported as deleted from the stream.",
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    f"{PREFIX}_consumer_lag_entries",
    "Entries in the stream not yet delivered to the group.",
    registry=REGISTRY,
)
PENDING = Gauge(
    f"{PREFIX}_pending_entries", "Entries delivered to the group but not yet acknowledged.", registry=REGISTRY
)
IN_FLIGHT = Gauge(f"{PREFIX}_in_flight_intents", "Intents being executed now.", registry=REGISTRY)
TASK_FAILURES = Counter(
    f"{PREFIX}_task_failures_total",
    "Background tasks of the consumer that ended with an exception (each is also logged).",
    ["task"],
    registry=REGISTRY,
)
INTENT_ID_CONFLICTS = Counter(
    f"{PREFIX}_intent_id_conflicts_total",
    "Intents whose intent_id was already used for a different intent (dead-lettered, no result).",
    registry=REGISTRY,
)
INTENT_LATENCY = Histogram(
    f"{PREFIX}_intent_latency_seconds",
    "End to end: the intent's stream id time to its result published.",
    buckets=LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
TIME_TO_PROTECTED = Histogram(
    f"{PREFIX}_time_to_protected_seconds",
    "From the intent's stream id time to both protective orders acknowledged by the exchange.",
    buckets=LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
UNPROTECTED_SECONDS = Histogram(
    f"{PREFIX}_unprotected_seconds",
    "From an entry's fill (its exchange time) to its SL/TP standing or the position closed.",
    # Minutes too: a fill seen only after a restart or behind other work stood naked that long.
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
    registry=REGISTRY,
)
UNPROTECTED_OVER_BOUND = Counter(
    f"{PREFIX}_unprotected_over_bound_total",
    "Fills that stood without their SL/TP longer than QUANTUM_UNPROTECTED_ALERT_S.",
    registry=REGISTRY,
)
UNPROTECTED_NOW = Gauge(
    f"{PREFIX}_unprotected_now",
    "Fills being protected right now that have stood naked longer than QUANTUM_UNPROTECTED_ALERT_S.",
    registry=REGISTRY,
)
CONDITIONAL_OPEN = Gauge(
    f"{PREFIX}_conditional_orders_open",
    "Open conditional (algo) orders of the account, ours and others, at the last count.",
    registry=REGISTRY,
)
CONDITIONAL_BUDGET = Gauge(
    f"{PREFIX}_conditional_orders_budget",
    "The account's budget of open conditional orders (Binance: 200).",
    registry=REGISTRY,
)
CONDITIONAL_BUDGET.set(200)
STEP_LATENCY = Histogram(
    f"{PREFIX}_step_latency_seconds",
    "Time per execution step (leverage, entry, protection, fees, close, lookup).",
    ["step"],
    buckets=LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
EXCHANGE_REQUESTS = Counter(
    f"{PREFIX}_exchange_requests_total",
    "REST requests to the exchange by method, endpoint and outcome (ok, error, unknown, rate_limited).",
    ["method", "endpoint", "outcome"],
    registry=REGISTRY,
)
EXCHANGE_LATENCY = Histogram(
    f"{PREFIX}_exchange_request_seconds",
    "REST request latency by method and endpoint.",
    ["method", "endpoint"],
    buckets=LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
EXCHANGE_ERRORS = Counter(
    f"{PREFIX}_exchange_errors_total",
    "Binance error codes received (code, or HTTP status when none).",
    ["code"],
    registry=REGISTRY,
)
USED_WEIGHT_1M = Gauge(
    f"{PREFIX}_rate_limit_used_weight_1m", "Last X-MBX-USED-WEIGHT-1M seen.", registry=REGISTRY
)
ORDER_COUNT_10S = Gauge(
    f"{PREFIX}_rate_limit_order_count_10s", "Last X-MBX-ORDER-COUNT-10S seen.", registry=REGISTRY
)
ORDER_COUNT_1M = Gauge(
    f"{PREFIX}_rate_limit_order_count_1m", "Last X-MBX-ORDER-COUNT-1M seen.", registry=REGISTRY
)
WEIGHT_LIMIT_1M = Gauge(
    f"{PREFIX}_rate_limit_weight_limit_1m",
    "REQUEST_WEIGHT limit per minute from exchangeInfo.",
    registry=REGISTRY,
)
ORDER_LIMIT_10S = Gauge(
    f"{PREFIX}_rate_limit_order_limit_10s", "ORDERS limit per 10 s from exchangeInfo.", registry=REGISTRY
)
WS_API_CONNECTED = Gauge(
    f"{PREFIX}_ws_api_connected",
    "1 while the WebSocket API order transport is connected (QUANTUM_ORDER_TRANSPORT=websocket).",
    registry=REGISTRY,
)
WS_API_RECONNECTS = Counter(
    f"{PREFIX}_ws_api_reconnects_total",
    "Reconnections of the WebSocket API order transport.",
    registry=REGISTRY,
)
PACING_INSTANCES = Gauge(
    f"{PREFIX}_pacing_instances",
    "Live instances sharing the account's pacing budget (each paces itself to 1/N of it).",
    registry=REGISTRY,
)
PACING_HELD = Gauge(
    f"{PREFIX}_pacing_held_orders",
    "Order requests pacing is holding for a slot below the order limits now.",
    registry=REGISTRY,
)
ORDERS_SHED = Counter(
    f"{PREFIX}_entries_shed_total",
    "Entries not sent because rate-limit pacing would have held them past their intent's TTL.",
    registry=REGISTRY,
)
RATE_LIMIT_PAUSED = Counter(
    f"{PREFIX}_rate_limit_paused_seconds_total",
    "Time requests waited because of rate limits (own pacing or the exchange's Retry-After).",
    ["reason"],
    registry=REGISTRY,
)
SLICES_SENT = Counter(
    f"{PREFIX}_slices_sent_total",
    "Child orders sent for entries and closes sent as several (TWAP slices, maxQty parts), by role.",
    ["role"],
    registry=REGISTRY,
)
POSITIONS_OPENED = Counter(
    f"{PREFIX}_positions_opened_total",
    "Entries filled, by the protection state they ended in.",
    ["protection"],
    registry=REGISTRY,
)
# Every protection state exists from the start at 0: increase() cannot see a series' first sample,
# and the first unprotected position must not be the one the alert misses. Mirrors
# contracts.ProtectionState (kept as text so this module imports nothing of the package).
PROTECTION_STATES = ("protected", "partial", "unprotected", "closed_emergency", "not_requested")
for _state in PROTECTION_STATES:
    POSITIONS_OPENED.labels(protection=_state)
CLOCK_OFFSET = Gauge(
    f"{PREFIX}_clock_offset_seconds", "Exchange server time minus local time.", registry=REGISTRY
)
EXCHANGE_INFO_AGE = Gauge(
    f"{PREFIX}_exchange_info_age_seconds", "Age of the cached exchange rules.", registry=REGISTRY
)
EXCHANGE_INFO_REFRESHES = Counter(
    f"{PREFIX}_exchange_info_refreshes_total",
    "exchangeInfo loads by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
REDIS_RECONNECTS = Counter(
    f"{PREFIX}_redis_reconnects_total", "Redis connection losses survived.", registry=REGISTRY
)
READY = Gauge(
    f"{PREFIX}_ready",
    "1 when every readiness check passed at the last evaluation (once a second), else 0.",
    registry=REGISTRY,
)
READINESS_CHECK = Gauge(
    f"{PREFIX}_readiness_check_ok",
    "Outcome of each readiness check at the last evaluation (1 ok, 0 failing).",
    ["check"],
    registry=REGISTRY,
)
USER_STREAM_CONNECTED = Gauge(
    f"{PREFIX}_user_stream_connected",
    "1 while the user data stream is connected and resynced (the account view is fresh), else 0.",
    registry=REGISTRY,
)
USER_STREAM_RECONNECTS = Counter(
    f"{PREFIX}_user_stream_reconnects_total", "User data stream connections lost.", registry=REGISTRY
)
USER_STREAM_LAST_EVENT = Gauge(
    f"{PREFIX}_user_stream_last_event_timestamp_seconds",
    "Unix time of the last user data stream event (or resync); time() minus it is the event age.",
    registry=REGISTRY,
)
USER_STREAM_EVENTS = Counter(
    f"{PREFIX}_user_stream_events_total",
    "User data stream events received, by type.",
    ["type"],
    registry=REGISTRY,
)
ACCOUNT_RESYNCS = Counter(
    f"{PREFIX}_account_resyncs_total",
    "REST resyncs of the account view, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
RISK_STATE = Gauge(
    f"{PREFIX}_risk_trading_state",
    "1 for the account's trading state (ACTIVE, REDUCING, HALTED) as this instance last read it.",
    ["state"],
    registry=REGISTRY,
)
RISK_LIMIT_USE = Gauge(
    f"{PREFIX}_risk_limit_use_ratio",
    "How much of each account risk limit is used (1 = at the limit); absent while the limit is off.",
    ["limit"],
    registry=REGISTRY,
)
RISK_REFUSED = Counter(
    f"{PREFIX}_risk_refused_total",
    "Intents refused by the risk governor, by reason code.",
    ["code"],
    registry=REGISTRY,
)
RISK_TRANSITIONS = Counter(
    f"{PREFIX}_risk_transitions_total",
    "Trading-state transitions this instance wrote, by the state entered.",
    ["state"],
    registry=REGISTRY,
)
ACCOUNT_LEASE_HELD = Gauge(
    f"{PREFIX}_account_lease_held",
    "1 on the instance that acts on account events (cancels, events, reconciliation).",
    registry=REGISTRY,
)
POSITION_EVENTS = Counter(
    f"{PREFIX}_position_events_total",
    "Position events published, by kind and reason.",
    ["kind", "reason"],
    registry=REGISTRY,
)
OCO_ACTIONS = Counter(
    f"{PREFIX}_oco_actions_total",
    "Protective orders cancelled or resized because the position changed, by action and outcome.",
    ["action", "outcome"],
    registry=REGISTRY,
)
RECONCILE_ACTIONS = Counter(
    f"{PREFIX}_reconcile_actions_total",
    "Reconciliation actions (cancel, protect, record_flat, external), by outcome.",
    ["action", "outcome"],
    registry=REGISTRY,
)
EXTERNAL_POSITIONS = Gauge(
    f"{PREFIX}_external_positions",
    "Positions (or parts) on the account that this service did not open, at the last reconciliation.",
    registry=REGISTRY,
)
OPEN_POSITIONS = Gauge(
    f"{PREFIX}_open_positions",
    "Open positions on the account, as the live view knows them.",
    registry=REGISTRY,
)
OPEN_POSITION_NOTIONAL = Gauge(
    f"{PREFIX}_open_position_notional",
    "Notional of the open position at its entry price (quote asset), by symbol.",
    ["symbol"],
    registry=REGISTRY,
)
LEDGER_REALIZED_PNL = Gauge(
    f"{PREFIX}_ledger_realized_pnl",
    "Realized PnL of the closed round trips kept in the ledger (quote asset), by symbol.",
    ["symbol"],
    registry=REGISTRY,
)
LEDGER_NET_PNL = Gauge(
    f"{PREFIX}_ledger_net_pnl",
    "Net PnL (realized - commission + funding) of the closed round trips in the ledger, by symbol.",
    ["symbol"],
    registry=REGISTRY,
)
LEDGER_TRADES = Counter(
    f"{PREFIX}_ledger_trades_total",
    "Round trips closed, by exit reason and outcome (win: net PnL > 0, loss: < 0, even).",
    ["exit_reason", "outcome"],
    registry=REGISTRY,
)
HTTP_REFUSED = Counter(
    f"{PREFIX}_http_refused_total",
    "Requests and connections the metrics port refused, by reason (connection_cap, bad_request, "
    "unauthorized, throttled, scrape_rate, not_loopback, host).",
    ["reason"],
    registry=REGISTRY,
)
# Per-symbol PnL and notional: served on /metrics only to scrapes the API's access rule lets in.
CONFIDENTIAL = frozenset(
    {f"{PREFIX}_open_position_notional", f"{PREFIX}_ledger_realized_pnl", f"{PREFIX}_ledger_net_pnl"}
)
# CPU, memory, open fds and start time of this process, under the service's own prefix.
PROCESS = ProcessCollector(namespace=PREFIX, registry=REGISTRY)
BUILD_INFO = Gauge(
    f"{PREFIX}_build_info", "Always 1; labels carry the versions.", ["version", "python"], registry=REGISTRY
)


def set_build_info(version: str) -> None:
    """Publish the running version as a constant gauge."""
    BUILD_INFO.labels(version=version, python=platform.python_version()).set(1)


class Children(Generic[M]):
    """A labelled metric's children, each resolved once: ``labels()`` validates, converts and
    locks on every call (1-2 % of the service's CPU when called per request and per step).

    Only for metrics whose children are never removed or cleared (a cleared child would be kept
    here and no longer exported). ``of(*values)`` takes the label values in the metric's order.
    """

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def of(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


# The per-intent and per-step observations.
INTENTS_EXECUTED_BY = Children(INTENTS_EXECUTED)
STEP_LATENCY_BY = Children(STEP_LATENCY)
TASK_FAILURES_BY = Children(TASK_FAILURES)
# Per REST response and per user-stream event.
EXCHANGE_LATENCY_BY = Children(EXCHANGE_LATENCY)
EXCHANGE_REQUESTS_BY = Children(EXCHANGE_REQUESTS)
USER_STREAM_EVENTS_BY = Children(USER_STREAM_EVENTS)
