"""The one Lua script behind the shared circuit breaker (payments/gateway/breaker/shared.py).

Keys, all under ``payops:breaker:{<name>}:`` (the braces are a Redis Cluster hash tag, so
the four keys of one breaker always share a slot and one script may touch them all):

``state``  hash   ``state`` closed|open|half_open (absent = closed), ``opened_at`` (ms),
                  ``open_ms`` (how long its opener keeps it open: the fleet follows it),
                  ``reason`` (why it last changed), ``fstate`` (the forced state last
                  reported, so that the expiry of a force is reported exactly once).
                  TTL one day (longer while forced), refreshed on every change.
``win``    hash   the sliding window: ``c<bucket>`` calls and ``f<bucket>`` failures, a
                  bucket being ``floor(now_ms / bucket_ms)``; buckets older than the window
                  are deleted whenever outcomes are added. TTL two windows, refreshed then.
``probe``  string the half-open probe lease: the holder's token, ``SET NX PX lease``.
``force``  hash   ``state``, ``reason``, ``by``, ``until`` (ms), ``at`` (ms); expires at
                  ``until`` (PEXPIREAT), so a forgotten override ends by itself.

Time is Redis server time (``TIME``): every process then agrees on bucket boundaries and
on when an open circuit may probe, whatever its own clock says. Calling ``TIME`` before a
write is allowed because Redis >= 5 replicates a script's effects, not the script.

ARGV, kept short because redis-py packs every argument of every call:
  1 op
  2 config, one string: "threshold min_calls bucket_ms n_buckets open_ms lease_ms ttl_ms"
  3 outcomes to add, one string: "bucket:calls:failures,..." ('' for none). A process
    counts its calls locally per bucket (its estimate of Redis time) and sends them in a
    batch; a bucket ahead of the server's is counted in the current one, a bucket already
    out of the window is dropped. Added outcomes may open the circuit (failure_rate).
  4.. the op's own arguments:
    acquire  token          a permit; the half-open probe if there is one to take
    sync     -              add the outcomes, answer the state (no permit)
    record   outcome, token the half-open probe's outcome (s|f|i) and its token
    snapshot -              add the outcomes, answer the state and the window; it reports
                            only a transition its own outcomes made
    force    state, reason, by, until ms         clear  -          reset  -
  force, clear and reset take no outcomes.

Answers: the short form ``{calls, failures, now_ms}`` when all is plain: the call is
allowed, no probe, the circuit is closed and not forced, and no transition happened.
Otherwise the 16-element array of ``Reply`` (reply.py); a transition is reported in
elements 8-10 by the one call that made it. A rejected force answers ``{'until_in_past', now}``.
"""

from __future__ import annotations

BREAKER_LUA = r"""
local op = ARGV[1]
local cfg = {}
for v in string.gmatch(ARGV[2], '%S+') do cfg[#cfg + 1] = tonumber(v) end
local threshold, min_calls, bucket_ms, n_buckets = cfg[1], cfg[2], cfg[3], cfg[4]
local open_ms, lease_ms, ttl_ms = cfg[5], cfg[6], cfg[7]
local batch = ARGV[3]
local k_state, k_win, k_probe, k_force = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Integers go to Redis as '%d' strings: how a Lua number is formatted differs by version.
local function int(x) return string.format('%d', x) end

local st = redis.call('HMGET', k_state, 'state', 'opened_at', 'fstate', 'reason', 'open_ms')
local state = st[1] or 'closed'
local opened_at = tonumber(st[2]) or -1
local mirror = st[3]
local why = st[4] or ''
-- How long the process that opened it decided it stays open: the whole fleet keeps that
-- decision, whatever open time another process is configured with.
local held_ms = tonumber(st[5]) or open_ms
local f = redis.call('HMGET', k_force, 'state', 'reason', 'by', 'until')
local forced = f[1]
-- The effective state as last reported to Python; a transition is any change of it.
local reported = mirror or forced or state

local function window(prune)
  local cur = math.floor(now / bucket_ms)
  local oldest = cur - n_buckets + 1
  local flat = redis.call('HGETALL', k_win)
  local calls, fails, stale = 0, 0, {}
  for i = 1, #flat, 2 do
    local idx = tonumber(string.sub(flat[i], 2))
    if idx == nil or idx < oldest then
      stale[#stale + 1] = flat[i]
    elseif idx <= cur then
      if string.sub(flat[i], 1, 1) == 'c' then
        calls = calls + tonumber(flat[i + 1])
      else
        fails = fails + tonumber(flat[i + 1])
      end
    end
  end
  if prune and #stale > 0 then
    redis.call('HDEL', k_win, unpack(stale))
  end
  return calls, fails
end

local function set_state(new, reason)
  state = new
  why = reason
  if new == 'open' then
    opened_at = now
    held_ms = open_ms
    redis.call('HSET', k_state, 'state', new, 'opened_at', int(now), 'reason', reason, 'open_ms', int(open_ms))
  else
    redis.call('HSET', k_state, 'state', new, 'reason', reason)
    if new == 'closed' then
      opened_at = -1
      redis.call('HDEL', k_state, 'opened_at', 'open_ms')
    end
  end
  redis.call('PEXPIRE', k_state, int(ttl_ms))
end

local function reply(ok, probe, retry_ms, eff, reason, calls, fails, deny)
  local t_old, t_new, t_reason = '', '', ''
  if eff ~= reported then
    t_old, t_new, t_reason = reported, eff, reason
  end
  if calls == nil and (t_new ~= '' or (eff == 'closed' and not f[1])) then
    calls, fails = window(false)
  end
  if ok == 1 and probe == 0 and eff == 'closed' and not f[1] and t_new == '' then
    return {calls, fails, now}
  end
  if calls == nil then calls, fails = -1, -1 end
  return {ok, probe, math.max(0, math.floor(retry_ms)), eff, calls, fails, opened_at,
          t_old, t_new, t_reason, f[1] or '', f[2] or '', f[3] or '', f[4] or '', now,
          deny or ''}
end

-- Milliseconds until a call may pass, from the state as it stands now.
local function retry_now()
  if f[1] == 'open' then return tonumber(f[4]) - now end
  if f[1] then return 0 end
  if state == 'open' then return opened_at + held_ms - now end
  if state == 'half_open' then return redis.call('PTTL', k_probe) end
  return 0
end

-- Add a process's batch of outcomes; answers the window after it, or nil if none counted.
local reason = 'force_expired'
local function add_outcomes()
  if batch == '' then return nil, nil end
  local cur = math.floor(now / bucket_ms)
  local oldest = cur - n_buckets + 1
  local added = false
  for b, c, fl in string.gmatch(batch, '(%-?%d+):(%d+):(%d+)') do
    b, c, fl = math.min(tonumber(b), cur), tonumber(c), tonumber(fl)
    if b >= oldest and c > 0 then
      redis.call('HINCRBY', k_win, 'c' .. int(b), c)
      if fl > 0 then
        redis.call('HINCRBY', k_win, 'f' .. int(b), fl)
      end
      added = true
    end
  end
  if not added then return nil, nil end
  redis.call('PEXPIRE', k_win, int(2 * n_buckets * bucket_ms))
  local calls, fails = window(true)
  if state == 'closed' and not forced and calls >= min_calls and fails >= threshold * calls then
    set_state('open', 'failure_rate')
    reason = 'failure_rate'
  end
  return calls, fails
end

if op == 'snapshot' then
  reported = forced or state  -- a snapshot reports only what its own outcomes changed
  local calls, fails = add_outcomes()
  if calls == nil then calls, fails = window(false) end
  return reply(1, 0, retry_now(), forced or state, reason, calls, fails)
end

if op == 'force' then
  local until_ms = tonumber(ARGV[7])
  if until_ms <= now then
    return {'until_in_past', now}
  end
  redis.call('DEL', k_force)
  redis.call('HSET', k_force, 'state', ARGV[4], 'reason', ARGV[5], 'by', ARGV[6],
             'until', ARGV[7], 'at', int(now))
  redis.call('PEXPIREAT', k_force, ARGV[7])
  redis.call('HSET', k_state, 'fstate', ARGV[4])
  redis.call('PEXPIRE', k_state, int(math.max(ttl_ms, until_ms - now + ttl_ms)))
  f = {ARGV[4], ARGV[5], ARGV[6], ARGV[7]}
  return reply(1, 0, retry_now(), ARGV[4], 'forced')
end

if op == 'clear' then
  redis.call('DEL', k_force)
  redis.call('HDEL', k_state, 'fstate')
  f = {false, false, false, false}
  return reply(1, 0, retry_now(), state, 'force_cleared')
end

if op == 'reset' then
  redis.call('DEL', k_state, k_win, k_probe, k_force)
  state, opened_at = 'closed', -1
  f = {false, false, false, false}
  return reply(1, 0, 0, 'closed', 'reset', 0, 0)
end

-- acquire, sync and record: while forced, obey the force and leave the breaker's own state be.
if forced then
  if mirror ~= forced then
    redis.call('HSET', k_state, 'fstate', forced)
    reported = forced
  end
elseif mirror then
  -- The force expired on its own since it was last reported: report that now, once.
  redis.call('HDEL', k_state, 'fstate')
end
local calls, fails = add_outcomes()

if op == 'acquire' then
  if forced == 'open' then
    return reply(0, 0, tonumber(f[4]) - now, 'open', 'forced', calls, fails, 'forced')
  elseif forced then
    return reply(1, 0, 0, 'closed', 'forced', calls, fails)
  end
  if state == 'open' then
    local wait = opened_at + held_ms - now
    if wait > 0 then
      return reply(0, 0, wait, 'open', reason, calls, fails, why)
    end
    set_state('half_open', 'open_timeout')
    reason = 'open_timeout'
  end
  if state == 'half_open' then
    if redis.call('SET', k_probe, ARGV[4], 'NX', 'PX', int(lease_ms)) then
      return reply(1, 1, 0, 'half_open', reason, calls, fails)
    end
    return reply(0, 0, redis.call('PTTL', k_probe), 'half_open', reason, calls, fails,
                 'probe_in_flight')
  end
  return reply(1, 0, 0, 'closed', reason, calls, fails)
end

if op == 'sync' then
  return reply(1, 0, retry_now(), forced or state, reason, calls, fails)
end

if op == 'record' then
  local outcome, token = ARGV[4], ARGV[5]
  -- A probe whose lease ran out is forfeit: its answer no longer decides anything.
  if token ~= '' and redis.call('GET', k_probe) == token then
    redis.call('DEL', k_probe)
    if state == 'half_open' and not forced then
      if outcome == 's' then
        redis.call('DEL', k_win)
        set_state('closed', 'probe_succeeded')
        reason, calls, fails = 'probe_succeeded', 0, 0
      elseif outcome == 'f' then
        set_state('open', 'probe_failed')
        reason = 'probe_failed'
      end
    end
  end
  return reply(1, 0, retry_now(), forced or state, reason, calls, fails)
end

return redis.error_reply('breaker: unknown op ' .. tostring(op))
"""
