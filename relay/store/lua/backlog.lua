--! uses lib/lanes.lua
-- How many members a schedule holds, over all its lanes. Reads only. call: schedule (its key). Answers {members}.
local schedule = cjson.decode(ARGV[1]).schedule
local total = redis.call('ZCARD', schedule)
for _, lane in ipairs(redis.call('ZRANGE', key_sched_lanes(schedule), 0, -1)) do
  if lane ~= '' then total = total + redis.call('ZCARD', lane_set(schedule, lane)) end
end
return cjson.encode({members = total})
