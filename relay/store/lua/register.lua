--! uses lib/clock.lua lib/lanes.lua lib/quota.lua lib/job_op.lua lib/batch.lua
-- Create a job (and its monitor, or join the monitor's other jobs), or find the job an Idempotency-Key made.
-- Batched: one call per registration. The job's id is its key, not a field; absent fields are defaults (seq 0,
-- phase tracking, status notStarted, percentage 0): bytes per job count. An idempotency key holds
-- "<job id> <digest>", plus " pending" while an action is being started under it (reserve.lua): the
-- registration that holds the reservation goes ahead.
local index_horizon_ms = tonumber(ARGV[1])  -- index entries older than any job can live are trimmed
local event_ttl = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])
local now = now_ms()

-- call: idempotency_key ('' when none), idempotency_ttl, digest, job_id, fields, monitor_key ('' for an action
-- that finished at once), monitor_url, first_op ({} or the finished action's job op), max_active, max_rate
local function one(call)
  local id, mkey, owner = call.job_id, call.monitor_key, call.fields.owner or ''
  if call.idempotency_key ~= '' then
    local existing = redis.call('GET', call.idempotency_key)
    if existing then
      local found, digest, pending = string.match(existing, '^(%S+) (%S*) ?(%S*)$')
      if found ~= id then return {'existing', found, digest, pending} end
    end
  end
  local limited = over_limit(owner, call.max_active, call.max_rate, now)
  if limited then return {'limited', limited} end
  if call.idempotency_key ~= '' then
    redis.call('SET', call.idempotency_key, id .. ' ' .. call.digest, 'EX', call.idempotency_ttl)
  end
  redis.call('HINCRBY', KEY_ACTIVE, owner, 1)
  local args = {'created', now}
  for k, v in pairs(call.fields) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  redis.call('HSET', key_job(id), unpack(args))
  -- the owner's own index (listing, cursors), trimmed of entries older than any job can live
  redis.call('XADD', key_owner_jobs(owner), 'MINID', '~', tostring(now - index_horizon_ms), '*', 'j', id)
  redis.call('HINCRBY', KEY_STATS, 'registered', 1)
  if mkey == '' then
    apply_job_op(call.first_op, now, event_ttl, retention)
    return {'created', id, '', tostring(now), '', '', ''}
  end
  local mk = key_monitor(mkey)
  redis.call('HSET', mk, 'j:' .. id, '')
  local lane = lane_of(owner)
  if redis.call('HSETNX', mk, 'url', call.monitor_url) == 1 then  -- a new monitor, due now, never polled
    if lane ~= '' then redis.call('HSET', mk, 'lane', lane) end
    schedule_put(KEY_MONITORS, lane, mkey, now, 'NX')
    return {'created', id, '', tostring(now), '', '', tostring(now)}
  end
  lane = redis.call('HGET', mk, 'lane') or ''  -- joining a monitor: its lane, poll count and due time
  schedule_put(KEY_MONITORS, lane, mkey, now, 'NX')
  local polled = redis.call('HMGET', mk, 'polls', 'last_polled')
  local due = redis.call('ZSCORE', lane_set(KEY_MONITORS, lane), mkey) or ''
  return {'created', id, '', tostring(now), polled[1] or '', polled[2] or '', due}
end

return run_batch(4, one)
