--! uses lib/clock.lua lib/claim.lua lib/outbox_state.lua
-- Claim jobs with undelivered events due, each with what delivering needs (lib/claim.lua, lib/outbox_state.lua).
local limit, lease_ms, claim_id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]

return claim_due(KEY_DELIVERIES, limit, lease_ms, claim_id, now_ms(), load_outbox_state)
