--! uses lib/clock.lua lib/lanes.lua lib/hash.lua lib/monitors.lua lib/job_op.lua lib/batch.lua
-- Write a poll's whole outcome, if the claim is still the caller's: the monitor's fields, each job's change
-- and events, and when the monitor comes due again (or its end, when its last job has gone). Batched.
local event_ttl = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
local now = now_ms()
local tokens = key_sched_tokens(KEY_MONITORS)

-- call: member (the monitor key), token, delay_ms, monitor_fields, ops, jobs
local function one(call)
  local member = call.member
  if redis.call('HGET', tokens, member) ~= call.token then return {'stale-claim'} end
  local mk = key_monitor(member)
  hset_fields(mk, call.monitor_fields)
  local results = {}
  -- the monitor can have lost its last job only at its claim (call.jobs: how many the claim read) or here:
  -- a job ended elsewhere takes its emptied monitor along itself (lib/job_end.lua), and its claim with it
  local may_be_empty = (call.jobs or 0) == 0
  for _, op in ipairs(call.ops) do
    local r = apply_job_op(op, now, event_ttl, retention)
    if r == 'missing' or r == 'terminal' then
      redis.call('HDEL', mk, 'j:' .. op.job)
      may_be_empty = true
    elseif op.terminal then
      may_be_empty = true
    end
    results[#results + 1] = r
  end
  redis.call('HDEL', tokens, member)
  if not (may_be_empty and drop_monitor_if_empty(member)) then
    schedule_put(KEY_MONITORS, lane_of_token(call.token), member, now + call.delay_ms, 'XX')
  end
  return results
end

return run_batch(3, one)
