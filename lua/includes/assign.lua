-- Allocation helpers. Need K.node_state, K.node_user, K.user_node, K.nodes_ready,
-- K.nodes_booting, K.nodes_allocated, K.users_waiting, K.user_wait_since, K.stats.

-- Give `node` to `user` at now_ms and announce it on `channel` (user:assigned).
local function assign(node, user, now_ms, wait_ms, channel)
  redis.call('ZREM', K.nodes_ready, node)
  redis.call('ZREM', K.nodes_booting, node)
  redis.call('ZADD', K.nodes_allocated, now_ms, node)
  redis.call('HSET', K.node_state, node, 'allocated')
  redis.call('HSET', K.node_user, node, user)
  redis.call('HSET', K.user_node, user, node)
  redis.call('ZREM', K.users_waiting, user)
  redis.call('HDEL', K.user_wait_since, user)
  redis.call('PUBLISH', channel,
    cjson.encode({user_id = user, node_id = node, wait_ms = wait_ms}))
end

-- Hand `node` to the first user on the waitlist, if any. Returns that user or nil.
local function serve_waiting(node, now_ms, channel)
  local first = redis.call('ZRANGE', K.users_waiting, 0, 0)[1]
  if not first then return nil end
  local since = tonumber(redis.call('HGET', K.user_wait_since, first) or now_ms)
  local wait = now_ms - since
  if wait < 1 then wait = 1 end
  assign(node, first, now_ms, wait, channel)
  stat('assigned_late')
  return first
end

-- Put `node` into the warm pool, idle since now_ms (or hand it to a waiting user).
-- Returns the user it went to, or nil when it went to the pool.
local function release_node(node, now_ms, channel)
  local user = serve_waiting(node, now_ms, channel)
  if user then return user end
  redis.call('ZREM', K.nodes_booting, node)
  redis.call('ZREM', K.nodes_allocated, node)
  redis.call('HSET', K.node_state, node, 'ready')
  redis.call('ZADD', K.nodes_ready, now_ms, node)
  return nil
end
