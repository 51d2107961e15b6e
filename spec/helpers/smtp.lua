-- spec/helpers/smtp.lua - a small SMTP client for specs, built on lua-socket.
-- Calls read like the protocol:
--
--   local c = assert(smtp.connect(srv))      -- or smtp.connect(port, srv)
--   finally(function() c:close() end)
--   c:expect(220)
--   c:send("EHLO spec.test"):expect(250)
--   c:send("MAIL FROM:<a@spec.test>"):expect(250, "2.1.0")
--
-- expect() reads one whole (multi-line) reply and fails with the reply, the
-- recent transcript and the last 40 lines of the server log when the code or
-- the enhanced code / text does not match. Every read has a timeout (10 s by
-- default) so a hung server fails the spec instead of hanging it.
local socket = require "socket"

local M = {}
M.TIMEOUT = 10

local gettime, select_, sleep = socket.gettime, socket.select, socket.sleep
local concat, type, tostring, ipairs, error = table.concat, type, tostring, ipairs, error
local setmetatable = setmetatable

local Client = {}
Client.__index = Client

local function remember(self, dir, text)
  local t = self.transcript
  t[#t + 1] = dir .. " " .. text:gsub("\r", "\\r"):gsub("\n", "\\n\n   ")
  if #t > 30 then table.remove(t, 1) end
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

-- Does text contain pat, as a Lua pattern or else as a plain string?
function M.text_has(text, pat)
  local ok, found = pcall(string.find, text, pat)
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

-- Connects to 127.0.0.1. connect(srv [, opts]) or connect(port [, srv [, opts]]).
-- opts: host, bind (local address, e.g. "127.0.0.2"), timeout.
function M.connect(a, b, c)
  local port, srv, opts
  if type(a) == "table" then
    srv, port, opts = a, a.port, b
  else
    port, srv, opts = a, b, c
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

function Client:local_port()
  local _, port = self.sock:getsockname()
  return tonumber(port)
end

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

-- Text helpers.
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
