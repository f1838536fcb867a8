-- Hash writes as one command each: a table's fields in one HSET, a list of fields in one HDEL (a command
-- per field costs the script a redis.call each, the larger part of a poll's write when little changed).

local function hset_fields(key, fields)
  local args = {}
  for k, v in pairs(fields) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end

local function hdel_fields(key, names)
  if #names > 0 then redis.call('HDEL', key, unpack(names)) end
end
