--! uses lib/clock.lua lib/lanes.lua lib/hash.lua lib/monitors.lua
-- Change a job still being tracked (PATCH /v1/jobs/{id}). A new authorization for a job waiting for one
-- starts its resolution again at once: the job goes back to 'resolving' and its (completed) monitor comes
-- due now, so a worker's recheck picks it up. 1: changed, 2: changed and woken, 0: no such job, -1: ended.
local job_id = ARGV[1]
local fields = cjson.decode(ARGV[2])
local jk = key_job(job_id)

if redis.call('EXISTS', jk) == 0 then return 0 end
if redis.call('HGET', jk, JOB.terminal) == '1' then return -1 end
hset_fields(jk, fields)
if fields[JOB.authorization] and redis.call('HGET', jk, JOB.phase) == PHASE.AUTHORIZING then
  redis.call('HSET', jk, JOB.phase, PHASE.RESOLVING)
  redis.call('HDEL', jk, JOB.auth_wait_until)
  wake_monitor(jk, now_ms())
  return 2
end
return 1
