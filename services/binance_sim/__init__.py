"""binance_sim: a local Binance USD-M futures REST simulator (the test bed of quantum-exec).

Serves under ``/fapi`` what the service and ordinary clients use, with Binance's field names, string
numbers, error bodies ``{"code", "msg"}`` and HTTP statuses, HMAC-SHA256 signatures over the exact
received query string + body, recvWindow checks, the exchangeInfo filters, ``-4120`` for conditional
types on ``/fapi/v1/order``, the algo order lifecycle, positions, balances and commissions, and the
rate-limit headers, 429s and 418 bans. ``/_sim/`` (unsigned, loopback only) is the control surface.

Market model (each part switchable; the defaults keep a MARKET order one trade at the mark):

- Book (``book.py``, ``SimConfig.book = BookConfig(depth_notional, depth_by_symbol, spread_bps,
  level_bps)``): MARKET orders walk a synthetic book, several trades and a VWAP ``avgPrice``; fills
  never go beyond ``markPrice × (1 ± marketTakeBound)`` and the rest expires (status EXPIRED with a
  partial ``executedQty``). ``slippage_bps`` moves the best level further from the mark.
- Walk (``walk.py``, ``SimConfig.walk = WalkConfig(volatility, interval_s, seed)``): a seeded random
  walk of every mark on a timer; the index price (premiumIndex ``indexPrice``) and the last price
  (ticker ``price``, what CONTRACT_PRICE triggers watch) stay near the mark, apart from it.
- Funding (``funding.py``, ``SimConfig.funding = FundingConfig(interval_ms, auto, default_rate)``):
  at the end of each symbol's interval (epoch-aligned; the market state's ``fundingIntervalHours``,
  RENDERUSDT 4 h in the fixture, 8 h else; ``interval_ms`` puts every symbol on one) positions pay
  ``markPrice × positionAmt × fundingRate`` (longs pay a positive rate), booked in the wallet and
  as FUNDING_FEE income; premiumIndex shows the rate and ``nextFundingTime``. ``auto=False`` (the
  default in-process) settles only when asked.
- Income (``income.py``): ``GET /fapi/v1/income`` (weight 30) with REALIZED_PNL and COMMISSION of
  every fill, FUNDING_FEE, TRANSFER (each ``/_sim/balance`` change) and INSURANCE_CLEAR.
- Liquidation (``liquidation.py``, ``SimConfig.liquidation``, default on): maintenance margin from
  the brackets, Binance's liquidation price in positionRisk, ``maintMargin``/``totalMaintMargin``;
  when a mark move (or a funding payment) takes a position's margin to its maintenance margin, its
  orders and algo orders are canceled and a LIQUIDATION order (``autoclose-…``) closes it at the
  mark, issued at the bankruptcy price, with a liquidation fee as INSURANCE_CLEAR.

User data stream (``userstream.py`` keys, sockets and fan-out; ``events.py`` the event JSON):

- ``POST|PUT|DELETE /fapi/v1/listenKey`` (``X-MBX-APIKEY`` only, no signature, weight 1): POST
  answers ``{"listenKey"}``, the active key (extended) if there is one, so every instance of the
  account shares it; PUT extends it by ``SimConfig.listen_key_lifetime_ms`` (60 min); DELETE answers
  ``{}`` and closes its sockets; an unknown or expired key answers 400 ``-1125`` "This listenKey does
  not exist.". A key not kept alive expires: its sockets get ``{"e": "listenKeyExpired", "E":
  "<ms as a string>", "listenKey"}`` and stay open, silent (Binance: the event says nothing about
  the connection).
- WebSocket on the simulator's own host and port: ``/private/ws/<key>``, ``/private/ws?listenKey=
  <key>`` (Binance since 2026-04-23; python-binance 1.0.37's ``futures_user_socket()`` with
  ``FSTREAM_URL = "ws://host:port/"``), ``/private/stream?listenKey=<key>`` (``{"stream", "data"}``
  envelope); ``events=A/B`` is an allow-list; the retired ``/ws/<key>`` opens and receives nothing;
  a socket closes after ``SimConfig.stream_max_connection_s`` (24 h); any number of sockets per key;
  the server pings every ``SimConfig.stream_ping_interval_s`` (180 s) and
  answers pings. No permessage-deflate.
- Events, in order of a strictly increasing ``E`` per account: ``ORDER_TRADE_UPDATE`` for every
  order state change and every fill (``x`` TRADE with that fill's l/L/n/N/t/rp/m), ``TRADE_LITE``
  per fill, ``ACCOUNT_UPDATE`` after each fill (``m`` ORDER) and for FUNDING_FEE and
  INSURANCE_CLEAR (``B`` the USDT balance, ``P`` the symbol's positions), ``ALGO_UPDATE`` for every
  algo status change (``ai`` the real order id once triggered, ``rm`` why it was rejected). Events
  are only built while a socket listens.
- Trigger lifecycle: a crossed trigger goes NEW -> TRIGGERING -> TRIGGERED -> FINISHED (FINISHED
  when its real order is filled, canceled or expired; a LIMIT that rests stays TRIGGERED). It stays
  TRIGGERING ``SimConfig.trigger_delay_ms`` (5 ms) when the mark moves through ``POST
  /_sim/markPrice``, which answers only after the due triggers completed, so a caller sees them done
  and a concurrent client can see TRIGGERING; ``Simulator.set_mark_price`` and the walk complete
  them before returning. A cancel in TRIGGERING answers ``-2011``. A reduce-only or closePosition
  trigger that finds no position ends REJECTED, rm "Reduce Only reject", with no order behind it;
  one whose order fails the margin check ends REJECTED with that error's message.
- TRAILING_STOP_MARKET (``trailing.py``): ``callbackRate`` 0.1-20 (``-2007`` outside; the maximum
  was 10 before 2026-10-23), optional ``activatePrice`` (crossed at placement: ``-2021``); it
  activates when the working price reaches it, then tracks the extreme and fires when the price
  retraces by the callback from it. ALGO_UPDATE carries ``ia``: NEW with ia=false at placement,
  NEW again with ia=true at activation (true at once without an activation price).
- Limits: open (NEW or TRIGGERING) conditional orders are limited to 200 per account, ``-4045``
  "Reach max stop order limit." beyond (Binance removed the per-symbol MAX_NUM_ALGO_ORDERS filter of
  10 on 2025-12-29; ``SimConfig.max_algo_orders_per_symbol`` restores one). A reduce-only MARKET
  larger than the position fills the position size, its origQty shrunk to it, status FILLED.

Python API::

    sim = Simulator(SimConfig(api_key=..., api_secret=..., latency_ms=0, rate_limits=True,
                              slippage_bps=Decimal("0"), book=BookConfig(depth_notional=Decimal(50_000)),
                              walk=WalkConfig(volatility=Decimal("0.001"), seed=7),
                              funding=FundingConfig(auto=True), liquidation=True))
    await sim.start(host="127.0.0.1", port=0)        # sim.base_url = "http://127.0.0.1:PORT"
    sim.set_mark_price("BTCUSDT", Decimal("90000"))   # fires crossed triggers / resting orders
    sim.set_mark_price("BTCUSDT", "90000", index="90010", last="89990")   # index/last apart
    sim.walk_mark_price("BTCUSDT", ["91000", "89000"])
    sim.walk_step(5); sim.settle_funding(); sim.set_funding_rate("BTCUSDT", "-0.0002")
    sim.set_liquidation(False)
    sim.set_faults({"faults": [...]}) or sim.set_faults(faults=[...], clock_skew_ms=1500)
    sim.set_balance("USDT", "50"); sim.set_rate_limits(False)
    sim.state(); sim.reset(); await sim.stop()        # stop() is safe twice
    sim.stream.connections; sim.stream.key            # the user stream's sockets and listenKey
    with run_in_thread(cfg) as base_url: ...          # for synchronous code
    serve_forever(cfg, host="127.0.0.1", port=8765)   # blocks until SIGINT/SIGTERM

Control surface (JSON bodies; form fields also accepted):

- ``POST /_sim/markPrice`` ``{"symbol": "BTCUSDT", "price": "90000"}`` or ``{"symbol", "prices": [..]}``
- ``GET /_sim/state``; ``POST /_sim/reset``; ``GET|POST /_sim/faults``
- ``POST /_sim/balance`` ``{"asset": "USDT", "balance": "50"}``
- ``POST /_sim/rateLimits`` ``{"enabled": false}``
- ``POST /_sim/markPrice`` also takes ``"indexPrice"`` and ``"lastPrice"`` (absent: they follow the mark)
- ``POST /_sim/walk`` ``{"steps": 3}``: take steps of the seeded walk now (needs a walk volatility)
- ``POST /_sim/trade`` ``{"symbol": "BTCUSDT", "origClientOrderId": "...", "quantity": "0.005"}``: a taker
  trades that much against a resting order at its price (one maker fill, PARTIALLY_FILLED until the
  last piece), as a resting LIMIT fills in pieces on Binance; a mark crossing the price fills the rest
- ``POST /_sim/funding``: settle funding now; answers ``{"rows": [<income rows booked>]}``
- ``POST /_sim/fundingRate`` ``{"symbol": "BTCUSDT", "rate": "-0.0002"}``
- ``POST /_sim/liquidation`` ``{"enabled": false}``

Command line (``python -m binance_sim`` and ``quantum-exec sim``): ``--slippage-bps``, ``--depth
[SYMBOL=]USDT`` (repeatable), ``--spread-bps``, ``--level-bps``, ``--walk VOL``, ``--walk-interval S``,
``--walk-seed N``, ``--funding-interval S`` (default: each symbol's own), ``--funding-rate``,
``--no-funding``, ``--no-liquidation``. From the command line funding settles on its timer unless
``--no-funding``.

Faults document (``POST /_sim/faults`` body, ``Simulator.set_faults``)::

    {
      "mode": "replace",            # or "append"; replace (default) drops the current rules
      "clock_skew_ms": 0,           # optional: server time = wall clock + skew (kept when absent)
      "stream_delay_ms": 0,         # optional: every user-stream event leaves this much later (kept)
      "stream_reorder": {"seed": 7, "max_delay_ms": 40, "type_delay_ms": {"ACCOUNT_UPDATE": 20}},
                                    # optional (null = off, kept when absent): events of different types
                                    #   leave in any order (seeded), the order within one type kept
      "hold_triggering": false,     # optional: crossed algo orders stay TRIGGERING (kept when absent);
                                    #   setting it false places the held ones at once
      "income_delay_ms": 0,         # optional: GET /fapi/v1/income lists a row only this long after
                                    #   its time, as Binance's eventually consistent income history
                                    #   can (kept when absent); 0 lists the held rows at once
      "actions": ["drop_user_streams", "expire_listen_key"],   # optional one-shot actions, now:
                                    #   close every user-stream socket (the key stays valid) /
                                    #   expire the listenKey (listenKeyExpired, sockets silent, -1125)
      "faults": [
        {"kind": "latency", "ms": 250, "method": "POST", "path": "/fapi/v1/order", "count": 3},
        {"kind": "unknown_after", "method": "POST", "path": "/fapi/v1/order", "count": 1}
      ]
    }

Each rule: ``kind`` (required), ``method`` ("*" = any), ``path`` (exact, ``"/fapi/v1/*"`` prefix, or
"*"), ``count`` (next N matching requests; null = until replaced), and optional ``status``, ``code``
(null = no code key), ``msg`` overriding the kind's reply, ``retry_after_s`` (a ``Retry-After``
header on the fault's reply, as Binance sends with every 429/418). Kinds:

- ``latency`` (``ms``): delay before processing; every matching latency rule adds up.
- ``error``: reply ``status``/``code``/``msg`` before processing (nothing happens).
- ``unavailable``: 503 ``Service Unavailable.`` before processing (nothing happens).
- ``unknown_after``: processed (the order exists), then 503 ``Unknown error, please check your
  request or try again later.`` (body ``{"timestamp", "path", "msg"}`` as recorded from Binance).
- ``timeout_after``: processed, then 408 ``-1007`` Timeout waiting for response from backend server.
- ``garbled_after``: processed, then 200 with a body (over the WebSocket API, a ``result``) that has
  none of the fields asked for (``{"timestamp", "path", "msg": "garbled"}``): an unreadable answer.
- ``truncated_after``: processed, then the real answer cut off halfway (REST: the body; WebSocket
  API: the text frame), so its JSON cannot be parsed.
- ``drop_before`` / ``drop_after``: close the connection without a reply, before / after processing.
- ``would_trigger``: ``-2021`` on the next algo placement(s) (default target POST /fapi/v1/algoOrder).
- ``insufficient_margin``: ``-2019`` on the next order(s) (default target POST /fapi/v1/order).

Besides latency rules, at most one rule acts on a request (the first matching one) and only the rules
that acted are counted down.
"""

from __future__ import annotations

from binance_sim.book import BookConfig
from binance_sim.config import SimConfig
from binance_sim.funding import FundingConfig
from binance_sim.options import config_from_args
from binance_sim.ratelimit import Limits
from binance_sim.runner import run_in_thread, serve_forever
from binance_sim.server import Simulator
from binance_sim.walk import WalkConfig

__all__ = [
    "BookConfig",
    "FundingConfig",
    "Limits",
    "SimConfig",
    "Simulator",
    "WalkConfig",
    "config_from_args",
    "run_in_thread",
    "serve_forever",
]
