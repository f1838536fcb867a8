--! uses lib/hash.lua lib/job_fields.lua
-- What a delivery needs, read in the claim's atomic step: {job = {callback, secret, owner} (as stored, the callback
-- under either name; {} for a job that has gone), events = {{id, fields = {type, seq, body, attempts, created, schedule_from}}, ...}} in outbox
-- order (an expired event left out).
local JOB_DELIVERY = with_other_names({JOB.callback_url, JOB.secret, JOB.owner})
local EVENT_DELIVERY = {EVENT.type, EVENT.sequence, EVENT.body, EVENT.attempts, EVENT.created, EVENT.schedule_from}

local function load_outbox_state(member)
  local events = {}
  for _, id in ipairs(redis.call('LRANGE', key_job_outbox(member), 0, -1)) do
    local fields = hmget_record(key_event(id), EVENT_DELIVERY)
    if fields[EVENT.type] then events[#events + 1] = {id = id, fields = fields} end
  end
  return {job = hmget_record(key_job(member), JOB_DELIVERY), events = events}
end
