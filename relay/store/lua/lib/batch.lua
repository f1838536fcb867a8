-- The driver of a batched script (relay/store/batched.py): ARGV[first..] are the calls made during one turn of
-- the event loop, each one JSON object, handled by `one(call)` under pcall: a Lua error fails only its call.
local BATCH_ERROR = '__relay_error__'

local function run_batch(first, one)
  local out = {}
  for i = first, #ARGV do
    local ok, result = pcall(function() return one(cjson.decode(ARGV[i])) end)
    if ok then
      out[#out + 1] = result
    else
      out[#out + 1] = {BATCH_ERROR, type(result) == 'table' and tostring(result.err) or tostring(result)}
    end
  end
  return out
end
