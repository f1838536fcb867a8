-- The driver of a batched script (relay/store/batched.py): ARGV[first..] are the calls made during one turn of
-- the event loop, each one JSON object, handled by `one(call)` under pcall: a Lua error fails only its call.
-- Except READONLY (this Redis has become a replica, and no call can write): the whole script fails with it,
-- so that a Sentinel client drops the connection and asks the Sentinels for the new primary.
local BATCH_ERROR = '__relay_error__'

local function run_batch(first, one)
  local out = {}
  for i = first, #ARGV do
    local ok, result = pcall(function() return one(cjson.decode(ARGV[i])) end)
    if ok then
      out[#out + 1] = result
    else
      local err = type(result) == 'table' and tostring(result.err) or tostring(result)
      if string.find(err, 'READONLY', 1, true) then
        return redis.error_reply("READONLY You can't write against a read only replica.")
      end
      out[#out + 1] = {BATCH_ERROR, err}
    end
  end
  return out
end
