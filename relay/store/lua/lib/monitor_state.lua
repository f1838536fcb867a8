-- What a poll needs, read in the claim's atomic step: {monitor fields (flat), job id, job fields (flat), ...};
-- ids of jobs that no longer exist are dropped from the monitor.
local function load_monitor_state(member)
  local mk = key_monitor(member)
  local flat = redis.call('HGETALL', mk)
  local fields, out = {}, {false}
  for j = 1, #flat, 2 do
    local f = flat[j]
    if string.sub(f, 1, 2) == 'j:' then
      local id = string.sub(f, 3)
      local job = redis.call('HGETALL', key_job(id))
      if #job == 0 then
        redis.call('HDEL', mk, f)
      else
        out[#out + 1] = id
        out[#out + 1] = job
      end
    else
      fields[#fields + 1] = f
      fields[#fields + 1] = flat[j + 1]
    end
  end
  out[1] = fields
  return out
end
