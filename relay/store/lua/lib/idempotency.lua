-- An Idempotency-Key holds "<job id> <digest>", plus " pending" while an action is being started under it
-- (reserve.lua). Its holder as a record {job_id, digest, pending}; nil when the key is free.
local function idempotency_holder(key)
  local held = redis.call('GET', key)
  if not held then return nil end
  local job_id, digest, pending = string.match(held, '^(%S+) (%S*) ?(%S*)$')
  return {job_id = job_id, digest = digest, pending = pending == 'pending'}
end
