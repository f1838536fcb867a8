--! uses lib/lanes.lua lib/monitors.lua lib/job_end.lua
-- Stop tracking a job (DELETE /v1/jobs/{id}): it stays readable as cancelled, its undelivered events are
-- dropped, and its monitor goes when it was the last job on it. call: job_id, retention. Answers {found}.
local call = cjson.decode(ARGV[1])
local job_id = call.job_id
local jk = key_job(job_id)

if redis.call('EXISTS', jk) == 0 then return cjson.encode({found = false}) end
if redis.call('HGET', jk, JOB.terminal) == '1' then return cjson.encode({found = true}) end
redis.call('HSET', jk, JOB.status, JOB_STATUS.CANCELLED)
end_job(job_id, call.retention)
local outbox = key_job_outbox(job_id)
for _, eid in ipairs(redis.call('LRANGE', outbox, 0, -1)) do
  redis.call('HSET', key_event(eid), EVENT.state, EVENT_STATE.CANCELLED)
end
redis.call('DEL', outbox)
schedule_drop(KEY_DELIVERIES, lane_of(redis.call('HGET', jk, JOB.owner)), job_id)
return cjson.encode({found = true})
