-- spec/helpers/dns.lua - DNS servers on loopback for the luamta.dns specs:
-- Debian's dnsmasq with records given on its command line, and
-- spec/fixtures/dns_responder.py for what dnsmasq will not do (SERVFAIL,
-- REFUSED, silence, truncation, slow or held answers, query counts).
-- Each start() returns a handle with .port, :stop(), and for the responder
-- :count(name[, proto]) (queries received for that name). spf_zone() serves
-- the SPF test suites' zone data (spec/fixtures/spf_zone_server.py).
local server = require "server"
local socket = require "socket"

local q = server.quote
local M = {}

local RESPONDER = server.source_dir() .. "/spec/fixtures/dns_responder.py"
local SPF_ZONE = server.source_dir() .. "/spec/fixtures/spf_zone_server.py"
local DNSMASQ = "/usr/sbin/dnsmasq"

local Proc = {}
Proc.__index = Proc

-- Runs cmd in the background in dir, its pid in dir/pid.
local function spawn(dir, cmd)
  local inner = cmd .. " </dev/null >" .. q(dir .. "/out") .. " 2>" .. q(dir .. "/err")
    .. " & echo $! >" .. q(dir .. "/pid.tmp") .. "; mv " .. q(dir .. "/pid.tmp") .. " "
    .. q(dir .. "/pid")
  assert(os.execute("sh -c " .. q(inner)), "cannot run " .. cmd)
  local deadline = socket.gettime() + 10
  while socket.gettime() < deadline do
    local pid = tonumber((server.read_file(dir .. "/pid") or ""):match("%d+"))
    if pid then return pid end
    socket.sleep(0.02)
  end
  error("no pid for " .. cmd)
end

local function alive(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

function Proc:stop()
  if self.pid and alive(self.pid) then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    local deadline = socket.gettime() + 10
    while alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
    if alive(self.pid) then os.execute("kill -9 " .. self.pid .. " 2>/dev/null") end
  end
  self.pid = nil
  if os.getenv("LUAMTA_TEST_KEEP") ~= "1" then server.rmtree(self.dir) end
end

-- What the process wrote to stderr.
function Proc:log()
  return server.read_file(self.dir .. "/err") or ""
end

-- Responder: queries received for name (case-insensitive), on proto
-- ("udp" or "tcp") or both.
function Proc:count(name, proto)
  local n = 0
  for line in (server.read_file(self.dir .. "/queries") or ""):gmatch("[^\n]+") do
    local p, qname = line:match("^(%S+) (%S+)")
    if qname and qname:lower() == name:lower() and (proto == nil or p == proto) then
      n = n + 1
    end
  end
  return n
end

-- Waits until the responder saw n queries for names matching pattern.
function Proc:wait_queries(pattern, n, timeout)
  local deadline = socket.gettime() + (timeout or 10) * server.TIMEOUT_SCALE
  local seen = 0
  while socket.gettime() < deadline do
    seen = 0
    for line in (server.read_file(self.dir .. "/queries") or ""):gmatch("[^\n]+") do
      if line:match(pattern) then seen = seen + 1 end
    end
    if seen >= n then return seen end
    socket.sleep(0.05)
  end
  return seen
end

-- The resolver argument for luamta: "127.0.0.1:port".
function Proc:addr()
  return "127.0.0.1:" .. self.port
end

-- A port no one uses now (UDP and TCP), for dnsmasq and for a resolver
-- that is down.
M.free_port = server.free_port

-- dnsmasq answering only from the records in args (a list of options such
-- as "--host-record=mail.spec.test,127.0.0.2"), for spec.test and the
-- reverse trees; every other name is NXDOMAIN.
function M.dnsmasq(args)
  local dir = server.mkdtemp()
  local port = M.free_port()
  local words = { DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts",
    "--conf-file=/dev/null", "--port=" .. port, "--listen-address=127.0.0.1",
    "--bind-interfaces", "--pid-file=", "--log-facility=-", "--local-ttl=60",
    "--local=/spec.test/", "--local=/in-addr.arpa/", "--local=/ip6.arpa/" }
  -- As root it would switch to nobody, who may not read our files.
  local uid = io.popen("id -u"):read("*l")
  if uid == "0" then words[#words + 1] = "--user=root" end
  for _, a in ipairs(args or {}) do words[#words + 1] = a end
  local quoted = {}
  for i, w in ipairs(words) do quoted[i] = q(w) end
  local p = setmetatable({ dir = dir, port = port }, Proc)
  p.pid = spawn(dir, table.concat(quoted, " "))
  local deadline = socket.gettime() + 10
  while socket.gettime() < deadline do
    if p:log():find("started", 1, true) then return p end
    if not alive(p.pid) then break end
    socket.sleep(0.05)
  end
  local log = p:log()
  p:stop()
  error("dnsmasq did not start: " .. log)
end

-- Runs one of the Python servers (cmd) for p, waits up to secs for the
-- port in its ready file (spec/fixtures/dns_loopback.py writes it) and
-- returns p, or raises with its log.
local function ready(p, cmd, what, secs)
  p.pid = spawn(p.dir, cmd)
  local deadline = socket.gettime() + secs
  while socket.gettime() < deadline do
    local port = tonumber((server.read_file(p.dir .. "/ready") or ""):match("%d+"))
    if port then
      p.port = port
      return p
    end
    if not alive(p.pid) then break end
    socket.sleep(0.05)
  end
  local log = p:log()
  p:stop()
  error(what .. " did not start: " .. log)
end

-- The responder: opts.mode ("normal", "servfail", "refused", "silent"),
-- opts.delay (seconds for slow.* names).
function M.responder(opts)
  opts = opts or {}
  local dir = server.mkdtemp()
  local cmd = "/usr/bin/python3 " .. q(RESPONDER) .. " " .. q(dir .. "/ready") .. " "
    .. q(dir .. "/queries") .. " --mode " .. (opts.mode or "normal")
    .. " --delay " .. tostring(opts.delay or 1)
  return ready(setmetatable({ dir = dir }, Proc), cmd, "dns_responder.py", 10)
end

-- spec/fixtures/spf_zone_server.py serving the zone data of the SPF test
-- suites in files (OpenSPF YAML, gzipped or not), one scenario at a time;
-- p.tests_file names the JSON list of their tests, and
-- p:ask(N .. ".scenario.spf-control.invalid") switches to scenario N.
function M.spf_zone(files)
  local dir = server.mkdtemp()
  local cmd = "/usr/bin/python3 " .. q(SPF_ZONE) .. " " .. q(dir .. "/ready") .. " "
    .. q(dir .. "/tests.json")
  for _, f in ipairs(files) do cmd = cmd .. " " .. q(f) end
  return ready(setmetatable({ dir = dir, tests_file = dir .. "/tests.json" }, Proc), cmd,
    "spf_zone_server.py", 30)
end

-- Sends one A query for name to the responder over UDP and waits for the
-- answer (release.* names let held answers go).
function Proc:ask(name)
  local u = assert(socket.udp())
  u:settimeout(5 * server.TIMEOUT_SCALE)
  assert(u:setpeername("127.0.0.1", self.port))
  local qname = {}
  for label in name:gmatch("[^.]+") do qname[#qname + 1] = string.char(#label) .. label end
  local msg = string.char(0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0)
    .. table.concat(qname) .. "\0" .. string.char(0, 1, 0, 1)
  assert(u:send(msg))
  local reply = u:receive()
  u:close()
  return reply
end

return M
