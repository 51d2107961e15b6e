-- luamta.testing - luamta as the SMTP server in your busted specs.
--
--   local testing = require "luamta.testing"
--
--   local srv = assert(testing.start({
--     capture = true,
--     hooks = {
--       on_rcpt = function(s, rcpt)
--         if rcpt:match("^nobody@") then return 550, "5.1.1 No such user" end
--       end,
--     },
--   }))
--   finally(function() srv:stop() end)
--   local c = assert(testing.connect(srv))
--   finally(function() c:close() end)
--   c:expect(220)
--   c:send("EHLO client.test"):expect(250)
--   c:send("MAIL FROM:<a@client.test>"):expect(250, "2.1.0")
--   c:send("RCPT TO:<nobody@client.test>"):expect(550, "5.1.1")
--   c:send("RCPT TO:<b@client.test>"):expect(250)
--   c:send("DATA"):expect(354)
--   c:send_raw("Subject: hi\r\n\r\nhello\r\n.\r\n"):expect(250)
--   local m = srv:messages()[1]      -- { sender =, recipients =, data =, reply =, ... }
--
-- The server is a real luamta subprocess listening on 127.0.0.1 on a port the
-- kernel picks, in a fresh temporary directory that is also its working
-- directory (exported to it as $LUAMTA_TEST_DIR; LUAMTA_TEST_KEEP=1 keeps it).
-- The binary is opts.bin, else $LUAMTA_BIN, else `luamta` on PATH.
-- The project's own specs use this module (through spec/helpers/server.lua
-- and spec/helpers/smtp.lua), so every run of the suite proves it.
--
-- The client speaks in replies: c:send(line):expect(code [, enhanced or text]).
-- A mismatch fails with the whole reply, the recent transcript and the last
-- 40 lines of the server log. Every read has a timeout (M.TIMEOUT, 10 s) so
-- a hung server fails the spec instead of hanging it.
--
-- Under a checking tool: $LUAMTA_WRAPPER holds command words (shell text,
-- "{dir}" replaced by the server's directory) that start() and run() put in
-- front of the binary, e.g. "valgrind -q --error-exitcode=99". When the tool
-- also marks its reports with a fixed text, name it in $LUAMTA_WRAPPER_ERROR:
-- stop() then fails when the server log contains it, which catches a report
-- from a worker process (the master does not pass on a worker's status).
-- $LUAMTA_TIMEOUT_SCALE (default 1) multiplies every default timeout (reads,
-- start, stop, waits, run) for such slow runs; M.TIMEOUT_SCALE is that
-- factor, for specs that pass timeouts of their own.
local socket = require "socket"

local M = {}

local io_open, io_popen, os_getenv, os_execute, os_remove, os_tmpname =
  io.open, io.popen, os.getenv, os.execute, os.remove, os.tmpname
local tostring, tonumber, type, ipairs, pairs, error, pcall =
  tostring, tonumber, type, ipairs, pairs, error, pcall
local setmetatable = setmetatable
local concat, insert, sort, remove = table.concat, table.insert, table.sort, table.remove
local string_dump, string_format, string_find = string.dump, string.format, string.find
local debug_getupvalue, debug_getinfo = debug.getupvalue, debug.getinfo
local math_type, math_random = math.type, math.random
local gettime, select_, sleep = socket.gettime, socket.select, socket.sleep

local SCALE = tonumber(os_getenv("LUAMTA_TIMEOUT_SCALE") or "")
if not SCALE or not (SCALE > 0) then SCALE = 1 end
M.TIMEOUT_SCALE = SCALE
M.TIMEOUT = 10 * SCALE           -- seconds a client read may take
local START_TIMEOUT = 20 * SCALE -- seconds to wait for the ready file
local STOP_TIMEOUT = 30 * SCALE  -- seconds to wait for the exit after TERM (LSan can be slow)
local WAIT_TIMEOUT = 10 * SCALE  -- wait_log and wait_file
local RUN_TIMEOUT = 60 * SCALE   -- run()
local POLL = 0.02

---------------------------------------------------------------------------
-- Files and processes
---------------------------------------------------------------------------

-- Quotes a string for sh.
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

-- $LUAMTA_SOURCE_DIR, else the current directory: relative paths given to
-- start() and run() are relative to it.
local function source_dir()
  local d = os_getenv("LUAMTA_SOURCE_DIR")
  if d and d ~= "" then return d end
  local p = io_popen("pwd")
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

-- The luamta binary: $LUAMTA_BIN (relative to the source dir when not
-- absolute), else `luamta` found on PATH.
function M.bin()
  local b = os_getenv("LUAMTA_BIN")
  if b and b ~= "" then return absolute(b) end
  local p = io_popen("command -v luamta 2>/dev/null")
  local found = p:read("l")
  p:close()
  if found and found ~= "" then return found end
  error("no luamta binary: set LUAMTA_BIN, pass opts.bin or put luamta on PATH", 2)
end

-- Whether port is free on 127.0.0.1 for TCP and UDP (bound, then closed).
local function port_free(port)
  local t, u = socket.tcp(), socket.udp()
  local ok = t:bind("127.0.0.1", port) and u:setsockname("127.0.0.1", port)
  t:close()
  u:close()
  return ok and true or false
end

-- A port on 127.0.0.1 that nothing uses now (TCP and UDP), for a server a
-- test starts on a port it must know in advance. Picked at random below
-- the range the kernel takes the local ports of outgoing connections from
-- (ip_local_port_range): a port from that range, free a moment ago, may
-- be some client's by the time the server binds it.
function M.free_port()
  local f = io_open("/proc/sys/net/ipv4/ip_local_port_range")
  local first = f and f:read("n") or 32768
  if f then f:close() end
  local hi = first - 1
  local lo = hi - 12000 > 1024 and hi - 12000 or 1025
  for _ = 1, 200 do
    local port = hi > lo and math_random(lo, hi) or nil
    if port and port_free(port) then return port end
  end
  -- No room below the range: what the kernel hands out.
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- A fresh private directory under /tmp.
function M.mkdtemp()
  local name = os_tmpname() -- creates an empty file with a unique name
  os_remove(name)
  name = name .. ".luamta"
  local ok = os_execute("mkdir -m 700 " .. q(name))
  if not ok then error("cannot create " .. name, 2) end
  return name
end

-- Removes a directory tree; only under /tmp, as a safety net.
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
  sort(keys)
  for _, k in ipairs(keys) do
    local v = env[k]
    if type(v) == "string" then v = v:gsub("{dir}", function() return dir end) end
    parts[#parts + 1] = k .. "=" .. q(v)
  end
  return "env " .. concat(parts, " ") .. " "
end

-- The shell text that goes in front of the binary: opts.wrapper (false for
-- none), else $LUAMTA_WRAPPER, with "{dir}" replaced; "" without one.
local function wrapper_prefix(opts, dir)
  local w = opts.wrapper
  if w == nil then w = os_getenv("LUAMTA_WRAPPER") end
  if not w or w == "" then return "" end
  if type(w) ~= "string" then error("wrapper must be a string or false", 3) end
  return (w:gsub("{dir}", function() return dir end)) .. " "
end

-- Names of the files in a directory (sorted), or {} when it does not exist.
function M.ls(dir)
  local names = {}
  local p = io_popen("ls -1A " .. q(dir) .. " 2>/dev/null")
  for name in p:lines() do names[#names + 1] = name end
  p:close()
  sort(names)
  return names
end

-- Calls f every 0.1 s until it returns a true value, and returns that
-- value; after secs seconds (default 20, times TIMEOUT_SCALE) raises
-- "timed out waiting for <what>". For what a server does on its own time:
-- a relayed message arriving, a queue emptying.
function M.wait_for(what, f, secs)
  local deadline = os.time() + (secs or 20) * SCALE
  while true do
    local v = f()
    if v then return v end
    if os.time() > deadline then error("timed out waiting for " .. what, 2) end
    os_execute("sleep 0.1")
  end
end

-- Runs a shell command, returns exit status and its combined output.
function M.sh(cmd)
  local p = io_popen("(" .. cmd .. ") 2>&1; echo \"::status=$?\"")
  local out = p:read("a")
  p:close()
  local status = tonumber(out:match("::status=(%d+)%s*$"))
  out = out:gsub("::status=%d+%s*$", "")
  return status, out
end

-- Does line match every pattern in pats (a pattern or a list of patterns)?
-- Each is tried as a Lua pattern, then as a plain string.
local function line_matches(line, pats)
  if type(pats) == "string" then pats = { pats } end
  for _, p in ipairs(pats) do
    local ok, found = pcall(string_find, line, p)
    if not ((ok and found) or line:find(p, 1, true)) then return false end
  end
  return true
end
M.line_matches = line_matches

---------------------------------------------------------------------------
-- Inline hook tables: functions shipped to the server as bytecode
---------------------------------------------------------------------------

local IDENT = "^[%a_][%w_]*$"

-- Lua source for value v (a hook table, a function or plain data), where
-- each function becomes load(<its string.dump>, name, "b"). Errors (level
-- 0) name the path of the offending value.
local function value_source(v, path, seen)
  local t = type(v)
  if t == "function" then
    local info = debug_getinfo(v, "S")
    if info.what == "C" then
      error(path .. " is a C function; only Lua functions can be sent to the server", 0)
    end
    for i = 1, 255 do
      local name = debug_getupvalue(v, i)
      if name == nil then break end
      if name ~= "_ENV" then
        error(path .. " uses the local variable '" .. tostring(name)
          .. "' of an enclosing scope (an upvalue). An inline hook runs in the"
          .. " server's own Lua state, where that variable does not exist: move it"
          .. " inside the function (e.g. local x = require \"x\" in the body), make"
          .. " it a literal, or use opts.policy / opts.script_source", 0)
      end
    end
    return string_format("fn(%q, %q)", string_dump(v), "=" .. path)
  elseif t == "table" then
    if seen[v] then error(path .. " is a cyclic table", 0) end
    seen[v] = true
    local keys = {}
    for k in pairs(v) do
      if type(k) ~= "string" and math_type(k) ~= "integer" then
        error(path .. " has a key of type " .. type(k) .. "; use strings or integers", 0)
      end
      keys[#keys + 1] = k
    end
    sort(keys, function(a, b)
      if type(a) == type(b) then return a < b end
      return type(a) == "number"
    end)
    local out = {}
    for _, k in ipairs(keys) do
      local sub = type(k) == "string" and (k:match(IDENT) and (path .. "." .. k)
        or (path .. "[" .. string_format("%q", k) .. "]")) or (path .. "[" .. k .. "]")
      out[#out + 1] = "[" .. string_format("%q", k) .. "] = " .. value_source(v[k], sub, seen)
    end
    seen[v] = nil
    return "{\n" .. concat(out, ",\n") .. "\n}"
  elseif t == "string" or t == "number" or t == "boolean" then
    return string_format("%q", v)
  end
  error(path .. " is a " .. t .. "; a hook table holds functions and plain data", 0)
end

-- The text of a policy file that returns the hook table `hooks`, every
-- function in it serialised with string.dump and loaded in binary mode.
-- Raises an error (level 2) for a function with upvalues other than _ENV.
function M.hooks_source(hooks)
  if type(hooks) ~= "table" then
    error("hooks must be a table of hook functions, got " .. type(hooks), 2)
  end
  local ok, body = pcall(value_source, hooks, "hooks", {})
  if not ok then error(body, 2) end
  return "-- Generated by luamta.testing from an inline hook table: each function\n"
    .. "-- is the bytecode of a function in a spec (luamta and the spec's Lua\n"
    .. "-- must both be 5.4; errors still name the spec's file and line).\n"
    .. "local load, assert = load, assert\n"
    .. "local function fn(code, name) return assert(load(code, name, \"b\")) end\n"
    .. "return " .. body .. "\n"
end

---------------------------------------------------------------------------
-- The server
---------------------------------------------------------------------------

local Server = {}
Server.__index = Server
M.Server = Server

-- The server's stderr (its log) so far.
function Server:log()
  return read_file(self.dir .. "/log") or ""
end

function Server:stdout()
  return read_file(self.dir .. "/stdout") or ""
end

function Server:log_tail(n)
  return last_lines(self:log(), n or 40)
end

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
-- the last matching line and all of them, or nil after `timeout` seconds
-- (default 10, scaled).
function Server:wait_log(pats, timeout, count)
  local deadline = gettime() + (timeout or WAIT_TIMEOUT)
  count = count or 1
  repeat
    local lines = self:log_lines(pats)
    if #lines >= count then return lines[#lines], lines end
    sleep(POLL)
  until gettime() > deadline
  return nil
end

-- Polls a file (relative to the server's directory) until it contains
-- pattern (or exists, without one); returns its content or nil.
function Server:wait_file(name, pattern, timeout)
  local deadline = gettime() + (timeout or WAIT_TIMEOUT)
  local path = name:sub(1, 1) == "/" and name or (self.dir .. "/" .. name)
  repeat
    local data = read_file(path)
    if data and (pattern == nil or line_matches(data, pattern)) then
      return data
    end
    sleep(POLL)
  until gettime() > deadline
  return nil
end

function Server:wait_stdout(pattern, timeout)
  return self:wait_file("stdout", pattern, timeout)
end

-- The captured messages (opts.capture), oldest first: each the decoded JSON
-- line (qid, time, sender, recipients, mail_params, peer_ip, peer_port,
-- local_port, helo, esmtp, tls, user, size, eml, reply = { code, text })
-- plus .data, the content of its .eml file. JSON nulls become nil. A
-- message is captured before its 250 is sent, so once the client has the
-- reply, the message is here.
function Server:messages()
  if not self.capture_dir then
    error("this server was started without opts.capture", 2)
  end
  local list, err = require("luamta.capture").read(self.capture_dir)
  if not list then error(err, 2) end
  return list
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
-- After STOP_TIMEOUT seconds the server is killed and a string returned.
function Server:terminate(sig)
  if self.status ~= nil then return self.status end
  local exit_file = self.dir .. "/exit"
  if not self.pid then
    self.pid = tonumber((read_file(self.dir .. "/pid") or ""):match("%d+"))
  end
  if not read_file(exit_file) then
    os_execute("kill -" .. (sig or "TERM") .. " " .. tostring(self.pid) .. " 2>/dev/null")
    local deadline = gettime() + STOP_TIMEOUT
    while not read_file(exit_file) and gettime() < deadline do
      sleep(POLL)
    end
    if not read_file(exit_file) then
      os_execute("kill -KILL " .. tostring(self.pid) .. " 2>/dev/null")
      local hard = gettime() + 5
      while not read_file(exit_file) and gettime() < hard do sleep(POLL) end
      self.status = "did not exit within " .. STOP_TIMEOUT .. " s of SIG" .. (sig or "TERM")
      return self.status
    end
  end
  self.status = tonumber((read_file(exit_file) or ""):match("%d+")) or read_file(exit_file)
  return self.status
end

-- Removes the server's directory (unless LUAMTA_TEST_KEEP=1).
function Server:cleanup()
  if self.cleaned then return end
  self.cleaned = true
  if os_getenv("LUAMTA_TEST_KEEP") == "1" then
    io.stderr:write("luamta test server kept in " .. self.dir .. "\n")
  else
    M.rmtree(self.dir)
  end
end

-- The safety net: a server that became garbage (or is still running when
-- busted exits; it closes the Lua state) without stop() is stopped and its
-- directory removed, with a warning. A spec should still stop its servers:
-- only stop() checks the exit status.
function Server:__gc()
  if self.status ~= nil or self.cleaned then return end
  pcall(function()
    local status = self:terminate()
    io.stderr:write("luamta.testing: a server was never stopped (" .. self.dir
      .. "); stopped it at collection, exit status " .. tostring(status) .. "\n")
    self:cleanup()
  end)
end

-- TERM, wait for the exit, assert exit status 0 (this is where a crash, a
-- leak found by LeakSanitizer or an ASan/UBSan report fails the spec) and,
-- under a wrapper with $LUAMTA_WRAPPER_ERROR, a log free of that text;
-- remove the directory. Calling it again returns the same status.
function Server:stop(sig)
  local status = self:terminate(sig)
  local full = self.cleaned and "" or self:log()
  local log = last_lines(full, 60)
  local marker = self.wrapper_error
  self:cleanup()
  if status ~= 0 then
    error("luamta (" .. self.dir .. ") exited with status " .. tostring(status)
      .. " instead of 0; last log lines:\n" .. log, 2)
  end
  local at = marker and full:find(marker, 1, true)
  if at then
    error("luamta (" .. self.dir .. ") exited with status 0 but its log holds a report"
      .. " of the wrapper (" .. marker .. "); from the first one:\n"
      .. full:sub(at, at + 4000), 2)
  end
  return status
end

-- Starts the server and waits until it listens. opts (all optional):
--   policy        path of a policy file (relative to the source dir / cwd)
--   script_source inline Lua source, written to <dir>/policy.lua
--   hooks         an inline hook table of Lua functions (sent as bytecode;
--                 a function may use globals but no other upvalues)
--   capture       true: capture accepted messages in <dir>/capture
--                 (--capture); a string: that directory; see srv:messages()
--   args          extra command-line arguments (list)
--   env           extra environment variables (map; "{dir}" is replaced)
--   listen        list of --listen values (default { "127.0.0.1:0" })
--   workers       N: run a master and N workers (default: --foreground)
--   bin           the binary (default $LUAMTA_BIN, else luamta on PATH)
--   wrapper       shell words in front of the binary (default
--                 $LUAMTA_WRAPPER; false: none)
-- Returns srv (srv.port, srv.host, srv.dir, srv.pid, srv.listeners, and
-- srv.metrics = { addr =, port = } with --metrics in args), or nil and an
-- error with the command and the log tail.
function M.start(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("start: opts must be a table", 2) end
  local n = (opts.policy and 1 or 0) + (opts.script_source and 1 or 0) + (opts.hooks and 1 or 0)
  if n > 1 then error("start: give one of policy, script_source and hooks", 2) end
  local hooks_src
  if opts.hooks then
    local ok, src = pcall(M.hooks_source, opts.hooks)
    if not ok then error("start: " .. tostring(src), 2) end
    hooks_src = src
  end
  local bin = opts.bin and absolute(opts.bin) or M.bin()
  local dir = M.mkdtemp()
  local args = {}
  local script
  if opts.script_source or hooks_src then
    script = dir .. "/policy.lua"
    write_file(script, opts.script_source or hooks_src)
  elseif opts.policy then
    script = absolute(opts.policy)
  end
  if script then insert(args, "--script"); insert(args, script) end
  for _, l in ipairs(opts.listen or { "127.0.0.1:0" }) do
    insert(args, "--listen"); insert(args, l)
  end
  insert(args, "--ready-file"); insert(args, dir .. "/ready")
  local capture_dir
  if opts.capture then
    capture_dir = type(opts.capture) == "string" and absolute(opts.capture) or (dir .. "/capture")
    if not os_execute("mkdir -p " .. q(capture_dir)) then
      M.rmtree(dir)
      return nil, "cannot create the capture directory " .. capture_dir
    end
    insert(args, "--capture"); insert(args, capture_dir)
  end
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
  local inner = env_prefix(opts.env, dir) .. wrapper_prefix(opts, dir)
    .. q(bin) .. " " .. concat(quoted, " ")
    .. " </dev/null >" .. q(dir .. "/stdout") .. " 2>" .. q(dir .. "/log")
    .. " & echo $! >" .. q(dir .. "/pid.tmp") .. "; mv " .. q(dir .. "/pid.tmp")
    .. " " .. q(dir .. "/pid") .. "; wait $!; echo $? >" .. q(dir .. "/exit.tmp")
    .. "; mv " .. q(dir .. "/exit.tmp") .. " " .. q(dir .. "/exit")
  local cmd = "cd " .. q(dir) .. " && sh -c " .. q(inner) .. " </dev/null >/dev/null 2>&1 &"
  write_file(dir .. "/command", inner .. "\n")
  if not os_execute(cmd) then
    M.rmtree(dir)
    return nil, "cannot run: " .. cmd
  end

  local marker = os_getenv("LUAMTA_WRAPPER_ERROR")
  if wrapper_prefix(opts, dir) == "" or marker == "" then marker = nil end
  local srv = setmetatable({ dir = dir, args = args, script = script,
    capture_dir = capture_dir, wrapper_error = marker }, Server)
  local deadline = gettime() + START_TIMEOUT
  while gettime() < deadline do
    if not srv.pid then
      srv.pid = tonumber((read_file(dir .. "/pid") or ""):match("%d+"))
    end
    local ready = read_file(dir .. "/ready")
    -- The server can write its ready file before the wrapper shell has
    -- written the pid file: wait for both (stop() needs the pid).
    if srv.pid and ready and ready:find("\n") then
      srv.listeners = {}
      for addr, port, rest in ready:gmatch("(%S+)%s+(%d+)([^\n]*)\n") do
        -- --metrics's line ends in "metrics": not an SMTP listener.
        if rest:match("^%s*metrics%s*$") then
          srv.metrics = { addr = addr, port = tonumber(port) }
        else
          insert(srv.listeners, { addr = addr, port = tonumber(port) })
        end
      end
      if srv.listeners[1] then
        srv.addr = srv.listeners[1].addr
        srv.host = srv.addr
        srv.port = srv.listeners[1].port
        return srv
      end
    end
    if read_file(dir .. "/exit") then break end
    sleep(POLL)
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
-- opts.cwd: working directory (default the source dir); opts.bin;
-- opts.wrapper (as for start); opts.timeout: seconds before it is killed
-- (default 60, scaled; status 137).
function M.run(args, opts)
  opts = opts or {}
  local bin = opts.bin and absolute(opts.bin) or M.bin()
  local dir = M.mkdtemp()
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = q(a) end
  local cmd = "cd " .. q(opts.cwd or source_dir()) .. " && " .. env_prefix(opts.env, dir)
    .. "timeout -s KILL " .. tostring(opts.timeout or RUN_TIMEOUT) .. " "
    .. wrapper_prefix(opts, dir) .. q(bin) .. " " .. concat(quoted, " ")
    .. " </dev/null >" .. q(dir .. "/stdout") .. " 2>" .. q(dir .. "/stderr")
  local _, _, code = os_execute(cmd)
  local out, err = read_file(dir .. "/stdout") or "", read_file(dir .. "/stderr") or ""
  M.rmtree(dir)
  return code, out, err
end

---------------------------------------------------------------------------
-- The client
---------------------------------------------------------------------------

local Client = {}
Client.__index = Client
M.Client = Client

local function remember(self, dir, text)
  local t = self.transcript
  t[#t + 1] = dir .. " " .. text:gsub("\r", "\\r"):gsub("\n", "\\n\n   ")
  if #t > 30 then remove(t, 1) end
end

-- Reads whatever is available into self.buf, waiting until deadline.
-- Returns true when something happened (data or end of stream), or nil, "timeout".
local function fill(self, deadline)
  if self.eof then return nil, "closed" end
  local remaining = deadline - gettime()
  if remaining <= 0 then return nil, "timeout" end
  local r = select_({ self.sock }, nil, remaining)
  if not r or not r[1] then return nil, "timeout" end
  self.sock:settimeout(0)
  local data, err, partial = self.sock:receive(65536)
  self.sock:settimeout(self.timeout)
  local chunk = data or partial
  if chunk and #chunk > 0 then self.buf = self.buf .. chunk end
  if err and err ~= "timeout" then
    self.eof = true
    self.eof_err = err
  end
  return true
end

local function read_line(self, deadline)
  while true do
    local nl = self.buf:find("\n", 1, true)
    if nl then
      local line = self.buf:sub(1, nl)
      self.buf = self.buf:sub(nl + 1)
      return line
    end
    local ok, err = fill(self, deadline)
    if not ok then return nil, err end
  end
end

local function is_enhanced(s)
  return type(s) == "string" and s:match("^[245]%.%d%d?%d?%.%d%d?%d?$") ~= nil
end
M.is_enhanced = is_enhanced

-- Every message luamta accepts gets its Received: field on top (unless a
-- hook set s.add_received = false), before on_message and any header a
-- policy prepends. unreceived(data) takes the first Received: field out of
-- the header of data (CRLF or LF lines, with its continuation lines) and
-- returns the rest and the field unfolded; it raises when there is none,
-- so comparing its result with what the client sent also checks the field
-- was added.
--   assert.are.equal(sent, testing.unreceived(m.data))
function M.unreceived(data, level)
  local pos = 1
  while pos <= #data do
    local eol = data:find("\n", pos, true) or #data
    local line = data:sub(pos, eol)
    if line == "\n" or line == "\r\n" then break end
    if line:sub(1, 9):lower() == "received:" then
      local stop = eol
      while data:find("^[ \t]", stop + 1) do
        stop = data:find("\n", stop + 1, true) or #data
      end
      local field = data:sub(pos, stop):gsub("\r?\n[ \t]", " "):gsub("\r?\n$", "")
      return data:sub(1, pos - 1) .. data:sub(stop + 1), field
    end
    pos = eol + 1
  end
  error("no Received: field in the message header", (level or 1) + 1)
end

-- Does text contain pat, as a Lua pattern or else as a plain string?
function M.text_has(text, pat)
  local ok, found = pcall(string_find, text, pat)
  if ok and found then return true end
  return text:find(pat, 1, true) ~= nil
end

-- Parses the text of one reply (CRLF-terminated lines) into
-- { code =, lines = { text... }, text =, raw =, enhanced =, malformed = }.
function M.parse_reply(raw)
  local r = { lines = {}, raw = raw }
  local n = 0
  for line in raw:gmatch("[^\n]*\n") do
    n = n + 1
    if line:sub(-2) ~= "\r\n" then
      r.malformed = "line " .. n .. " does not end in CRLF"
    end
    local body = line:gsub("\r?\n$", "")
    local code, sep, text = body:match("^(%d%d%d)([ %-]?)(.*)$")
    if not code or (sep == "" and text ~= "") then
      r.malformed = r.malformed or ("line " .. n .. " is not a reply line")
    else
      code = tonumber(code)
      if r.code and r.code ~= code then
        r.malformed = r.malformed or ("line " .. n .. " changes the code")
      end
      r.code = r.code or code
      r.lines[#r.lines + 1] = text
      r.last_sep = sep
    end
  end
  r.text = concat(r.lines, "\n")
  r.enhanced = r.lines[1] and r.lines[1]:match("^([245]%.%d+%.%d+) ")
  return r
end

-- Connects to the server. connect(srv [, opts]) or connect(port [, srv [, opts]]).
-- opts: host (default 127.0.0.1), bind (local address, e.g. "127.0.0.2"),
-- timeout (seconds per read, default M.TIMEOUT), unix (a UNIX socket's
-- path to connect to instead, e.g. an LMTP listener's; then port is unused).
-- Returns the client, or nil and an error.
function M.connect(a, b, c)
  local port, srv, opts
  if type(a) == "table" then
    srv, port, opts = a, a.port, b
  else
    port, srv, opts = a, b, c
  end
  if opts and opts.unix then
    local unix = require "socket.unix"
    local sock = (unix.stream or unix)()
    sock:settimeout(opts.timeout or M.TIMEOUT)
    local ok, err = sock:connect(opts.unix)
    if not ok then
      sock:close()
      return nil, "connect to " .. opts.unix .. ": " .. tostring(err)
    end
    return setmetatable({ sock = sock, srv = srv, buf = "", timeout = opts.timeout or M.TIMEOUT,
      transcript = {} }, Client)
  end
  if math_type(tonumber(port)) ~= "integer" then
    error("connect: expected a server or a port number, got " .. tostring(a), 2)
  end
  opts = opts or {}
  local sock = socket.tcp()
  local timeout = opts.timeout or M.TIMEOUT
  sock:settimeout(timeout)
  if opts.bind then
    local ok, err = sock:bind(opts.bind, 0)
    if not ok then sock:close(); return nil, "bind " .. opts.bind .. ": " .. tostring(err) end
  end
  local ok, err = sock:connect(opts.host or "127.0.0.1", port)
  if not ok then
    sock:close()
    return nil, "connect to port " .. tostring(port) .. ": " .. tostring(err)
  end
  sock:setoption("tcp-nodelay", true)
  return setmetatable({ sock = sock, srv = srv, buf = "", timeout = timeout,
    transcript = {} }, Client)
end

-- A session ready for MAIL: connect, read the greeting, EHLO name (default
-- "client.spec.test"). Fails the test on any other reply.
--   local c = testing.session(srv); c:send("MAIL FROM:<a@x>"):expect(250)
function M.session(srv, name)
  local c = assert(M.connect(srv))
  c:expect(220)
  c:send("EHLO " .. (name or "client.spec.test")):expect(250)
  return c
end

function Client:local_port()
  local _, port = self.sock:getsockname()
  return tonumber(port)
end

-- Raises an error with msg, the transcript and the server's log tail.
function Client:fail(msg, level)
  local parts = { msg }
  if self.send_err then parts[#parts + 1] = "(a send failed: " .. self.send_err .. ")" end
  parts[#parts + 1] = "--- transcript (C: sent, S: received) ---\n" .. concat(self.transcript, "\n")
  if self.srv and self.srv.log_tail then
    parts[#parts + 1] = "--- server log, last 40 lines ---\n" .. self.srv:log_tail(40)
  end
  error(concat(parts, "\n"), (level or 1) + 1)
end

-- Reads one whole reply without asserting. Returns the reply, or nil, err
-- ("timeout" or "closed") and the partial text read so far.
function Client:read_reply(timeout)
  local deadline = gettime() + (timeout or self.timeout)
  local raw = {}
  while true do
    local line, err = read_line(self, deadline)
    if not line then
      local partial = concat(raw) .. self.buf
      if partial ~= "" then remember(self, "S: (partial)", partial) end
      -- put it back so a later read still sees it
      self.buf = partial
      return nil, err, partial
    end
    raw[#raw + 1] = line
    if not line:match("^%d%d%d%-") then break end
  end
  local text = concat(raw)
  remember(self, "S:", text)
  return M.parse_reply(text)
end

local function describe_want(code, pat)
  local want = type(code) == "table" and concat(code, "|") or tostring(code)
  if pat then want = want .. " " .. tostring(pat) end
  return want
end

local function code_ok(code, got)
  if type(code) == "table" then
    for _, c in ipairs(code) do if c == got then return true end end
    return false
  end
  return code == got
end

-- Checks a reply: code (a number or a list of numbers) and, when given,
-- pat: an enhanced status code ("5.7.1", which every line must carry) or a
-- pattern / plain string the text must contain. Returns the reply.
function Client:check(r, code, pat, level)
  level = (level or 1) + 1
  local why
  if r.malformed then
    why = "malformed reply: " .. r.malformed
  elseif not code_ok(code, r.code) then
    why = "wrong reply code"
  elseif pat and is_enhanced(pat) then
    for i, line in ipairs(r.lines) do
      if line ~= pat and line:sub(1, #pat + 1) ~= pat .. " " then
        why = "line " .. i .. " does not carry enhanced code " .. pat
        break
      end
    end
  elseif pat and not M.text_has(r.text, pat) then
    why = "reply text does not match"
  end
  if why then
    self:fail("expected " .. describe_want(code, pat) .. ", " .. why .. "; got:\n" .. r.raw,
      level)
  end
  return r
end

-- Reads one reply and checks it (see check); returns the reply.
function Client:expect(code, pat, timeout)
  local r, err, partial = self:read_reply(timeout)
  if not r then
    self:fail("expected " .. describe_want(code, pat) .. " but the read ended: " .. tostring(err)
      .. (partial ~= "" and ("; partial reply: " .. partial) or ""), 2)
  end
  return self:check(r, code, pat, 2)
end

-- Reads n replies (for pipelined commands) and returns them.
function Client:read_replies(n, timeout)
  local out = {}
  for i = 1, n do
    local r, err = self:read_reply(timeout)
    if not r then self:fail("reply " .. i .. " of " .. n .. " did not arrive: " .. tostring(err), 2) end
    out[i] = r
  end
  return out
end

-- Sends bytes as they are (malformed input, pipelining, message bodies).
function Client:send_raw(bytes)
  remember(self, "C:", bytes)
  local i = 1
  while i <= #bytes do
    local last, err = self.sock:send(bytes, i)
    if not last then
      self.send_err = self.send_err or tostring(err)
      break
    end
    i = last + 1
  end
  return self
end

-- Sends one command line (CRLF is added); returns the client for :expect().
function Client:send(line)
  return self:send_raw(line .. "\r\n")
end

-- Sends bytes one octet per write (Nagle off), pausing `pause` seconds
-- (default 0.001) between octets so that they arrive as separate segments.
function Client:send_bytewise(bytes, pause)
  remember(self, "C: (byte at a time)", bytes)
  for i = 1, #bytes do
    local ok, err = self.sock:send(bytes, i, i)
    if not ok then self.send_err = self.send_err or tostring(err); break end
    sleep(pause or 0.001)
  end
  return self
end

-- True when a reply (or any byte) is available right now, without waiting.
function Client:has_data()
  if #self.buf > 0 then return true end
  if self.eof then return false end
  fill(self, gettime() + 0.0001)
  return #self.buf > 0
end

-- True when the server closed the connection (waiting up to timeout seconds),
-- false plus the unexpected bytes or "timeout" otherwise.
function Client:closed_by_peer(timeout)
  local deadline = gettime() + (timeout or self.timeout)
  while true do
    if #self.buf > 0 then return false, self.buf end
    if self.eof then return true end
    local ok, err = fill(self, deadline)
    if not ok then
      if self.eof then return #self.buf == 0 end
      return false, err
    end
  end
end

function Client:expect_closed(timeout)
  local closed, what = self:closed_by_peer(timeout)
  if not closed then
    self:fail("expected the server to close the connection, got: " .. tostring(what), 2)
  end
  return self
end

-- MAIL, RCPT..., DATA (each expected to be accepted), then the body (which
-- must end in CRLF; it is sent as is, so dot-stuff it first) and ".".
-- Returns self, so the caller expects the final reply:
--   c:message("a@x", { "b@x" }, body):expect(250)
function Client:message(from, rcpts, body, mail_params)
  if type(rcpts) == "string" then rcpts = { rcpts } end
  self:send("MAIL FROM:<" .. from .. ">" .. (mail_params and (" " .. mail_params) or ""))
  local r = self:read_reply()
  if not r then self:fail("no reply to MAIL", 2) end
  self:check(r, 250, nil, 2)
  for _, to in ipairs(rcpts) do
    self:send("RCPT TO:<" .. to .. ">")
    r = self:read_reply()
    if not r then self:fail("no reply to RCPT", 2) end
    self:check(r, 250, nil, 2)
  end
  self:send("DATA")
  r = self:read_reply()
  if not r then self:fail("no reply to DATA", 2) end
  self:check(r, 354, nil, 2)
  return self:send_raw(body .. ".\r\n")
end

function Client:close()
  if self.sock then
    self.sock:close()
    self.sock = nil
  end
end

---------------------------------------------------------------------------
-- Text helpers
---------------------------------------------------------------------------

-- busted keeps only the last finally() of a test. M.cleanup(finally)
-- registers one that runs every deferred function (last first) and then
-- raises the first error (for example a server's bad exit status). Pass
-- busted's finally: it lives in the spec's environment, not in _G.
--   local defer = testing.cleanup(finally)
--   defer(function() c:close() end); defer(function() srv:stop() end)
function M.cleanup(finally)
  if type(finally) ~= "function" then
    error("testing.cleanup(finally): pass busted's finally", 2)
  end
  local list = {}
  finally(function()
    local first
    for i = #list, 1, -1 do
      local ok, err = pcall(list[i])
      if not ok and first == nil then first = err end
    end
    if first ~= nil then error(first, 0) end
  end)
  return function(fn) list[#list + 1] = fn end
end

function M.crlf(text) -- "\n" line ends -> "\r\n"
  return (text:gsub("\r?\n", "\r\n"))
end

function M.stuff(data) -- RFC 5321 4.5.2 dot-stuffing of CRLF text
  local out = data:gsub("^%.", ".."):gsub("\r\n%.", "\r\n..")
  return out
end

-- The replies of a whole session, normalised for comparison:
-- { "250 2.1.0 Ok", ... } with "queued as <id>" ids replaced.
function M.normalise(replies)
  local out = {}
  for i, r in ipairs(replies) do
    out[i] = (r.raw:gsub("queued as %S+", "queued as <id>"))
  end
  return out
end

return M
