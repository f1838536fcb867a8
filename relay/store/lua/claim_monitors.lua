--! uses lib/clock.lua lib/claim.lua lib/monitor_state.lua
-- Claim due monitors, each with its state and its jobs' (lib/claim.lua, lib/monitor_state.lua). A monitor whose
-- hash has more than `inline` fields, or more than are left of the `budget` of jobs the claim reads, comes
-- {crowded = true} alone: its poll reads its fields, then its jobs a chunk at a time. Whatever the number of jobs,
-- a claim reads a bounded number of them. (A hash's length counts the monitor's own fields too: a bound.)
-- call: limit, lease_ms, claim_id, inline, budget
local call = cjson.decode(ARGV[1])
local inline, budget = call.inline, call.budget

local function load_state(member)
  local size = redis.call('HLEN', key_monitor(member))
  if size > inline or size > budget then return {crowded = true} end
  local state, jobs = load_monitor_state(member)
  budget = budget - jobs
  return state
end

return cjson.encode(claim_due(KEY_MONITORS, call.limit, call.lease_ms, call.claim_id, now_ms(), load_state))
