-- Fair share: a tenant over its limits (max_active jobs at once, max_rate registrations a second; 0: no limit)
-- answers why ('active' or 'rate'), and nothing is created; nil when within them. `active`: the owner's active jobs
-- as counted elsewhere (a cluster's sum over its buckets); nil: this Redis's count.
local function over_limit(owner, max_active, max_rate, now, active)
  if max_active > 0 and (active or tonumber(redis.call('HGET', KEY_ACTIVE, owner) or '0')) >= max_active then
    return 'active'
  end
  if max_rate > 0 then
    local counter = key_registrations(owner, tostring(math.floor(now / 1000)))
    local n = redis.call('INCR', counter)
    if n == 1 then redis.call('EXPIRE', counter, 2) end
    if n > max_rate then return 'rate' end
  end
  return nil
end

