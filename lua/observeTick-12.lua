--[[
  observeTick: the first half of a leader tick, in one round trip. Renews the lease
  (compare-and-extend, as renewLease) and reads, in one atomic step, everything the
  policy decides from: pool sizes, counters, the learned boot time, and (for the
  predictive policy) the active users per feature class and recency bucket and the
  connect counters of its hazard model. The recency edges come in multiples of the boot
  time B and are turned into ms here from the same boot time the caller plans with.

  KEYS[1]  leader             hash  holder, token, expires_ms
  KEYS[2]  nodes_booting      zset  node -> created ms
  KEYS[3]  nodes_ready        zset  node -> idle-since ms
  KEYS[4]  nodes_allocated    zset  node -> allocated ms
  KEYS[5]  nodes_terminating  zset  node -> ms termination was decided
  KEYS[6]  users_waiting      zset  user -> band * 1e13 + since ms
  KEYS[7]  users_active       zset  user -> class id * 1e13 + last seen ms (premium users'
                                     ids offset by PREMIUM_CLASS: counted from them)
  KEYS[8]  intents            zset  intent id -> ms recorded
  KEYS[9]  nodes_unknown      zset  node -> first status ms
  KEYS[10] stats              hash  counters
  KEYS[11] boot               hash  n, mean_ms, var_ms2, last_ms
  KEYS[12] hazard             hash  connects by class and recency bucket, "bg"

  ARGV[1] holder          string, the replica id
  ARGV[2] token           string, the caller's fencing token
  ARGV[3] now_ms          integer, unix ms
  ARGV[4] ttl_ms          integer > 0: the renewed lease lapses this long after now
  ARGV[5] default_boot_s  number > 0, seconds: B while no boot was observed (or mean 0)
  ARGV[6] n_classes       integer >= 0: feature classes to count (0: no class counts,
                          no hazard counters)
  ARGV[7] hazard_seen     the version of the hazard hash the caller holds, "n:since_ms"
                          (its connects counted, when it counted the first), or '' (none):
                          while it is unchanged the hash is not sent again
  ARGV[8..] recency edges, multiples of B, ascending (as RECENCY_EDGES_B)

  Returns {code, expires_ms, sizes, stats, boot, hazard, active, oldest}:
    sizes  = ZCARD of KEYS[2..9], in that order;
    stats, boot, hazard = HGETALL of KEYS[10], KEYS[11], KEYS[12] (hazard {} when
             n_classes is 0, false when its version equals hazard_seen);
    active = {} when n_classes is 0, else {premium_active, then per occupied class:
             class, counts per bucket} (as countActive);
    oldest = {created ms of the longest-booting node or '', idle-since ms of the
             longest-idle ready node or ''} (what the reaper would look at).
  Codes: OK | ERR_FENCED (lease not ours: nothing read, nothing written) | ERR_BAD_ARG |
  ERR_WRONG_TYPE.
]]
--- @include "codes"
--- @include "util"
--- @include "active"

local holder, token = ARGV[1], ARGV[2]
local now_ms = ms_arg(ARGV[3])
local ttl = int_arg(ARGV[4])
local default_s = tonumber(ARGV[5])
local n_classes = int_arg(ARGV[6])
if not holder or not token or now_ms == nil or ttl == nil or ttl <= 0 or default_s == nil
  or default_s ~= default_s or default_s <= 0 or default_s == math.huge or n_classes == nil
  or n_classes < 0 then
  return {ERR_BAD_ARG, 0}
end
local edges_b = {}
local hazard_seen = ARGV[7]
for i = 8, #ARGV do
  local e = tonumber(ARGV[i])
  if e == nil or e ~= e or e < (edges_b[#edges_b] or 0) or e == math.huge then
    return {ERR_BAD_ARG, 0}
  end
  edges_b[#edges_b + 1] = e
end
if not types_ok({[K.leader] = 'hash', [K.nodes_booting] = 'zset', [K.nodes_ready] = 'zset',
  [K.nodes_allocated] = 'zset', [K.nodes_terminating] = 'zset', [K.users_waiting] = 'zset',
  [K.users_active] = 'zset', [K.intents] = 'zset', [K.nodes_unknown] = 'zset',
  [K.stats] = 'hash', [K.boot] = 'hash',
  [K.hazard] = 'hash'}) then
  return {ERR_WRONG_TYPE, 0}
end
local cur = redis.call('HMGET', K.leader, 'holder', 'token', 'expires_ms')
if cur[1] ~= holder or cur[2] ~= token or tonumber(cur[3] or '0') < now_ms then
  return {ERR_FENCED, 0}
end
redis.call('HSET', K.leader, 'expires_ms', now_ms + ttl)

local sizes = {}
for _, z in ipairs({K.nodes_booting, K.nodes_ready, K.nodes_allocated, K.nodes_terminating,
  K.users_waiting, K.users_active, K.intents, K.nodes_unknown}) do
  sizes[#sizes + 1] = redis.call('ZCARD', z)
end
local hazard, active = {}, {}
if n_classes > 0 then
  local v = redis.call('HMGET', K.hazard, 'n', 'since_ms')
  if hazard_seen ~= nil and hazard_seen ~= '' and (v[1] or '') .. ':' .. (v[2] or '')
    == hazard_seen then
    hazard = false
  else
    hazard = redis.call('HGETALL', K.hazard)
  end
  -- the boot time the caller plans with: the learned mean (when it is a positive finite
  -- number: a corrupt one made the tick fail after the renewal, wedging the leader), else
  -- the default; as the activity scripts read it, and as coordinator._snapshot does
  local boot_s = boot_ms_now(default_s * 1000) / 1000
  local bounds = {0}
  for _, e in ipairs(edges_b) do bounds[#bounds + 1] = math.floor(e * boot_s * 1000) end
  count_active(active, now_ms, n_classes, bounds)
end
local function lowest(z)
  local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  return first[2] or ''
end
return {OK, now_ms + ttl, sizes, redis.call('HGETALL', K.stats), redis.call('HGETALL', K.boot),
  hazard, active, {lowest(K.nodes_booting), lowest(K.nodes_ready)}}
