"""Switchable faults: which requests they hit, how many times, and what they do (pure, no I/O).

The JSON shape (``POST /_sim/faults`` and ``Simulator.set_faults``) is documented in the package
docstring; :func:`parse_faults` is its only parser.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from binance_sim.errors import SimError

# kind -> (default method, default path, when it acts, status, code, msg); code None = no "code" key.
_KINDS: Final[dict[str, tuple[str, str, str, int, int | None, str]]] = {
    "latency": ("*", "*", "before", 0, None, ""),
    "error": ("*", "*", "before", 400, -1000, "An unknown error occured while processing the request."),
    "unavailable": ("*", "*", "before", 503, None, "Service Unavailable."),
    "unknown_after": (
        "*",
        "*",
        "after",
        503,
        None,
        "Unknown error, please check your request or try again later.",
    ),
    "timeout_after": (
        "*",
        "*",
        "after",
        408,
        -1007,
        "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
    ),
    # Processed, then a 200 whose result is not what was asked for: it has none of its fields.
    "garbled_after": ("*", "*", "after", 200, None, "garbled"),
    # Processed, then the real answer cut off halfway (its JSON cannot be parsed).
    "truncated_after": ("*", "*", "after", 0, None, ""),
    "drop_before": ("*", "*", "before", 0, None, ""),
    "drop_after": ("*", "*", "after", 0, None, ""),
    "would_trigger": ("POST", "/fapi/v1/algoOrder", "before", 400, -2021, "Order would immediately trigger."),
    "insufficient_margin": ("POST", "/fapi/v1/order", "before", 400, -2019, "Margin is insufficient."),
}
FAULT_KINDS: Final = frozenset(_KINDS)
# One-shot user-stream faults ("actions" of the faults document).
STREAM_ACTIONS: Final = frozenset({"drop_user_streams", "expire_listen_key"})


@dataclass(slots=True)
class Fault:
    """One fault rule. ``remaining`` None means unlimited; it counts down on each request it hits."""

    kind: str
    method: str
    path: str
    remaining: int | None
    when: str
    status: int
    code: int | None
    msg: str
    delay_ms: int = 0
    retry_after_s: int | None = None  # a Retry-After header, as Binance sends with every 429/418

    def matches(self, method: str, path: str) -> bool:
        """True when this rule applies to ``method path`` (``*`` wildcards, ``prefix*`` paths)."""
        if self.method != "*" and self.method != method:
            return False
        if self.path == "*":
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def body(self, path: str, now_ms: int) -> dict[str, Any]:
        """The JSON body this fault replies with."""
        if self.code is None:
            return {"timestamp": now_ms, "path": path, "msg": self.msg}
        return {"code": self.code, "msg": self.msg}

    def cut(self, answer: bytes) -> bytes:
        """A ``truncated_after`` fault's reply: the first half of the real answer."""
        return answer[: len(answer) // 2]

    def to_json(self) -> dict[str, Any]:
        """The rule as the JSON it can be given in."""
        return {
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "count": self.remaining,
            "ms": self.delay_ms,
            "status": self.status,
            "code": self.code,
            "msg": self.msg,
            "retry_after_s": self.retry_after_s,
        }


@dataclass(slots=True)
class FaultPlan:
    """What happens to one request: delay first, then at most one failure before or after processing."""

    delay_ms: int = 0
    before: Fault | None = None
    after: Fault | None = None


@dataclass(slots=True)
class StreamReorder:
    """Seeded fault: user-stream events of different types leave in any order.

    Binance guarantees the order of events of one type only (binance-futures.md, "event order across
    types not guaranteed"): an ACCOUNT_UPDATE may come before the ORDER_TRADE_UPDATE of its fill, an
    ORDER_TRADE_UPDATE before the ALGO_UPDATE that placed its order. Each event is held
    ``type_delay_ms[type]`` plus a seeded random ``0..max_delay_ms``, never less than the event of the
    same type before it, so the order within a type stays and the order across types is shuffled.
    """

    seed: int = 0
    max_delay_ms: int = 0
    type_delay_ms: dict[str, int] = field(default_factory=dict)
    _rng: random.Random = field(init=False, repr=False)
    _last_due: dict[str, float] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def due(self, event_type: str, now_s: float) -> float:
        """When an event of ``event_type`` published at ``now_s`` (monotonic) leaves."""
        held_ms = self.type_delay_ms.get(event_type, 0) + self._rng.uniform(0, self.max_delay_ms)
        due = max(now_s + held_ms / 1000, self._last_due.get(event_type, 0.0))
        self._last_due[event_type] = due
        return due

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "max_delay_ms": self.max_delay_ms,
            "type_delay_ms": dict(self.type_delay_ms),
        }

    @classmethod
    def parse(cls, raw: Any) -> StreamReorder | None:
        """The ``stream_reorder`` object of a faults document (null: off); SimError naming a bad field."""
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise _bad("stream_reorder must be an object or null")
        seed, max_delay = raw.get("seed", 0), raw.get("max_delay_ms", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise _bad("stream_reorder.seed must be an integer")
        if not isinstance(max_delay, int) or isinstance(max_delay, bool) or not 0 <= max_delay <= 60_000:
            raise _bad("stream_reorder.max_delay_ms must be an integer in 0..60000")
        per_type = raw.get("type_delay_ms", {})
        if not isinstance(per_type, Mapping) or any(
            not isinstance(k, str) or not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 60_000
            for k, v in per_type.items()
        ):
            raise _bad("stream_reorder.type_delay_ms must map event types to integers in 0..60000")
        return cls(seed=seed, max_delay_ms=max_delay, type_delay_ms=dict(per_type))


@dataclass(slots=True)
class FaultSet:
    """Active fault rules and the server clock offset."""

    rules: list[Fault] = field(default_factory=list)
    clock_skew_ms: int = 0
    stream_delay_ms: int = 0  # every user-stream event leaves this much later
    hold_triggering: bool = False  # crossed algo orders stay TRIGGERING until released
    stream_reorder: StreamReorder | None = None  # events of different types in any order
    income_delay_ms: int = 0  # GET /fapi/v1/income lists a row only this long after its time

    def plan(self, method: str, path: str) -> FaultPlan:
        """Consume the rules that hit this request (every latency rule, then the first other one)."""
        result = FaultPlan()
        if not self.rules:
            return result
        spent = False
        for rule in self.rules:
            if not rule.matches(method, path):
                continue
            if rule.kind == "latency":
                result.delay_ms += rule.delay_ms
            elif result.before is None and result.after is None:
                if rule.when == "before":
                    result.before = rule
                else:
                    result.after = rule
            else:
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
                spent = spent or rule.remaining <= 0
        if spent:
            self.rules = [r for r in self.rules if r.remaining is None or r.remaining > 0]
        return result

    def to_json(self) -> dict[str, Any]:
        """Current faults in the shape ``POST /_sim/faults`` accepts."""
        return {
            "faults": [r.to_json() for r in self.rules],
            "clock_skew_ms": self.clock_skew_ms,
            "stream_delay_ms": self.stream_delay_ms,
            "hold_triggering": self.hold_triggering,
            "stream_reorder": self.stream_reorder.to_json() if self.stream_reorder else None,
            "income_delay_ms": self.income_delay_ms,
        }

    def apply(self, spec: Mapping[str, Any]) -> list[str]:
        """Apply a ``POST /_sim/faults`` document (replace or append rules, set the clock skew, the
        user-stream delay, the TRIGGERING hold and the income delay); returns the one-shot
        ``actions`` to run now."""
        actions = spec.get("actions", [])
        if not isinstance(actions, list) or any(a not in STREAM_ACTIONS for a in actions):
            raise _bad(f"actions must be a list of {sorted(STREAM_ACTIONS)}")
        delay = spec.get("stream_delay_ms", self.stream_delay_ms)
        if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
            raise _bad("stream_delay_ms must be a non-negative integer")
        income_delay = spec.get("income_delay_ms", self.income_delay_ms)
        if not isinstance(income_delay, int) or isinstance(income_delay, bool) or income_delay < 0:
            raise _bad("income_delay_ms must be a non-negative integer")
        hold = spec.get("hold_triggering", self.hold_triggering)
        if not isinstance(hold, bool):
            raise _bad("hold_triggering must be a boolean")
        reorder = (
            StreamReorder.parse(spec["stream_reorder"]) if "stream_reorder" in spec else self.stream_reorder
        )
        mode = spec.get("mode", "replace")
        if mode not in ("replace", "append"):
            raise _bad("mode must be 'replace' or 'append'")
        rules = parse_faults(spec.get("faults", []))
        self.rules = [*self.rules, *rules] if mode == "append" else rules
        if "clock_skew_ms" in spec:
            skew = spec["clock_skew_ms"]
            if not isinstance(skew, int) or isinstance(skew, bool):
                raise _bad("clock_skew_ms must be an integer")
            self.clock_skew_ms = skew
        self.stream_delay_ms = delay
        self.hold_triggering = hold
        self.stream_reorder = reorder
        self.income_delay_ms = income_delay
        return list(actions)


def _bad(message: str) -> SimError:
    return SimError(-1130, f"Invalid fault spec: {message}")


def parse_faults(raw: Any) -> list[Fault]:
    """Parse the ``faults`` list; raises SimError naming the bad field."""
    if not isinstance(raw, list):
        raise _bad("faults must be a list")
    rules = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise _bad(f"faults[{index}] must be an object")
        kind = item.get("kind")
        if kind not in _KINDS:
            raise _bad(f"faults[{index}].kind must be one of {sorted(_KINDS)}")
        method, path, when, status, code, msg = _KINDS[kind]
        count = item.get("count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise _bad(f"faults[{index}].count must be a positive integer or null")
        delay = item.get("ms", 0)
        if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
            raise _bad(f"faults[{index}].ms must be a non-negative integer")
        for name, expected in (("method", str), ("path", str), ("msg", str), ("status", int)):
            if name in item and not isinstance(item[name], expected):
                raise _bad(f"faults[{index}].{name} has the wrong type")
        retry_after = item.get("retry_after_s")
        if retry_after is not None and (
            not isinstance(retry_after, int) or isinstance(retry_after, bool) or retry_after < 0
        ):
            raise _bad(f"faults[{index}].retry_after_s must be a non-negative integer or null")
        if "code" in item and item["code"] is not None and not isinstance(item["code"], int):
            raise _bad(f"faults[{index}].code must be an integer or null")
        rules.append(
            Fault(
                kind=kind,
                method=str(item.get("method", method)).upper(),
                path=str(item.get("path", path)),
                remaining=count,
                when=when,
                status=int(item.get("status", status)),
                code=item.get("code", code),
                msg=str(item.get("msg", msg)),
                delay_ms=delay,
                retry_after_s=retry_after,
            )
        )
    return rules
