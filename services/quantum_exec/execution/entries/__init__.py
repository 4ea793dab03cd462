"""Entry strategies and the CLOSE, each a small component the executor composes."""
