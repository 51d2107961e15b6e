-- spec/helpers/redis.lua - a real redis-server for specs, on 127.0.0.1 and
-- a free port, in its own temporary directory, without persistence.
--
--   local redis = require "redis"
--   local r = assert(redis.start({ password = "secret" }))
--   finally(function() r:stop() end)
--   r:cli("SET", "k", "v")          -- redis-cli, returns its output
--   r:stop(); r:restart()            -- killed (-9), then again on the same port
--   local f = redis.fake("silent")   -- a misbehaving server: f.port, f.stop()
local socket = require "socket"
local server = require "server"

local M = {}
local Redis = {}

-- A command prefix that runs the rest with only stdin, stdout and stderr.
local CLOSEFDS = "/usr/bin/python3 -c " .. server.quote(
  "import os, sys; os.closerange(3, 65536); os.execvp(sys.argv[1], sys.argv[1:])")
Redis.__index = Redis

local free_port = server.free_port
M.free_port = free_port

-- redis-cli with the server's port (and password); returns its output.
function Redis:cli(...)
  local words = { "redis-cli", "-h", "127.0.0.1", "-p", tostring(self.port) }
  if self.password then
    words[#words + 1] = "--no-auth-warning"
    words[#words + 1] = "-a"
    words[#words + 1] = self.password
  end
  for _, a in ipairs({ ... }) do words[#words + 1] = tostring(a) end
  for i, w in ipairs(words) do words[i] = server.quote(w) end
  local _, out = server.sh(table.concat(words, " ") .. " 2>&1")
  return (out:gsub("\n$", ""))
end

function Redis:restart()
  local args = { "redis-server", "--port", tostring(self.port), "--bind", "127.0.0.1",
    "--save", "''", "--appendonly", "no", "--daemonize", "no", "--dir", server.quote(self.dir),
    "--enable-debug-command", "local", "--unixsocket", server.quote(self:socket()) }
  if self.password then
    args[#args + 1] = "--requirepass"
    args[#args + 1] = server.quote(self.password)
  end
  os.remove(self.dir .. "/pid")
  -- Through a wrapper that closes every inherited descriptor: the spec's
  -- client sockets must not stay open in redis-server after the spec
  -- closes them (the server would never see them close).
  table.insert(args, 1, CLOSEFDS)
  os.execute("sh -c " .. server.quote(table.concat(args, " ") .. " >"
    .. server.quote(self.dir .. "/log") .. " 2>&1 & echo $! >" .. server.quote(self.dir .. "/pid"))
    .. " </dev/null >/dev/null 2>&1")
  local deadline = socket.gettime() + 10 * server.TIMEOUT_SCALE
  while socket.gettime() < deadline do
    self.pid = self.pid or tonumber((server.read_file(self.dir .. "/pid") or ""):match("%d+"))
    if self.pid and self:cli("PING"):match("PONG") then return self end
    socket.sleep(0.05)
  end
  return nil, "redis-server did not start: " .. (server.read_file(self.dir .. "/log") or "")
end

-- Stops the server (SIGKILL: a crash, as far as clients can tell) and
-- waits until its port refuses connections.
function Redis:stop()
  if not self.pid then return end
  os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
  local deadline = socket.gettime() + 10
  while socket.gettime() < deadline do
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", self.port)
    c:close()
    if not ok then break end
    socket.sleep(0.05)
  end
  self.pid = nil
end

-- Stops it and removes its directory.
function Redis:cleanup()
  self:stop()
  if self.dir then server.rmtree(self.dir) end
  self.dir = nil
end

-- opts.password: --requirepass.
function M.start(opts)
  opts = opts or {}
  local r = setmetatable({ port = free_port(), password = opts.password,
    dir = server.mkdtemp() }, Redis)
  local ok, err = r:restart()
  if not ok then r:cleanup(); return nil, err end
  return r
end

-- A misbehaving Redis (spec/fixtures/servers/redis_fake.py): mode
-- "silent", "cut" or "huge". Returns { port =, stop = function }.
function M.fake(mode)
  local dir = server.mkdtemp()
  local script = server.source_dir() .. "/spec/fixtures/servers/redis_fake.py"
  os.execute(CLOSEFDS .. " /usr/bin/python3 " .. server.quote(script) .. " " .. mode .. " "
    .. server.quote(dir .. "/port") .. " </dev/null >/dev/null 2>&1 & echo $! >"
    .. server.quote(dir .. "/pid"))
  local deadline = socket.gettime() + 10
  local port
  while socket.gettime() < deadline do
    port = tonumber((server.read_file(dir .. "/port") or ""):match("%d+"))
    if port then break end
    socket.sleep(0.05)
  end
  local pid = tonumber((server.read_file(dir .. "/pid") or ""):match("%d+"))
  return { port = port, stop = function()
    if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
    server.rmtree(dir)
  end }
end

-- The path of its UNIX socket (it listens on both).
function Redis:socket()
  return self.dir .. "/redis.sock"
end

-- "127.0.0.1:port" of a server, for the examples' environment variables.
function Redis:address()
  return "127.0.0.1:" .. self.port
end

return M
