-- The packed per-user record: one field of KEYS user_info per known user,
--   "seq|last_ms|first_ms|activity_count|connects|last_disconnect_ms"
-- where first_ms and activity_count are those of the current session (one stay in the
-- active set, activity.lua), connects and last_disconnect_ms over the user's life;
-- every number in base 36 ('-' before a negative one), e.g. "3j2b1s0g9|lh1x2k8w|lh1x2k8w|1|0|0".
-- seq is the id of the last message applied to the user (once-only and order, docs/design.md#3-1;
-- 0 = none yet), last_ms the latest time a message touched the user (the history TTL
-- of forgetUsers counts from it). One field instead of two hashes (info and seq) and base 36
-- instead of decimal keep the record in 48 bytes of memory (docs/benchmarks.md#throughput).

-- n (an integer, |n| < 2^53) in base 36: the digits' bytes ('0'-'9' 48-57, 'a'-'z' 97-122)
-- filled from the end of a preallocated array and made one string by one string.char; a
-- string per digit, as `..` builds it, cost 3 times as much (1.5 us for a 13-digit ms).
local function b36(n)
  if n < 0 then return '-' .. b36(-n) end
  if n < 10 then return string.char(48 + n) end
  local t, k = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 12  -- 36^11 > 2^53: 11 digits at most
  while n > 0 do
    local d = n % 36
    k = k - 1
    t[k] = d < 10 and 48 + d or 87 + d
    n = (n - d) / 36
  end
  return string.char(unpack(t, k, 11))
end

-- The number of base-36 digits s (a '-' before a negative one); nil beyond 2^53, where
-- doubles stop being exact (tonumber(s, 36) would saturate at 2^64 instead of failing:
-- an oversized seq then made the user, or once forgotten every new user, STALE forever).
local MAX_EXACT = 9007199254740992

local function unb36(s)
  local n
  if string.byte(s) == 45 then n = tonumber(string.sub(s, 2), 36); n = n and -n  -- '-'
  else n = tonumber(s, 36) end
  if n == nil or n > MAX_EXACT or n < -MAX_EXACT then return nil end
  return n
end

local REC_RE = '^(%-?%w+)|(%-?%w+)|(%-?%w+)|(%w+)|(%w+)|(%-?%w+)$'

-- The user's record as a table {seq, last, first, count, connects, last_disc}, which also
-- holds the stored digits ([1]..[6]) and values ([7]..[12]) of the fields, for rec_put:
-- one table, built by one constructor (sized once: a table grown field by field is
-- rehashed as it grows); nil when the user has none (or it is malformed: then it is
-- rewritten as new).
local function rec_get(user)
  local v = redis.call('HGET', K.user_info, user)
  if not v then return nil end
  local a, b, c, d, e, f = string.match(v, REC_RE)
  if not a then return nil end
  local seq, last, first, count = unb36(a), unb36(b), unb36(c), unb36(d)
  local connects, last_disc = unb36(e), unb36(f)
  if not (seq and last and first and count and connects and last_disc) then
    return nil  -- a field out of range: malformed
  end
  return {a, b, c, d, e, f, seq, last, first, count, connects, last_disc, seq = seq, last = last,
    first = first, count = count, connects = connects, last_disc = last_disc, stored = true}
end

-- Field i of record r in base 36: its stored digits while it has its stored value.
local function rec_digits(r, i, v)
  if r.stored and r[i + 6] == v then return r[i] end
  return b36(v)
end

local function rec_new(now_ms)
  return {seq = 0, last = now_ms, first = now_ms, count = 0, connects = 0, last_disc = 0}
end

-- Record that message msg_id (0: unordered, not recorded) touched the user at now_ms.
local function rec_touch(r, msg_id, now_ms)
  if msg_id ~= 0 then r.seq = msg_id end
  if now_ms > r.last then r.last = now_ms end
end

-- Write the record; a field that did not change since rec_get keeps its digits (an
-- activity changes seq, last and count: half the encoding).
local function rec_put(user, r)
  redis.call('HSET', K.user_info, user, rec_digits(r, 1, r.seq) .. '|' .. rec_digits(r, 2, r.last)
    .. '|' .. rec_digits(r, 3, r.first) .. '|' .. rec_digits(r, 4, r.count) .. '|'
    .. rec_digits(r, 5, r.connects) .. '|' .. rec_digits(r, 6, r.last_disc))
end

-- Once-only and order for users: msg_id must be above the record's seq; a user without one
-- (never ordered, or forgotten) is judged against the floor of forgotten ids.
local function rec_is_new(r, msg_id)
  if msg_id == 0 then return true end
  local last
  if r and r.seq > 0 then
    last = r.seq
  else
    last = tonumber(redis.call('GET', K.user_seq_floor) or '-1')
  end
  return msg_id > last
end
