--! uses lib/hash.lua
-- A job's fields, read and written by their stored names (JOB.*), and a renamed field under the name earlier
-- versions wrote too (JOB_LEGACY: relay/core/schema.py). This version writes a field under its own name and
-- deletes the legacy one, so a legacy name still there was written by an older process, either before the upgrade
-- or after this version's last write of that field (a rolling upgrade): when it is there, it is the value.

local function job_get(jk, name)
  local legacy = JOB_LEGACY[name]
  if not legacy then return redis.call('HGET', jk, name) end
  local values = redis.call('HMGET', jk, legacy, name)
  if values[1] then return values[1] end
  return values[2]
end

-- `names`, and each renamed one's legacy name after it (an HMGET of them reads a record either version wrote)
local function with_legacy(names)
  local out = {}
  for _, name in ipairs(names) do
    out[#out + 1] = name
    if JOB_LEGACY[name] then out[#out + 1] = JOB_LEGACY[name] end
  end
  return out
end

-- a record's fields written (one HSET), the legacy names of the renamed ones among them deleted
local function job_set(jk, fields)
  hset_fields(jk, fields)
  local legacy = {}
  for name in pairs(fields) do
    if JOB_LEGACY[name] then legacy[#legacy + 1] = JOB_LEGACY[name] end
  end
  hdel_fields(jk, legacy)
end

-- fields deleted, under either name
local function job_del(jk, names)
  hdel_fields(jk, with_legacy(names))
end
