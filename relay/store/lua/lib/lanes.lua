-- Fair share between tenants. A schedule (monitors, deliveries) keeps one due-time sorted set per lane: an
-- API tenant, or the default lane '' (the schedule's own key, which is where everything lived before lanes),
-- and a sorted set of its lanes scored by each lane's earliest member. A claim takes due members lane by
-- lane, an equal share each, so a tenant with a backlog of thousands cannot make another wait behind it.

-- the lane of a job's owner (relay/api/middlewares.py owner_of): '' without API tokens
local function lane_of(owner)
  if not owner or owner == '' or owner == 'public' then return '' end
  return string.sub(owner, 1, 8)
end

local function lane_set(schedule, lane)
  if lane == '' then return schedule end
  return key_sched_lane(schedule, lane)
end

-- the lane's place among the lanes follows its earliest member; an empty lane leaves
local function lane_refresh(schedule, lane)
  local first = redis.call('ZRANGE', lane_set(schedule, lane), 0, 0, 'WITHSCORES')
  if #first == 0 then
    redis.call('ZREM', key_sched_lanes(schedule), lane)
  else
    redis.call('ZADD', key_sched_lanes(schedule), first[2], lane)
  end
end

-- the schedule's earliest due time over all lanes (nil when empty)
local function schedule_earliest(schedule)
  local first = redis.call('ZRANGE', key_sched_lanes(schedule), 0, 0, 'WITHSCORES')
  if #first == 0 then return nil end
  return tonumber(first[2])
end

-- A lane's score is never later than its earliest member: a move to an earlier time lowers it at once. It
-- may be earlier (a member moved later, or gone): keeping it exact would cost a read on every move, and a
-- claim that finds a lane due with nothing due in it puts its score right (lib/claim.lua).

-- schedule `member` in `lane` at `due` (ms). how: 'NX' only if new, 'LT' new or earlier, 'XXLT' only if
-- scheduled and earlier, 'XX' only if scheduled (a claimed member handed back: its worker wakes itself).
-- New work that comes due before anything else did wakes the idle workers sleeping until then.
local function schedule_put(schedule, lane, member, due, how)
  local set = lane_set(schedule, lane)
  local changed
  if how == 'NX' then
    changed = redis.call('ZADD', set, 'NX', due, member)
  elseif how == 'LT' then
    changed = redis.call('ZADD', set, 'LT', 'CH', due, member)
  elseif how == 'XXLT' then
    changed = redis.call('ZADD', set, 'XX', 'LT', 'CH', due, member)
  else
    changed = redis.call('ZADD', set, 'XX', 'CH', due, member)
  end
  if changed == 0 then return end
  if how ~= 'XX' then
    local earliest = schedule_earliest(schedule)
    if earliest == nil or due < earliest then redis.call('PUBLISH', key_sched_wake(schedule), due) end
  end
  redis.call('ZADD', key_sched_lanes(schedule), 'LT', due, lane)
end

local function schedule_drop(schedule, lane, member)
  redis.call('ZREM', lane_set(schedule, lane), member)  -- its lane's score is put right by the next claim
end

-- a claim token carries its member's lane: "<lane>|<claim>:<n>"
local function lane_of_token(token)
  return string.match(token, '^([^|]*)|') or ''
end
