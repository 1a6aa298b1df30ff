-- Small helpers used by several scripts.

-- Parse an integer argument; nil when it is not an integer of at most 2^53 in magnitude
-- (beyond, doubles are no longer exact: such a message id or time garbled the user record
-- it was written to, in base 36, or failed the script half way).
local function int_arg(v)
  local n = tonumber(v)
  if n == nil or n ~= n or n > 9007199254740992 or n < -9007199254740992
    or n ~= math.floor(n) then
    return nil
  end
  return n
end

-- Parse a time argument, unix ms: an integer in [0, 1e13) (1970 to 2286), else nil. Scores
-- put a band or class id above the 13 digits of a time (codes.lua), so a time outside them
-- was misread as another band (a connect at -5 ms waited in the premium band).
local function ms_arg(v)
  local n = int_arg(v)
  if n == nil or n < 0 or n >= 10000000000000 then return nil end
  return n
end

-- The exclusive score bound "(x" of an integer x: string.format, not `..`, which formats a
-- number with 14 significant digits (class * 1e13 + ms has 15 from class 10 on).
local function excl(x)
  return string.format('(%.0f', x)
end

-- Message ordering (docs/design.md#3-1): a message id is seq * 1e6 + position, the same
-- on every replica. 0 means "unordered" (direct calls: seeding, benchmarks).
-- Returns true when msg_id is newer than the last one applied to `member`.
-- floor_key (optional): a member without a record is judged against this floor (the highest
-- id of records that expiry deleted), so a very late replay cannot resurrect it.
local function seq_is_new(hash, member, msg_id, floor_key)
  if msg_id == 0 then return true end
  local last = redis.call('HGET', hash, member)
  if not last and floor_key then last = redis.call('GET', floor_key) end
  return msg_id > tonumber(last or '-1')
end

local function seq_mark(hash, member, msg_id)
  if msg_id ~= 0 then redis.call('HSET', hash, member, msg_id) end
end

local function stat(name, by)
  redis.call('HINCRBY', K.stats, name, by or 1)
end

-- Check that each key is absent or of the expected type before the first write,
-- so a script never fails half way (Redis does not roll back).
local function types_ok(spec)
  for key, want in pairs(spec) do
    local t = redis.call('TYPE', key)['ok']
    if t ~= 'none' and t ~= want then return false end
  end
  return true
end

-- Feature class (codes.lua) of a user record `r` (userrec.lua) at its activity at now_ms,
-- for boot time boot_ms.
local function user_class(r, now_ms, boot_ms)
  local count = r.count
  local cb = 3
  if count <= 1 then cb = 0 elseif count <= 3 then cb = 1 elseif count <= 7 then cb = 2 end
  local ab = 0
  if now_ms - r.first >= SESSION_AGE_B * boot_ms then ab = 1 end
  local rs = 0
  if r.connects > 0 then
    rs = 1
    if r.connects >= 3 then rs = 3 end
    if r.last_disc > 0 and now_ms - r.last_disc < RETURN_GAP_B * boot_ms then rs = rs + 1 end
  end
  return (cb * 2 + ab) * 5 + rs
end

-- The default_boot_ms argument (activity scripts, expireUsers): an integer of decimal digits in
-- [1 s, 1 day], DEFAULT_BOOT_MS when absent, else false (malformed). The leader plans
-- with its own default B until a boot is observed; the classes are computed with the same
-- one when the caller passes it (a fixed 30 s used to split them on another time scale).
local function default_boot_arg(arg)
  if arg == nil then return DEFAULT_BOOT_MS end
  if not string.match(arg, '^%d+$') then return false end
  local ms = int_arg(arg)
  if ms == nil or ms < 1000 or ms > 86400000 then return false end
  return ms
end

-- The boot time B that recency and feature classes are measured with, ms: the learned
-- mean (K.boot), else default_ms (the caller's default; the activity scripts take it as
-- an optional argument, DEFAULT_BOOT_MS when absent).
local function boot_ms_now(default_ms)
  local m = tonumber(redis.call('HGET', K.boot, 'mean_ms') or '')
  if m == nil or m ~= m or m <= 0 or m == math.huge then return default_ms end
  return m
end

-- An active user's score (class id * CLASS + last seen ms, codes.lua) split: the feature
-- class (tier offset removed), the class id, the last-seen ms.
local function score_parts(score)
  local id = math.floor(score / CLASS)
  return id % PREMIUM_CLASS, id, score - id * CLASS
end

-- Recency bucket (0-based) of `age_ms` for boot time `boot_ms` (RECENCY_EDGES_B).
local function recency_bucket(age_ms, boot_ms)
  for i, e in ipairs(RECENCY_EDGES_B) do
    if age_ms < e * boot_ms then return i - 1 end
  end
  return #RECENCY_EDGES_B
end
