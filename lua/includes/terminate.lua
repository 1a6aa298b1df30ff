-- Mark a booting or ready node terminating (the leader DELETEs it next).
-- Needs K.nodes_booting, K.nodes_ready, K.node_state, K.nodes_terminating.
local function mark_terminating(node, now_ms)
  redis.call('ZREM', K.nodes_booting, node)
  redis.call('ZREM', K.nodes_ready, node)
  redis.call('HSET', K.node_state, node, 'terminating')
  redis.call('ZADD', K.nodes_terminating, now_ms, node)
end
