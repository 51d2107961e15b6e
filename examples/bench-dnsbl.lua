-- examples/bench-dnsbl.lua - the benchmark's every-verb policy
-- (examples/bench.lua) plus one DNSBL lookup per connection in on_connect,
-- as a real policy does at the door. scripts/bench runs it against a local
-- dnsmasq that answers the zone (BENCH_DNSBL_ZONE, default bl.bench.test)
-- with NXDOMAIN and no SOA, so no answer is cached by luamta: every
-- connection asks the resolver, the cost the bench puts a figure on.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local policy = dofile(dir .. "bench.lua")
local rbl = luamta.dns.rbl
local zone = os.getenv("BENCH_DNSBL_ZONE") or "bl.bench.test"

local on_connect = policy.on_connect
policy.on_connect = function(s)
  local listed, codes = rbl(s.peer_ip, zone, { timeout = 2 })
  if listed then return 554, "5.7.1 Listed at " .. zone end
  if listed == nil then s:log("dnsbl: " .. codes) end
  return on_connect(s)
end

return policy
