-- Move what versions before per-owner indexes left in the shared ones into each owner's: the jobs index's entries,
-- oldest first, under their own entry ids (a cursor given out before still leads on), and the dead letters since
-- the last move. Up to `limit` of each per call; an API process calls it until nothing is left, before it first
-- lists. Once done it changes nothing. call: limit. Answers {jobs (index entries moved), dead (dead letters
-- moved), more (whether there is more)}.
local limit = cjson.decode(ARGV[1]).limit

local function job_of(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'j' then return fields[i + 1] end
  end
  return nil
end

local function move_index()
  local entries = redis.call('XRANGE', KEY_JOBS_INDEX, '-', '+', 'COUNT', limit)
  local moved = 0
  for _, entry in ipairs(entries) do
    local id, job = entry[1], job_of(entry[2])
    local owner = job and redis.call('HGET', key_job(job), JOB.owner)
    if owner then  -- else the job has expired: its entry goes
      local owned = key_owner_jobs(owner)
      -- its own id, unless the owner's index has newer entries already (an older API ran beside a newer one)
      local added = redis.pcall('XADD', owned, id, 'j', job)
      if type(added) == 'table' and added.err then redis.call('XADD', owned, '*', 'j', job) end
      moved = moved + 1
    end
  end
  if #entries < limit then
    redis.call('DEL', KEY_JOBS_INDEX)
  else  -- the moved entries go at once (an XDEL each cost 25 µs): all before the last, then the last
    local last = entries[#entries][1]
    redis.call('XTRIM', KEY_JOBS_INDEX, 'MINID', last)
    redis.call('XDEL', KEY_JOBS_INDEX, last)
  end
  return moved, #entries == limit
end

-- dead letters are scored by when they died: those after the mark, then every one of the last score seen, so
-- that the next call starts after it (many die in the same millisecond: one ack batch has one clock)
local function move_dead_letters()
  local mark = redis.call('HGET', KEY_MIGRATIONS, MIGRATIONS.dead)
  local dead = redis.call('ZRANGEBYSCORE', KEY_DEAD_LETTERS, mark and ('(' .. mark) or '-inf', '+inf',
                          'WITHSCORES', 'LIMIT', 0, limit)
  if #dead == 0 then return 0, false end
  local last = dead[#dead]
  local tied = redis.call('ZRANGEBYSCORE', KEY_DEAD_LETTERS, last, last, 'WITHSCORES')
  local moved = 0
  for _, found in ipairs({dead, tied}) do
    for i = 1, #found, 2 do
      local job = redis.call('HGET', key_event(found[i]), EVENT.job)
      local owner = job and redis.call('HGET', key_job(job), JOB.owner)
      if owner then moved = moved + redis.call('ZADD', key_owner_dead_letters(owner), found[i + 1], found[i]) end
    end
  end
  redis.call('HSET', KEY_MIGRATIONS, MIGRATIONS.dead, last)
  return moved, #dead == 2 * limit
end

local jobs, more_jobs = move_index()
local dead, more_dead = move_dead_letters()
return cjson.encode({jobs = jobs, dead = dead, more = more_jobs or more_dead})
