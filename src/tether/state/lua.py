"""The Lua scripts of :class:`~tether.state.redis.RedisState`: each check-and-update is one
script, so Redis runs it atomically (no other command runs between its read and its write),
whichever replica sends it. Time comes from Redis (``TIME``), so replicas agree on it.

Numbers travel as strings both ways (Redis turns a Lua number into an integer). Budget
counters are hashes ``{s: spent, r: reserved}``; token buckets ``{t: tokens, ts: time}``;
a breaker is a hash ``{n: upstream, st: state, oa: opened at, po: probes out, pa: last probe
admitted at, ps: probe successes, w: window of outcomes as "1"/"0"}`` plus a set of every
breaker's key; a retry budget is one counter per second of attempts and one of retries.
A replica tells a breaker the successes of its closed-state attempts with its next admit or
record of that upstream, so that a successful call costs one round trip, not two.
"""

from __future__ import annotations

NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

SLACK = "local function over(total, amount, limit) " + (
    "return total + amount > limit + 1e-9 * math.max(1, math.abs(limit)) end\n"
)

# KEYS: counters; ARGV: per counter limit, hard (1/0), ttl_ms, amount.
# -> {"ok"|"refused", index of the refusing counter or -1, spent1, reserved1, ...}
RESERVE = (
    SLACK
    + """
local n = #KEYS
local spent, reserved = {}, {}
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i], 's', 'r')
  spent[i] = tonumber(v[1]) or 0
  reserved[i] = tonumber(v[2]) or 0
end
for i = 1, n do
  local b = (i - 1) * 4
  if ARGV[b + 2] == '1' and over(spent[i] + reserved[i], tonumber(ARGV[b + 4]),
                                  tonumber(ARGV[b + 1])) then
    local out = {'refused', tostring(i - 1)}
    for j = 1, n do
      out[#out + 1] = tostring(spent[j])
      out[#out + 1] = tostring(reserved[j])
    end
    return out
  end
end
local out = {'ok', '-1'}
for i = 1, n do
  local b = (i - 1) * 4
  local r = redis.call('HINCRBYFLOAT', KEYS[i], 'r', ARGV[b + 4])
  redis.call('PEXPIRE', KEYS[i], ARGV[b + 3])
  out[#out + 1] = tostring(spent[i])
  out[#out + 1] = r
end
return out
"""
)

# KEYS: counters; ARGV: per counter minus the reserved amount, the spent amount, ttl_ms.
# -> {spent1, reserved1, ...}
SETTLE = """
local out = {}
for i = 1, #KEYS do
  local b = (i - 1) * 3
  local r = tonumber(redis.call('HINCRBYFLOAT', KEYS[i], 'r', ARGV[b + 1]))
  if r < 1e-9 then
    redis.call('HSET', KEYS[i], 'r', '0')
    r = 0
  end
  local s = redis.call('HINCRBYFLOAT', KEYS[i], 's', ARGV[b + 2])
  redis.call('PEXPIRE', KEYS[i], ARGV[b + 3])
  out[#out + 1] = s
  out[#out + 1] = tostring(r)
end
return out
"""

# KEYS: counters -> {spent1, reserved1, ...} (false for a missing one)
LEVELS = """
local out = {}
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 's', 'r')
  out[#out + 1] = v[1]
  out[#out + 1] = v[2]
end
return out
"""

_FILLED = """
local function filled(key, cap, rate)
  local v = redis.call('HMGET', key, 't', 'ts')
  if not v[1] then return cap end
  return math.min(cap, tonumber(v[1]) + math.max(0, now - tonumber(v[2])) * rate)
end
local function keep(key, tokens, cap, rate)
  redis.call('HSET', key, 't', string.format('%.17g', tokens), 'ts', string.format('%.6f', now))
  local ttl = 86400000
  if rate > 0 then ttl = math.ceil((cap - tokens) / rate * 1000) + 1000 end
  redis.call('PEXPIRE', key, ttl)
end
"""

# KEYS: buckets; ARGV: per bucket capacity, per_s, amount. -> {"0", -1} (taken) or {the
# seconds to wait ("inf": never), index of the first bucket that refused}, nothing taken.
TAKE = (
    NOW
    + _FILLED
    + """
local have, wait, refused = {}, 0, -1
for i = 1, #KEYS do
  local b = (i - 1) * 3
  local cap, rate, amount = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  have[i] = filled(KEYS[i], cap, rate)
  if amount > have[i] then
    if refused < 0 then refused = i - 1 end
    if amount > cap or rate <= 0 then return {'inf', refused} end
    wait = math.max(wait, (amount - have[i]) / rate)
  end
end
if refused >= 0 then return {string.format('%.17g', wait), refused} end
for i = 1, #KEYS do
  local b = (i - 1) * 3
  local cap, rate = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  keep(KEYS[i], have[i] - tonumber(ARGV[b + 3]), cap, rate)
end
return {'0', -1}
"""
)

# KEYS: buckets; ARGV: per bucket capacity, per_s, amount (negative: given back).
ADJUST = (
    NOW
    + _FILLED
    + """
for i = 1, #KEYS do
  local b = (i - 1) * 3
  local cap, rate = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local have = filled(KEYS[i], cap, rate)
  keep(KEYS[i], math.min(cap, have - tonumber(ARGV[b + 3])), cap, rate)
end
return 1
"""
)

# The breaker scripts' common part. KEYS: breaker hash, set of breakers (+ admit: the
# attempts-per-second key prefix). ARGV: upstream, successes not yet counted (a replica tells
# its successes with its next admit or record: one round trip per successful call), window,
# min_calls, failure_rate, half_open_probes, then the script's own.
_BREAKER = (
    NOW
    + """
local h = KEYS[1]
local size, min_calls, rate = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local oks = string.rep('1', math.min(tonumber(ARGV[2]), size))
local function open_now(po)
  redis.call('HSET', h, 'n', ARGV[1], 'st', 'open', 'oa', string.format('%.6f', now),
             'w', '', 'po', po)
  redis.call('SADD', KEYS[2], h)
  return 'open'
end
-- outcomes into the window of the last `size`; opens the breaker when the rate is reached
local function count(w, marks, po)
  if marks == '' then return nil end
  w = w .. marks
  if #w > size then w = string.sub(w, #w - size + 1) end
  local _, failures = string.gsub(w, '0', '')
  if #w >= min_calls and failures / #w >= rate then return open_now(po) end
  redis.call('HSET', h, 'n', ARGV[1], 'w', w)
  redis.call('SADD', KEYS[2], h)
  return nil
end
"""
)

# ARGV[7]: cooldown_s, ARGV[8]: stale_probe_s.
# -> {admitted 1/0, probe 1/0, seconds until a probe may go}
BREAKER_ADMIT = (
    _BREAKER
    + """
local v = redis.call('HMGET', h, 'st', 'oa', 'po', 'pa', 'w')
local st, oa, po = v[1] or 'closed', tonumber(v[2]) or 0, tonumber(v[3]) or 0
local probe = 0
if st == 'closed' and count(v[5] or '', oks, po) == 'open' then
  st, oa = 'open', now
end
if st == 'open' then
  local left = oa + tonumber(ARGV[7]) - now
  if left > 0 then return {0, 0, string.format('%.6f', left)} end
  st, po = 'half_open', 0
  redis.call('HSET', h, 'st', st, 'po', 0, 'ps', 0)
end
if st == 'half_open' then
  if po >= tonumber(ARGV[6]) and now - (tonumber(v[4]) or 0) > tonumber(ARGV[8]) then
    po = 0  -- probes that never reported (a replica died mid-call) free their slots
  end
  if po >= tonumber(ARGV[6]) then return {0, 0, '0'} end
  redis.call('HSET', h, 'po', po + 1, 'pa', string.format('%.6f', now), 'n', ARGV[1])
  redis.call('SADD', KEYS[2], h)
  probe = 1
end
local a = KEYS[3] .. math.floor(now)
redis.call('INCR', a)
redis.call('EXPIRE', a, 61)
return {1, probe, '0'}
"""
)

# An attempt a replica let through on its own, having just read the breaker closed (see
# RedisState.breaker_admit): the successes told and the attempt counted, as BREAKER_ADMIT does
# for a closed breaker, but nothing decided. -> 1
BREAKER_NOTE = (
    _BREAKER
    + """
local v = redis.call('HMGET', h, 'st', 'w', 'po')
if (v[1] or 'closed') == 'closed' then count(v[2] or '', oks, tonumber(v[3]) or 0) end
local a = KEYS[3] .. math.floor(now)
redis.call('INCR', a)
redis.call('EXPIRE', a, 61)
return 1
"""
)

# ARGV[7]: outcome (ok/failure/neutral), ARGV[8]: probe 1/0. -> 1
BREAKER_RECORD = (
    _BREAKER
    + """
local v = redis.call('HMGET', h, 'st', 'po', 'ps', 'w')
local st, po, ps, w = v[1] or 'closed', tonumber(v[2]) or 0, tonumber(v[3]) or 0, v[4] or ''
local outcome, probe = ARGV[7], ARGV[8] == '1'
if probe then po = math.max(0, po - 1) end
if outcome == 'neutral' then
  if st == 'closed' then count(w, oks, po) end
  if probe then redis.call('HSET', h, 'po', po) end
  return 1
end
if probe or st == 'half_open' then
  if outcome ~= 'ok' then
    open_now(po)
    return 1
  end
  ps = ps + 1
  if ps >= tonumber(ARGV[6]) then
    redis.call('HSET', h, 'st', 'closed', 'w', '', 'ps', ps, 'po', po)
  else
    redis.call('HSET', h, 'ps', ps, 'po', po)
  end
  return 1
end
local mark = '0'
if outcome == 'ok' then mark = '1' end
if st ~= 'closed' then oks = '' end  -- a late outcome while open: only its own counts
count(w, oks .. mark, po)
return 1
"""
)

# KEYS: set of breakers -> {upstream1, state1, ...}
BREAKER_STATES = """
local out = {}
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('HMGET', h, 'n', 'st')
  if v[1] then
    out[#out + 1] = v[1]
    out[#out + 1] = v[2] or 'closed'
  end
end
return out
"""

# KEYS: attempts-per-second key prefix, retries-per-second key prefix;
# ARGV: ratio, min_retries, window in whole seconds. -> 1 (spent) or 0
RETRY_SPEND = (
    NOW
    + """
local sec = math.floor(now)
local attempts, retries = 0, 0
for s = sec - tonumber(ARGV[3]) + 1, sec do
  attempts = attempts + (tonumber(redis.call('GET', KEYS[1] .. s)) or 0)
  retries = retries + (tonumber(redis.call('GET', KEYS[2] .. s)) or 0)
end
local allowed = math.max(tonumber(ARGV[2]), math.floor(tonumber(ARGV[1]) * (attempts - retries)))
if retries >= allowed then return 0 end
local r = KEYS[2] .. sec
redis.call('INCR', r)
redis.call('EXPIRE', r, 61)
return 1
"""
)
