--! uses lib/clock.lua lib/claim.lua
-- Claim due members of any schedule, without state (lib/claim.lua).
local schedule = KEYS[1]
local limit, lease_ms, claim_id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]

return claim_due(schedule, limit, lease_ms, claim_id, now_ms(), nil)
