--! uses lib/clock.lua lib/lanes.lua lib/hash.lua lib/monitors.lua lib/job_op.lua lib/monitor_state.lua
-- One step of the poll of a monitor whose jobs are read and written a chunk at a time (workers/poll.py, poll_in_chunks), if
-- the claim is still the caller's: write the monitor's fields (the poll's answer, in its first step), apply the
-- changes planned from the jobs the previous step read, keep the lease, and read the next chunk of jobs from
-- `cursor`; or, in the last step (`last`), let the monitor go as apply_poll.lua does. Each step is bounded by
-- the chunk's size; each is guarded (the claim token, each job's sequence), so a step repeated changes nothing.
-- call: relay/store/calls.py ChunkCall. Answers {stale = true} for a claim taken over, or {applied = what each op
-- recorded, cursor = the next chunk's ('0': none left), jobs = {job id = job fields, ...}}.
local call = cjson.decode(ARGV[1])
local event_ttl, retention, first_ms = call.event_ttl, call.retention, call.first_ms
local now = now_ms()

local member = call.member
local held, joined = monitor_claim(member, call.token)
if not held then return cjson.encode({stale = true}) end
local mk = key_monitor(member)
hset_fields(mk, call.monitor_fields)
hdel_fields(mk, call.clear)
local results, may_be_empty = apply_poll_ops(mk, call.ops, now, event_ttl, retention)
if call.last then
  local read_none = call.jobs == 0
  hand_back_monitor(member, call.token, call.delay_ms, now, first_ms, joined, may_be_empty or read_none, read_none)
  return cjson.encode({applied = results, cursor = '0', jobs = {}})
end
redis.call('ZADD', lane_set(KEY_MONITORS, lane_of_token(call.token)), 'XX', now + call.lease_ms, member)
local cursor, jobs = load_jobs_chunk(member, call.cursor, call.count)
return cjson.encode({applied = results, cursor = cursor, jobs = jobs})
