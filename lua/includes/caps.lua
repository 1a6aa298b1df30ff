-- The --max-nodes cap (docs/operations.md#operator-caps): every node that costs counts against it,
-- from the create intent to the end of its termination: open create intents (a POST not
-- yet answered, or one that timed out and may have created a node) + booting + ready +
-- allocated + terminating (a DELETE decided, the node not yet gone) + unknown (a node
-- the node manager reported that we never registered: counted until reconcile adopts or
-- drops it, so a timed-out POST's node may count twice, as its intent and as unknown,
-- for up to the unknown grace: the cap errs on the safe side). Needs K.intents,
-- K.nodes_booting, K.nodes_ready, K.nodes_allocated, K.nodes_terminating, K.nodes_unknown.
local function nodes_counted()
  local n = 0
  for _, z in ipairs({K.intents, K.nodes_booting, K.nodes_ready, K.nodes_allocated,
    K.nodes_terminating, K.nodes_unknown}) do
    n = n + redis.call('ZCARD', z)
  end
  return n
end

-- The optional cap of a script whose arguments from `first` on are name, value pairs: the
-- value of the pair named 'max_nodes'. Returns ok, cap: ok is false when that value is
-- not an integer >= 0; cap is nil when no such pair is given (no cap).
local function max_nodes_arg(first)
  local cap = nil
  for i = first, #ARGV - 1, 2 do
    if ARGV[i] == 'max_nodes' then
      cap = int_arg(ARGV[i + 1])
      if cap == nil or cap < 0 then return false, nil end
    end
  end
  return true, cap
end
