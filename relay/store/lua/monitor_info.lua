--! uses lib/lanes.lua
-- A monitor's poll count, last poll time and next due time (in its lane), for a job's view. Reads only.
local mk_id = ARGV[1]
local polled = redis.call('HMGET', key_monitor(mk_id), 'polls', 'last_polled', 'lane')
local due = redis.call('ZSCORE', lane_set(KEY_MONITORS, polled[3] or ''), mk_id)
return {polled[1] or '', polled[2] or '', due or ''}
