--! uses lib/clock.lua lib/lanes.lua lib/quota.lua lib/monitors.lua lib/job_op.lua lib/idempotency.lua lib/batch.lua
-- Create a job (and its monitor, or join the monitor's other jobs), or find the job an Idempotency-Key made.
-- Batched: one call per registration. The job's id is its key, not a field; absent fields are defaults (seq 0,
-- phase tracking, status notStarted, percentage 0): bytes per job count. The registration that holds the key's
-- reservation (reserve.lua) goes ahead.
-- BATCH: index_horizon_ms (index entries older than any job can live are trimmed), event_ttl, retention, first_ms
-- (RELAY_POLL_INITIAL_INTERVAL: a job joining a monitor is polled this soon)
-- call: relay/store/calls.py RegisterCall
-- Answers {outcome = 'created', now, polls, last_polled, due} (its monitor's, for the job's view), or
-- {outcome = 'existing', job_id, digest, pending} (the job the key made), or {outcome = 'limited', limit}.
local now = now_ms()
local register

local function one(call)
  local id, mkey, owner = call.job_id, call.monitor_key, call.fields[JOB.owner] or ''
  if call.admitted then return register(call, id, mkey, owner) end  -- a cluster's: admit.lua did the owner's part
  if call.idempotency_key ~= '' then
    local holder = idempotency_holder(call.idempotency_key)
    if holder and holder.job_id ~= id then
      holder.outcome = 'existing'
      return holder
    end
  end
  local limited = monitor_full(mkey, call.max_monitor_jobs) or over_limit(owner, call.max_active, call.max_rate, now)
  if limited then return {outcome = 'limited', limit = limited} end
  if call.idempotency_key ~= '' then
    redis.call('SET', call.idempotency_key, id .. ' ' .. call.digest, 'EX', call.idempotency_ttl)
  end
  -- the owner's own index (listing, cursors), trimmed of entries older than any job can live
  redis.call('XADD', key_owner_jobs(owner), 'MINID', '~', tostring(now - BATCH.index_horizon_ms), '*', 'j', id)
  return register(call, id, mkey, owner)
end

-- the job itself, in its bucket
register = function(call, id, mkey, owner)
  if call.admitted then
    -- sent again (a cluster pipeline resends a batch after a transient error): made once
    if redis.call('EXISTS', key_job(id)) == 1 then return {outcome = 'created', now = now, polls = '', last_polled = '', due = ''} end
    local full = monitor_full(mkey, call.max_monitor_jobs)
    if full then return {outcome = 'limited', limit = full} end
  end
  redis.call('HINCRBY', KEY_ACTIVE, owner, 1)
  -- a cluster's job was listed by admit.lua on its owner's node: created then, so the listing's order holds
  local created = (call.admitted and (call.admitted_at or 0) > 0) and call.admitted_at or now
  local args = {JOB.created, created}
  for k, v in pairs(call.fields) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  redis.call('HSET', key_job(id), unpack(args))
  redis.call('HINCRBY', KEY_STATS, STATS.registered, 1)
  if mkey == '' then
    apply_job_op(call.first_op, now, BATCH.event_ttl, BATCH.retention)
    return {outcome = 'created', now = created, polls = '', last_polled = '', due = ''}
  end
  local polled = join_monitor(mkey, id, call.monitor_url, lane_of(owner), now, BATCH.first_ms)
  polled.outcome, polled.now = 'created', created
  return polled
end

return run_batch(one)
