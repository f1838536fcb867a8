--! uses lib/lanes.lua
-- A monitor's hash holds its own fields and, as fields 'j:<job id>' (empty values), the ids of the jobs
-- sharing it: one key per monitor, not two (bytes per tracked job count). Field `lane` (absent: the
-- default lane) says which lane of the monitors schedule it is in.

local function monitor_lane(mk_id)
  return redis.call('HGET', key_monitor(mk_id), 'lane') or ''
end

local function monitor_has_jobs(mk)
  for _, f in ipairs(redis.call('HKEYS', mk)) do
    if string.sub(f, 1, 2) == 'j:' then return true end
  end
  return false
end

-- the job leaves its monitor's list, keeping the monitor's poll count and last poll time (an ended job
-- still shows them after its monitor is gone); returns the monitor's key
local function drop_from_monitor(jk, job_id)
  local mk_id = redis.call('HGET', jk, 'monitor_key')
  if mk_id then
    local mk = key_monitor(mk_id)
    local polled = redis.call('HMGET', mk, 'polls', 'last_polled')
    if polled[1] then redis.call('HSET', jk, 'polls', polled[1], 'last_polled', polled[2] or '') end
    redis.call('HDEL', mk, 'j:' .. job_id)
  end
  return mk_id
end

-- the job's monitor comes due no later than `at` (ms): a job waiting for authorization ends on time
local function wake_monitor(jk, at)
  local mk_id = redis.call('HGET', jk, 'monitor_key')
  if mk_id then schedule_put(KEY_MONITORS, monitor_lane(mk_id), mk_id, at, 'XXLT') end
end

-- the monitor's last job has gone: stop polling it
local function drop_monitor_if_empty(mk_id)
  local mk = key_monitor(mk_id)
  if monitor_has_jobs(mk) then return false end
  schedule_drop(KEY_MONITORS, monitor_lane(mk_id), mk_id)
  redis.call('HDEL', key_sched_tokens(KEY_MONITORS), mk_id)
  redis.call('DEL', mk)
  return true
end
