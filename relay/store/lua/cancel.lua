--! uses lib/lanes.lua lib/monitors.lua lib/job_end.lua
-- Stop tracking a job (DELETE /v1/jobs/{id}): it stays readable as cancelled, its undelivered events are
-- dropped, and its monitor goes when it was the last job on it. 0: no such job.
local job_id = ARGV[1]
local retention = tonumber(ARGV[2])
local jk = key_job(job_id)

if redis.call('EXISTS', jk) == 0 then return 0 end
if redis.call('HGET', jk, JOB.terminal) == '1' then return 1 end
redis.call('HSET', jk, JOB.status, JOB_STATUS.CANCELLED)
end_job(job_id, retention)
local outbox = key_job_outbox(job_id)
for _, eid in ipairs(redis.call('LRANGE', outbox, 0, -1)) do
  redis.call('HSET', key_event(eid), EVENT.state, EVENT_STATE.CANCELLED)
end
redis.call('DEL', outbox)
schedule_drop(KEY_DELIVERIES, lane_of(redis.call('HGET', jk, JOB.owner)), job_id)
return 1
