--! uses lib/clock.lua lib/lanes.lua
-- Send one of a job's events again (POST /v1/jobs/{id}/redeliver), same webhook-id: out of the dead letters, into
-- the outbox in sequence order (where a newer event waits, a progress event is superseded by it as usual), and the
-- job due for delivery now. Its attempts go on counting; the delivery schedule starts again from the next one.
-- call: job_id, event_id. Answers {found}: false for no such event of this job (expired, or another job's).
local call = cjson.decode(ARGV[1])
local job_id, event_id = call.job_id, call.event_id
local ek = key_event(event_id)
local outbox = key_job_outbox(job_id)

local found = redis.call('HMGET', ek, EVENT.job, EVENT.sequence, EVENT.attempts)
if found[1] ~= job_id then return cjson.encode({found = false}) end
local seq = tonumber(found[2]) or 0
redis.call('HSET', ek, EVENT.state, EVENT_STATE.PENDING, EVENT.schedule_from, tonumber(found[3]) or 0)
local owner = redis.call('HGET', key_job(job_id), JOB.owner) or ''
redis.call('ZREM', KEY_DEAD_LETTERS, event_id)
redis.call('ZREM', key_owner_dead_letters(owner), event_id)
redis.call('LREM', outbox, 0, event_id)
local placed = false
for _, other in ipairs(redis.call('LRANGE', outbox, 0, -1)) do
  if (tonumber(redis.call('HGET', key_event(other), EVENT.sequence)) or 0) > seq then
    redis.call('LINSERT', outbox, 'BEFORE', other, event_id)
    placed = true
    break
  end
end
if not placed then redis.call('RPUSH', outbox, event_id) end
local lane = lane_of(owner)
local now = now_ms()
schedule_put(KEY_DELIVERIES, lane, job_id, now, 'LT')
return cjson.encode({found = true})
