-- One user:activity (docs/design.md#4): the user's record counts the event, and a user that
-- neither holds a node nor waits for one is (re)marked active with its feature class
-- (codes.lua). An activity that (re)enters the active set starts a session: the record's
-- count and first restart from it. Used by recordActivity (one message) and
-- recordActivities (a run of them, in order).
-- Needs KEYS users_active, user_info, user_node, stats, user_seq_floor, boot, users_premium,
-- users_waiting; arguments validated by the caller.
-- A member of users_active neither holds a node nor waits (connectUser takes it out when it
-- connects; activity never puts a connected user in), so one ZSCORE answers for most events.

-- The type check of the keys apply_activity touches (before a script's first write).
local function activity_types_ok()
  return types_ok({[K.users_active] = 'zset', [K.user_info] = 'hash', [K.user_node] = 'hash',
    [K.stats] = 'hash', [K.user_seq_floor] = 'string', [K.boot] = 'hash',
    [K.users_premium] = 'set', [K.users_waiting] = 'zset'})
end

-- What a run of activity messages shares: B (boot_ms_now(default_ms)), whether any user
-- is premium, and the counters, written once by activity_flush.
local function activity_context(default_ms)
  return {boot_ms = boot_ms_now(default_ms),
    any_premium = redis.call('SCARD', K.users_premium) > 0,
    activity = 0, users_new = 0, users_activated = 0}
end

local function activity_flush(ctx)
  for _, name in ipairs({'activity', 'users_new', 'users_activated'}) do
    if ctx[name] > 0 then stat(name, ctx[name]) end
  end
end

-- Apply one message. Returns code (OK | STALE), is_new_user (0 | 1).
local function apply_activity(user, now_ms, msg_id, ctx)
  local rec = rec_get(user)
  if not rec_is_new(rec, msg_id) then return STALE, 0 end
  ctx.activity = ctx.activity + 1
  local is_new = 0
  if not rec then
    is_new = 1
    ctx.users_new = ctx.users_new + 1
    rec = rec_new(now_ms)
  end
  local connected = false
  local score = redis.call('ZSCORE', K.users_active, user)
  if not score then
    connected = redis.call('HEXISTS', K.user_node, user) == 1
      or redis.call('ZSCORE', K.users_waiting, user) ~= false
    if not connected then
      ctx.users_activated = ctx.users_activated + 1
      rec.count, rec.first = 0, now_ms
    end
  end
  rec.count = rec.count + 1
  rec_touch(rec, msg_id, now_ms)
  rec_put(user, rec)
  if not connected then
    local class = user_class(rec, now_ms, ctx.boot_ms)
    -- the tier: an active user's class id holds it (setPremium moves the id of an active
    -- user at once), so only a user entering the set is looked up
    local premium
    local id = score and math.floor(tonumber(score) / CLASS)
    if id and id >= 0 and id < PREMIUM_CLASS + N_CLASSES then
      premium = id >= PREMIUM_CLASS
    else  -- entering the set, or a score that is no class id (hand-written): ask the set
      premium = ctx.any_premium and redis.call('SISMEMBER', K.users_premium, user) == 1
    end
    if premium then
      class = class + PREMIUM_CLASS
    end
    redis.call('ZADD', K.users_active, class * CLASS + now_ms, user)
  end
  return OK, is_new
end
