// The quantum-exec console: reads the service's own /api/* every few seconds and draws the book.
// No library, no build step, no third-party origin (the page's Content-Security-Policy forbids it).
// Numbers are kept as the exact text the API sent (JSON.parse source access) and only turned into
// floats to draw the charts.
"use strict";

const REFRESH_MS = 3000;
const TOKEN_KEY = "quantum-exec-api-token";
const $ = (id) => document.getElementById(id);

function parseExact(text) {
  // Chromium and friends pass the source text of each number to the reviver: keep it verbatim.
  return JSON.parse(text, (key, value, context) =>
    typeof value === "number" && context && typeof context.source === "string" ? context.source : value);
}

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function num(value) {
  if (value === null || value === undefined) return "-";
  // Exact text as sent; an exponent form (0E-8) is shown plainly and a zero never carries a sign.
  let text = String(value);
  if (/^-?[0-9.]+[eE][-+]?[0-9]+$/.test(text)) text = String(Number(text));
  if (/^-0*\.?0*$/.test(text)) text = text.slice(1);
  return esc(text);
}

// Each symbol's tick and step (/api/symbols, from the service's exchange rules).
let STEPS = {};

function decimals(step) {
  // The places of a tick or step as text: "0.00001" -> 5, "0.10" -> 1, "1" -> 0.
  const text = String(step ?? "");
  if (!/^[0-9]*\.?[0-9]*$/.test(text) || !text.includes(".")) return 0;
  return text.replace(/0+$/, "").split(".")[1].length;
}

function atStep(value, step) {
  // The exact text at the symbol's tick or step: trailing zeros cut to it or padded up to it, and
  // never rounded (string arithmetic, no float): 0.15997000 at 0.00001 -> 0.15997,
  // 95234.50000000 at 0.1 -> 95234.5, 95234 at 0.1 -> 95234.0; a finer average keeps its digits.
  if (value === null || value === undefined) return "-";
  let text = String(value);
  if (!/^-?[0-9]+(\.[0-9]*)?$/.test(text)) return num(text);
  let [whole, frac = ""] = text.split(".");
  frac = frac.replace(/0+$/, "");
  const places = step === undefined ? 0 : decimals(step);
  frac = frac.padEnd(places, "0");
  return num(frac ? `${whole}.${frac}` : whole);
}

function price(value, symbol) {
  // A price as the exchange quotes it: at the symbol's own tick.
  return atStep(value, (STEPS[symbol] || {}).tick_size);
}

function qty(value, symbol) {
  // A quantity at the symbol's step.
  return atStep(value, (STEPS[symbol] || {}).step_size);
}

function percent(rate, trades) {
  // A win rate as people read it: 0.625 -> 62.5 %; "-" while no trade defines it.
  if (rate === null || rate === undefined || !Number(trades)) return "-";
  return `${esc(String(Math.round(parseFloat(rate) * 10000) / 100))} %`;
}

function ratio(value) {
  // A profit factor as people read it: 1.8412 -> 1.84; "-" when undefined (no losing trade).
  if (value === null || value === undefined) return "-";
  return esc(parseFloat(value).toFixed(2));
}

function signClass(value) {
  const n = parseFloat(value);
  return n > 0 ? "pos" : n < 0 ? "neg" : "";
}

function when(iso) {
  // Every time in one zone and one format: UTC, YYYY-MM-DD HH:MM:SS (the headers say UTC).
  if (!iso) return "-";
  const t = new Date(String(iso));
  if (Number.isNaN(t.getTime())) return esc(iso);
  return esc(t.toISOString().slice(0, 19).replace("T", " "));
}

class AuthNeeded extends Error {}

async function api(path) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { headers, cache: "no-store" });
  } catch (err) {
    throw failure(path, `the service does not answer (${err.message}); is quantum-exec still running?`);
  }
  const text = await response.text();
  if (response.status === 401) throw new AuthNeeded();
  let body;
  try {
    body = parseExact(text);
  } catch (err) {
    throw failure(path, `answered ${response.status} with something that is not JSON`);
  }
  if (!response.ok) {
    const message = body && body.error && body.error.message ? body.error.message : `status ${response.status}`;
    throw failure(path, message);
  }
  return body;
}

function failure(path, detail) {
  const err = new Error(`${path}: ${detail}`);
  err.detail = detail;
  return err;
}

function table(columns, rows, emptyText) {
  if (!rows.length) return `<p class="empty">${esc(emptyText)}</p>`;
  const head = columns.map(([label, , cls]) => `<th class="${cls || ""}">${esc(label)}</th>`).join("");
  const body = rows
    .map((row) => `<tr>${columns.map(([, cell, cls]) => `<td class="${cls || ""}">${cell(row)}</td>`).join("")}</tr>`)
    .join("");
  return `<div class="tablewrap"><table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
}

function renderStatus(status) {
  const env = String(status.environment || "unknown");
  const badge = $("environment");
  badge.dataset.env = env;
  badge.textContent = env === "live" ? "LIVE — real money" : env;
  document.body.classList.toggle("live", env === "live");
  $("version").textContent = status.version ? `v${status.version}` : "";
  // One chip per fact: each check once (the rules' age inside the rules' chip), with why it fails.
  const chips = (status.checks || []).map((c) => {
    const age = c.name === "exchange_rules" && c.ok && status.rules_age_s !== null && status.rules_age_s !== undefined ? ` (${esc(status.rules_age_s)} s old)` : "";
    const why = c.ok ? "" : `: ${esc(c.error || "failing")}`;
    return `<span class="chip ${c.ok ? "ok" : "fail"}" title="${esc(c.error || "ok")}">${esc(c.name)} ${c.ok ? "ok" : "failing"}${age}${why}</span>`;
  });
  const stream = status.user_stream || {};
  if (stream.enabled) {
    const age = stream.last_event_age_s === null || stream.last_event_age_s === undefined ? "no event yet" : `last event ${esc(stream.last_event_age_s)} s ago`;
    chips.push(`<span class="chip ${stream.connected ? "ok" : "fail"}">user stream ${stream.connected ? "live" : "down"} (${age})</span>`);
  } else {
    chips.push('<span class="chip fail">user stream off (QUANTUM_USER_STREAM=false)</span>');
  }
  const naked = status.unprotected;
  if (naked) {
    const bound = `${esc(naked.bound_s)} s`;
    if (naked.now.length) {
      const which = naked.now.map((n) => `${esc(n.symbol)} ${esc(n.naked_s)} s`).join(", ");
      chips.push(`<span class="chip fail">without SL/TP past ${bound}: ${which}</span>`);
    } else if (naked.over_bound_total > 0) {
      chips.push(`<span class="chip fail">${esc(naked.over_bound_total)} fill(s) stood without SL/TP past ${bound} since start</span>`);
    } else {
      chips.push(`<span class="chip ok">every fill protected within ${bound}</span>`);
    }
  }
  $("health").innerHTML = chips.join("");
  renderTrading(status.risk);
}

// The account's trading state (the risk governor): a banner whenever it is not ACTIVE.
function renderTrading(risk) {
  const banner = $("trading");
  const state = risk && risk.state ? risk.state : { state: "ACTIVE" };
  banner.hidden = state.state === "ACTIVE";
  banner.dataset.state = state.state;
  if (banner.hidden) {
    banner.textContent = "";
    return;
  }
  const what = state.state === "HALTED"
    ? "nothing new is sent, working entries were cancelled, protective legs stay"
    : "only intents that reduce exposure are executed";
  const flatten = state.flatten ? "; closing every position (flatten under way)" : "";
  banner.textContent = `Trading ${state.state} since ${state.since || "?"}: ${state.reason || "no reason given"} `
    + `(by ${state.by || "unknown"}) — ${what}${flatten}. quantum-exec resume trades again.`;
}

function renderSummary(s) {
  if (!s.total_trades || s.total_trades === "0") {
    $("summary").innerHTML = '<p class="empty">No round trip has closed yet: the summary starts with the first one.</p>';
    return;
  }
  const card = (label, value, cls, shown) => `<div class="card"><div class="label">${esc(label)}</div><div class="value ${cls || ""}" data-field="${esc(label)}" data-exact="${esc(value ?? "")}">${shown === undefined ? num(value) : shown}</div></div>`;
  $("summary").innerHTML = [
    card("net pnl", s.net_pnl, signClass(s.net_pnl)),
    card("trades", s.total_trades),
    card("win rate", s.win_rate, "", percent(s.win_rate, s.total_trades)),
    card("profit factor", s.profit_factor, "", ratio(s.profit_factor)),
    card("max drawdown", s.max_drawdown),
    card("gross pnl", s.gross_pnl, signClass(s.gross_pnl)),
    card("commission", s.commission),
    card("funding", s.funding, signClass(s.funding)),
  ].join("");
}

function svgCurve(trades) {
  const closed = trades.filter((t) => t.status === "closed").sort((a, b) => (a.closed_at < b.closed_at ? -1 : 1));
  if (!closed.length) return '<p class="empty">No closed round trip yet: the curve starts with the first one.</p>';
  let total = 0;
  const points = [0, ...closed.map((t) => (total += parseFloat(t.net_pnl)))];
  const lo = Math.min(...points), hi = Math.max(...points), span = hi - lo || 1;
  const w = 600, h = 180, pad = 24;
  const x = (i) => pad + (i * (w - 2 * pad)) / Math.max(points.length - 1, 1);
  const y = (v) => h - pad - ((v - lo) * (h - 2 * pad)) / span;
  const path = points.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  return `<svg viewBox="0 0 ${w} ${h}" role="img" aria-label="cumulative net PnL">
    <line class="axis" x1="${pad}" x2="${w - pad}" y1="${y(0)}" y2="${y(0)}"/>
    <path class="line" d="${path}"/>
    <text x="${pad}" y="12">${esc(hi.toFixed(2))}</text><text x="${pad}" y="${h - 4}">${esc(lo.toFixed(2))}</text>
  </svg>`;
}

function svgDaily(daily) {
  if (!daily || !daily.length) return '<p class="empty">No closed round trip yet: one bar per day appears with the first.</p>';
  const values = daily.map((d) => parseFloat(d.net_pnl));
  const hi = Math.max(0, ...values), lo = Math.min(0, ...values), span = hi - lo || 1;
  const w = 600, h = 180, pad = 24;
  const bw = (w - 2 * pad) / values.length;
  const y = (v) => h - pad - ((v - lo) * (h - 2 * pad)) / span;
  const bars = values.map((v, i) => {
    const top = Math.min(y(v), y(0)), height = Math.max(Math.abs(y(v) - y(0)), 1);
    const label = `<text class="barvalue" x="${(pad + i * bw + bw / 2).toFixed(1)}" y="${(v >= 0 ? top - 3 : top + height + 10).toFixed(1)}" text-anchor="middle">${esc(v.toFixed(2))}</text>`;
    return `<rect class="${v >= 0 ? "barpos" : "barneg"}" x="${(pad + i * bw + 1).toFixed(1)}" y="${top.toFixed(1)}" width="${Math.max(bw - 2, 1).toFixed(1)}" height="${height.toFixed(1)}"><title>${esc(daily[i].date)}: ${esc(daily[i].net_pnl)}</title></rect>${values.length <= 31 ? label : ""}`;
  }).join("");
  return `<svg viewBox="0 0 ${w} ${h}" role="img" aria-label="daily net PnL"><line class="axis" x1="${pad}" x2="${w - pad}" y1="${y(0)}" y2="${y(0)}"/>${bars}
    <text x="${pad}" y="${h - 4}">${esc(daily[0].date)}</text><text x="${w - pad - 60}" y="${h - 4}">${esc(daily[daily.length - 1].date)}</text></svg>`;
}

function distance(mark, trigger) {
  const m = parseFloat(mark), t = parseFloat(trigger);
  if (!m || !t) return "";
  return ` (${(((t - m) / m) * 100).toFixed(2)}%)`;
}

// A trailing stop: its activation price (or "active": ALGO_UPDATE ia) and size.
function trailing(p) {
  const found = (p.protective_orders || []).filter((o) => o.type === "TRAILING_STOP_MARKET");
  if (!found.length) return "-";
  return found.map((o) => `${o.activated ? "active" : "waits for activation"} × ${num(o.quantity ?? "all")}`).join("<br>");
}

function renderPositions(body) {
  const leg = (p, type) => {
    const found = (p.protective_orders || []).filter((o) => o.type === type);
    if (!found.length) return '<span class="neg">none</span>';
    return found.map((o) => `${price(o.trigger_price, p.symbol)}${esc(distance(p.mark_price, o.trigger_price))} × ${o.quantity == null ? "all" : qty(o.quantity, p.symbol)}`).join("<br>");
  };
  $("positions").innerHTML = table([
    ["symbol", (p) => esc(p.symbol)],
    ["side", (p) => esc(p.side)],
    ["amount", (p) => qty(p.position_amount, p.symbol), "num"],
    ["entry", (p) => price(p.entry_price, p.symbol), "num"],
    ["mark", (p) => price(p.mark_price, p.symbol), "num"],
    ["unrealized", (p) => `<span class="${signClass(p.unrealized_pnl)}">${num(p.unrealized_pnl)}</span>`, "num"],
    ["stop-loss (distance)", (p) => leg(p, "STOP_MARKET")],
    ["take-profit (distance)", (p) => leg(p, "TAKE_PROFIT_MARKET")],
    ["trailing stop", (p) => trailing(p)],
  ], body.positions || [], "No open position: the account is flat.");
}

function renderOrders(body) {
  const rows = [
    ...(body.orders || []).map((o) => ({ symbol: o.symbol, kind: o.type, side: o.side, price: o.price, qty: o.quantity, state: o.role === "entry" ? `working entry (${o.status})` : o.status, id: o.client_order_id })),
    ...(body.conditional_orders || []).map((o) => ({ symbol: o.symbol, kind: o.type, side: o.side, price: o.trigger_price, qty: o.quantity ?? "close position", state: o.role === "entry" ? `working entry, armed (${o.state})` : o.state, id: o.client_algo_id })),
  ];
  $("orders").innerHTML = table([
    ["symbol", (o) => esc(o.symbol)], ["type", (o) => esc(o.kind)], ["side", (o) => esc(o.side)],
    ["price / trigger", (o) => price(o.price, o.symbol), "num"], ["quantity", (o) => (o.qty === "close position" ? esc(o.qty) : qty(o.qty, o.symbol)), "num"],
    ["state", (o) => esc(o.state)], ["client id", (o) => esc(o.id)],
  ], rows, "No open order: nothing is waiting on the exchange.");
  const budget = body.conditional_budget;
  if (budget) {
    const full = budget.open >= 0.9 * budget.budget ? ' class="neg"' : "";
    $("orders").innerHTML += `<p${full}>Conditional orders open on the account: ${num(budget.open)} of ${num(budget.budget)}</p>`;
  }
}

// A working entry (a LIMIT resting, a STOP armed) has no result yet: listed first, as working.
function workingRow(w) {
  const at = w.type === "STOP" || w.type === "STOP_MARKET" ? w.stop_price : w.price;
  const what = `${w.type}${at ? ` at ${price(at, w.symbol)}` : ""}, ${w.quantity ? `qty ${qty(w.quantity, w.symbol)}` : `${num(w.position_size_usd)} USDT`}`;
  return { timestamp: null, intent_id: w.intent_id, symbol: w.symbol, action: w.side, status: "working", protection: "-", latency_ms: null, note: `${what}: no result yet` };
}

function renderResults(body) {
  const rows = [...(body.working || []).map(workingRow), ...(body.results || [])];
  $("results").innerHTML = table([
    ["time (UTC)", (r) => when(r.timestamp)], ["intent", (r) => `<span title="${esc(r.intent_id)}">${esc(String(r.intent_id).length > 24 ? String(r.intent_id).slice(0, 23) + "…" : r.intent_id)}</span>`], ["symbol", (r) => esc(r.symbol)],
    ["action", (r) => esc(r.action)], ["status", (r) => esc(r.status)], ["protection", (r) => esc(r.protection)],
    ["latency ms", (r) => num(r.latency_ms), "num"],
    ["reason", (r) => (r.error ? `${esc(r.error.code)}: ${esc(r.error.message)}` : r.note || ""), "reason"],
  ], rows, "No result yet: publish an intent (quantum-exec submit) and it appears here.");
}

function renderTrades(body) {
  const closed = (body.trades || []).filter((t) => t.status === "closed");
  $("trades").innerHTML = table([
    ["closed (UTC)", (t) => when(t.closed_at)], ["symbol", (t) => esc(t.symbol)], ["side", (t) => esc(t.side)],
    ["qty", (t) => qty(t.max_quantity, t.symbol), "num"], ["entry", (t) => price(t.entry_price, t.symbol), "num"],
    ["exit", (t) => price(t.exit_price, t.symbol), "num"], ["reason", (t) => esc(t.exit_reason)],
    ["net pnl", (t) => `<span class="${signClass(t.net_pnl)}" data-trade="${esc(t.trade_id)}">${num(t.net_pnl)}</span>`, "num"],
    ["model", (t) => esc(t.model || "-")],
  ], closed, "No round trip has closed yet.");
  $("curve").innerHTML = svgCurve(body.trades || []);
}

function showError(message) {
  const banner = $("banner");
  banner.hidden = !message;
  banner.textContent = message || "";
}

// Each panel from its own endpoint: one that cannot answer (the exchange down) says so in its
// place, the others are drawn, and the banner names what is down.
const PANELS = [
  ["/api/status", (b) => renderStatus(b), ["health"]],
  ["/api/trades/summary", (b) => { renderSummary(b); $("daily").innerHTML = svgDaily(b.daily); }, ["summary", "daily"]],
  ["/api/trades?limit=1000", (b) => renderTrades(b), ["trades", "curve"]],
  ["/api/positions", (b) => renderPositions(b), ["positions"]],
  ["/api/orders", (b) => renderOrders(b), ["orders"]],
  ["/api/results?limit=20", (b) => renderResults(b), ["results"]],
];

async function refresh() {
  // The ticks first (kept from the last answer when the exchange is down: the panels say why).
  const steps = api("/api/symbols").then((b) => { STEPS = b.symbols || {}; }, () => {});
  const [settled] = await Promise.all([Promise.allSettled(PANELS.map(([path]) => api(path))), steps]);
  if (settled.some((s) => s.status === "rejected" && s.reason instanceof AuthNeeded)) {
    $("login").hidden = false;
    $("main").hidden = true;
    showError(sessionStorage.getItem(TOKEN_KEY) ? "That token was refused: enter the service's QUANTUM_API_TOKEN." : "");
    return;
  }
  const down = new Map(); // reason -> the paths that gave it
  settled.forEach((outcome, i) => {
    const [path, render, targets] = PANELS[i];
    if (outcome.status === "fulfilled") {
      render(outcome.value);
      return;
    }
    const reason = outcome.reason.detail || outcome.reason.message;
    for (const id of targets) $(id).innerHTML = `<p class="empty unavailable">Unavailable: ${esc(reason)}</p>`;
    down.set(reason, [...(down.get(reason) || []), path.split("?")[0]]);
  });
  const status = settled[0].status === "fulfilled" ? settled[0].value : null;
  if (down.size) {
    showError([...down].map(([reason, paths]) => `Down: ${reason} (${paths.join(", ")})`).join("\n"));
  } else {
    showError(status && !status.ready ? "The service is not ready: see the failing checks in Health." : "");
  }
  if (down.size < PANELS.length) {
    $("updated").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
    document.body.dataset.loaded = "true";
  }
}

function start() {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("login").hidden = true;
    $("main").hidden = false;
    refresh();
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
