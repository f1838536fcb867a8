-- The driver of a batched script (relay/store/batched.py): ARGV[1] is the record every call of the batch shares
-- (`BATCH`), ARGV[2..] the calls made during one turn of the event loop, each one JSON record, handled by
-- `one(call)` under pcall: a Lua error fails only its call. Answers the calls' answers (records), as JSON.
-- Except READONLY (this Redis has become a replica, and no call can write): the whole script fails with it,
-- so that a Sentinel client drops the connection and asks the Sentinels for the new primary.
local BATCH = cjson.decode(ARGV[1])

local function run_batch(one)
  local out = {}
  for i = 2, #ARGV do
    local ok, result = pcall(function() return one(cjson.decode(ARGV[i])) end)
    if ok then
      out[#out + 1] = result
    else
      local err = type(result) == 'table' and tostring(result.err) or tostring(result)
      if string.find(err, 'READONLY', 1, true) then
        return redis.error_reply("READONLY You can't write against a read only replica.")
      end
      out[#out + 1] = {relay_error = err}
    end
  end
  return cjson.encode(out)
end
