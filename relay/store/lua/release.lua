-- Let go of a reservation (reserve.lua) whose action started nothing; someone else's is left alone.
local idempotency_key = KEYS[1]
local job_id = ARGV[1]

local existing = redis.call('GET', idempotency_key)
if existing and string.sub(existing, 1, #job_id + 1) == job_id .. ' ' then redis.call('DEL', idempotency_key) end
return 1
