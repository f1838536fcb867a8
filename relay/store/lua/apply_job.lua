--! uses lib/clock.lua lib/job_op.lua
-- One job's change outside a poll (a resolution, an ask for authorization): lib/job_op.lua.
-- call: op (relay/core/ops.py JobOp.as_json), event_ttl, retention. Answers {result = 'ok' | why nothing changed}.
local call = cjson.decode(ARGV[1])

return cjson.encode({result = apply_job_op(call.op, now_ms(), call.event_ttl, call.retention)})
