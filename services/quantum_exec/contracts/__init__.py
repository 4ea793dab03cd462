"""Wire contracts: the TradeIntent we consume, the ExecutionResult we publish, and their codecs.

Pure: no I/O. Two layers, because they fail differently:

* :func:`decode_entry` (``codec``) turns a stream entry into a JSON object or raises
  :class:`PayloadError` (the entry is unreadable and goes to the dead-letter stream);
* :func:`parse_intent` (``intent``, with one validator per field in ``fields`` and the echoed
  extras bounded in ``meta``) validates that object or raises :class:`IntentRejected` (the
  producer gets a ``rejected`` result naming the field and the value).

``result`` holds the published model and its codec; ``enums`` the shared enumerations.
"""

from quantum_exec.contracts.codec import (
    INTENT_EVENT_TYPE,
    RESULT_EVENT_TYPE,
    RESULT_SOURCE,
    EntryFields,
    PayloadError,
    decode_entry,
    dumps,
    encode_intent_fields,
)
from quantum_exec.contracts.enums import ErrorSource, ProtectionState, ResultStatus, Side
from quantum_exec.contracts.intent import (
    TradeIntent,
    intent_digest,
    intent_json_schema,
    intent_key,
    parse_intent,
)
from quantum_exec.contracts.meta import META_MAX_BYTES, META_TRUNCATED_KEY
from quantum_exec.contracts.result import (
    ChildOrder,
    CloseFill,
    ExecutionResult,
    ProtectiveOrder,
    ResultError,
    decode_result_fields,
    encode_result_fields,
    result_json_schema,
)

__all__ = [
    "INTENT_EVENT_TYPE",
    "META_MAX_BYTES",
    "META_TRUNCATED_KEY",
    "RESULT_EVENT_TYPE",
    "RESULT_SOURCE",
    "ChildOrder",
    "CloseFill",
    "EntryFields",
    "ErrorSource",
    "ExecutionResult",
    "PayloadError",
    "ProtectionState",
    "ProtectiveOrder",
    "ResultError",
    "ResultStatus",
    "Side",
    "TradeIntent",
    "decode_entry",
    "decode_result_fields",
    "dumps",
    "encode_intent_fields",
    "encode_result_fields",
    "intent_digest",
    "intent_json_schema",
    "intent_key",
    "parse_intent",
    "result_json_schema",
]
