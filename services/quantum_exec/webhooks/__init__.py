"""The signal gateway: HTTP webhooks in (signed producers, TradingView alerts), intents onto the
stream. Its own process and port (``quantum-exec gateway``): an endpoint exposed to the internet
never shares a process with the order path."""
