-- Node status transitions shared by recordNodeStatus and registerNode.
-- Need, besides assign.lua's keys: K.node_created, K.node_ready_at, K.boot,
-- K.nodes_terminating, K.nodes_terminated.

-- Learn the boot time (lead time) from one booting->ready observation of dt_ms.
-- Exponentially weighted mean and variance, alpha = max(1/n, alpha_min):
-- T. Finch, "Incremental calculation of weighted mean and variance" (2009), sec. 9.
local function learn_boot(dt_ms, alpha_min, now_ms)
  local n = tonumber(redis.call('HGET', K.boot, 'n') or '0') + 1
  local mean = tonumber(redis.call('HGET', K.boot, 'mean_ms') or dt_ms)
  local var = tonumber(redis.call('HGET', K.boot, 'var_ms2') or '0')
  local alpha = 1 / n
  if alpha < alpha_min then alpha = alpha_min end
  local diff = dt_ms - mean
  local incr = alpha * diff
  mean = mean + incr
  var = (1 - alpha) * (var + diff * incr)
  redis.call('HSET', K.boot, 'n', n, 'mean_ms', mean, 'var_ms2', var,
    'last_ms', dt_ms, 'updated_ms', now_ms)
end

-- A node reported ready. Returns a code, the user it went to (or false), and false.
local function on_ready(node, state, now_ms, channel, alpha_min)
  if state == 'booting' then
    local created = tonumber(redis.call('HGET', K.node_created, node))
    if created and now_ms > created then learn_boot(now_ms - created, alpha_min, now_ms) end
    redis.call('ZREM', K.nodes_booting, node)
    redis.call('HSET', K.node_ready_at, node, now_ms)
    stat('nodes_ready')
    local user = release_node(node, now_ms, channel)
    return OK, user or false, false
  elseif state == 'ready' or state == 'allocated' then
    return DUPLICATE, false, false
  end
  return IGNORED, false, false  -- terminating (we asked to delete it) or terminated (late)
end

-- A node reported terminated. An allocated node's user goes back to the front of the
-- waitlist and gets the next ready node (a replacement). Returns a code, that user, and
-- the replacement node when one was ready at once (else false).
local function on_terminated(node, state, now_ms, channel)
  if state == 'terminated' then return DUPLICATE, false, false end
  redis.call('ZREM', K.nodes_booting, node)
  redis.call('ZREM', K.nodes_ready, node)
  redis.call('ZREM', K.nodes_allocated, node)
  redis.call('ZREM', K.nodes_terminating, node)
  redis.call('HSET', K.node_state, node, 'terminated')
  redis.call('ZADD', K.nodes_terminated, now_ms, node)
  redis.call('HDEL', K.node_created, node)
  redis.call('HDEL', K.node_ready_at, node)
  local user = redis.call('HGET', K.node_user, node)
  redis.call('HDEL', K.node_user, node)
  if state == 'booting' then
    stat('boot_failed')
  elseif state == 'ready' then
    stat('preempted_idle')
  elseif state == 'terminating' then
    stat('nodes_terminated')
  end
  if state == 'allocated' and user then
    stat('preempted')
    redis.call('HDEL', K.user_node, user)
    redis.call('ZADD', K.users_waiting, BAND_REPLACEMENT * BAND + now_ms, user)
    redis.call('HSET', K.user_wait_since, user, now_ms)
    local spare = redis.call('ZRANGE', K.nodes_ready, 0, 0)[1]
    if spare and serve_waiting(spare, now_ms, channel) == user then return OK, user, spare end
    return OK, user, false
  end
  return OK, false, false
end
