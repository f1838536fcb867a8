--! uses lib/clock.lua lib/job_op.lua
-- One job's change outside a poll (a resolution, an ask for authorization): lib/job_op.lua.
local op = cjson.decode(ARGV[1])
local event_ttl = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])

return apply_job_op(op, now_ms(), event_ttl, retention)
