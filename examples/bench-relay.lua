-- examples/bench-relay.lua - the benchmark's every-verb policy
-- (examples/bench.lua) that also relays every message to one next hop,
-- $BENCH_RELAY (host:port; scripts/bench points it at smtp-sink), in
-- plaintext: what a smarthost relay does, queue and fsyncs included.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local policy = dofile(dir .. "bench.lua")
local host, port = (os.getenv("BENCH_RELAY") or ""):match("^([^:]+):(%d+)$")
if not host then error("bench-relay.lua: set BENCH_RELAY=host:port", 0) end
local route = { host = host, port = tonumber(port), tls = "none" }

local on_message = policy.on_message
policy.on_message = function(s, msg)
  msg:relay(route)
  if on_message then return on_message(s, msg) end
end

return policy
