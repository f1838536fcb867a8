"""Lua scripts for every multi-key state change, so each one is atomic in Redis.

Kept apart from :mod:`relay.store` so the shared job-update chunk is written once. The scripts
touch keys derived inside Lua (``prefix .. 'job:' .. id``): relay supports standalone Redis and
Sentinel (as arq does), not Cluster.
"""

from __future__ import annotations

from relay.scheduler import NOW_MS

__all__ = [
    "APPLY_JOB",
    "APPLY_POLL",
    "CANCEL",
    "DELIVERY_ACK",
    "MONITOR_STATE",
    "OUTBOX_STATE",
    "PATCH",
    "REDELIVER",
    "REGISTER",
]

# apply_job_op(op, now): one job's state change plus the events it emits, guarded so a stale
# writer changes nothing. `op` is decoded JSON: job, prev_seq, phase?, set?, del?, events?, terminal?
_JOB_OP = """
local function expire_job(jk, ttl)
  for _, k in ipairs({jk, jk .. ':events', jk .. ':outbox', jk .. ':attempts'}) do
    redis.call('EXPIRE', k, ttl)
  end
end

local function drop_from_monitor(prefix, jk, job_id)
  local mk = redis.call('HGET', jk, 'monitor_key')
  if mk then redis.call('HDEL', prefix .. 'monitor:' .. mk .. ':jobs', job_id) end
end

local function apply_job_op(prefix, deliveries, op, now, event_ttl, retention)
  local jk = prefix .. 'job:' .. op.job
  if redis.call('EXISTS', jk) == 0 then return 'missing' end
  if redis.call('HGET', jk, 'terminal') == '1' then return 'terminal' end
  local seq = tonumber(redis.call('HGET', jk, 'seq') or '0')
  if op.prev_seq ~= nil and seq ~= tonumber(op.prev_seq) then return 'stale' end
  if op.phase ~= nil and redis.call('HGET', jk, 'phase') ~= op.phase then return 'stale' end
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
    redis.call('ZADD', deliveries, 'NX', now, op.job)
  end
  if op.terminal then
    redis.call('HINCRBY', prefix .. 'stats', redis.call('HGET', jk, 'status') or 'ended', 1)
    redis.call('HSET', jk, 'terminal', '1', 'phase', 'done')
    redis.call('HDEL', jk, 'authorization')
    drop_from_monitor(prefix, jk, op.job)
    expire_job(jk, retention)
  end
  return 'ok'
end
"""

# KEYS: monitor hash, monitor jobs hash; ARGV: prefix. Returns the monitor hash (flat) and, per job
# sharing it, its id and its hash (flat); ids of jobs that no longer exist are dropped from the list.
MONITOR_STATE = """
local out = {redis.call('HGETALL', KEYS[1])}
for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do
  local job = redis.call('HGETALL', ARGV[1] .. 'job:' .. id)
  if #job == 0 then
    redis.call('HDEL', KEYS[2], id)
  else
    out[#out + 1] = job
  end
end
return out
"""

# KEYS: job hash, outbox list; ARGV: prefix. Returns the job hash (flat), then per undelivered event
# its id and its hash (flat), in outbox order.
OUTBOX_STATE = """
local out = {redis.call('HGETALL', KEYS[1])}
for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. 'event:' .. id)
end
return out
"""

# KEYS: monitors zset, tokens hash, monitor hash, monitor jobs set, deliveries zset
# ARGV: member, token, delay_ms, monitor fields json, ops json, prefix, event ttl, retention
APPLY_POLL = (
    _JOB_OP
    + NOW_MS
    + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return {'stale-claim'} end
local fields = cjson.decode(ARGV[4])
for k, v in pairs(fields) do redis.call('HSET', KEYS[3], k, v) end
local results = {}
for _, op in ipairs(cjson.decode(ARGV[5])) do
  local r = apply_job_op(ARGV[6], KEYS[5], op, now, tonumber(ARGV[7]), tonumber(ARGV[8]))
  if r == 'missing' or r == 'terminal' then redis.call('HDEL', KEYS[4], op.job) end
  results[#results + 1] = r
end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HLEN', KEYS[4]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[3])
else
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
end
return results
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

# KEYS: idempotency key ('' when none), job hash, monitor hash, monitor jobs, monitors zset, jobs index
# ARGV: job id, job fields json, monitor key, monitor url, idempotency ttl, request digest, prefix
REGISTER = (
    NOW_MS
    + """
if KEYS[1] ~= '' then
  local existing = redis.call('GET', KEYS[1])
  if existing then
    local sep = string.find(existing, ' ', 1, true)
    return {'existing', string.sub(existing, 1, sep - 1), string.sub(existing, sep + 1)}
  end
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[6], 'EX', tonumber(ARGV[5]))
end
local fields = cjson.decode(ARGV[2])
for k, v in pairs(fields) do redis.call('HSET', KEYS[2], k, v) end
-- absent fields are defaults (seq 0, phase tracking, status notStarted, percentage 0): bytes per job count
redis.call('HSET', KEYS[2], 'created', now)
redis.call('HSETNX', KEYS[3], 'url', ARGV[4])
redis.call('HSET', KEYS[4], ARGV[1], '1')
redis.call('ZADD', KEYS[5], 'NX', now, ARGV[3])
redis.call('ZADD', KEYS[6], now, ARGV[1])
redis.call('HINCRBY', ARGV[7] .. 'stats', 'registered', 1)
local polls = redis.call('HGET', KEYS[3], 'polls') or ''
local last = redis.call('HGET', KEYS[3], 'last_polled') or ''
local due = redis.call('ZSCORE', KEYS[5], ARGV[3]) or ''
return {'created', ARGV[1], '', tostring(now), polls, last, due}
"""
)

# KEYS: job hash, monitors zset, monitor tokens hash, deliveries zset; ARGV: job id, prefix, retention
CANCEL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'terminal') == '1' then return 1 end
redis.call('HSET', KEYS[1], 'terminal', '1', 'status', 'cancelled', 'phase', 'done')
redis.call('HDEL', KEYS[1], 'authorization')
redis.call('HINCRBY', ARGV[2] .. 'stats', 'cancelled', 1)
local mk = redis.call('HGET', KEYS[1], 'monitor_key')
if mk then
  local jobs = ARGV[2] .. 'monitor:' .. mk .. ':jobs'
  redis.call('HDEL', jobs, ARGV[1])
  if redis.call('HLEN', jobs) == 0 then
    redis.call('ZREM', KEYS[2], mk)
    redis.call('HDEL', KEYS[3], mk)
    redis.call('DEL', ARGV[2] .. 'monitor:' .. mk)
  end
end
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

# KEYS: job hash; ARGV: fields json. Only a job still being tracked can change.
PATCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'terminal') == '1' then return -1 end
for k, v in pairs(cjson.decode(ARGV[1])) do redis.call('HSET', KEYS[1], k, v) end
return 1
"""

# KEYS: deliveries zset, tokens hash, job hash, outbox, attempts list, dead-letter zset
# ARGV: job id, token, event id, outcome, delay_ms, superseded ids json, attempt records json, prefix, error json
DELIVERY_ACK = (
    _JOB_OP
    + NOW_MS
    + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return -1 end
local prefix = ARGV[8]
for _, sid in ipairs(cjson.decode(ARGV[6])) do
  redis.call('LREM', KEYS[4], 0, sid)
  redis.call('HSET', prefix .. 'event:' .. sid, 'state', 'superseded')
end
local outcome = ARGV[4]
local ek = prefix .. 'event:' .. ARGV[3]
if outcome ~= 'none' then redis.call('HINCRBY', ek, 'attempts', 1) end
if outcome == 'delivered' then
  redis.call('LREM', KEYS[4], 0, ARGV[3])
  redis.call('HSET', ek, 'state', 'delivered')
  redis.call('ZREM', KEYS[6], ARGV[3])
elseif outcome == 'failed' then
  redis.call('HSET', ek, 'state', 'retrying')
elseif outcome == 'dead' then
  redis.call('LREM', KEYS[4], 0, ARGV[3])
  redis.call('HSET', ek, 'state', 'dead')
  redis.call('ZADD', KEYS[6], now, ARGV[3])
elseif outcome == 'gone' then
  redis.call('HSET', ek, 'state', 'gone')
  for _, eid in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do
    if eid ~= ARGV[3] then redis.call('HSET', prefix .. 'event:' .. eid, 'state', 'cancelled') end
  end
  redis.call('DEL', KEYS[4])
  if redis.call('HGET', KEYS[3], 'terminal') ~= '1' then
    redis.call('HSET', KEYS[3], 'terminal', '1', 'status', 'cancelled', 'phase', 'done', 'error', ARGV[9])
    redis.call('HINCRBY', prefix .. 'stats', 'cancelled', 1)
    redis.call('HDEL', KEYS[3], 'authorization')
    drop_from_monitor(prefix, KEYS[3], ARGV[1])
  end
end
for _, rec in ipairs(cjson.decode(ARGV[7])) do redis.call('RPUSH', KEYS[5], rec) end
redis.call('LTRIM', KEYS[5], -1000, -1)
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('LLEN', KEYS[4]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[5]), ARGV[1])
end
return 1
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
