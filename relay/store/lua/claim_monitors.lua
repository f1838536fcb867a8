--! uses lib/clock.lua lib/claim.lua lib/monitor_state.lua
-- Claim due monitors, each with its state and its jobs' (lib/claim.lua, lib/monitor_state.lua). A monitor whose
-- hash has more than `inline` fields, or more than are left of the `budget` of jobs the claim reads, comes with
-- the mark '*' alone: its poll reads its fields, then its jobs a chunk at a time. Whatever the number of jobs, a
-- claim reads a bounded number of them. (A hash's length counts the monitor's own fields too: a bound.)
local limit, lease_ms, claim_id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local inline, budget = tonumber(ARGV[4]), tonumber(ARGV[5])

local function load_state(member)
  local size = redis.call('HLEN', key_monitor(member))
  if size > inline or size > budget then return {{}, '*'} end
  local state = load_monitor_state(member)
  budget = budget - (#state - 1) / 2  -- {fields, id, job, ...}: the jobs read
  return state
end

return claim_due(KEY_MONITORS, limit, lease_ms, claim_id, now_ms(), load_state)
