--! uses lib/clock.lua lib/claim.lua
-- Claim due members of any schedule, without state (lib/claim.lua).
-- call: schedule (its key), limit, lease_ms, claim_id
local call = cjson.decode(ARGV[1])

return cjson.encode(claim_due(call.schedule, call.limit, call.lease_ms, call.claim_id, now_ms(), nil))
