-- luacheck runs on the expanded scripts (prelude + includes), see .ci/run.
std = "lua51"
read_globals = { "redis", "cjson", "KEYS", "ARGV", "unpack" }
-- Includes define constants and helpers that a given script may not use.
ignore = { "211" }
max_line_length = 110
