"""The Lua scripts of :class:`.store.Store` (design.md §7): every multi-key change is one script,
so a reply lost on the way back can be retried safely (the second run finds the record ``done``
and only acknowledges). The keys and arguments each takes are named above it; the keys are
:class:`.store.Keys`'.
"""

from __future__ import annotations

# A lease held by the same owner (stable consumer name) may be taken again: that owner is this
# process (one worker per symbol) or a crashed earlier run of it, which the new token fences out.
# KEYS: lease, fence[, idem]; ARGV: owner, lease ttl ms[, stream id, idem ttl s]. Sets ``token``.
TAKE_LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if (not sep) or string.sub(cur, sep + 1) ~= ARGV[1] then return false end
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. '|' .. ARGV[1], 'PX', ARGV[2])
"""

ACQUIRE = TAKE_LEASE + "return token\n"

# Milliseconds of Redis's clock: one clock for every instance and restart.
NOW_MS = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
"""

# The per-symbol order check, the lease and the in-flight mark in one round trip (all three sit
# on the path to the first order). KEYS: lease, fence, idem, intent stream; ARGV: owner, lease ttl
# ms, stream id, idem ttl s, intent hash, group ('' skips the order check), page size.
# The order check: when any entry older than this one is pending in the group, nothing is taken and
# the reply is {-1, their ids...} (at most a page): the caller tells by their symbols whether one
# of them is of this symbol. Older pending entries only go away (ids grow and are delivered in
# order), so once none of them is of this symbol the check may be skipped.
# ARGV[5] is the hash of the normalized intent: the same key with another payload is a conflict.
# ARGV[8] is when this attempt's entry was read (epoch ms), kept from the first attempt on.
# ARGV[9..] are older entries the caller knows to be of other symbols (it read them): they do not
# count, so a burst over many symbols passes the check the first time. The Older reply is then
# {-1, 1 when the page was full (the caller pages itself), the other ids...}.
# Reply: {token, state, attempts, fenced_at ms, repair flag, now ms, first received ms}; state 0
# done, 1 first attempt
# (it counts as attempt 1 and its lease confirmation is its fence time), 2 resumed (an earlier
# attempt began: it counts only when it sends an order, see FENCE), 3 intent id conflict.
ORDER_CHECK = """
if ARGV[6] ~= '' then
  local page = tonumber(ARGV[7])
  local older = redis.call('XPENDING', KEYS[4], ARGV[6], '-', '(' .. ARGV[3], page)
  if #older > 0 then
    local other = {}
    for i = 9, #ARGV do other[ARGV[i]] = true end
    local full = 0
    if #older >= page then full = 1 end
    local reply = {-1, full}
    for _, row in ipairs(older) do
      if not other[row[1]] then reply[#reply + 1] = row[1] end
    end
    if #reply > 2 or full == 1 then return reply end
  end
end
"""

ACQUIRE_AND_BEGIN = (
    ORDER_CHECK
    + TAKE_LEASE
    + NOW_MS
    + """
local rec = redis.call('HMGET', KEYS[3], 'state', 'hash', 'attempts', 'fenced_at', 'repair', 'received')
if rec[2] and rec[2] ~= ARGV[5] then return {token, 3, 0, 0, 0, now_ms, 0} end
if rec[1] == 'done' then return {token, 0, 0, 0, 0, now_ms, 0} end
if rec[1] then
  local received = rec[6] or ARGV[8]
  redis.call('HSET', KEYS[3], 'owner', ARGV[1], 'token', token, 'stream_id', ARGV[3], 'hash', ARGV[5],
    'received', received)
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  return {token, 2, tonumber(rec[3] or '0'), tonumber(rec[4] or '0'), tonumber(rec[5] or '0'), now_ms,
    tonumber(received)}
end
redis.call('HSET', KEYS[3], 'state', 'in_flight', 'owner', ARGV[1], 'token', token, 'stream_id', ARGV[3],
  'hash', ARGV[5], 'attempts', 1, 'fenced_at', now_ms, 'received', ARGV[8])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return {token, 1, 1, now_ms, 0, now_ms, tonumber(ARGV[8])}
"""
)

# The fence right before an order: renew the lease if still ours and record when (fenced_at
# bounds when this attempt can last have sent an order); ARGV[3] == '1' counts the attempt (the
# first order of a resumed attempt). KEYS: lease, idem; ARGV: lease value, ttl ms, count flag.
FENCE = (
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
    + NOW_MS
    + """
redis.call('HSET', KEYS[2], 'fenced_at', now_ms)
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[2], 'attempts', 1) end
return 1
"""
)

# KEYS: intent stream, dlq stream; ARGV: group, stream id, dlq field/value pairs.
DEAD_LETTER_ONLY = """
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# An unfenced commit (an answer that needs no exchange: an invalid payload) never closes a record
# an attempt began: that intent's own result is still to come ('held', nothing written). A fenced
# commit that publishes (or finds the intent done) also gives the symbol's lease back when it is
# still ours (ARGV[7], '' = keep it): one round trip after the last order instead of two, and the
# next entry of the symbol finds the lease free as soon as this one is acked.
# KEYS: idem, fence, result stream, intent stream, dlq stream, lease
# ARGV: token ('0' = unfenced), group, stream id, result maxlen, ttl s, n result args, lease value,
#       result field/value pairs, then dlq field/value pairs (none = no dead letter)
COMMIT = """
if ARGV[1] ~= '0' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return {'fenced'} end
local function release()
  if ARGV[7] ~= '' and redis.call('GET', KEYS[6]) == ARGV[7] then redis.call('DEL', KEYS[6]) end
end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'done' then
  redis.call('XACK', KEYS[4], ARGV[2], ARGV[3])
  release()
  return {'duplicate'}
end
if state and ARGV[1] == '0' then return {'held'} end
local n = tonumber(ARGV[6])
local fields = {}
for i = 8, 7 + n do fields[#fields + 1] = ARGV[i] end
local rid = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', unpack(fields))
if #ARGV > 7 + n then
  local dlq = {}
  for i = 8 + n, #ARGV do dlq[#dlq + 1] = ARGV[i] end
  redis.call('XADD', KEYS[5], '*', unpack(dlq))
end
redis.call('HSET', KEYS[1], 'state', 'done', 'stream_id', ARGV[3], 'result_id', rid)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('XACK', KEYS[4], ARGV[2], ARGV[3])
release()
return {'published', rid}
"""


# How many older pending ids the order check returns at most (more: the caller pages itself).
