"""quantum-exec: TradeIntents from a Redis stream to protected Binance USD-M futures positions."""

__version__ = "0.1.0"
