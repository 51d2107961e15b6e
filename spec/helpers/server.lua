-- spec/helpers/server.lua - start the real luamta binary for a spec.
--
--   local server = require "server"
--   local srv = assert(server.start({ policy = "spec/fixtures/policies/store.lua",
--                                     args = { "--max-size", "1000" } }))
--   ... srv.port, srv.dir, srv:log(), srv:wait_log({ "hook.error", "on_rcpt" }) ...
--   srv:stop()   -- TERM, wait, and assert the server exited 0 (sanitizers
--                -- make it non-zero on a leak or on undefined behaviour)
--
-- The binary is $LUAMTA_BIN (absolute path, set by ctest). Every server gets
-- a fresh temporary directory that is also its working directory and is
-- exported to the server as $LUAMTA_TEST_DIR. LUAMTA_TEST_KEEP=1 keeps it.
-- The server runs --foreground unless opts.workers asks for a master.
local socket = require "socket"

local M = {}

local io_open, os_getenv, os_execute, os_remove = io.open, os.getenv, os.execute, os.remove
local tostring, type, ipairs, pairs, error = tostring, type, ipairs, pairs, error
local concat, insert = table.concat, table.insert

local START_TIMEOUT = 20 -- seconds to wait for the ready file
local STOP_TIMEOUT = 30  -- seconds to wait for the exit after TERM (LSan can be slow)
local POLL = 0.02

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = q

local function read_file(path)
  local f = io_open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end
M.read_file = read_file

local function write_file(path, data)
  local f = assert(io_open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end
M.write_file = write_file

local function source_dir()
  local d = os_getenv("LUAMTA_SOURCE_DIR")
  if d and d ~= "" then return d end
  local p = io.popen("pwd")
  d = p:read("l")
  p:close()
  return d
end
M.source_dir = source_dir

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return source_dir() .. "/" .. path
end
M.absolute = absolute

function M.bin()
  local b = os_getenv("LUAMTA_BIN")
  if not b or b == "" then
    error("LUAMTA_BIN is not set (absolute path of the luamta binary)", 2)
  end
  return absolute(b)
end

-- A fresh private directory.
function M.mkdtemp()
  local name = os.tmpname() -- creates an empty file with a unique name
  os_remove(name)
  name = name .. ".luamta"
  local ok = os_execute("mkdir -m 700 " .. q(name))
  if not ok then error("cannot create " .. name, 2) end
  return name
end

function M.rmtree(dir)
  if dir and dir:match("^/tmp/") then os_execute("rm -rf " .. q(dir)) end
end

local function last_lines(text, n)
  local lines = {}
  for line in (text or ""):gmatch("[^\n]*") do lines[#lines + 1] = line end
  if lines[#lines] == "" then lines[#lines] = nil end
  local first = #lines - n + 1
  if first < 1 then first = 1 end
  return concat(lines, "\n", first, #lines)
end
M.last_lines = last_lines

local function env_prefix(env, dir)
  local parts = { "LUAMTA_TEST_DIR=" .. q(dir) }
  local keys = {}
  for k in pairs(env or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = env[k]
    if type(v) == "string" then v = v:gsub("{dir}", function() return dir end) end
    parts[#parts + 1] = k .. "=" .. q(v)
  end
  return "env " .. concat(parts, " ") .. " "
end

local Server = {}
Server.__index = Server

function Server:log()
  return read_file(self.dir .. "/log") or ""
end

function Server:stdout()
  return read_file(self.dir .. "/stdout") or ""
end

function Server:log_tail(n)
  return last_lines(self:log(), n or 40)
end

-- Does line match every pattern in pats (a pattern or a list of patterns)?
local function line_matches(line, pats)
  if type(pats) == "string" then pats = { pats } end
  for _, p in ipairs(pats) do
    local ok, found = pcall(string.find, line, p)
    if not ((ok and found) or line:find(p, 1, true)) then return false end
  end
  return true
end
M.line_matches = line_matches

-- Log lines that match every pattern in pats (a Lua pattern or a list).
function Server:log_lines(pats)
  local out = {}
  for line in self:log():gmatch("[^\n]+") do
    if line_matches(line, pats) then out[#out + 1] = line end
  end
  return out
end

function Server:count_log(pats)
  return #self:log_lines(pats)
end

-- Polls the log until at least `count` (default 1) lines match pats; returns
-- the last matching line, or nil after `timeout` seconds (default 10).
function Server:wait_log(pats, timeout, count)
  local deadline = socket.gettime() + (timeout or 10)
  count = count or 1
  repeat
    local lines = self:log_lines(pats)
    if #lines >= count then return lines[#lines], lines end
    socket.sleep(POLL)
  until socket.gettime() > deadline
  return nil
end

-- Polls a file in the server's directory until it contains pattern.
function Server:wait_file(name, pattern, timeout)
  local deadline = socket.gettime() + (timeout or 10)
  local path = name:sub(1, 1) == "/" and name or (self.dir .. "/" .. name)
  repeat
    local data = read_file(path)
    if data and (pattern == nil or line_matches(data, pattern)) then
      return data
    end
    socket.sleep(POLL)
  until socket.gettime() > deadline
  return nil
end

function Server:wait_stdout(pattern, timeout)
  return self:wait_file("stdout", pattern, timeout)
end

function Server:exited()
  return read_file(self.dir .. "/exit") ~= nil
end

-- Sends sig (default TERM) and returns at once.
function Server:signal(sig)
  assert(os_execute("kill -" .. (sig or "TERM") .. " " .. tostring(self.pid)))
end

-- Sends sig (default TERM), waits for the exit, returns the exit status
-- (a number; 128+n when killed by signal n) without asserting anything.
function Server:terminate(sig)
  if self.status ~= nil then return self.status end
  local exit_file = self.dir .. "/exit"
  if not read_file(exit_file) then
    os_execute("kill -" .. (sig or "TERM") .. " " .. tostring(self.pid) .. " 2>/dev/null")
    local deadline = socket.gettime() + STOP_TIMEOUT
    while not read_file(exit_file) and socket.gettime() < deadline do
      socket.sleep(POLL)
    end
    if not read_file(exit_file) then
      os_execute("kill -KILL " .. tostring(self.pid) .. " 2>/dev/null")
      local hard = socket.gettime() + 5
      while not read_file(exit_file) and socket.gettime() < hard do socket.sleep(POLL) end
      self.status = "did not exit within " .. STOP_TIMEOUT .. " s of SIG" .. (sig or "TERM")
      return self.status
    end
  end
  self.status = tonumber((read_file(exit_file) or ""):match("%d+")) or read_file(exit_file)
  return self.status
end

function Server:cleanup()
  if os_getenv("LUAMTA_TEST_KEEP") == "1" then
    io.stderr:write("luamta test server kept in " .. self.dir .. "\n")
  else
    M.rmtree(self.dir)
  end
end

-- TERM, wait for the exit, assert exit status 0 (this is where a leak found
-- by LeakSanitizer or an ASan/UBSan report fails the spec), remove the dir.
function Server:stop(sig)
  local status = self:terminate(sig)
  local log = self:log_tail(60)
  self:cleanup()
  if status ~= 0 then
    error("luamta (" .. self.dir .. ") exited with status " .. tostring(status)
      .. " instead of 0; last log lines:\n" .. log, 2)
  end
  return status
end

-- Starts the server. opts:
--   policy        path of a policy file (relative to the source dir)
--   script_source inline Lua source, written to <dir>/policy.lua
--   args          extra command-line arguments (list)
--   env           extra environment variables (map; "{dir}" is replaced)
--   listen        list of --listen values (default { "127.0.0.1:0" })
-- Returns srv, or nil and an error with the log tail.
function M.start(opts)
  opts = opts or {}
  local bin = M.bin()
  local dir = M.mkdtemp()
  local args = {}
  local script
  if opts.script_source then
    script = dir .. "/policy.lua"
    write_file(script, opts.script_source)
  elseif opts.policy then
    script = absolute(opts.policy)
  end
  if script then insert(args, "--script"); insert(args, script) end
  for _, l in ipairs(opts.listen or { "127.0.0.1:0" }) do
    insert(args, "--listen"); insert(args, l)
  end
  insert(args, "--ready-file"); insert(args, dir .. "/ready")
  -- One process unless a spec asks for workers: signals then go straight
  -- to the serving process and log lines are not multiplied by workers.
  if opts.workers then
    insert(args, "--workers"); insert(args, tostring(opts.workers))
  else
    insert(args, "--foreground")
  end
  for _, a in ipairs(opts.args or {}) do insert(args, a) end

  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = q(a) end
  -- The wrapper shell records the server's pid and, once it exits, its status.
  local inner = env_prefix(opts.env, dir) .. q(bin) .. " " .. concat(quoted, " ")
    .. " </dev/null >" .. q(dir .. "/stdout") .. " 2>" .. q(dir .. "/log")
    .. " & echo $! >" .. q(dir .. "/pid.tmp") .. "; mv " .. q(dir .. "/pid.tmp")
    .. " " .. q(dir .. "/pid") .. "; wait $!; echo $? >" .. q(dir .. "/exit.tmp")
    .. "; mv " .. q(dir .. "/exit.tmp") .. " " .. q(dir .. "/exit")
  local cmd = "cd " .. q(dir) .. " && sh -c " .. q(inner) .. " </dev/null >/dev/null 2>&1 &"
  write_file(dir .. "/command", inner .. "\n")
  if not os_execute(cmd) then
    return nil, "cannot run: " .. cmd
  end

  local srv = setmetatable({ dir = dir, args = args, script = script }, Server)
  local deadline = socket.gettime() + START_TIMEOUT
  while socket.gettime() < deadline do
    if not srv.pid then
      srv.pid = tonumber((read_file(dir .. "/pid") or ""):match("%d+"))
    end
    local ready = read_file(dir .. "/ready")
    if ready and ready:find("\n") then
      srv.listeners = {}
      for addr, port in ready:gmatch("(%S+)%s+(%d+)[^\n]*\n") do
        insert(srv.listeners, { addr = addr, port = tonumber(port) })
      end
      if srv.listeners[1] then
        srv.addr = srv.listeners[1].addr
        srv.port = srv.listeners[1].port
        return srv
      end
    end
    if read_file(dir .. "/exit") then break end
    socket.sleep(POLL)
  end
  local why = srv:exited() and ("exited with status " .. tostring(srv:terminate()))
    or ("no ready file after " .. START_TIMEOUT .. " s")
  if not srv:exited() and srv.pid then srv:terminate("KILL") end
  local log = srv:log_tail(40)
  srv:cleanup()
  return nil, "luamta did not start (" .. why .. "): " .. inner .. "\n" .. log
end

-- Runs the binary to completion (--check, --version, bad scripts).
-- Returns exit status, stdout, stderr. opts.env: extra environment;
-- opts.timeout: seconds before it is killed (default 60; status 137).
function M.run(args, opts)
  opts = opts or {}
  local bin = M.bin()
  local dir = M.mkdtemp()
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = q(a) end
  local cmd = "cd " .. q(opts.cwd or source_dir()) .. " && " .. env_prefix(opts.env, dir)
    .. "timeout -s KILL " .. tostring(opts.timeout or 60) .. " " .. q(bin) .. " " .. concat(quoted, " ")
    .. " </dev/null >" .. q(dir .. "/stdout") .. " 2>" .. q(dir .. "/stderr")
  local _, _, code = os_execute(cmd)
  local out, err = read_file(dir .. "/stdout") or "", read_file(dir .. "/stderr") or ""
  M.rmtree(dir)
  return code, out, err
end

-- Names of the files in a directory (sorted), or {} when it does not exist.
function M.ls(dir)
  local names = {}
  local p = io.popen("ls -1A " .. q(dir) .. " 2>/dev/null")
  for name in p:lines() do names[#names + 1] = name end
  p:close()
  table.sort(names)
  return names
end

-- Runs a shell command, returns exit status and its combined output.
function M.sh(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"::status=$?\"")
  local out = p:read("a")
  p:close()
  local status = tonumber(out:match("::status=(%d+)%s*$"))
  out = out:gsub("::status=%d+%s*$", "")
  return status, out
end

return M
