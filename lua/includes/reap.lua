-- Reaping (docs/design.md#3-2): mark terminating (1) every node stuck in booting past
-- boot_timeout ms and (2) ready nodes idle past keep_alive ms, oldest-idle first, while
-- ready + booting stays above `floor` and nobody waits. Allocated nodes are never chosen
-- (invariant I2). At most max_count nodes. Needs K.nodes_booting, K.nodes_ready,
-- K.node_state, K.nodes_terminating, K.users_waiting, K.stats and the "terminate" and
-- "util" includes. Returns two lists of node ids: stuck, idle.
local function reap_nodes(now_ms, keep_alive, floor, boot_timeout, max_count)
  local stuck = redis.call('ZRANGEBYSCORE', K.nodes_booting, '-inf',
    excl(now_ms - boot_timeout), 'LIMIT', 0, max_count)
  for _, node in ipairs(stuck) do mark_terminating(node, now_ms) end
  if #stuck > 0 then stat('boot_timeouts', #stuck) end
  local idle = {}
  local budget = max_count - #stuck
  if budget > 0 and redis.call('ZCARD', K.users_waiting) == 0 then
    local spare = redis.call('ZCARD', K.nodes_ready) + redis.call('ZCARD', K.nodes_booting)
    local excess = spare - floor
    if excess > budget then excess = budget end
    if excess > 0 then
      idle = redis.call('ZRANGEBYSCORE', K.nodes_ready, '-inf', now_ms - keep_alive,
        'LIMIT', 0, excess)
      for _, node in ipairs(idle) do mark_terminating(node, now_ms) end
      if #idle > 0 then stat('reaped_idle', #idle) end
    end
  end
  return stuck, idle
end
