--! uses lib/clock.lua lib/quota.lua
-- Take a registration's share of the owner's limits before an action is started for it (lib/quota.lua).
-- call: owner, max_active, max_rate. Answers {} when within them, else {limit = 'active' | 'rate'}.
local call = cjson.decode(ARGV[1])

return cjson.encode({limit = over_limit(call.owner, call.max_active, call.max_rate, now_ms())})
