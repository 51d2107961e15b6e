-- Faults in policy scripts never take the server down and never become a
-- permanent failure: a Lua error, the instruction budget, the memory cap, the
-- wall-clock budget and an invalid return are each answered 451 4.3.0, logged,
-- and the next command and the next connection work.
local server = require "server"
local smtp = require "smtp"
local hooks = require "hooks"

local ERROR_LINE = hooks.error_line()
local FILE_LINE = "scripted%.lua:" .. ERROR_LINE .. ":"

-- invalid returns for a hook: { action, what }
local function invalid_returns(h)
  local list = {
    { "reply 99 5.0.0 too small", "code 99" },
    { "reply 600 5.0.0 too big", "code 600" },
    { "reply 199 1.0.0 informational", "code 199" },
    { "crlf", "CR LF in the text" },
    { "nul", "NUL in the text" },
    { "long", "a 606-byte text" },
    { "badutf8", "invalid UTF-8 in the text" },
  }
  if h.hook == "on_data" then
    list[#list + 1] = { "reply 250 2.0.0 not 354", "250 from on_data" }
  elseif h.hook == "on_quit" then
    list[#list + 1] = { "reply 250 2.0.0 not 221", "250 from on_quit" }
  else
    list[#list + 1] = { "reply 354 go ahead", "354 from " .. h.hook }
  end
  return list
end

describe("faults in hooks #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = "spec/fixtures/policies/scripted.lua",
      args = { "--hostname", "mx.spec.test", "--hook-instructions", "1000000",
        "--lua-memory", tostring(32 * 1024 * 1024) } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  -- Runs `action` in hook h, expects 451 4.3.0, then checks the session goes
  -- on. QUIT can only be answered 221 or 421 (RFC 5321 4.3.2), so a fault in
  -- on_quit gets 421 4.3.0 and the close QUIT asked for.
  local function fault(h, action)
    local c = hooks.ready(srv, h, action)
    finally(function() c:close() end)
    if h.closes then
      h.trigger(c):expect(421, "4.3.0")
      c:expect_closed()
    else
      h.trigger(c):expect(451, "4.3.0")
      h.again(c)
      c:send("NOOP"):expect(250, "2.0.0")
    end
    return c
  end

  for _, h in ipairs(hooks.list) do
    describe(h.hook, function()
      it("answers a Lua error with 451 4.3.0 and logs hook, file:line once", function()
        local tag = "err_" .. h.hook -- no pattern magic in it
        fault(h, "error " .. tag)
        local line = srv:wait_log({ "hook.error", h.hook, "boom%-" .. tag })
        assert.truthy(line, "no hook.error line naming " .. h.hook .. " and boom-" .. tag)
        assert.matches(FILE_LINE, line)
        assert.are.equal(1, srv:count_log({ "hook.error", "boom%-" .. tag }),
          "the error was not logged exactly once")
      end)

      it("answers an endless loop (instruction budget) with 451 4.3.0", function()
        local before = srv:count_log({ "hook.error", h.hook })
        fault(h, "loop")
        assert.truthy(srv:wait_log({ "hook.error", h.hook }, 10, before + 1),
          "no hook.error line for the loop in " .. h.hook)
      end)

      it("answers a memory hog (--lua-memory) with 451 4.3.0", function()
        local before = srv:count_log({ "hook.error", h.hook })
        fault(h, "hog")
        assert.truthy(srv:wait_log({ "hook.error", h.hook }, 10, before + 1),
          "no hook.error line for the memory hog in " .. h.hook)
      end)

      for _, inv in ipairs(invalid_returns(h)) do
        it("answers an invalid return (" .. inv[2] .. ") with 451 4.3.0 and logs it", function()
          -- a warn or error line naming the hook (not just the usual event line)
          local pats = { "^%S+ [ew]%a+ ", h.hook }
          local before = srv:count_log(pats)
          fault(h, inv[1])
          assert.truthy(srv:wait_log(pats, 10, before + 1),
            "no warn/error line names " .. h.hook .. " after its invalid return")
        end)
      end
    end)
  end

  -- A greeting can only be 220, 554 or 421 (RFC 5321 3.1, 4.3.2), so a
  -- fault in on_connect gets 421 4.3.0 and a close, as Postfix closes with
  -- 421 when it cannot serve.
  describe("on_connect", function()
    local function greet_after(action)
      local p = assert(smtp.connect(srv))
      local ok, err = pcall(function()
        p:expect(220)
        p:send("EHLO planner.spec.test"):expect(250)
        p:send("XNEXT on_connect " .. action):expect(250, "planned")
        p:send("QUIT"):expect(221)
      end)
      p:close()
      assert(ok, err)
      local c = assert(smtp.connect(srv))
      local r, rerr = c:read_reply()
      local closed = c:closed_by_peer()
      c:close()
      return r, rerr, closed
    end

    for _, action in ipairs({ "error err_on_connect", "loop", "hog", "crlf", "reply 99 x",
      "reply 354 x" }) do
      it("answers " .. action .. " with 421 4.3.0, closes, and serves the next connection", function()
        local r, err, closed = greet_after(action)
        assert.truthy(r, "no reply at all: " .. tostring(err))
        assert.are.equal(421, r.code, r.raw)
        assert.matches("^4%.3%.0", r.lines[1])
        assert.is_true(closed, "the session was not closed after the 421")
        local c = assert(smtp.connect(srv))
        finally(function() c:close() end)
        c:expect(220)
        c:send("EHLO client.spec.test"):expect(250)
      end)
    end

    it("logs the on_connect error with file and line", function()
      assert.truthy(srv:wait_log({ "hook.error", "on_connect", "boom%-err_on_connect", FILE_LINE }))
    end)
  end)

  it("logs the session id with a hook error", function()
    local c = hooks.ready(srv, hooks.list[4], "error with-id")
    finally(function() c:close() end)
    local id = hooks.session_id(c)
    c:send("RCPT TO:<b@spec.test>"):expect(451, "4.3.0")
    local line = srv:wait_log({ "hook.error", "boom%-with%-id" })
    assert.truthy(line)
    assert.matches(" " .. id .. " ", line, 1, true)
  end)

  it("does not disturb another session while one fails", function()
    local other = assert(smtp.connect(srv))
    local c
    finally(function() other:close(); if c then c:close() end end)
    other:expect(220)
    other:send("EHLO other.spec.test"):expect(250)
    other:send("MAIL FROM:<a@spec.test>"):expect(250)
    c = hooks.ready(srv, hooks.list[4], "loop")
    c:send("RCPT TO:<b@spec.test>"):expect(451, "4.3.0")
    other:send("RCPT TO:<b@spec.test>"):expect(250)
    other:send("DATA"):expect(354)
    other:send_raw(hooks.BODY .. ".\r\n"):expect(250, "2.0.0")
  end)

  it("still serves a whole transaction on a new connection after all of it", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    c:message("a@spec.test", { "b@spec.test" }, hooks.BODY):expect(250, "2.0.0")
    c:send("QUIT"):expect(221)
  end)
end)

describe("the wall-clock budget (--hook-timeout 1) #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = "spec/fixtures/policies/scripted.lua",
      args = { "--hostname", "mx.spec.test", "--hook-timeout", "1" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  -- on_mail, on_rcpt, on_message and a custom verb
  for _, i in ipairs({ 3, 4, 6, 11 }) do
    local h = hooks.list[i]
    it("answers a hook blocked in os.execute(\"sleep 3\") in " .. h.hook .. " with 451 4.3.0",
      function()
        local before = srv:count_log({ "hook.error", h.hook })
        local c = hooks.ready(srv, h, "block 3")
        finally(function() c:close() end)
        h.trigger(c):expect(451, "4.3.0")
        assert.truthy(srv:wait_log({ "hook.error", h.hook }, 10, before + 1))
        h.again(c)
      end)
  end

  it("does not count time spent in luamta.sleep", function()
    local c = hooks.ready(srv, hooks.list[4], "sleep 2")
    finally(function() c:close() end)
    c:send("RCPT TO:<b@spec.test>"):expect(250, "2.1.5")
  end)

  it("serves the next connection", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    c:message("a@spec.test", { "b@spec.test" }, hooks.BODY):expect(250, "2.0.0")
  end)
end)
