--! uses lib/clock.lua lib/lanes.lua
-- What a job's view shows besides the job hash, in one step. Reads only. call: monitor_key ('' for none), job_id.
-- Answers {monitor = {polls, last_polled, due} (its poll count, last poll time, next due time in its lane; '' for
-- none), delivery = its deliveries, absent before its first event: {event_id, type, sequence, state, attempts} of
-- its newest event, how many events wait in its outbox (`waiting`), when the next attempt is due in its lane (ms,
-- `due`) and whether a worker holds it now (`held`), the newest attempt record (JSON text, `record`), and the Redis
-- clock (`now`)}.
local call = cjson.decode(ARGV[1])
local mk_id, job_id = call.monitor_key, call.job_id
local out = {monitor = {polls = '', last_polled = '', due = ''}}
if mk_id ~= '' then
  local polled = redis.call('HMGET', key_monitor(mk_id), MONITOR.polls, MONITOR.last_polled, MONITOR.lane)
  local due = redis.call('ZSCORE', lane_set(KEY_MONITORS, polled[3] or ''), mk_id)
  out.monitor = {polls = polled[1] or '', last_polled = polled[2] or '', due = due or ''}
end
local newest = redis.call('LINDEX', key_job_events(job_id), -1)
if not newest then return cjson.encode(out) end
local ev = redis.call('HMGET', key_event(newest), EVENT.type, EVENT.sequence, EVENT.state, EVENT.attempts)
local waiting = redis.call('LLEN', key_job_outbox(job_id))
local due, held = '', false
if waiting > 0 then
  local lane = lane_of(redis.call('HGET', key_job(job_id), JOB.owner))
  due = redis.call('ZSCORE', lane_set(KEY_DELIVERIES, lane), job_id) or ''
  held = redis.call('HEXISTS', key_sched_tokens(KEY_DELIVERIES), job_id) == 1
end
out.delivery = {
  event_id = newest, type = ev[1] or '', sequence = ev[2] or '', state = ev[3] or '', attempts = ev[4] or '',
  waiting = waiting, due = due, held = held, record = redis.call('LINDEX', key_job_attempts(job_id), -1) or '',
  now = now_ms(),
}
return cjson.encode(out)
