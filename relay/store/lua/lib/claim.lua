--! uses lib/lanes.lua
-- Take up to `limit` due members of `schedule`, lane by lane, and lease each for `lease_ms`: its score moves
-- to now + lease (a crashed worker's claims come due again by themselves) and it gets a claim token that
-- every write back must present (a stale worker cannot overwrite newer state). `load_state(member)`, when
-- given, reads each member's state in the same atomic step. Returns {now, next_due, claims = {{member, token,
-- state?}, ...}}: `next_due` is when the earliest member left comes due ('' when none), for an idle worker to sleep
-- until.
local function claim_due(schedule, limit, lease_ms, claim_id, now, load_state)
  local lanes_key = key_sched_lanes(schedule)
  if not redis.call('ZSCORE', lanes_key, '') then  -- the default lane, as data written before lanes left it
    local first = redis.call('ZRANGE', schedule, 0, 0, 'WITHSCORES')
    if #first > 0 then redis.call('ZADD', lanes_key, first[2], '') end
  end
  local lanes = redis.call('ZRANGEBYSCORE', lanes_key, '-inf', now, 'LIMIT', 0, limit)
  local claims = {}
  local out = {now = now, next_due = '', claims = claims}
  if #lanes == 0 then
    out.next_due = tostring(schedule_earliest(schedule) or '')
    return out
  end
  local tokens = key_sched_tokens(schedule)
  local share = math.max(1, math.ceil(limit / #lanes))
  local taken = 0
  for pass = 1, 2 do  -- an equal share of each due lane first, then what is left of the limit
    for _, lane in ipairs(lanes) do
      local want = limit - taken
      if pass == 1 then want = math.min(share, want) end
      if want <= 0 then break end
      local set = lane_set(schedule, lane)
      local due = redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, want)
      for i, member in ipairs(due) do
        local token = lane .. '|' .. claim_id .. ':' .. (taken + i)
        redis.call('ZADD', set, now + lease_ms, member)
        redis.call('HSET', tokens, member, token)
        local claim = {member = member, token = token}
        if load_state then claim.state = load_state(member) end
        claims[#claims + 1] = claim
      end
      taken = taken + #due
      lane_refresh(schedule, lane)  -- also puts right a lane whose entry no longer matches its set
    end
    if taken >= limit then break end
  end
  out.next_due = tostring(schedule_earliest(schedule) or '')
  return out
end
