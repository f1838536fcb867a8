"""Lua scripts for every multi-key state change, so each one is atomic in Redis.

Kept apart from :mod:`relay.store` so the shared job-update chunk is written once. The scripts
touch keys derived inside Lua (``prefix .. 'job:' .. id``): relay supports standalone Redis and
Sentinel (as arq does), not Cluster.
"""

from __future__ import annotations

from relay.store import keys
from relay.store.scheduler import NOW_MS

__all__ = [
    "APPLY_JOB",
    "APPLY_POLL",
    "CANCEL",
    "DELIVERY_ACK",
    "MONITOR_LOADER",
    "OUTBOX_LOADER",
    "PATCH",
    "REDELIVER",
    "REGISTER",
    "RELEASE",
    "RESERVE",
]

# A monitor's hash holds its own fields and, as fields 'j:<job id>' (empty values), the ids of the
# jobs sharing it: one key per monitor, not two (bytes per tracked job count).
_MONITOR = """
local function monitor_has_jobs(mk)
  for _, f in ipairs(redis.call('HKEYS', mk)) do
    if string.sub(f, 1, 2) == 'j:' then return true end
  end
  return false
end

-- the job leaves its monitor's list, keeping the monitor's poll count and last poll time (an ended job
-- still shows them after its monitor is gone); returns the monitor's key
local function drop_from_monitor(prefix, jk, job_id)
  local mk = redis.call('HGET', jk, 'monitor_key')
  if mk then
    local monitor = prefix .. 'monitor:' .. mk
    local polled = redis.call('HMGET', monitor, 'polls', 'last_polled')
    if polled[1] then redis.call('HSET', jk, 'polls', polled[1], 'last_polled', polled[2] or '') end
    redis.call('HDEL', monitor, 'j:' .. job_id)
  end
  return mk
end

-- the job's monitor comes due no later than `at` (ms): a job waiting for authorization ends on time
local function wake_monitor(jk, at)
  local mk = redis.call('HGET', jk, 'monitor_key')
  if mk then redis.call('ZADD', '__MONITORS__', 'XX', 'LT', at, mk) end
end

-- the monitor's last job has gone: stop polling it
local function drop_monitor_if_empty(prefix, mk_id)
  local mk = prefix .. 'monitor:' .. mk_id
  if monitor_has_jobs(mk) then return false end
  redis.call('ZREM', '__MONITORS__', mk_id)
  redis.call('HDEL', '__MONITOR_TOKENS__', mk_id)
  redis.call('DEL', mk)
  return true
end
""".replace("__MONITORS__", keys.MONITORS).replace("__MONITOR_TOKENS__", keys.sched_tokens(keys.MONITORS))

# apply_job_op(op, now): one job's state change plus the events it emits, guarded so a stale
# writer changes nothing. `op` is decoded JSON: job, prev_seq, phase?, set?, del?, events?, terminal?
_JOB_OP = (
    _MONITOR
    + """
local function expire_job(jk, ttl)
  for _, k in ipairs({jk, jk .. ':events', jk .. ':outbox', jk .. ':attempts'}) do
    redis.call('EXPIRE', k, ttl)
  end
end

-- a job whose terminal event waits goes ahead of jobs with only progress to tell (see keys.DELIVERIES)
local TERMINAL_FIRST_MS = 86400000

local function apply_job_op(prefix, deliveries, op, now, event_ttl, retention)
  local jk = prefix .. 'job:' .. op.job
  if redis.call('EXISTS', jk) == 0 then return 'missing' end
  if redis.call('HGET', jk, 'terminal') == '1' then return 'terminal' end
  local seq = tonumber(redis.call('HGET', jk, 'seq') or '0')
  if op.prev_seq ~= nil and seq ~= tonumber(op.prev_seq) then return 'stale' end
  if op.phase ~= nil and (redis.call('HGET', jk, 'phase') or 'tracking') ~= op.phase then return 'stale' end
  if op.expect then
    for k, v in pairs(op.expect) do
      if (redis.call('HGET', jk, k) or '') ~= v then return 'stale' end
    end
  end
  if op.set then
    for k, v in pairs(op.set) do redis.call('HSET', jk, k, v) end
  end
  if op.del then
    for _, k in ipairs(op.del) do redis.call('HDEL', jk, k) end
  end
  if op.events and #op.events > 0 then
    for _, ev in ipairs(op.events) do
      seq = seq + 1
      local ek = prefix .. 'event:' .. ev.id
      redis.call('HSET', ek, 'job', op.job, 'type', ev.type, 'seq', seq, 'body', ev.body,
                 'attempts', 0, 'state', 'pending', 'created', now)
      redis.call('EXPIRE', ek, event_ttl)
      redis.call('RPUSH', jk .. ':events', ev.id)
      redis.call('RPUSH', jk .. ':outbox', ev.id)
    end
    redis.call('HSET', jk, 'seq', seq)
    if op.terminal and redis.call('HEXISTS', deliveries .. ':tokens', op.job) == 0 then
      redis.call('ZADD', deliveries, 'LT', now - TERMINAL_FIRST_MS, op.job)
    else  -- a job being delivered is not touched: its worker reschedules it (one delivery at a time)
      redis.call('ZADD', deliveries, 'NX', now, op.job)
    end
  end
  if op.terminal then
    redis.call('HINCRBY', prefix .. 'stats', redis.call('HGET', jk, 'status') or 'ended', 1)
    redis.call('HSET', jk, 'terminal', '1', 'phase', 'done')
    redis.call('HDEL', jk, 'authorization')
    drop_from_monitor(prefix, jk, op.job)
    expire_job(jk, retention)
  elseif op.wake then
    wake_monitor(jk, op.wake)
  end
  return 'ok'
end
"""
)

# Scheduler loader for monitors: {monitor fields (flat), job id, job hash (flat), job id, ...};
# ids of jobs that no longer exist are dropped from the monitor.
MONITOR_LOADER = """
local function load_state(member, prefix)
  local mk = prefix .. 'monitor:' .. member
  local flat = redis.call('HGETALL', mk)
  local fields, out = {}, {false}
  for j = 1, #flat, 2 do
    local f = flat[j]
    if string.sub(f, 1, 2) == 'j:' then
      local id = string.sub(f, 3)
      local job = redis.call('HGETALL', prefix .. 'job:' .. id)
      if #job == 0 then
        redis.call('HDEL', mk, f)
      else
        out[#out + 1] = id
        out[#out + 1] = job
      end
    else
      fields[#fields + 1] = f
      fields[#fields + 1] = flat[j + 1]
    end
  end
  out[1] = fields
  return out
end
"""

# Scheduler loader for deliveries: {{callback_url, secret}, event id, {type, seq, body, attempts, created},
# ...} in outbox order: only what a delivery needs (nil for what is missing).
OUTBOX_LOADER = """
local function load_state(member, prefix)
  local jk = prefix .. 'job:' .. member
  local out = {redis.call('HMGET', jk, 'callback_url', 'secret')}
  for _, id in ipairs(redis.call('LRANGE', jk .. ':outbox', 0, -1)) do
    out[#out + 1] = id
    out[#out + 1] = redis.call('HMGET', prefix .. 'event:' .. id, 'type', 'seq', 'body', 'attempts', 'created')
  end
  return out
end
"""

# Batched (relay.batched). KEYS: monitors zset, tokens hash, deliveries zset
# shared ARGV: prefix, event ttl, retention; per call: member, token, delay_ms, monitor fields, ops
APPLY_POLL = (
    _JOB_OP
    + """
local prefix, event_ttl, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function one(a)
  local member = a[1]
  if redis.call('HGET', KEYS[2], member) ~= a[2] then return {'stale-claim'} end
  local mk = prefix .. 'monitor:' .. member
  for k, v in pairs(a[4]) do redis.call('HSET', mk, k, v) end
  local results = {}
  for _, op in ipairs(a[5]) do
    local r = apply_job_op(prefix, KEYS[3], op, now, event_ttl, retention)
    if r == 'missing' or r == 'terminal' then redis.call('HDEL', mk, 'j:' .. op.job) end
    results[#results + 1] = r
  end
  redis.call('HDEL', KEYS[2], member)
  if not drop_monitor_if_empty(prefix, member) then
    redis.call('ZADD', KEYS[1], 'XX', now + a[3], member)
  end
  return results
end
"""
)

# KEYS: deliveries zset; ARGV: op json, prefix, event ttl, retention
APPLY_JOB = (
    _JOB_OP
    + NOW_MS
    + """
return apply_job_op(ARGV[2], KEYS[1], cjson.decode(ARGV[1]), now, tonumber(ARGV[3]), tonumber(ARGV[4]))
"""
)

# Batched (relay.batched). KEYS: monitors zset, jobs index stream, deliveries zset
# shared ARGV: prefix, index horizon (ms), event ttl (s), retention (s)
# per call: idempotency key ('' when none), job id, job fields, monitor key ('' for an action that finished at
# once), monitor url, idempotency ttl, request digest, first op ('' or a job op: the finished action's events).
# The job's id is its key, not a field; absent fields are defaults (seq 0, phase tracking, status notStarted,
# percentage 0): bytes per job count. An idempotency key holds "<job id> <digest>", plus " pending" while an
# action is being started under it (RESERVE): the registration that holds the reservation goes ahead.
REGISTER = (
    _JOB_OP
    + """
local prefix, horizon, event_ttl, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function one(a)
  local idem, id, mkey = a[1], a[2], a[4]
  if idem ~= '' then
    local existing = redis.call('GET', idem)
    if existing then
      local found, digest, pending = string.match(existing, '^(%S+) (%S*) ?(%S*)$')
      if found ~= id then return {'existing', found, digest, pending} end
    end
    redis.call('SET', idem, id .. ' ' .. a[7], 'EX', a[6])
  end
  local jk = prefix .. 'job:' .. id
  local args = {'created', now}
  for k, v in pairs(a[3]) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  redis.call('HSET', jk, unpack(args))
  -- index entries older than any job can live are trimmed as new ones come (whole nodes: '~')
  redis.call('XADD', KEYS[2], 'MINID', '~', tostring(now - horizon), '*', 'j', id)
  redis.call('HINCRBY', prefix .. 'stats', 'registered', 1)
  if mkey == '' then
    apply_job_op(prefix, KEYS[3], a[8], now, event_ttl, retention)
    return {'created', id, '', tostring(now), '', '', ''}
  end
  local mk = prefix .. 'monitor:' .. mkey
  redis.call('HSET', mk, 'j:' .. id, '')
  redis.call('HSETNX', mk, 'url', a[5])
  redis.call('ZADD', KEYS[1], 'NX', now, mkey)
  local polled = redis.call('HMGET', mk, 'polls', 'last_polled')
  local due = redis.call('ZSCORE', KEYS[1], mkey) or ''
  return {'created', id, '', tostring(now), polled[1] or '', polled[2] or '', due}
end
"""
)

# KEYS: idempotency key; ARGV: job id, request digest, ttl (s). Holds the key while an action is started
# under it, so a retry with the same key cannot start a second copy; returns what the key already held.
RESERVE = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2] .. ' pending', 'EX', ARGV[3])
return false
"""

# KEYS: idempotency key; ARGV: job id. Lets go of a reservation that started nothing.
RELEASE = """
local existing = redis.call('GET', KEYS[1])
if existing and string.sub(existing, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS: job hash, monitors zset, monitor tokens hash, deliveries zset; ARGV: job id, prefix, retention
CANCEL = (
    _MONITOR
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'terminal') == '1' then return 1 end
redis.call('HSET', KEYS[1], 'terminal', '1', 'status', 'cancelled', 'phase', 'done')
redis.call('HDEL', KEYS[1], 'authorization')
redis.call('HINCRBY', ARGV[2] .. 'stats', 'cancelled', 1)
local mk = drop_from_monitor(ARGV[2], KEYS[1], ARGV[1])
if mk then drop_monitor_if_empty(ARGV[2], mk) end
for _, eid in ipairs(redis.call('LRANGE', KEYS[1] .. ':outbox', 0, -1)) do
  redis.call('HSET', ARGV[2] .. 'event:' .. eid, 'state', 'cancelled')
end
redis.call('DEL', KEYS[1] .. ':outbox')
redis.call('ZREM', KEYS[4], ARGV[1])
for _, k in ipairs({KEYS[1], KEYS[1] .. ':events', KEYS[1] .. ':attempts'}) do
  redis.call('EXPIRE', k, tonumber(ARGV[3]))
end
return 1
"""
)

# KEYS: job hash, monitors zset; ARGV: fields json, prefix. Only a job still being tracked can change.
# A new authorization for a job waiting for one starts its resolution again at once: the job goes back
# to 'resolving' and its (completed) monitor comes due now, so a worker's recheck picks it up.
PATCH = (
    NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'terminal') == '1' then return -1 end
local fields = cjson.decode(ARGV[1])
for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
if fields.authorization and redis.call('HGET', KEYS[1], 'phase') == 'authorizing' then
  redis.call('HSET', KEYS[1], 'phase', 'resolving')
  redis.call('HDEL', KEYS[1], 'auth_wait_until')
  local mk = redis.call('HGET', KEYS[1], 'monitor_key')
  if mk then redis.call('ZADD', KEYS[2], 'XX', 'LT', now, mk) end
  return 2
end
return 1
"""
)

# Batched (relay.batched). KEYS: deliveries zset, tokens hash, dead-letter zset; shared ARGV: prefix
# per call: job id, token, event id, outcome, delay_ms, superseded ids, attempt records (JSON texts), error json
DELIVERY_ACK = (
    _JOB_OP
    + """
local prefix = ARGV[1]
local function one(a)
  local job_id, event_id, outcome = a[1], a[3], a[4]
  if redis.call('HGET', KEYS[2], job_id) ~= a[2] then return -1 end
  local jk = prefix .. 'job:' .. job_id
  local outbox = jk .. ':outbox'
  for _, sid in ipairs(a[6]) do
    redis.call('LREM', outbox, 0, sid)
    redis.call('HSET', prefix .. 'event:' .. sid, 'state', 'superseded')
  end
  local ek = prefix .. 'event:' .. event_id
  if outcome ~= 'none' then redis.call('HINCRBY', ek, 'attempts', 1) end
  if outcome == 'delivered' then
    redis.call('LREM', outbox, 0, event_id)
    redis.call('HSET', ek, 'state', 'delivered')
    redis.call('ZREM', KEYS[3], event_id)
  elseif outcome == 'failed' then
    redis.call('HSET', ek, 'state', 'retrying')
  elseif outcome == 'dead' then
    redis.call('LREM', outbox, 0, event_id)
    redis.call('HSET', ek, 'state', 'dead')
    redis.call('ZADD', KEYS[3], now, event_id)
  elseif outcome == 'gone' then
    redis.call('HSET', ek, 'state', 'gone')
    for _, eid in ipairs(redis.call('LRANGE', outbox, 0, -1)) do
      if eid ~= event_id then redis.call('HSET', prefix .. 'event:' .. eid, 'state', 'cancelled') end
    end
    redis.call('DEL', outbox)
    if redis.call('HGET', jk, 'terminal') ~= '1' then
      redis.call('HSET', jk, 'terminal', '1', 'status', 'cancelled', 'phase', 'done', 'error', a[8])
      redis.call('HINCRBY', prefix .. 'stats', 'cancelled', 1)
      redis.call('HDEL', jk, 'authorization')
      local mk = drop_from_monitor(prefix, jk, job_id)
      if mk then drop_monitor_if_empty(prefix, mk) end
    end
  end
  local attempts = jk .. ':attempts'
  for _, rec in ipairs(a[7]) do redis.call('RPUSH', attempts, rec) end
  redis.call('LTRIM', attempts, -1000, -1)
  redis.call('HDEL', KEYS[2], job_id)
  local delay = a[5]
  if redis.call('LLEN', outbox) == 0 then
    redis.call('ZREM', KEYS[1], job_id)
  elseif delay == 0 and redis.call('HGET', jk, 'terminal') == '1' then
    redis.call('ZADD', KEYS[1], 'XX', now - TERMINAL_FIRST_MS, job_id)  -- its terminal event is next
  else
    redis.call('ZADD', KEYS[1], 'XX', now + delay, job_id)
  end
  return 1
end
"""
)

# KEYS: job hash, outbox, deliveries zset, dead-letter zset; ARGV: event id, prefix, job id
REDELIVER = (
    NOW_MS
    + """
local ek = ARGV[2] .. 'event:' .. ARGV[1]
if redis.call('EXISTS', ek) == 0 then return 0 end
redis.call('HSET', ek, 'state', 'pending', 'attempts', 0)
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('LREM', KEYS[2], 0, ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[3])
return 1
"""
)
