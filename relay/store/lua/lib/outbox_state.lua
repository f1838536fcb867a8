-- What a delivery needs, read in the claim's atomic step: {{callback_url, secret, owner}, event id, {type, seq,
-- body, attempts, created, schedule_from}, ...} in outbox order (nil for what is missing).
local function load_outbox_state(member)
  local out = {redis.call('HMGET', key_job(member), JOB.callback_url, JOB.secret, JOB.owner)}
  for _, id in ipairs(redis.call('LRANGE', key_job_outbox(member), 0, -1)) do
    out[#out + 1] = id
    out[#out + 1] = redis.call('HMGET', key_event(id), EVENT.type, EVENT.sequence, EVENT.body, EVENT.attempts, EVENT.created, EVENT.schedule_from)
  end
  return out
end
