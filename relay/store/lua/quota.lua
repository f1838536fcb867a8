--! uses lib/clock.lua lib/quota.lua
-- Take a registration's share of the owner's limits before an action is started for it (lib/quota.lua):
-- false when within them, else 'active' or 'rate'.
local owner = ARGV[1]
local max_active, max_rate = tonumber(ARGV[2]), tonumber(ARGV[3])

return over_limit(owner, max_active, max_rate, now_ms()) or false
