--! uses lib/lanes.lua lib/monitors.lua
-- A job ends (completed, failed, cancelled): counted by its status, no longer counted as its tenant's active
-- job, its authorization forgotten, out of its monitor (which ends with its last job), readable for
-- `retention` seconds more.

local function expire_job(job_id, ttl)
  for _, k in ipairs({key_job(job_id), key_job_events(job_id), key_job_outbox(job_id), key_job_attempts(job_id)}) do
    redis.call('EXPIRE', k, ttl)
  end
end

local function end_job(job_id, retention)
  local jk = key_job(job_id)
  redis.call('HSET', jk, JOB.terminal, '1', JOB.phase, PHASE.DONE)
  redis.call('HINCRBY', KEY_STATS, redis.call('HGET', jk, JOB.status) or STATS.ended, 1)
  local owner = redis.call('HGET', jk, JOB.owner) or ''
  if redis.call('HINCRBY', KEY_ACTIVE, owner, -1) <= 0 then redis.call('HDEL', KEY_ACTIVE, owner) end
  redis.call('HDEL', jk, JOB.authorization)
  local mk_id, left = drop_from_monitor(jk, job_id)
  if mk_id and left <= 0 then drop_monitor_if_empty(mk_id) end
  expire_job(job_id, retention)
end
