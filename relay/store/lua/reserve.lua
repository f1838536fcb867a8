-- Hold an Idempotency-Key while an action is started under it, so a retry with the same key cannot start a
-- second copy; answers what the key already held (false when it was free).
local idempotency_key = KEYS[1]
local job_id, digest, ttl = ARGV[1], ARGV[2], ARGV[3]

local existing = redis.call('GET', idempotency_key)
if existing then return existing end
redis.call('SET', idempotency_key, job_id .. ' ' .. digest .. ' pending', 'EX', ttl)
return false
