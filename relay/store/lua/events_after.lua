--! uses lib/hash.lua
-- A job's events after `position` of its event list, read in one step with whether the job has ended (or gone):
-- what a Redis Cluster cannot do with MULTI (relay/store/listings.py events_after). Reads only.
-- call: job_id, position, fields (the event fields shown). Answers {ended, read (list entries read), events =
-- {{id, values}, ...} (values in the order of `fields`; an expired event's are empty)}.
local call = cjson.decode(ARGV[1])
local jk = key_job(call.job_id)
local ended = redis.call('EXISTS', jk) == 0 or redis.call('HGET', jk, JOB.terminal) == '1'
local ids = redis.call('LRANGE', key_job_events(call.job_id), call.position, -1)
local events = {}
for i, id in ipairs(ids) do
  local values = redis.call('HMGET', key_event(id), unpack(call.fields))
  for j = 1, #call.fields do values[j] = values[j] or '' end
  events[i] = {id = id, values = values}
end
return cjson.encode({ended = ended, read = #ids, events = events})
