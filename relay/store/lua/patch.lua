--! uses lib/clock.lua lib/lanes.lua lib/hash.lua lib/job_fields.lua lib/monitors.lua
-- Change a job still being tracked (PATCH /v1/jobs/{id}). A new authorization for a job waiting for one
-- starts its resolution again at once: the job goes back to 'resolving' and its (completed) monitor comes
-- due now, so a worker's recheck picks it up. call: job_id, fields (stored names). Answers {result}: 'changed',
-- 'woken' (changed, and a job waiting for authorization woken), 'missing' (no such job) or 'ended'.
local call = cjson.decode(ARGV[1])
local fields = call.fields
local jk = key_job(call.job_id)

if redis.call('EXISTS', jk) == 0 then return cjson.encode({result = 'missing'}) end
if redis.call('HGET', jk, JOB.terminal) == '1' then return cjson.encode({result = 'ended'}) end
job_set(jk, fields)
if fields[JOB.authorization] and redis.call('HGET', jk, JOB.phase) == PHASE.AUTHORIZING then
  redis.call('HSET', jk, JOB.phase, PHASE.RESOLVING)
  redis.call('HDEL', jk, JOB.auth_wait_until)
  wake_monitor(jk, now_ms())
  return cjson.encode({result = 'woken'})
end
return cjson.encode({result = 'changed'})
