-- spec/helpers/haproxy.lua - a real HAProxy (Debian's haproxy) for specs,
-- in TCP mode in front of luamta listeners, on 127.0.0.1 and a free port,
-- in its own temporary directory, run in the foreground (-db) through a
-- wrapper that closes inherited descriptors.
--
--   local haproxy = require "haproxy"
--   local h = assert(haproxy.start({ servers = { { name = "a", port = pa }, ... },
--     backend = { "send-proxy-v2 check inter 200 fall 1 rise 1" } }))
--   finally(function() h:stop() end)
--   -- clients connect to h.port; h:server_state("a") reads the stats socket
local socket = require "socket"
local server = require "server"

local M = {}
local Haproxy = {}
Haproxy.__index = Haproxy

local CLOSEFDS = "/usr/bin/python3 -c " .. server.quote(
  "import os, sys; os.closerange(3, 65536); os.execvp(sys.argv[1], sys.argv[1:])")

-- The configuration: one frontend, one backend of opts.servers, each
-- "server NAME 127.0.0.1:PORT <opts.server_opts>", checked by a TCP check
-- that wants a 220 greeting and says QUIT.
function M.config(port, opts)
  local lines = {
    "global",
    "  maxconn 1000",
    "  stats socket " .. opts.dir .. "/stats level admin",
    "defaults",
    "  mode tcp",
    "  timeout connect 2s",
    "  timeout client 60s",
    "  timeout server 60s",
    "  timeout check 10s",
    -- A refused connection is tried again at once on another server.
    "  retries 3",
    "  option redispatch 1",
    "frontend smtp",
    "  bind 127.0.0.1:" .. port,
    "  default_backend mtas",
    "backend mtas",
    "  balance roundrobin",
    "  option tcp-check",
    "  tcp-check expect rstring ^220",
    "  tcp-check send QUIT\\r\\n",
    "  tcp-check expect rstring ^221",
  }
  for _, s in ipairs(opts.servers) do
    lines[#lines + 1] = "  server " .. s.name .. " 127.0.0.1:" .. s.port .. " "
      .. (opts.server_opts or "")
  end
  return table.concat(lines, "\n") .. "\n"
end

-- Starts HAProxy; returns it once its frontend accepts, or nil and an error.
function M.start(opts)
  local h = setmetatable({ dir = server.mkdtemp(), port = server.free_port() }, Haproxy)
  opts.dir = h.dir
  h.config_text = M.config(h.port, opts)
  server.write_file(h.dir .. "/haproxy.cfg", h.config_text)
  local check = os.execute("haproxy -c -q -f " .. server.quote(h.dir .. "/haproxy.cfg")
    .. " >" .. server.quote(h.dir .. "/check") .. " 2>&1")
  if not check then
    local why = server.read_file(h.dir .. "/check") or ""
    server.rmtree(h.dir)
    return nil, "haproxy -c refused the configuration: " .. why
  end
  os.execute("sh -c " .. server.quote(CLOSEFDS .. " haproxy -db -f "
    .. server.quote(h.dir .. "/haproxy.cfg") .. " >" .. server.quote(h.dir .. "/log")
    .. " 2>&1 & echo $! >" .. server.quote(h.dir .. "/pid")) .. " </dev/null >/dev/null 2>&1")
  local deadline = socket.gettime() + 10 * server.TIMEOUT_SCALE
  while socket.gettime() < deadline do
    h.pid = h.pid or tonumber((server.read_file(h.dir .. "/pid") or ""):match("%d+"))
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", h.port)
    c:close()
    if h.pid and ok then return h end
    socket.sleep(0.05)
  end
  local log = server.read_file(h.dir .. "/log") or ""
  h:stop()
  return nil, "haproxy did not start: " .. log
end

-- A command on the stats socket (e.g. "show servers state"): its output.
function Haproxy:command(cmd)
  local _, out = server.sh("/usr/bin/python3 -c " .. server.quote(
    "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
    .. " s.sendall(sys.argv[2].encode()+b'\\n'); sys.stdout.write(s.makefile().read())")
    .. " " .. server.quote(self.dir .. "/stats") .. " " .. server.quote(cmd))
  return out
end

-- The operational state HAProxy holds for a server: "UP", "DOWN", ...
function Haproxy:server_state(name)
  local out = self:command("show stat")
  for line in out:gmatch("[^\n]+") do
    local f = {}
    for v in (line .. ","):gmatch("([^,]*),") do f[#f + 1] = v end
    if f[1] == "mtas" and f[2] == name then return f[18] end
  end
  return nil
end

function Haproxy:stop()
  if self.pid then os.execute("kill -9 " .. self.pid .. " 2>/dev/null") end
  self.pid = nil
  if self.dir then server.rmtree(self.dir) end
  self.dir = nil
end

return M
