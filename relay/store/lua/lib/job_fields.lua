--! uses lib/hash.lua
-- A job's fields, read and written by their stored names (JOB.*), and a renamed field under its other name too
-- (JOB_RENAMED: its two names, the one earlier versions wrote first; relay/core/schema.py). This version writes a
-- field under its stored name and deletes the other, so both are there only when an older process, which knows the
-- legacy name alone, wrote it after this version's last write of that field (a rolling upgrade): then the legacy
-- name is the value, whichever of the two this process writes (RELAY_STORE_LEGACY_FORMAT).

-- the other name of a renamed field (nil for the others)
local function other_name(name)
  local both = JOB_RENAMED[name]
  if not both then return nil end
  if both[1] == name then return both[2] end
  return both[1]
end

local function job_get(jk, name)
  local both = JOB_RENAMED[name]
  if not both then return redis.call('HGET', jk, name) end
  local values = redis.call('HMGET', jk, both[1], both[2])
  if values[1] then return values[1] end
  return values[2]
end

-- `names`, and each renamed one's other name after it (an HMGET of them reads a record either version wrote)
local function with_other_names(names)
  local out = {}
  for _, name in ipairs(names) do
    out[#out + 1] = name
    local other = other_name(name)
    if other then out[#out + 1] = other end
  end
  return out
end

-- a record's fields written (one HSET), the other names of the renamed ones among them deleted
local function job_set(jk, fields)
  hset_fields(jk, fields)
  local others = {}
  for name in pairs(fields) do
    local other = other_name(name)
    if other then others[#others + 1] = other end
  end
  hdel_fields(jk, others)
end

-- fields deleted, under either name
local function job_del(jk, names)
  hdel_fields(jk, with_other_names(names))
end
