--! uses lib/lanes.lua lib/hash.lua lib/job_fields.lua lib/monitors.lua lib/job_end.lua
-- One job's state change plus the events it records, guarded so that a stale writer changes nothing.
-- `op` (relay/core/ops.py JobOp.as_json): job, prev_seq, phase?, expect?, set?, del?, events?, terminal?, wake?
-- Answers 'ok', or why nothing changed: 'missing', 'terminal', 'stale'.

-- a job whose terminal event waits goes ahead of jobs with only progress to tell (see keys.DELIVERIES)
local TERMINAL_FIRST_MS = 86400000

local function schedule_delivery(jk, job_id, now, terminal)
  local lane = lane_of(redis.call('HGET', jk, JOB.owner))
  if terminal and redis.call('HEXISTS', key_sched_tokens(KEY_DELIVERIES), job_id) == 0 then
    schedule_put(KEY_DELIVERIES, lane, job_id, now - TERMINAL_FIRST_MS, 'LT')
  else  -- a job being delivered is not touched: its worker reschedules it (one delivery at a time)
    schedule_put(KEY_DELIVERIES, lane, job_id, now, 'NX')
  end
end

local function apply_job_op(op, now, event_ttl, retention)
  local jk = key_job(op.job)
  if redis.call('EXISTS', jk) == 0 then return 'missing' end
  local state = redis.call('HMGET', jk, JOB.terminal, JOB.sequence, JOB.phase)
  if state[1] == '1' then return 'terminal' end
  local seq = tonumber(state[2] or '0')
  if op.prev_seq ~= nil and seq ~= tonumber(op.prev_seq) then return 'stale' end
  if op.phase ~= nil and (state[3] or PHASE.TRACKING) ~= op.phase then return 'stale' end
  if op.expect then
    for k, v in pairs(op.expect) do
      if (job_get(jk, k) or '') ~= v then return 'stale' end
    end
  end
  if op.set then job_set(jk, op.set) end
  if op.del then job_del(jk, op.del) end
  if op.events and #op.events > 0 then
    for _, ev in ipairs(op.events) do
      seq = seq + 1
      local ek = key_event(ev.id)
      redis.call('HSET', ek, EVENT.job, op.job, EVENT.type, ev.type, EVENT.sequence, seq, EVENT.body, ev.body,
                 EVENT.attempts, 0, EVENT.state, EVENT_STATE.PENDING, EVENT.created, now)
      redis.call('EXPIRE', ek, event_ttl)
      redis.call('RPUSH', key_job_events(op.job), ev.id)
      redis.call('RPUSH', key_job_outbox(op.job), ev.id)
    end
    redis.call('HSET', jk, JOB.sequence, seq)
    schedule_delivery(jk, op.job, now, op.terminal)
  end
  if op.terminal then
    end_job(op.job, retention)
  elseif op.wake then
    wake_monitor(jk, op.wake)
  end
  return 'ok'
end

-- A poll's job changes (apply_poll.lua, poll_chunk.lua): each op applied, and a job gone or already ended
-- forgotten by its monitor `mk`. Answers what each op recorded, and whether the monitor may have no job left.
local function apply_poll_ops(mk, ops, now, event_ttl, retention)
  local results = {}
  local may_be_empty = false
  for _, op in ipairs(ops) do
    local r = apply_job_op(op, now, event_ttl, retention)
    if r == 'missing' or r == 'terminal' then
      forget_job(mk, op.job)
      may_be_empty = true
    elseif op.terminal then
      may_be_empty = true
    end
    results[#results + 1] = r
  end
  return results, may_be_empty
end
