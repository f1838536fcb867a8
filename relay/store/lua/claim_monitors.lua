--! uses lib/clock.lua lib/claim.lua lib/monitor_state.lua
-- Claim due monitors, each with its state and its jobs' (lib/claim.lua, lib/monitor_state.lua).
local limit, lease_ms, claim_id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]

return claim_due(KEY_MONITORS, limit, lease_ms, claim_id, now_ms(), load_monitor_state)
