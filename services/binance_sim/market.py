"""Symbol rules and starting market state, parsed from the packaged fixtures."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Final

ZERO = Decimal(0)
ONE = Decimal(1)

# Notional tiers (as a multiple of 50k USDT) and the share of max leverage each allows; a coarse
# stand-in for Binance's per-symbol bracket tables, which the fixtures do not carry.
_BRACKET_CAPS = (
    Decimal(50_000),
    Decimal(250_000),
    Decimal(1_000_000),
    Decimal(10_000_000),
    Decimal(100_000_000),
)
_BRACKET_DIVISORS = (1, 2, 4, 10, 0)


def fmt(value: Decimal) -> str:
    """Plain decimal text without exponent and without trailing zeros beyond the value's scale."""
    text = format(value, "f")
    return "0" if text in ("-0", "") else text


_QUANTS: Final = tuple(Decimal(1).scaleb(-places) for places in range(19))


def fmt_places(value: Decimal, places: int) -> str:
    """Decimal text with exactly ``places`` fraction digits (how Binance prints prices and quantities)."""
    quant = _QUANTS[places] if 0 <= places < len(_QUANTS) else Decimal(1).scaleb(-places)
    return format(value.quantize(quant), "f")


def decimals_of(value: Decimal) -> int:
    """Number of fraction digits written in ``value`` (``"0.10"`` has 2)."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def round_to_step(value: Decimal, step: Decimal, *, up: bool) -> Decimal:
    """Round ``value`` to a multiple of ``step``, up or down."""
    return (value / step).to_integral_value(ROUND_CEILING if up else ROUND_FLOOR) * step


@dataclass(frozen=True, slots=True)
class LeverageBracket:
    """One notional tier: positions up to ``notional_cap`` may use up to ``initial_leverage``."""

    bracket: int
    initial_leverage: int
    notional_floor: Decimal
    notional_cap: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal = ZERO  # maintenance amount: floor * (ratio - previous ratio) + previous cum


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """The trading rules of one symbol (filters of exchangeInfo plus max leverage)."""

    symbol: str
    status: str
    price_precision: int
    quantity_precision: int
    min_price: Decimal
    max_price: Decimal
    tick_size: Decimal
    lot_min_qty: Decimal
    lot_max_qty: Decimal
    lot_step: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    market_step: Decimal
    max_num_orders: int
    min_notional: Decimal
    multiplier_up: Decimal
    multiplier_down: Decimal
    max_leverage: int
    brackets: tuple[LeverageBracket, ...]
    market_take_bound: Decimal = ZERO  # exchangeInfo marketTakeBound: how far from the mark a MARKET may fill
    liquidation_fee: Decimal = ZERO  # exchangeInfo liquidationFee: the clearance fee rate of a liquidation
    # exchangeInfo triggerProtect: how far apart mark and last price may be for a priceProtect trigger.
    trigger_protect: Decimal = ZERO
    contract_type: str = "PERPETUAL"
    # exchangeInfo MAX_NUM_ALGO_ORDERS (open conditional orders per symbol): removed by Binance on
    # 2025-12-29, so None unless an exchangeInfo file still carries it.
    max_num_algo_orders: int | None = None

    @property
    def price_places(self) -> int:
        """Fraction digits used to print prices (never fewer than the tick needs)."""
        return max(self.price_precision, decimals_of(self.tick_size))

    @property
    def qty_places(self) -> int:
        """Fraction digits used to print quantities."""
        return max(self.quantity_precision, decimals_of(self.lot_step))

    def bracket_for(self, notional: Decimal) -> LeverageBracket:
        """The bracket a position of ``notional`` (absolute, at the mark) falls in."""
        for bracket in self.brackets:
            if notional <= bracket.notional_cap:
                return bracket
        return self.brackets[-1]

    def max_notional(self, leverage: int) -> Decimal:
        """Largest position notional allowed at ``leverage`` (the cap of the last bracket that allows it)."""
        allowed = [b.notional_cap for b in self.brackets if b.initial_leverage >= leverage]
        return max(allowed) if allowed else ZERO


def _brackets(max_leverage: int) -> tuple[LeverageBracket, ...]:
    tiers: list[LeverageBracket] = []
    floor = ZERO
    cum = ZERO
    previous_ratio = ZERO
    for index, (cap, divisor) in enumerate(zip(_BRACKET_CAPS, _BRACKET_DIVISORS, strict=True)):
        leverage = 1 if divisor == 0 else max(1, max_leverage // divisor)
        ratio = (Decimal("0.5") / Decimal(leverage)).quantize(Decimal("0.0001"))
        cum += floor * (ratio - previous_ratio)
        tiers.append(LeverageBracket(index + 1, leverage, floor, cap, ratio, cum))
        floor = cap
        previous_ratio = ratio
    return tuple(tiers)


def _parse_symbol(raw: dict[str, Any], max_leverage: int) -> SymbolSpec:
    filters = {f["filterType"]: f for f in raw.get("filters", [])}
    price = filters.get("PRICE_FILTER", {})
    lot = filters.get("LOT_SIZE", {})
    market = filters.get("MARKET_LOT_SIZE", lot)
    percent = filters.get("PERCENT_PRICE", {})
    return SymbolSpec(
        symbol=raw["symbol"],
        status=raw.get("status", "TRADING"),
        price_precision=int(raw.get("pricePrecision", 8)),
        quantity_precision=int(raw.get("quantityPrecision", 8)),
        min_price=Decimal(price.get("minPrice", "0")),
        max_price=Decimal(price.get("maxPrice", "0")),
        tick_size=Decimal(price.get("tickSize", "0.00000001")),
        lot_min_qty=Decimal(lot.get("minQty", "0")),
        lot_max_qty=Decimal(lot.get("maxQty", "0")),
        lot_step=Decimal(lot.get("stepSize", "0.00000001")),
        market_min_qty=Decimal(market.get("minQty", "0")),
        market_max_qty=Decimal(market.get("maxQty", "0")),
        market_step=Decimal(market.get("stepSize", "0.00000001")),
        max_num_orders=int(filters.get("MAX_NUM_ORDERS", {}).get("limit", 200)),
        max_num_algo_orders=(
            int(filters["MAX_NUM_ALGO_ORDERS"]["limit"]) if "MAX_NUM_ALGO_ORDERS" in filters else None
        ),
        min_notional=Decimal(filters.get("MIN_NOTIONAL", {}).get("notional", "0")),
        multiplier_up=Decimal(percent.get("multiplierUp", "0")),
        multiplier_down=Decimal(percent.get("multiplierDown", "0")),
        max_leverage=max_leverage,
        brackets=_brackets(max_leverage),
        market_take_bound=Decimal(raw.get("marketTakeBound", "0")),
        liquidation_fee=Decimal(raw.get("liquidationFee", "0")),
        trigger_protect=Decimal(raw.get("triggerProtect", "0")),
        contract_type=raw.get("contractType", "PERPETUAL"),
    )


@dataclass(frozen=True, slots=True)
class MarketData:
    """Everything the simulator starts from: the raw exchangeInfo and the parsed rules and state."""

    exchange_info: dict[str, Any]
    symbols: dict[str, SymbolSpec]
    mark_prices: dict[str, Decimal]
    taker_rate: Decimal
    maker_rate: Decimal
    wallet: dict[str, Decimal]
    funding_rates: dict[str, Decimal] = field(default_factory=dict)
    # market state "fundingIntervalHours": symbols settling funding on another interval than 8 h.
    funding_interval_hours: dict[str, int] = field(default_factory=dict)


def parse_market(exchange_info: dict[str, Any], market_state: dict[str, Any]) -> MarketData:
    """Build MarketData from the two fixture documents."""
    max_lev: dict[str, int] = {k: int(v) for k, v in market_state.get("maxLeverage", {}).items()}
    symbols = {
        raw["symbol"]: _parse_symbol(raw, max_lev.get(raw["symbol"], 20)) for raw in exchange_info["symbols"]
    }
    marks = {k: Decimal(v) for k, v in market_state.get("markPrices", {}).items() if k in symbols}
    return MarketData(
        exchange_info=exchange_info,
        symbols=symbols,
        mark_prices=marks,
        taker_rate=Decimal(market_state.get("takerCommissionRate", "0.0005")),
        maker_rate=Decimal(market_state.get("makerCommissionRate", "0.0002")),
        wallet={k: Decimal(v) for k, v in market_state.get("walletBalance", {"USDT": "10000"}).items()},
        funding_rates={
            k: Decimal(v) for k, v in market_state.get("fundingRates", {}).items() if k in symbols
        },
        funding_interval_hours={
            k: int(v) for k, v in market_state.get("fundingIntervalHours", {}).items() if k in symbols
        },
    )


def load_market(exchange_info_path: Path | None = None, market_state_path: Path | None = None) -> MarketData:
    """Read the fixtures (the packaged copies unless paths are given)."""
    fixtures = resources.files("binance_sim") / "fixtures"
    info_text = (
        exchange_info_path.read_text()
        if exchange_info_path
        else (fixtures / "exchange_info.json").read_text()
    )
    state_text = (
        market_state_path.read_text() if market_state_path else (fixtures / "market_state.json").read_text()
    )
    return parse_market(json.loads(info_text), json.loads(state_text))
