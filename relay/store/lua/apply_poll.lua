--! uses lib/clock.lua lib/lanes.lua lib/hash.lua lib/monitors.lua lib/job_op.lua lib/batch.lua
-- Write a poll's whole outcome, if the claim is still the caller's: the monitor's fields, each job's change
-- and events, and when the monitor comes due again (or its end, when its last job has gone). Batched.
-- (A monitor with more jobs than one script should touch is written a chunk at a time: poll_chunk.lua.)
local event_ttl = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
local first_ms = tonumber(ARGV[3])  -- RELAY_POLL_INITIAL_INTERVAL: how soon a job that joined meanwhile is polled
local now = now_ms()

-- call: member (the monitor key), token, delay_ms, monitor_fields, ops, jobs
local function one(call)
  local member = call.member
  local held, joined = monitor_claim(member, call.token)
  if not held then return {'stale-claim'} end
  local mk = key_monitor(member)
  hset_fields(mk, call.monitor_fields)
  local results = {}
  -- the monitor can have lost its last job only at its claim (call.jobs: how many the claim read) or here:
  -- a job ended elsewhere takes its emptied monitor along itself (lib/job_end.lua), and its claim with it
  local read_none = (call.jobs or 0) == 0
  local may_be_empty = read_none
  for _, op in ipairs(call.ops) do
    local r = apply_job_op(op, now, event_ttl, retention)
    if r == 'missing' or r == 'terminal' then
      forget_job(mk, op.job)
      may_be_empty = true
    elseif op.terminal then
      may_be_empty = true
    end
    results[#results + 1] = r
  end
  hand_back_monitor(member, call.token, call.delay_ms, now, first_ms, joined, may_be_empty, read_none)
  return results
end

return run_batch(4, one)
