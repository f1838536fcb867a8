--! uses lib/monitors.lua lib/hash.lua
-- What a poll needs, read in the claim's atomic step: {monitor = its own fields, jobs = {job id = job fields, ...}},
-- and how many jobs; ids of jobs that no longer exist are dropped from the monitor.
local function load_monitor_state(member)
  local mk = key_monitor(member)
  local flat = redis.call('HGETALL', mk)
  local fields, jobs, n = {}, {}, 0
  for j = 1, #flat, 2 do
    local f = flat[j]
    if string.sub(f, 1, #MONITOR_JOB) == MONITOR_JOB then
      local id = string.sub(f, #MONITOR_JOB + 1)
      local job = redis.call('HGETALL', key_job(id))
      if #job == 0 then
        forget_job(mk, id)
      else
        jobs[id] = hash_record(job)
        n = n + 1
      end
    else
      fields[f] = flat[j + 1]
    end
  end
  return {monitor = fields, jobs = jobs}, n
end

-- The next page of a monitor's job fields from `cursor`: {next cursor ('0': none left), field names}. A hashtable
-- is paged by HSCAN (about `count` a page). A hash Redis keeps as a listpack (up to hash-max-listpack-entries
-- fields) comes whole from HSCAN, whatever the count: it is paged by job id instead, its cursor '>' and the last
-- id taken. A field may come twice (when a hashtable grows or shrinks meanwhile, or a listpack becomes one: the
-- scan then starts again), never not at all if it was there throughout.
local function job_fields_page(mk, cursor, count)
  local after = string.match(cursor, '^>(.+)$')
  local found = redis.call('HSCAN', mk, after and '0' or cursor, 'MATCH', MONITOR_JOB .. '*', 'COUNT', count)
  local names = {}
  for j = 1, #found[2], 2 do names[#names + 1] = found[2][j] end
  if found[1] ~= '0' then return found[1], names end
  if not after and #names <= count then return '0', names end
  table.sort(names)
  local page, i = {}, 1
  while after and i <= #names and names[i] <= after do i = i + 1 end
  while i <= #names and #page < count do
    page[#page + 1] = names[i]
    i = i + 1
  end
  if i <= #names then return '>' .. page[#page], page end
  return '0', page
end

-- The jobs of a monitor, a chunk at a time: from `cursor` ('0' to start) about `count` of them, read whole: the
-- next cursor ('0': this was the last chunk) and {job id = job fields, ...}; jobs that no longer exist are dropped
-- from the monitor. A job that joins meanwhile may not come (join_monitor brings the monitor due again).
local function load_jobs_chunk(member, cursor, count)
  local mk = key_monitor(member)
  local next_cursor, names = job_fields_page(mk, cursor, count)
  local jobs = {}
  for _, name in ipairs(names) do
    local id = string.sub(name, #MONITOR_JOB + 1)
    local job = redis.call('HGETALL', key_job(id))
    if #job == 0 then
      forget_job(mk, id)
    else
      jobs[id] = hash_record(job)
    end
  end
  return next_cursor, jobs
end
