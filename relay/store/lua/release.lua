-- Let go of a reservation (reserve.lua) whose action started nothing; someone else's is left alone.
-- call: idempotency_key, job_id. Answers {released}.
local call = cjson.decode(ARGV[1])
local job_id = call.job_id

local existing = redis.call('GET', call.idempotency_key)
if existing and string.sub(existing, 1, #job_id + 1) == job_id .. ' ' then
  redis.call('DEL', call.idempotency_key)
  return cjson.encode({released = true})
end
return cjson.encode({released = false})
