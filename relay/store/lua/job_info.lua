--! uses lib/clock.lua lib/lanes.lua
-- What a job's view shows besides the job hash, in one step. Reads only.
-- Its monitor (ARGV[1], '' for none): poll count, last poll time, next due time in its lane.
-- Its deliveries (ARGV[2], the job id): its newest event (id, type, seq, state, attempts), how many events wait in
-- its outbox, when the next attempt is due in its lane (ms) and whether a worker holds it now, the newest attempt
-- record (JSON text), and the Redis clock.
local mk_id, job_id = ARGV[1], ARGV[2]
local out = {'', '', ''}
if mk_id ~= '' then
  local polled = redis.call('HMGET', key_monitor(mk_id), MONITOR.polls, MONITOR.last_polled, MONITOR.lane)
  local due = redis.call('ZSCORE', lane_set(KEY_MONITORS, polled[3] or ''), mk_id)
  out = {polled[1] or '', polled[2] or '', due or ''}
end
local newest = redis.call('LINDEX', key_job_events(job_id), -1)
if not newest then return out end
local ev = redis.call('HMGET', key_event(newest), EVENT.type, EVENT.sequence, EVENT.state, EVENT.attempts)
local waiting = redis.call('LLEN', key_job_outbox(job_id))
local due, held = '', 0
if waiting > 0 then
  local lane = lane_of(redis.call('HGET', key_job(job_id), JOB.owner))
  due = redis.call('ZSCORE', lane_set(KEY_DELIVERIES, lane), job_id) or ''
  held = redis.call('HEXISTS', key_sched_tokens(KEY_DELIVERIES), job_id)
end
local record = redis.call('LINDEX', key_job_attempts(job_id), -1) or ''
for _, value in ipairs({newest, ev[1] or '', ev[2] or '', ev[3] or '', ev[4] or '', waiting, due, held, record, now_ms()}) do
  out[#out + 1] = value
end
return out
