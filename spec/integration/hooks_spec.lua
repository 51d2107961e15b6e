-- Every hook with every return form: nothing, true, false, code + text,
-- code + lines, enhanced code added / kept, luamta.disconnect with and
-- without a reply. Fault handling (errors, budgets, invalid returns) is in
-- faults_spec.lua.
local server = require "server"
local smtp = require "smtp"
local hooks = require "hooks"

describe("hook return forms #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = "spec/fixtures/policies/scripted.lua",
      args = { "--hostname", "mx.spec.test" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  for _, h in ipairs(hooks.list) do
    describe(h.hook, function()
      local function run(action, check)
        local c = hooks.ready(srv, h, action)
        finally(function() c:close() end)
        local r = check(c, h.trigger(c))
        return c, r
      end

      it("accepts with the default reply when it returns nothing", function()
        local c = run("accept", function(c) return c:expect(h.accept[1], h.accept[2]) end)
        if h.after_accept then h.after_accept(c) end
        if h.closes then c:expect_closed() else c:send("NOOP"):expect(250, "2.0.0") end
      end)

      it("accepts with the default reply when it returns true", function()
        local c = run("true", function(c) return c:expect(h.accept[1], h.accept[2]) end)
        if h.closes then c:expect_closed() end
      end)

      if h.reject then
        it("rejects with the default reply when it returns false", function()
          local c = run("false", function(c) return c:expect(h.reject[1], h.reject[2]) end)
          h.again(c)
        end)
      end

      if not h.closes then
        it("sends a custom reject and the session goes on", function()
          local c = run("reply 550 5.7.1 custom reject from " .. h.hook, function(c)
            return c:expect(550, "5.7.1")
          end)
          h.again(c)
        end)

        it("adds an enhanced code by class when the text has none", function()
          local _, r = run("noenh 450 try again later", function(c) return c:expect(450) end)
          assert.are.same({ "4.0.0 try again later" }, r.lines)
        end)

        it("keeps an enhanced code that is present", function()
          local _, r = run("reply 451 4.7.1 greylisted", function(c) return c:expect(451) end)
          assert.are.same({ "4.7.1 greylisted" }, r.lines)
        end)

        it("sends a multi-line reject from a table of lines", function()
          local c, r = run("lines 550 5.7.1 first|5.7.1 second|5.7.1 third", function(c)
            return c:expect(550, "5.7.1")
          end)
          assert.are.same({ "5.7.1 first", "5.7.1 second", "5.7.1 third" }, r.lines)
          h.again(c)
        end)

        it("adds the enhanced code to every line of a multi-line reply", function()
          local _, r = run("lines 554 one|two", function(c) return c:expect(554, "5.0.0") end)
          assert.are.same({ "5.0.0 one", "5.0.0 two" }, r.lines)
        end)
      end

      if h.ok_code ~= 354 and h.hook ~= "on_helo" and h.hook ~= "on_ehlo" then
        it("sends a custom accept (" .. h.ok_code .. ") with the enhanced code added", function()
          local c, r = run("noenh " .. h.ok_code .. " custom accept", function(c)
            return c:expect(h.ok_code)
          end)
          assert.are.same({ "2.0.0 custom accept" }, r.lines)
          if h.closes then c:expect_closed() end
        end)

        it("sends a multi-line custom accept", function()
          local c, r = run("lines " .. h.ok_code .. " 2.0.0 line one|2.0.0 line two",
            function(c) return c:expect(h.ok_code, "2.0.0") end)
          assert.are.same({ "2.0.0 line one", "2.0.0 line two" }, r.lines)
          if h.closes then c:expect_closed() end
        end)
      end

      if h.hook == "on_helo" or h.hook == "on_ehlo" then
        it("sends a custom accept text", function()
          local c, r = run("lines 250 mx.spec.test custom|PIPELINING", function(c)
            return c:expect(250)
          end)
          assert.matches("mx.spec.test custom", r.lines[1], 1, true)
          -- a custom 2xx accepts: a transaction may start
          c:send("MAIL FROM:<a@spec.test>"):expect(250)
        end)
      end

      it("replies and closes on luamta.disconnect(421, text)", function()
        local c = run("disconnect", function(c) return c:expect(421, "4.7.0 Go away") end)
        c:expect_closed()
      end)

      it("closes without a reply on luamta.disconnect()", function()
        local c = hooks.ready(srv, h, "drop")
        finally(function() c:close() end)
        h.trigger(c)
        c:expect_closed()
      end)
    end)
  end

  describe("on_quit", function()
    it("closes after a custom 221", function()
      local c = hooks.ready(srv, hooks.list[9], "reply 221 2.0.0 See you")
      finally(function() c:close() end)
      c:send("QUIT"):expect(221, "See you")
      c:expect_closed()
    end)
  end)

  describe("on_connect", function()
    -- on_connect is planned from another session with XNEXT.
    local function plan_next(action)
      local p = assert(smtp.connect(srv))
      local ok, err = pcall(function()
        p:expect(220)
        p:send("EHLO planner.spec.test"):expect(250)
        p:send("XNEXT on_connect " .. action):expect(250, "planned")
        p:send("QUIT"):expect(221)
      end)
      p:close()
      assert(ok, err)
    end

    local open = {}
    after_each(function()
      for _, c in ipairs(open) do c:close() end
      open = {}
    end)

    local function connect_with(action)
      plan_next(action)
      local c = assert(smtp.connect(srv))
      open[#open + 1] = c
      return c
    end

    it("greets with the default 220 when it returns nothing or true", function()
      for _, a in ipairs({ "accept", "true" }) do
        local c = connect_with(a)
        c:expect(220, "^mx%.spec%.test ESMTP luamta")
        c:send("EHLO client.spec.test"):expect(250)
      end
    end)

    it("rejects with 554 5.7.1 and closes when it returns false", function()
      local c = connect_with("false")
      c:expect(554, "5.7.1")
      c:expect_closed()
    end)

    it("sends a custom rejecting greeting and closes", function()
      local c = connect_with("reply 554 5.7.1 No mail from you")
      c:expect(554, "No mail from you")
      c:expect_closed()
    end)

    it("sends a custom 220 greeting and serves the session", function()
      local c = connect_with("reply 220 mx.spec.test custom greeting")
      local r = c:expect(220, "custom greeting")
      assert.matches("^mx%.spec%.test custom greeting", r.text)
      c:send("EHLO client.spec.test"):expect(250)
    end)

    it("sends a multi-line greeting", function()
      local c = connect_with("lines 220 mx.spec.test first|second")
      local r = c:expect(220)
      assert.are.equal(2, #r.lines)
      assert.matches("first", r.lines[1], 1, true)
      assert.matches("second", r.lines[2], 1, true)
      c:send("NOOP"):expect(250)
    end)

    it("replies and closes on luamta.disconnect(421, text)", function()
      local c = connect_with("disconnect")
      c:expect(421, "4.7.0 Go away")
      c:expect_closed()
    end)

    it("closes without a greeting on luamta.disconnect()", function()
      local c = connect_with("drop")
      c:expect_closed()
    end)

    it("leaves the following connection alone", function()
      connect_with("false"):expect(554)
      local c = assert(smtp.connect(srv))
      open[#open + 1] = c
      c:expect(220)
    end)
  end)
end)

describe("hooks are called with the right arguments #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = "spec/fixtures/policies/scripted.lua",
      args = { "--hostname", "mx.spec.test" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  local function fresh()
    local c = assert(smtp.connect(srv))
    c:expect(220)
    return c
  end

  it("passes the HELO and EHLO names", function()
    local c = fresh()
    finally(function() c:close() end)
    c:send("EHLO first.spec.test"):expect(250)
    c:send("XACT on_helo echo"):expect(250)
    c:send("HELO second.spec.test"):expect(250, "on_helo got <second.spec.test>")
    c:send("XACT on_ehlo echo"):expect(250)
    c:send("EHLO third.spec.test"):expect(250, "on_ehlo got <third.spec.test>")
  end)

  it("passes the EHLO keyword list as a table", function()
    local c = fresh()
    finally(function() c:close() end)
    c:send("EHLO first.spec.test"):expect(250)
    c:send("XACT on_ehlo echo"):expect(250)
    local r = c:send("EHLO third.spec.test"):expect(250)
    -- the echo shows the keywords table as {1=...,2=...}
    assert.matches("PIPELINING", r.text, 1, true)
    assert.matches("ENHANCEDSTATUSCODES", r.text, 1, true)
  end)

  it("passes the RCPT address and parameters", function()
    local c = fresh()
    finally(function() c:close() end)
    c:send("EHLO client.spec.test"):expect(250)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("XACT on_rcpt echo"):expect(250)
    c:send("RCPT TO:<Mixed.Case@Spec.Test>"):expect(250, "on_rcpt got <Mixed.Case@Spec.Test> <{}>")
  end)

  it("passes VRFY's argument", function()
    local c = fresh()
    finally(function() c:close() end)
    c:send("XACT on_vrfy echo"):expect(250)
    c:send("VRFY John Smith"):expect(250, "on_vrfy got <John Smith>")
  end)

  it("passes an unknown verb upper-cased, and its argument", function()
    local c = fresh()
    finally(function() c:close() end)
    c:send("XACT on_unknown echo"):expect(250)
    c:send("frob The Widget"):expect(250, "on_unknown got <FROB> <The Widget>")
  end)

  it("runs custom verbs case-insensitively with \"\" for no argument", function()
    local c = fresh()
    finally(function() c:close() end)
    c:send("XACT XECHO echo"):expect(250)
    c:send("xecho"):expect(250, "XECHO got <>")
    c:send("XACT XECHO echo"):expect(250)
    c:send("XEcho  two  words"):expect(250, "XECHO got <two  words>")
  end)

  it("passes the envelope and size to on_message", function()
    local c = fresh()
    finally(function() c:close() end)
    c:send("EHLO client.spec.test"):expect(250)
    c:send("XACT on_message echo"):expect(250)
    local body = "Subject: x\r\n\r\n12345\r\n"
    local r = c:message("from@spec.test", { "to1@spec.test", "to2@spec.test" }, body)
      :expect(250, "on_message got <from@spec.test> <2> <%d+>")
    -- The size is the message's, with the server's Received: field on top.
    local size = tonumber(r.text:match("<(%d+)>$"))
    assert.is_true(size > #body + #"Received: from client.spec.test", r.text)
  end)

  it("calls the hooks of a session in protocol order, once each", function()
    local c = fresh()
    finally(function() c:close() end)
    c:send("HELO client.spec.test"):expect(250)
    c:send("EHLO client.spec.test"):expect(250)
    c:send("VRFY x"):expect(252)
    c:send("FOO"):expect(500)
    c:send("XECHO"):expect(250)
    c:message("a@spec.test", { "b@spec.test", "c@spec.test" }, "x\r\n"):expect(250)
    c:send("RSET"):expect(250)
    c:send("NOOP"):expect(250)
    local id = hooks.session_id(c)
    c:send("QUIT"):expect(221)
    c:expect_closed()
    assert.truthy(srv:wait_file("events", "on_disconnect " .. id))
    assert.are.same({ "on_connect", "on_helo", "on_ehlo", "on_vrfy", "on_unknown", "XECHO",
      "on_mail", "on_rcpt", "on_rcpt", "on_data", "on_message", "on_rset", "on_quit",
      "on_disconnect" }, hooks.events_of(srv, id))
  end)
end)

describe("the session object s #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = "spec/fixtures/policies/scripted.lua",
      args = { "--hostname", "mx.spec.test", "--max-size", "123456" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  local function fields(c)
    local r = c:send("XSESSION"):expect(250)
    local t = {}
    for _, line in ipairs(r.lines) do
      local k, v = line:match("^2%.0%.0 ([%w_]+)=(.*)$")
      if k then t[k] = v end
    end
    return t
  end

  it("has an id of 16 hex digits that the log uses", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    local f = fields(c)
    assert.matches("^" .. ("%x"):rep(16) .. "$", f.id)
    c:send("QUIT"):expect(221)
    assert.truthy(srv:wait_log(" " .. f.id .. " "), "no log line carries session id " .. f.id)
  end)

  it("gives every session its own id", function()
    local a = assert(smtp.connect(srv))
    local b = assert(smtp.connect(srv))
    finally(function() a:close(); b:close() end)
    a:expect(220)
    b:expect(220)
    assert.are_not.equal(fields(a).id, fields(b).id)
  end)

  it("has the peer and local addresses", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    local f = fields(c)
    assert.are.equal("127.0.0.1", f.peer_ip)
    assert.are.equal(tostring(c:local_port()), f.peer_port)
    assert.are.equal("127.0.0.1", f.local_ip)
    assert.are.equal(tostring(srv.port), f.local_port)
  end)

  it("tracks helo and esmtp", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    local f = fields(c)
    assert.are.equal("nil", f.helo)
    assert.are_not.equal("true", f.esmtp)
    c:send("HELO plain.spec.test"):expect(250)
    f = fields(c)
    assert.are.equal("plain.spec.test", f.helo)
    assert.are_not.equal("true", f.esmtp)
    c:send("EHLO extended.spec.test"):expect(250)
    f = fields(c)
    assert.are.equal("extended.spec.test", f.helo)
    assert.are.equal("true", f.esmtp)
  end)

  it("has the current transaction, and none outside one", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    local f = fields(c)
    assert.are.equal("nil", f.sender)
    assert.are.equal("", f.recipients)
    assert.are.equal("table", f.recipients_type)
    c:send("MAIL FROM:<a@spec.test> BODY=8BITMIME"):expect(250)
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    c:send("RCPT TO:<c@spec.test>"):expect(250)
    f = fields(c)
    assert.are.equal("a@spec.test", f.sender)
    assert.are.equal("b@spec.test,c@spec.test", f.recipients)
    assert.are.equal("BODY=8BITMIME", f.mail_params)
    c:send("RSET"):expect(250)
    f = fields(c)
    assert.are.equal("nil", f.sender)
    assert.are.equal("", f.recipients)
  end)

  it("has the configured max_size", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    assert.are.equal("123456", fields(c).max_size)
  end)

  it("counts the messages accepted in the session", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    assert.are.equal("0", fields(c).messages)
    c:message("a@spec.test", "b@spec.test", "one\r\n"):expect(250)
    assert.are.equal("1", fields(c).messages)
    c:send("XACT on_message reply 554 5.7.1 no"):expect(250)
    c:message("a@spec.test", "b@spec.test", "two\r\n"):expect(554)
    assert.are.equal("1", fields(c).messages)
    c:message("a@spec.test", "b@spec.test", "three\r\n"):expect(250)
    assert.are.equal("2", fields(c).messages)
  end)

  it("has tls and user nil, and luamta.version / hostname", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    local f = fields(c)
    assert.are.equal("nil", f.tls)
    assert.are.equal("nil", f.user)
    assert.are.equal("string", f.version_type)
    assert.are.equal("mx.spec.test", f.hostname)
  end)

  it("keeps s.vars across hooks for the session only", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    local f = fields(c)
    assert.are.equal("table", f.vars_type)
    -- on_connect wrote s.vars.calls; a verb run later reads it
    assert.are.equal("on_connect", f.calls)
    c:send("XVAR colour=blue"):expect(250)
    c:send("EHLO client.spec.test"):expect(250)
    c:send("XVAR colour"):expect(250, "colour=blue")
    assert.are.equal("on_connect,on_ehlo", fields(c).calls)
    local d = assert(smtp.connect(srv))
    finally(function() c:close(); d:close() end)
    d:expect(220)
    d:send("XVAR colour"):expect(250, "colour=nil")
  end)

  it("calls on_disconnect after QUIT, after a client close and after a hook disconnect",
    function()
      local ids = {}
      local c = assert(smtp.connect(srv))
      c:expect(220)
      ids[1] = hooks.session_id(c)
      c:send("QUIT"):expect(221)
      c:close()

      c = assert(smtp.connect(srv))
      c:expect(220)
      ids[2] = hooks.session_id(c)
      c:close()

      c = assert(smtp.connect(srv))
      c:expect(220)
      ids[3] = hooks.session_id(c)
      c:send("XACT on_rset disconnect"):expect(250)
      c:send("RSET"):expect(421)
      c:expect_closed()
      c:close()

      for _, id in ipairs(ids) do
        assert.truthy(srv:wait_file("events", "on_disconnect " .. id),
          "on_disconnect not called for " .. id)
      end
    end)

  it("logs a failing on_disconnect and goes on", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("XACT on_disconnect error disc1"):expect(250)
    c:send("QUIT"):expect(221)
    c:expect_closed()
    assert.truthy(srv:wait_log({ "hook.error", "on_disconnect", "boom%-disc1" }),
      "no hook.error line for on_disconnect")
    local d = assert(smtp.connect(srv))
    finally(function() c:close(); d:close() end)
    d:expect(220)
    d:send("NOOP"):expect(250)
  end)

  it("lets s:log write a line tagged with the session id", function()
    local srv2 = assert(server.start({ script_source = [[
      return { verbs = { XLOG = function(s, arg) s:log("spec-mark " .. arg) luamta.log("global-mark") end } }
    ]] }))
    local c
    finally(function() if c then c:close() end srv2:stop() end)
    c = assert(smtp.connect(srv2))
    c:expect(220)
    c:send("XLOG a\1b"):expect(250)
    local line = srv2:wait_log("spec%-mark")
    assert.truthy(line, "s:log wrote nothing")
    assert.matches("^%S+ %a+ %x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x ", line)
    assert.is_nil(line:find("\1", 1, true), "client text not escaped")
    assert.truthy(srv2:wait_log("global%-mark"))
  end)
end)

describe("the message object msg #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = "spec/fixtures/policies/inspect.lua" }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("has the envelope, the data, its size and header lookup", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    local data = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
      .. "Received: from c\r\n by d; Mon, 1 Jan 2024 00:00:01 +0000\r\n"
      .. "Subject: hello\r\n world\r\n"
      .. "From: <a@spec.test>\r\n"
      .. "\r\n"
      .. "X-In-Body: not a header\r\n"
    local r = c:message("a@spec.test", { "b@spec.test", "c@spec.test" }, data):expect(250, "2.0.0")
    local got = {}
    for _, line in ipairs(r.lines) do
      local k, v = line:match("^2%.0%.0 ([%w_]+)=(.*)$")
      got[k] = v
    end
    assert.are.equal("[a@spec.test]", got.sender)
    assert.are.equal("#2 [b@spec.test] [c@spec.test]", got.recipients)
    -- msg.size is #msg.data: what the client sent and our Received: field.
    local size, len = got.size:match("^(%d+) len=(%d+)$")
    assert.are.equal(size, len)
    assert.is_true(tonumber(size) > #data, got.size)
    assert.are.equal("true", got.crlf_only)
    assert.are.equal("[hello world]", got.subject)
    assert.are.equal("[hello world]", got.SUBJECT)
    -- Ours first, then the client's, unfolded.
    assert.matches("^#3 %[from client%.spec%.test %(unknown %[127%.0%.0%.1%]%) by ",
      got.received)
    assert.are.equal("[from a by b; Mon, 1 Jan 2024 00:00:00 +0000] "
      .. "[from c by d; Mon, 1 Jan 2024 00:00:01 +0000]", got.received:match("(%[from a .*)$"))
    assert.are.equal("nil", got.missing)
    assert.are.equal("#0 ", got.missing_list)
    assert.are.equal("nil", got.body_header)
  end)

  it("has an empty sender for <>", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    c:message("", "b@spec.test", "Subject: bounce\r\n\r\nx\r\n"):expect(250, "sender=[]")
  end)
end)
