--! uses lib/clock.lua lib/lanes.lua lib/quota.lua lib/monitors.lua lib/job_op.lua lib/batch.lua
-- Create a job (and its monitor, or join the monitor's other jobs), or find the job an Idempotency-Key made.
-- Batched: one call per registration. The job's id is its key, not a field; absent fields are defaults (seq 0,
-- phase tracking, status notStarted, percentage 0): bytes per job count. An idempotency key holds
-- "<job id> <digest>", plus " pending" while an action is being started under it (reserve.lua): the
-- registration that holds the reservation goes ahead.
local index_horizon_ms = tonumber(ARGV[1])  -- index entries older than any job can live are trimmed
local event_ttl = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])
local first_ms = tonumber(ARGV[4])  -- RELAY_POLL_INITIAL_INTERVAL: a job joining a monitor is polled this soon
local now = now_ms()

-- call: idempotency_key ('' when none), idempotency_ttl, digest, job_id, fields, monitor_key ('' for an action
-- that finished at once), monitor_url, first_op ({} or the finished action's job op), max_active, max_rate,
-- max_monitor_jobs
local function one(call)
  local id, mkey, owner = call.job_id, call.monitor_key, call.fields[JOB.owner] or ''
  if call.idempotency_key ~= '' then
    local existing = redis.call('GET', call.idempotency_key)
    if existing then
      local found, digest, pending = string.match(existing, '^(%S+) (%S*) ?(%S*)$')
      if found ~= id then return {'existing', found, digest, pending} end
    end
  end
  local limited = monitor_full(mkey, call.max_monitor_jobs) or over_limit(owner, call.max_active, call.max_rate, now)
  if limited then return {'limited', limited} end
  if call.idempotency_key ~= '' then
    redis.call('SET', call.idempotency_key, id .. ' ' .. call.digest, 'EX', call.idempotency_ttl)
  end
  redis.call('HINCRBY', KEY_ACTIVE, owner, 1)
  local args = {JOB.created, now}
  for k, v in pairs(call.fields) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  redis.call('HSET', key_job(id), unpack(args))
  -- the owner's own index (listing, cursors), trimmed of entries older than any job can live
  redis.call('XADD', key_owner_jobs(owner), 'MINID', '~', tostring(now - index_horizon_ms), '*', 'j', id)
  redis.call('HINCRBY', KEY_STATS, STATS.registered, 1)
  if mkey == '' then
    apply_job_op(call.first_op, now, event_ttl, retention)
    return {'created', id, '', tostring(now), '', '', ''}
  end
  local polled = join_monitor(mkey, id, call.monitor_url, lane_of(owner), now, first_ms)
  return {'created', id, '', tostring(now), polled[1], polled[2], polled[3]}
end

return run_batch(5, one)
