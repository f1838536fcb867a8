--! uses lib/clock.lua lib/quota.lua lib/idempotency.lua lib/batch.lua
-- A registration's owner-level step on a Redis Cluster (docs/cluster-design.md, "What is global today"), run in
-- the owner's bucket before the job is registered in its own (register.lua with `admitted`): the Idempotency-Key,
-- held for this registration (pending until relay/store/jobs.py confirms it once the job exists), the owner's
-- limits, and the owner's index entry (an entry whose registration then fails names no job: listings skip it, as an
-- expired job's). On one Redis register.lua does all of it in one step. Batched (the calls of one bucket).
-- BATCH: pending_ttl, index_horizon_ms. call: owner, job_id, reserved_as (the id a reservation, reserve.lua, holds
-- the key under), idempotency_key ('': none), digest, max_active, active (the owner's active jobs summed over every
-- bucket: approximate), max_rate. Answers {outcome = 'admitted', created} (the index entry's time: the job's created
-- time), or as register.lua {outcome = 'existing', job_id,
-- digest, pending} or {outcome = 'limited', limit}.
local now = now_ms()

local function one(call)
  local key, id = call.idempotency_key, call.job_id
  -- sent again (a cluster pipeline resends a run whose answer was lost): admitted once
  local admitted_at = redis.call('GET', key_admitted(id))
  if admitted_at then return {outcome = 'admitted', created = tonumber(admitted_at) or now} end
  if key ~= '' then
    local holder = idempotency_holder(key)
    if holder and holder.job_id ~= call.reserved_as and holder.job_id ~= id then
      holder.outcome = 'existing'
      return holder
    end
  end
  local limited = over_limit(call.owner, call.max_active, call.max_rate, now, call.active)
  if limited then return {outcome = 'limited', limit = limited} end
  if key ~= '' then redis.call('SET', key, id .. ' ' .. call.digest .. ' pending', 'EX', BATCH.pending_ttl) end
  local entry = redis.call('XADD', key_owner_jobs(call.owner), 'MINID', '~', tostring(now - BATCH.index_horizon_ms), '*', 'j', id)
  local created = tonumber(string.match(entry, '^(%d+)')) or now  -- the entry's time: the listing's order
  redis.call('SET', key_admitted(id), tostring(created), 'EX', BATCH.pending_ttl)
  return {outcome = 'admitted', created = created}
end

return run_batch(one)
