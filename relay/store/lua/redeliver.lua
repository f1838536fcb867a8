--! uses lib/clock.lua lib/lanes.lua
-- Send a job's final event again (POST /v1/jobs/{id}/redeliver), same webhook-id: out of the dead letters,
-- back to the end of the outbox, and the job due for delivery now. 0: the event has expired.
local job_id, event_id = ARGV[1], ARGV[2]
local ek = key_event(event_id)
local outbox = key_job_outbox(job_id)

if redis.call('EXISTS', ek) == 0 then return 0 end
redis.call('HSET', ek, 'state', 'pending', 'attempts', 0)
local owner = redis.call('HGET', key_job(job_id), 'owner') or ''
redis.call('ZREM', KEY_DEAD_LETTERS, event_id)
redis.call('ZREM', key_owner_dead_letters(owner), event_id)
redis.call('LREM', outbox, 0, event_id)
redis.call('RPUSH', outbox, event_id)
local lane = lane_of(owner)
local now = now_ms()
schedule_put(KEY_DELIVERIES, lane, job_id, now, 'LT')
return 1
