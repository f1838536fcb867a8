--! uses lib/lanes.lua lib/job_fields.lua
-- A monitor's hash holds its own fields and, as fields 'j:<job id>' (empty values), the ids of the jobs
-- sharing it: one key per monitor, not two (bytes per tracked job count). Field `lane` (absent: the
-- default lane) says which lane of the monitors schedule it is in.
--
-- Field `jobs` counts its jobs, so that a job joining or leaving costs the same whatever the number of jobs
-- sharing the monitor. It is stored once the monitor has had more than one job: a monitor of one job (most of
-- them) stores none, since counting its few fields costs no more than reading one; a monitor an earlier
-- version wrote has none either, and is counted from its fields once, at its first change.

local function monitor_lane(mk_id)
  return redis.call('HGET', key_monitor(mk_id), MONITOR.lane) or ''
end

-- the monitor's jobs counted from its fields; the count is stored when there are more than one
local function recount_jobs(mk)
  local n = 0
  for _, f in ipairs(redis.call('HKEYS', mk)) do
    if string.sub(f, 1, #MONITOR_JOB) == MONITOR_JOB then n = n + 1 end
  end
  if n > 1 then
    redis.call('HSET', mk, MONITOR.jobs, n)
  else
    redis.call('HDEL', mk, MONITOR.jobs)
  end
  return n
end

-- how many jobs the monitor has after one of its 'j:' fields was added (delta 1) or removed (-1); `counted`
-- is its `jobs` field as read before the change (nil or false: none stored, so it is counted)
local function jobs_after(mk, counted, delta)
  if counted then return redis.call('HINCRBY', mk, MONITOR.jobs, delta) end
  return recount_jobs(mk)
end

-- how many jobs the monitor (its key) has: its count, or counted
local function monitor_jobs(mk)
  local counted = redis.call('HGET', mk, MONITOR.jobs)
  if counted then return tonumber(counted) end
  return recount_jobs(mk)
end

-- nil, or 'monitor' when the monitor has `max_jobs` jobs already (0: no limit). HLEN counts its own fields too,
-- so below the limit it answers alone
local function monitor_full(mk_id, max_jobs)
  if mk_id == '' or max_jobs <= 0 then return nil end
  if redis.call('HLEN', key_monitor(mk_id)) < max_jobs then return nil end
  if monitor_jobs(key_monitor(mk_id)) >= max_jobs then return 'monitor' end
  return nil
end

-- the job's id leaves the monitor's fields (a job that has gone, or ended while its monitor was polled)
local function forget_job(mk, job_id)
  local counted = redis.call('HGET', mk, MONITOR.jobs)
  if redis.call('HDEL', mk, MONITOR_JOB .. job_id) == 1 then jobs_after(mk, counted, -1) end
end

-- the job leaves its monitor's list, keeping the monitor's poll count and last poll time (an ended job
-- still shows them after its monitor is gone); returns the monitor's key and how many jobs it has left
-- (nil when the job was not on it)
local function drop_from_monitor(jk, job_id)
  local mk_id = job_get(jk, JOB.monitor_key)
  if not mk_id then return nil end
  local mk = key_monitor(mk_id)
  local polled = redis.call('HMGET', mk, MONITOR.polls, MONITOR.last_polled, MONITOR.jobs)
  if polled[1] then redis.call('HSET', jk, JOB.polls, polled[1], JOB.last_polled, polled[2] or '') end
  if redis.call('HDEL', mk, MONITOR_JOB .. job_id) == 0 then return nil end
  return mk_id, jobs_after(mk, polled[3], -1)
end

-- A job joins its monitor, or makes it (`url` is stored when the monitor is new); answers {polls, last_polled,
-- due} for the job's view. A new monitor is due now. A job joining one already tracked is polled within its
-- first poll interval whatever the monitor is doing: the monitor comes due as soon as it may be polled again
-- (`first_ms` after its last poll, and not before the end of the Retry-After it answered last); one being polled
-- right now (leased) gets its claim token marked '+', so that the write of that poll brings it due so
-- (hand_back_monitor), since the poll read its jobs before this one joined.
local function join_monitor(mk_id, job_id, url, lane, now, first_ms)
  local mk = key_monitor(mk_id)
  if redis.call('HSETNX', mk, MONITOR.url, url) == 1 then
    if lane ~= '' then
      redis.call('HSET', mk, MONITOR_JOB .. job_id, '', MONITOR.lane, lane)
    else
      redis.call('HSET', mk, MONITOR_JOB .. job_id, '')
    end
    schedule_put(KEY_MONITORS, lane, mk_id, now, 'NX')
    return {polls = '', last_polled = '', due = tostring(now)}
  end
  local state = redis.call('HMGET', mk, MONITOR.lane, MONITOR.polls, MONITOR.last_polled, MONITOR.not_before, MONITOR.jobs)
  if redis.call('HSET', mk, MONITOR_JOB .. job_id, '') == 1 then jobs_after(mk, state[5], 1) end
  lane = state[1] or ''
  local tokens = key_sched_tokens(KEY_MONITORS)
  local held = redis.call('HGET', tokens, mk_id)
  if held then
    if string.sub(held, -1) ~= '+' then redis.call('HSET', tokens, mk_id, held .. '+') end
  else
    local due = math.max(now, tonumber(state[3] or '0') + first_ms, tonumber(state[4] or '0'))
    schedule_put(KEY_MONITORS, lane, mk_id, due, 'LT')
  end
  local due = redis.call('ZSCORE', lane_set(KEY_MONITORS, lane), mk_id) or ''
  return {polls = state[2] or '', last_polled = state[3] or '', due = due}
end

-- whether the claim `token` still holds the monitor; and whether a job joined it meanwhile (join_monitor)
local function monitor_claim(member, token)
  local held = redis.call('HGET', key_sched_tokens(KEY_MONITORS), member)
  if held == token then return true, false end
  return held == token .. '+', true
end

-- the job's monitor comes due no later than `at` (ms): a job waiting for authorization ends on time
local function wake_monitor(jk, at)
  local mk_id = job_get(jk, JOB.monitor_key)
  if mk_id then schedule_put(KEY_MONITORS, monitor_lane(mk_id), mk_id, at, 'XXLT') end
end

-- The monitor's last job has gone: stop polling it. Its count says so first, and its fields confirm it (with
-- no jobs left they are only the monitor's own few) and put a count that was wrong right. `recount`: count
-- whatever the stored count says (the poll read no jobs at all).
local function drop_monitor_if_empty(mk_id, recount)
  local mk = key_monitor(mk_id)
  local counted = not recount and redis.call('HGET', mk, MONITOR.jobs)
  if counted and tonumber(counted) > 0 then return false end
  if recount_jobs(mk) > 0 then return false end
  schedule_drop(KEY_MONITORS, monitor_lane(mk_id), mk_id)
  redis.call('HDEL', key_sched_tokens(KEY_MONITORS), mk_id)
  redis.call('DEL', mk)
  return true
end

-- The end of a poll's write: the lease is let go, and the monitor comes due after `delay_ms`, or ends when its
-- last job has gone (`may_be_empty`: a job of it ended or went; `read_none`: the poll read no jobs at all). When
-- a job joined while it was polled (`joined`), it comes due as soon as it may be polled again instead, if that
-- is sooner; that worker does not expect it, so the idle ones are woken.
local function hand_back_monitor(member, token, delay_ms, now, first_ms, joined, may_be_empty, read_none)
  redis.call('HDEL', key_sched_tokens(KEY_MONITORS), member)
  if may_be_empty and drop_monitor_if_empty(member, read_none) then return end
  local due = now + delay_ms
  if joined then
    local not_before = tonumber(redis.call('HGET', key_monitor(member), MONITOR.not_before) or '0')
    due = math.min(due, math.max(now + first_ms, not_before))
  end
  schedule_put(KEY_MONITORS, lane_of_token(token), member, due, 'XX')
  if joined then redis.call('PUBLISH', key_sched_wake(KEY_MONITORS), due) end
end
