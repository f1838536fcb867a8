--! uses lib/clock.lua lib/lanes.lua
-- Schedule operations for any schedule: 'add' a member due after delay_ms ('NX' only if new), 'reschedule' a
-- claimed member (its claim token must match) after delay_ms, or 'finish' it (drop it). 1: done, 0: stale claim.
local schedule = KEYS[1]
local action, member, lane_or_token, delay_ms, how = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local now = now_ms()

if action == 'add' then
  if how == 'NX' then
    schedule_put(schedule, lane_or_token, member, now + delay_ms, 'NX')
  else
    redis.call('ZADD', lane_set(schedule, lane_or_token), now + delay_ms, member)
    lane_refresh(schedule, lane_or_token)
  end
  return 1
end
local tokens = key_sched_tokens(schedule)
if redis.call('HGET', tokens, member) ~= lane_or_token then return 0 end
redis.call('HDEL', tokens, member)
local lane = lane_of_token(lane_or_token)
if action == 'finish' then
  schedule_drop(schedule, lane, member)
else
  schedule_put(schedule, lane, member, now + delay_ms, 'XX')
end
return 1
