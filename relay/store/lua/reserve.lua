--! uses lib/idempotency.lua
-- Hold an Idempotency-Key while an action is started under it, so a retry with the same key cannot start a
-- second copy. call: idempotency_key, job_id, digest, ttl. Answers {held = true} when it was free (and is now
-- this call's), else {holder = what it held: job_id, digest, pending}.
local call = cjson.decode(ARGV[1])

local holder = idempotency_holder(call.idempotency_key)
if holder then return cjson.encode({holder = holder}) end
redis.call('SET', call.idempotency_key, call.job_id .. ' ' .. call.digest .. ' pending', 'EX', call.ttl)
return cjson.encode({held = true})
