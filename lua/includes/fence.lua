-- Fencing (docs/design.md#3-3): a scaling write is accepted only from the live lease's
-- token. Needs K.leader (hash: holder, token, expires_ms).
local function fence_ok(token, now_ms)
  local live = redis.call('HMGET', K.leader, 'token', 'expires_ms')
  return live[1] ~= false and live[1] == token and (tonumber(live[2] or '0') or 0) >= now_ms
end
