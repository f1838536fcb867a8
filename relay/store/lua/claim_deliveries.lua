--! uses lib/clock.lua lib/claim.lua lib/outbox_state.lua
-- Claim jobs with undelivered events due, each with what delivering needs (lib/claim.lua, lib/outbox_state.lua).
-- call: limit, lease_ms, claim_id
local call = cjson.decode(ARGV[1])

return cjson.encode(claim_due(KEY_DELIVERIES, call.limit, call.lease_ms, call.claim_id, now_ms(), load_outbox_state))
