-- spec/helpers/tcp.lua - the peer of the luamta.tcp() specs: a threaded
-- Python line-command server (spec/fixtures/tcp_server.py) on 127.0.0.1,
-- on ::1 when the host has it, and on a UNIX socket, optionally able to
-- switch to TLS with a certificate from tlskit.
--
--   local tcp = require "tcp"
--   local peer = assert(tcp.start({ cert = pki.server_cert, key = pki.server_key }))
--   finally(function() peer:stop() end)
--   -- peer.port, peer.port6 (nil without IPv6), peer.unix
local server = require "server"
local socket = require "socket"

local M = {}

local q = server.quote
local SCRIPT = server.source_dir() .. "/spec/fixtures/tcp_server.py"

local Peer = {}
Peer.__index = Peer

function Peer:stop()
  if self.pid then os.execute("kill " .. self.pid .. " 2>/dev/null") end
  self.pid = nil
  server.rmtree(self.dir)
end

-- Starts the server; opts.cert and opts.key enable STARTTLS. Returns the
-- peer, or nil and an error with the server's output.
function M.start(opts)
  opts = opts or {}
  local dir = server.mkdtemp()
  local args = { "/usr/bin/python3", SCRIPT, "--ready", dir .. "/ready", "--unix", dir .. "/sock" }
  if opts.cert then
    args[#args + 1] = "--cert"; args[#args + 1] = opts.cert
    args[#args + 1] = "--key"; args[#args + 1] = opts.key
  end
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = q(a) end
  os.execute(table.concat(quoted, " ") .. " >" .. q(dir .. "/log") .. " 2>&1 & echo $! >"
    .. q(dir .. "/pid"))
  local peer = setmetatable({ dir = dir }, Peer)
  peer.pid = tonumber((server.read_file(dir .. "/pid") or ""):match("%d+"))
  local deadline = socket.gettime() + 20 * server.TIMEOUT_SCALE
  while socket.gettime() < deadline do
    local ready = server.read_file(dir .. "/ready")
    if ready then
      peer.port = tonumber(ready:match("tcp (%d+)"))
      peer.port6 = tonumber(ready:match("tcp6 (%d+)"))
      peer.unix = ready:match("unix (%S+)")
      return peer
    end
    socket.sleep(0.02)
  end
  local log = server.read_file(dir .. "/log") or ""
  peer:stop()
  return nil, "tcp_server.py did not start: " .. log
end

-- A loopback port nothing listens on (bound, then closed).
function M.closed_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

return M
