-- One user:activity (design-notes 4): the user's record counts the event, and a user that
-- holds no node is (re)marked active with its feature class (codes.lua). An activity that
-- (re)enters the active set starts a session: the record's count and first restart from it.
-- Used by recordActivity (one message) and recordActivities (a run of them, in order).
-- Needs KEYS users_active, user_info, user_node, stats, user_seq_floor, users_premium;
-- arguments validated by the caller; boot_ms from boot_ms_now(DEFAULT_BOOT_MS).
-- Returns code (OK | STALE), is_new_user (0 | 1).
-- The type check of the keys apply_activity touches (before a script's first write).
local function activity_types_ok()
  return types_ok({[K.users_active] = 'zset', [K.user_info] = 'hash', [K.user_node] = 'hash',
    [K.stats] = 'hash', [K.user_seq_floor] = 'string', [K.boot] = 'hash',
    [K.users_premium] = 'set'})
end

local function apply_activity(user, now_ms, msg_id, boot_ms)
  local rec = rec_get(user)
  if not rec_is_new(rec, msg_id) then return STALE, 0 end
  stat('activity')
  local is_new = 0
  if not rec then
    is_new = 1
    stat('users_new')
    rec = rec_new(now_ms)
  end
  local holds = redis.call('HGET', K.user_node, user)
  local entering = not holds and not redis.call('ZSCORE', K.users_active, user)
  if entering then
    stat('users_activated')
    rec.count, rec.first = 0, now_ms
  end
  rec.count = rec.count + 1
  rec_touch(rec, msg_id, now_ms)
  rec_put(user, rec)
  if not holds then
    local class = user_class(rec, now_ms, boot_ms)
    if redis.call('SISMEMBER', K.users_premium, user) == 1 then class = class + PREMIUM_CLASS end
    redis.call('ZADD', K.users_active, class * CLASS + now_ms, user)
  end
  return OK, is_new
end
