"""The one Lua script behind the shared circuit breaker (see ``breaker.py``).

Keys, all under ``payops:breaker:{<name>}:`` (the braces are a Redis Cluster hash tag, so
the four keys of one breaker always share a slot and one script may touch them all):

``state``  hash   ``state`` closed|open|half_open (absent = closed), ``opened_at`` (ms),
                  ``reason`` (why it last changed), ``fstate`` (the forced state last
                  reported, so that the expiry of a force is reported exactly once).
                  TTL one day (longer while forced), refreshed on every change.
``win``    hash   the sliding window: ``c<bucket>`` calls and ``f<bucket>`` failures, a
                  bucket being ``floor(now_ms / bucket_ms)``; buckets older than the window
                  are deleted on every record. TTL two windows, refreshed on every record.
``probe``  string the half-open probe lease: the holder's token, ``SET NX PX lease``.
``force``  hash   ``state``, ``reason``, ``by``, ``until`` (ms), ``at`` (ms); expires at
                  ``until`` (PEXPIREAT), so a forgotten override ends by itself.

Time is Redis server time (``TIME``): every process then agrees on bucket boundaries and
on when an open circuit may probe, whatever its own clock says. Calling ``TIME`` before a
write is allowed because Redis >= 5 replicates a script's effects, not the script.

ARGV: 1 op, 2 failure-rate threshold, 3 minimum calls, 4 bucket ms, 5 buckets per window,
6 open ms, 7 probe lease ms, 8 state TTL ms, 9.. the op's own arguments:
  acquire  token                      record  outcome (s|f|i), probe token or ''
  force    state, reason, by, until ms clear   -            reset  -      snapshot  -

Every op but a rejected force answers the same 16-element array (see ``_Reply`` in
``breaker.py``); a transition is reported in elements 8-10 by the one call that made it.
"""

from __future__ import annotations

BREAKER_LUA = r"""
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local min_calls = tonumber(ARGV[3])
local bucket_ms = tonumber(ARGV[4])
local n_buckets = tonumber(ARGV[5])
local open_ms = tonumber(ARGV[6])
local lease_ms = tonumber(ARGV[7])
local ttl_ms = tonumber(ARGV[8])
local k_state, k_win, k_probe, k_force = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Integers go to Redis as '%d' strings: how a Lua number is formatted differs by version.
local function int(x) return string.format('%d', x) end

local st = redis.call('HMGET', k_state, 'state', 'opened_at', 'fstate', 'reason')
local state = st[1] or 'closed'
local opened_at = tonumber(st[2]) or -1
local mirror = st[3]
local why = st[4] or ''
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
  if new == 'open' then
    opened_at = now
    redis.call('HSET', k_state, 'state', new, 'opened_at', int(now), 'reason', reason)
  else
    redis.call('HSET', k_state, 'state', new, 'reason', reason)
    if new == 'closed' then
      opened_at = -1
      redis.call('HDEL', k_state, 'opened_at')
    end
  end
  redis.call('PEXPIRE', k_state, int(ttl_ms))
end

local function reply(ok, probe, retry_ms, eff, reason, calls, fails, deny)
  local t_old, t_new, t_reason = '', '', ''
  if eff ~= reported then
    t_old, t_new, t_reason = reported, eff, reason
    if calls == nil then calls, fails = window(false) end
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
  if state == 'open' then return opened_at + open_ms - now end
  if state == 'half_open' then return redis.call('PTTL', k_probe) end
  return 0
end

if op == 'snapshot' then
  local calls, fails = window(false)
  reported = forced or state
  return reply(1, 0, retry_now(), reported, '', calls, fails)
end

if op == 'force' then
  local until_ms = tonumber(ARGV[12])
  if until_ms <= now then
    return {'until_in_past', now}
  end
  redis.call('DEL', k_force)
  redis.call('HSET', k_force, 'state', ARGV[9], 'reason', ARGV[10], 'by', ARGV[11],
             'until', ARGV[12], 'at', int(now))
  redis.call('PEXPIREAT', k_force, ARGV[12])
  redis.call('HSET', k_state, 'fstate', ARGV[9])
  redis.call('PEXPIRE', k_state, int(math.max(ttl_ms, until_ms - now + ttl_ms)))
  f = {ARGV[9], ARGV[10], ARGV[11], ARGV[12]}
  return reply(1, 0, retry_now(), ARGV[9], 'forced')
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

-- acquire and record: while forced, obey the force and leave the breaker's own state be.
if forced then
  if mirror ~= forced then
    redis.call('HSET', k_state, 'fstate', forced)
    reported = forced
  end
elseif mirror then
  -- The force expired on its own since it was last reported: report that now, once.
  redis.call('HDEL', k_state, 'fstate')
end
local reason = 'force_expired'

if op == 'acquire' then
  if forced == 'open' then
    return reply(0, 0, tonumber(f[4]) - now, 'open', 'forced', nil, nil, 'forced')
  elseif forced then
    return reply(1, 0, 0, 'closed', 'forced')
  end
  if state == 'open' then
    local wait = opened_at + open_ms - now
    if wait > 0 then
      return reply(0, 0, wait, 'open', reason, nil, nil, why)
    end
    set_state('half_open', 'open_timeout')
    reason = 'open_timeout'
  end
  if state == 'half_open' then
    if redis.call('SET', k_probe, ARGV[9], 'NX', 'PX', int(lease_ms)) then
      return reply(1, 1, 0, 'half_open', reason)
    end
    return reply(0, 0, redis.call('PTTL', k_probe), 'half_open', reason, nil, nil,
                 'probe_in_flight')
  end
  return reply(1, 0, 0, 'closed', reason)
end

if op == 'record' then
  local outcome, token = ARGV[9], ARGV[10]
  local calls, fails
  if token ~= '' then
    -- A probe whose lease ran out is forfeit: its answer no longer decides anything.
    if redis.call('GET', k_probe) == token then
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
  elseif outcome ~= 'i' then
    local b = int(math.floor(now / bucket_ms))
    redis.call('HINCRBY', k_win, 'c' .. b, 1)
    if outcome == 'f' then
      redis.call('HINCRBY', k_win, 'f' .. b, 1)
    end
    redis.call('PEXPIRE', k_win, int(2 * n_buckets * bucket_ms))
    calls, fails = window(true)
    if state == 'closed' and not forced and calls >= min_calls
        and fails >= threshold * calls then
      set_state('open', 'failure_rate')
      reason = 'failure_rate'
    end
  end
  return reply(1, 0, retry_now(), forced or state, reason, calls, fails)
end

return redis.error_reply('breaker: unknown op ' .. tostring(op))
"""
