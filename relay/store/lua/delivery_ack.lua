--! uses lib/clock.lua lib/lanes.lua lib/monitors.lua lib/job_op.lua lib/batch.lua
-- Record a delivery attempt, if the claim on the job is still the caller's: the event's new state, the
-- progress events it superseded, the attempt records, and when the job's next event is due (or its leaving
-- the schedule when none is left). 'gone' (410) ends the job as cancelled. Batched. BATCH: retention, event_ttl,
-- dead_max (RELAY_DEAD_LETTERS_MAX, a cluster bucket's share; 0: no bound).
-- call: relay/store/calls.py AckCall. Answers {held}: false for a stale claim (nothing written).
local retention = BATCH.retention
local event_ttl_ms = BATCH.event_ttl * 1000
local dead_max = BATCH.dead_max or 0
local now = now_ms()
local tokens = key_sched_tokens(KEY_DELIVERIES)

local function one(call)
  local job_id, event_id, outcome = call.job, call.event, call.outcome
  if redis.call('HGET', tokens, job_id) ~= call.token then return {held = false} end
  local jk = key_job(job_id)
  local outbox = key_job_outbox(job_id)
  for _, sid in ipairs(call.superseded) do
    redis.call('LREM', outbox, 0, sid)
    redis.call('HSET', key_event(sid), EVENT.state, EVENT_STATE.SUPERSEDED)
  end
  local ek = key_event(event_id)
  if outcome ~= OUTCOME.NONE then redis.call('HINCRBY', ek, EVENT.attempts, 1) end
  if outcome == OUTCOME.DELIVERED then
    -- no ZREM from the dead letters: a dead event is sent again only after redeliver.lua took it out of them
    redis.call('LREM', outbox, 0, event_id)
    redis.call('HSET', ek, EVENT.state, EVENT_STATE.DELIVERED)
  elseif outcome == OUTCOME.FAILED then
    redis.call('HSET', ek, EVENT.state, EVENT_STATE.RETRYING)
  elseif outcome == OUTCOME.DEAD then
    redis.call('LREM', outbox, 0, event_id)
    redis.call('HSET', ek, EVENT.state, EVENT_STATE.DEAD)
    -- every owner's (counted: relay_dead_letters) and the owner's own (listed), each without those whose event has
    -- expired, and bounded: the oldest beyond dead_max dropped (the shared set's drops counted in STATS)
    local owned = key_owner_dead_letters(redis.call('HGET', jk, JOB.owner) or '')
    for _, set in ipairs({KEY_DEAD_LETTERS, owned}) do
      redis.call('ZADD', set, now, event_id)
      redis.call('ZREMRANGEBYSCORE', set, '-inf', now - event_ttl_ms)
      if dead_max > 0 then
        local dropped = redis.call('ZREMRANGEBYRANK', set, 0, -dead_max - 1)
        if dropped > 0 and set == KEY_DEAD_LETTERS then redis.call('HINCRBY', KEY_STATS, STATS.dead_dropped, dropped) end
      end
    end
  elseif outcome == OUTCOME.GONE then
    redis.call('HSET', ek, EVENT.state, EVENT_STATE.GONE)
    for _, eid in ipairs(redis.call('LRANGE', outbox, 0, -1)) do
      if eid ~= event_id then redis.call('HSET', key_event(eid), EVENT.state, EVENT_STATE.CANCELLED) end
    end
    redis.call('DEL', outbox)
    if redis.call('HGET', jk, JOB.terminal) ~= '1' then
      redis.call('HSET', jk, JOB.status, JOB_STATUS.CANCELLED, JOB.error, call.error)
      end_job(job_id, retention)
    end
  end
  local attempts = key_job_attempts(job_id)
  local kept = 0
  for _, rec in ipairs(call.records) do kept = redis.call('RPUSH', attempts, rec) end
  if kept > 1000 then redis.call('LTRIM', attempts, -1000, -1) end  -- the newest 1,000 attempt records
  redis.call('HDEL', tokens, job_id)
  local lane = lane_of_token(call.token)
  if redis.call('LLEN', outbox) == 0 then
    schedule_drop(KEY_DELIVERIES, lane, job_id)
  elseif call.delay_ms == 0 and redis.call('HGET', jk, JOB.terminal) == '1' then
    schedule_put(KEY_DELIVERIES, lane, job_id, now - TERMINAL_FIRST_MS, 'XX')  -- its terminal event is next
  else
    schedule_put(KEY_DELIVERIES, lane, job_id, now + call.delay_ms, 'XX')
  end
  return {held = true}
end

return run_batch(one)
