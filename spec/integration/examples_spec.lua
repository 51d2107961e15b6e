-- The example policies in examples/ do what the README says.
local server = require "server"
local smtp = require "smtp"

local session = smtp.session -- connect, 220, EHLO client.spec.test

describe("examples pass --check #integration", function()
  for _, f in ipairs({ "debug.lua", "maildir.lua", "blackhole.lua", "rcpt-check.lua",
    "now-verb.lua" }) do
    it(f, function()
      local code, out, err = server.run({ "--check", "--script", "examples/" .. f })
      assert.are.equal(0, code, out .. err)
      assert.matches("OK", out, 1, true)
    end)
  end
end)

describe("examples/debug.lua #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = "examples/debug.lua" }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("prints an accepted message to stdout like smtpd.DebuggingServer", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:message("sender@spec.test", { "one@spec.test", "two@spec.test" },
      "Subject: printed\r\n\r\nhello debug\r\n"):expect(250, "2.0.0")
    local out = srv:wait_stdout("END MESSAGE")
    assert.truthy(out, "nothing printed; stdout:\n" .. srv:stdout())
    assert.matches("---------- MESSAGE FOLLOWS ----------\n", out, 1, true)
    assert.matches("X-Peer: 127.0.0.1", out, 1, true)
    assert.matches("X-MailFrom: sender@spec.test\n", out, 1, true)
    assert.matches("X-RcptTo: one@spec.test, two@spec.test\n", out, 1, true)
    assert.matches("Subject: printed\n\nhello debug\n", out, 1, true)
    assert.matches("------------ END MESSAGE ------------", out, 1, true)
    assert.is_nil(out:find("\r", 1, true), "printed with CR line ends")
  end)
end)

describe("examples/maildir.lua #integration", function()
  local msg = "Subject: maildir example\r\n\r\n.dot\r\nbody\r\n"

  it("delivers into $MAILDIR byte for byte", function()
    local srv = assert(server.start({ policy = "examples/maildir.lua",
      env = { MAILDIR = "{dir}/custom-maildir" } }))
    local c
    finally(function() if c then c:close() end srv:stop() end)
    c = session(srv)
    c:message("a@spec.test", "b@spec.test", smtp.stuff(msg)):expect(250, "2.0.0")
    local new = server.ls(srv.dir .. "/custom-maildir/new")
    assert.are.equal(1, #new)
    assert.are.equal(msg,
      server.unreceived(server.read_file(srv.dir .. "/custom-maildir/new/" .. new[1])))
  end)

  it("creates missing parent directories of $MAILDIR, as Postfix does", function()
    local srv = assert(server.start({ policy = "examples/maildir.lua",
      env = { MAILDIR = "{dir}/users/alice/Maildir" } }))
    local c
    finally(function() if c then c:close() end srv:stop() end)
    c = session(srv)
    c:message("a@spec.test", "b@spec.test", smtp.stuff(msg)):expect(250, "2.0.0")
    local new = server.ls(srv.dir .. "/users/alice/Maildir/new")
    assert.are.equal(1, #new)
  end)

  it("delivers into ./Maildir without $MAILDIR", function()
    local srv = assert(server.start({ policy = "examples/maildir.lua" }))
    local c
    finally(function() if c then c:close() end srv:stop() end)
    c = session(srv)
    c:message("a@spec.test", "b@spec.test", smtp.stuff(msg)):expect(250, "2.0.0")
    local new = server.ls(srv.dir .. "/Maildir/new") -- the server runs in srv.dir
    assert.are.equal(1, #new)
    assert.are.equal(msg, server.unreceived(server.read_file(srv.dir .. "/Maildir/new/" .. new[1])))
  end)

  it("answers 451 when the Maildir cannot be created", function()
    local srv = assert(server.start({ policy = "examples/maildir.lua",
      env = { MAILDIR = "{dir}/file/Maildir" } }))
    local c
    finally(function() if c then c:close() end srv:stop() end)
    server.write_file(srv.dir .. "/file", "not a directory\n")
    c = session(srv)
    c:message("a@spec.test", "b@spec.test", smtp.stuff(msg)):expect(451, "4.3.0")
    assert.truthy(srv:wait_log("maildir delivery to"))
  end)
end)

describe("examples/blackhole.lua #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = "examples/blackhole.lua" }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("accepts any sender and recipient and discards the message", function()
    local c = session(srv)
    finally(function() c:close() end)
    local body = "Subject: gone\r\n\r\nx\r\n"
    -- The size counts the server's Received: field too.
    local r = c:message("", { "anyone@anywhere.test", "else@elsewhere.test" }, body)
      :expect(250, "discarded %d+ bytes")
    assert.is_true(tonumber(r.text:match("(%d+) bytes")) > #body + #"Received: from ", r.text)
    assert.are.same({}, (function()
      local found = {}
      for _, n in ipairs(server.ls(srv.dir)) do
        if n ~= "log" and n ~= "stdout" and n ~= "pid" and n ~= "ready" and n ~= "command" then
          found[#found + 1] = n
        end
      end
      return found
    end)())
    assert.are.equal("", srv:stdout())
  end)
end)

describe("examples/rcpt-check.lua #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = "examples/rcpt-check.lua" }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("accepts recipients in the listed domains, in any letter case", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("MAIL FROM:<a@remote.test>"):expect(250)
    c:send("RCPT TO:<user@example.org>"):expect(250, "2.1.5")
    c:send("RCPT TO:<User@EXAMPLE.ORG>"):expect(250, "2.1.5")
    c:send("RCPT TO:<user@mail.example.org>"):expect(250, "2.1.5")
  end)

  it("refuses other domains with 550 5.1.1 and keeps the transaction", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("MAIL FROM:<a@remote.test>"):expect(250)
    c:send("RCPT TO:<user@example.com>"):expect(550, "5.1.1")
    c:send("RCPT TO:<user@sub.mail.example.org>"):expect(550, "5.1.1")
    c:send("RCPT TO:<user@example.org.evil.test>"):expect(550, "5.1.1")
    c:send("DATA"):expect(503, "5.5.1")
    c:send("RCPT TO:<user@example.org>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: local\r\n\r\nx\r\n.\r\n"):expect(250, "2.0.0")
  end)
end)

describe("examples/now-verb.lua #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = "examples/now-verb.lua" }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  -- seconds between a reply's "YYYY-MM-DD HH:MM:SS" and a reference os.date table
  local function distance(text, ref)
    local y, mo, d, h, mi, s = text:match("(%d%d%d%d)%-(%d%d)%-(%d%d) (%d%d):(%d%d):(%d%d)")
    assert.truthy(y, "no date in: " .. text)
    local t = os.time({ year = tonumber(y), month = tonumber(mo), day = tonumber(d),
      hour = tonumber(h), min = tonumber(mi), sec = tonumber(s), isdst = ref.isdst })
    return math.abs(os.time(ref) - t)
  end

  it("answers NOW with the local time", function()
    local c = session(srv)
    finally(function() c:close() end)
    local r = c:send("NOW"):expect(250, "2.0.0")
    assert.is_true(distance(r.text, os.date("*t")) < 3600, r.raw)
  end)

  it("answers NOW UTC with the UTC time", function()
    local c = session(srv)
    finally(function() c:close() end)
    local r = c:send("now UTC"):expect(250, "2.0.0")
    local utc = os.date("!*t")
    utc.isdst = false
    assert.is_true(distance(r.text, utc) < 3600, r.raw)
  end)

  it("answers NOW with another argument with 501", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("NOW tomorrow"):expect(501, "Syntax: NOW [UTC]")
    c:send("NOW UTC"):expect(250)
  end)
end)
