"""Binance error replies: one exception type carrying the code, message and HTTP status Binance uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

CLIENT_ID_PATTERN: Final = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
DECIMAL_PATTERN: Final = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
INTEGER_PATTERN: Final = r"^[0-9]{1,20}$"


class SimError(Exception):
    """A request Binance would refuse: rendered as ``{"code": code, "msg": msg}`` with ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.status = status


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """A fixed Binance error; call it to get a fresh exception (never re-raise a shared instance)."""

    code: int
    msg: str
    status: int = 400

    def __call__(self) -> SimError:
        return SimError(self.code, self.msg, self.status)


def mandatory(name: str) -> SimError:
    """-1102: a mandatory parameter is missing, empty or malformed."""
    return SimError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def illegal_chars(name: str, pattern: str) -> SimError:
    """-1100: the value of ``name`` does not match Binance's legal range."""
    return SimError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{pattern}'.")


def not_required(name: str) -> SimError:
    """-1106: a parameter was sent that this combination does not accept."""
    return SimError(-1106, f"Parameter '{name}' sent when not required.")


def invalid_value(name: str) -> SimError:
    """-1130: the value is well formed but not one Binance accepts for ``name``."""
    return SimError(-1130, f"Data sent for parameter '{name}' is not valid.")


START_AFTER_END: Final = ErrorSpec(-1023, "Start time is greater than end time.")
LOOKUP_INTERVAL_TOO_BIG: Final = ErrorSpec(-1127, "More than 168 hours between startTime and endTime.")
BAD_PARAM_COMBO: Final = ErrorSpec(-1128, "Combination of optional parameters invalid.")
INVALID_SYMBOL: Final = ErrorSpec(-1121, "Invalid symbol.")
INVALID_SYMBOL_STATUS: Final = ErrorSpec(-1122, "Invalid symbol status.")
INVALID_SIDE: Final = ErrorSpec(-1117, "Invalid side.")
INVALID_ORDER_TYPE: Final = ErrorSpec(-1116, "Invalid orderType.")
INVALID_TIF: Final = ErrorSpec(-1115, "Invalid timeInForce.")
DUPLICATE_PARAM: Final = ErrorSpec(-1101, "Duplicate values for a parameter detected.")
PRECISION: Final = ErrorSpec(-1111, "Precision is over the maximum defined for this asset.")
QTY_NOT_POSITIVE: Final = ErrorSpec(-4003, "Quantity less than or equal to zero.")
QTY_BELOW_MIN: Final = ErrorSpec(-4004, "Quantity less than min quantity.")
QTY_ABOVE_MAX: Final = ErrorSpec(-4005, "Quantity greater than max quantity.")
QTY_STEP: Final = ErrorSpec(-4023, "Quantity not increased by step size.")
PRICE_NOT_POSITIVE: Final = ErrorSpec(-4001, "Price less than 0.")
PRICE_ABOVE_MAX: Final = ErrorSpec(-4002, "Price greater than max price.")
PRICE_BELOW_MIN: Final = ErrorSpec(-4013, "Price less than min price.")
PRICE_TICK: Final = ErrorSpec(-4014, "Price not increased by tick size.")
STOP_PRICE_NOT_POSITIVE: Final = ErrorSpec(-4006, "Stop price less than zero.")
PERCENT_PRICE: Final = ErrorSpec(
    -4131, "The counterparty's best price does not meet the PERCENT_PRICE filter limit."
)
USE_ALGO_API: Final = ErrorSpec(
    -4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."
)
WOULD_TRIGGER: Final = ErrorSpec(-2021, "Order would immediately trigger.")
MARGIN_INSUFFICIENT: Final = ErrorSpec(-2019, "Margin is insufficient.")
REDUCE_ONLY_REJECTED: Final = ErrorSpec(-2022, "ReduceOnly Order is rejected.")
POSITION_SIDE_MISMATCH: Final = ErrorSpec(-4061, "Order's position side does not match user's setting.")
CLIENT_ID_DUPLICATED: Final = ErrorSpec(-4116, "ClientOrderId is duplicated.")
ORDER_NOT_FOUND: Final = ErrorSpec(-2013, "Order does not exist.")
UNKNOWN_ORDER: Final = ErrorSpec(-2011, "Unknown order sent.")
MAX_STOP_ORDERS: Final = ErrorSpec(-4045, "Reach max stop order limit.")
# USD-M error codes (developers.binance.com/docs/derivatives/usds-margined-futures/error-code):
# -4130 "An open stop or take profit order with GTE and closePosition in the direction is
# existing." A second closePosition STOP_MARKET (or TAKE_PROFIT_MARKET) on one side is refused.
CLOSE_POSITION_EXISTS: Final = ErrorSpec(
    -4130, "An open stop or take profit order with GTE and closePosition in the direction is existing."
)
MAX_OPEN_ORDERS: Final = ErrorSpec(-2025, "Reach max open order limit.")
POST_ONLY_REJECTED: Final = ErrorSpec(
    -5022,
    "Due to the order could not be executed as maker, the Post Only order will be rejected. "
    "The order will not be recorded in the order history",
)
MARGIN_TYPE_UNCHANGED: Final = ErrorSpec(-4046, "No need to change margin type.")
MARGIN_TYPE_OPEN_ORDERS: Final = ErrorSpec(
    -4047, "Margin type cannot be changed if there exists open orders."
)
MARGIN_TYPE_POSITION: Final = ErrorSpec(-4048, "Margin type cannot be changed if there exists position.")
POSITION_MODE_UNCHANGED: Final = ErrorSpec(-4059, "No need to change position side.")
POSITION_MODE_OPEN_ORDERS: Final = ErrorSpec(
    -4067, "Position side cannot be changed if there exists open orders."
)
POSITION_MODE_POSITION: Final = ErrorSpec(-4068, "Position side cannot be changed if there exists position.")
MAX_POSITION_AT_LEVERAGE: Final = ErrorSpec(
    -2027, "Exceeded the maximum allowable position at current leverage."
)
CALLBACK_RATE: Final = ErrorSpec(-2007, "Invalid callBack rate.")
ORDER_ID_REQUIRED: Final = ErrorSpec(
    -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
)
ALGO_ID_REQUIRED: Final = ErrorSpec(
    -1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!"
)


def invalid_leverage(leverage: str) -> SimError:
    """-4028: leverage outside 1..maxLeverage of the symbol."""
    return SimError(-4028, f"Leverage {leverage} is not valid")


def min_notional(notional: str) -> SimError:
    """-4164 with the minimum taken from the symbol's MIN_NOTIONAL filter."""
    return SimError(
        -4164, f"Order's notional must be no smaller than {notional} (unless you choose reduce only)."
    )


def limit_price_too_high(bound: str) -> SimError:
    """-4016: a BUY limit price above the PERCENT_PRICE cap."""
    return SimError(-4016, f"Limit price can't be higher than {bound}.")


def limit_price_too_low(bound: str) -> SimError:
    """-4024: a SELL limit price below the PERCENT_PRICE floor."""
    return SimError(-4024, f"Limit price can't be lower than {bound}.")


def close_position_invalid(order_type: str) -> SimError:
    """-4136: closePosition is only for STOP_MARKET / TAKE_PROFIT_MARKET."""
    return SimError(-4136, f"Target strategy invalid for orderType {order_type},closePosition true")
