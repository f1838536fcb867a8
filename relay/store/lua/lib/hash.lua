-- Hash writes as one command each: a table's fields in one HSET, a list of fields in one HDEL (a command
-- per field costs the script a redis.call each, the larger part of a poll's write when little changed); and a
-- hash as read (HGETALL's flat list), as a record: field name -> value.

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

local function hash_record(flat)
  local record = {}
  for i = 1, #flat, 2 do record[flat[i]] = flat[i + 1] end
  return record
end

-- the fields `names` of a hash (HMGET) as a record; those absent are left out
local function hmget_record(key, names)
  local values = redis.call('HMGET', key, unpack(names))
  local record = {}
  for i, name in ipairs(names) do
    if values[i] then record[name] = values[i] end
  end
  return record
end
