--! uses lib/clock.lua lib/lanes.lua lib/hash.lua lib/monitors.lua lib/job_op.lua lib/batch.lua
-- Write a poll's whole outcome, if the claim is still the caller's: the monitor's fields, each job's change
-- and events, and when the monitor comes due again (or its end, when its last job has gone). Batched.
-- (A monitor with more jobs than one script should touch is written a chunk at a time: poll_chunk.lua.)
-- BATCH: event_ttl, retention, first_ms (RELAY_POLL_INITIAL_INTERVAL: how soon a job that joined meanwhile is
-- polled). call: relay/store/calls.py ApplyPollCall. Answers {stale = true} for a claim taken over, else
-- {applied = what each op recorded}.
local event_ttl, retention, first_ms = BATCH.event_ttl, BATCH.retention, BATCH.first_ms
local now = now_ms()

local function one(call)
  local member = call.member
  local held, joined = monitor_claim(member, call.token)
  if not held then return {stale = true} end
  local mk = key_monitor(member)
  hset_fields(mk, call.monitor_fields)
  -- the monitor can have lost its last job only at its claim (call.jobs: how many the claim read) or here:
  -- a job ended elsewhere takes its emptied monitor along itself (lib/job_end.lua), and its claim with it
  local read_none = (call.jobs or 0) == 0
  local results, emptied = apply_poll_ops(mk, call.ops, now, event_ttl, retention)
  local may_be_empty = read_none or emptied
  hand_back_monitor(member, call.token, call.delay_ms, now, first_ms, joined, may_be_empty, read_none)
  return {applied = results}
end

return run_batch(one)
