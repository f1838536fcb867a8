--! uses lib/clock.lua lib/lanes.lua
-- Schedule operations for any schedule (call.schedule, its key): 'add' a member to `lane`, due after delay_ms
-- (`only_new`: only if not scheduled yet); 'reschedule' a claimed member (its claim `token` must still hold it)
-- after delay_ms, or 'finish' it (drop it). Answers {done}: false for a stale claim.
local call = cjson.decode(ARGV[1])
local schedule, member, action = call.schedule, call.member, call.action
local now = now_ms()

if action == 'add' then
  if call.only_new then
    schedule_put(schedule, call.lane, member, now + call.delay_ms, 'NX')
  else
    redis.call('ZADD', lane_set(schedule, call.lane), now + call.delay_ms, member)
    lane_refresh(schedule, call.lane)
  end
  return cjson.encode({done = true})
end
local tokens = key_sched_tokens(schedule)
if redis.call('HGET', tokens, member) ~= call.token then return cjson.encode({done = false}) end
redis.call('HDEL', tokens, member)
local lane = lane_of_token(call.token)
if action == 'finish' then
  schedule_drop(schedule, lane, member)
else
  schedule_put(schedule, lane, member, now + call.delay_ms, 'XX')
end
return cjson.encode({done = true})
