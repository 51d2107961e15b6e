-- spec/helpers/hooks.lua - how to reach each hook of
-- spec/fixtures/policies/scripted.lua from a client, shared by hooks_spec
-- and faults_spec. For each hook:
--   prep(c)      after EHLO and the XACT line: bring the session to the hook
--   trigger(c)   send what runs the hook (the spec reads the reply)
--   accept       default accept reply { code, pattern }
--   reject       default reject reply for `return false` (nil: undefined)
--   ok_code      a valid accepting code for a custom reply
--   again(c)     after the hook answered (not closing): the same step works again
--   closes       true when the hook's command always ends the session
local smtp = require "smtp"

local M = {}

local BODY = "Subject: hooks\r\n\r\nhello\r\n"

local function ehlo(c) c:send("EHLO client.spec.test"):expect(250) end
local function mail(c) c:send("MAIL FROM:<a@spec.test>"):expect(250) end
local function rcpt(c) c:send("RCPT TO:<b@spec.test>"):expect(250) end

M.BODY = BODY

M.list = {
  { hook = "on_helo", prep = function() end,
    trigger = function(c) return c:send("HELO client.spec.test") end,
    accept = { 250, "^mx%.spec%.test" }, reject = { 550, "5.7.1" }, ok_code = 250,
    again = function(c) c:send("HELO client.spec.test"):expect(250, "^mx%.spec%.test") end },
  { hook = "on_ehlo", prep = function() end,
    trigger = function(c) return c:send("EHLO client.spec.test") end,
    accept = { 250, "PIPELINING" }, reject = { 550, "5.7.1" }, ok_code = 250,
    again = function(c) c:send("EHLO client.spec.test"):expect(250, "PIPELINING") end },
  { hook = "on_mail", prep = function() end,
    trigger = function(c) return c:send("MAIL FROM:<a@spec.test>") end,
    accept = { 250, "2.1.0" }, reject = { 550, "5.7.1" }, ok_code = 250,
    again = function(c) c:send("MAIL FROM:<a@spec.test>"):expect(250, "2.1.0") end },
  { hook = "on_rcpt", prep = mail,
    trigger = function(c) return c:send("RCPT TO:<b@spec.test>") end,
    accept = { 250, "2.1.5" }, reject = { 550, "5.7.1" }, ok_code = 250,
    again = function(c) c:send("RCPT TO:<b@spec.test>"):expect(250, "2.1.5") end },
  { hook = "on_data", prep = function(c) mail(c); rcpt(c) end,
    trigger = function(c) return c:send("DATA") end,
    accept = { 354 }, reject = { 554, "5.5.1" }, ok_code = 354,
    after_accept = function(c) c:send_raw(BODY .. ".\r\n"):expect(250, "2.0.0") end,
    again = function(c)
      c:send("DATA"):expect(354)
      c:send_raw(BODY .. ".\r\n"):expect(250, "2.0.0")
    end },
  { hook = "on_message", prep = function() end,
    trigger = function(c) return c:message("a@spec.test", { "b@spec.test" }, BODY) end,
    accept = { 250, "2.0.0" }, reject = { 554, "5.7.1" }, ok_code = 250,
    again = function(c)
      c:message("a@spec.test", { "b@spec.test" }, BODY):expect(250, "2.0.0")
    end },
  { hook = "on_rset", prep = mail,
    trigger = function(c) return c:send("RSET") end,
    accept = { 250, "2.0.0" }, reject = nil, ok_code = 250,
    again = function(c) c:send("RSET"):expect(250, "2.0.0") end },
  { hook = "on_vrfy", prep = function() end,
    trigger = function(c) return c:send("VRFY someone") end,
    accept = { 252, "2.0.0" }, reject = { 550, "5.1.1" }, ok_code = 250,
    again = function(c) c:send("VRFY someone"):expect(252, "2.0.0") end },
  { hook = "on_quit", prep = function() end, closes = true,
    trigger = function(c) return c:send("QUIT") end,
    accept = { 221, "2.0.0" }, reject = nil, ok_code = 221 },
  { hook = "on_unknown", prep = function() end,
    trigger = function(c) return c:send("FROB nicate") end,
    accept = { 500, "5.5.2" }, reject = nil, ok_code = 250,
    again = function(c) c:send("FROB nicate"):expect(500, "5.5.2") end },
  { hook = "XECHO", prep = function() end,
    trigger = function(c) return c:send("XECHO hello") end,
    accept = { 250, "2.0.0" }, reject = { 550, "5.7.1" }, ok_code = 250,
    again = function(c) c:send("XECHO hello"):expect(250, "2.0.0") end },
}

-- A session with EHLO done and `XACT <hook> <action>` planned, brought to
-- the hook. Returns the client (already registered for closing by caller).
function M.ready(srv, h, action)
  local c = assert(smtp.connect(srv))
  c:expect(220)
  ehlo(c)
  c:send("XACT " .. h.hook .. " " .. action):expect(250, "planned")
  h.prep(c)
  return c
end

-- The line number of the error() call in scripted.lua marked ERROR_LINE.
function M.error_line()
  local n = 0
  for line in io.lines("spec/fixtures/policies/scripted.lua") do
    n = n + 1
    if line:find("ERROR_LINE", 1, true) and line:find("error(", 1, true) then return n end
  end
  error("no ERROR_LINE marker in scripted.lua")
end

-- The session id, read through the XSESSION verb.
function M.session_id(c)
  local r = c:send("XSESSION"):expect(250)
  return r.text:match("id=(%x+)")
end

-- Events written by scripted.lua: list of { hook, id, rest }.
function M.events(srv)
  local out = {}
  local f = io.open(srv.dir .. "/events", "rb")
  if not f then return out end
  for line in f:lines() do
    local hook, id, rest = line:match("^(%S+) (%S+) ?(.*)$")
    out[#out + 1] = { hook = hook, id = id, rest = rest, line = line }
  end
  f:close()
  return out
end

function M.events_of(srv, id)
  local out = {}
  for _, e in ipairs(M.events(srv)) do
    if e.id == id then out[#out + 1] = e.hook end
  end
  return out
end

return M
