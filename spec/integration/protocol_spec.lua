-- The SMTP protocol as the core implements it, independent of any policy:
-- greeting, EHLO keywords, command order, syntax, parameters, paths, the
-- line length limit, the recipient limit, pipelining and byte-at-a-time input.
local server = require "server"
local smtp = require "smtp"

local function session(srv)
  local c = assert(smtp.connect(srv))
  c:expect(220)
  return c
end

local function keywords(reply)
  local set = {}
  for i = 2, #reply.lines do set[reply.lines[i]:upper()] = true end
  return set
end

describe("SMTP protocol #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ args = { "--hostname", "mx.spec.test", "--max-recipients", "3" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("greets with 220 and the host name", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220, "^mx%.spec%.test")
  end)

  it("answers EHLO with the host name and every keyword", function()
    local c = session(srv)
    finally(function() c:close() end)
    local r = c:send("EHLO client.spec.test"):expect(250)
    assert.matches("^mx%.spec%.test", r.lines[1])
    local kw = keywords(r)
    for _, k in ipairs({ "PIPELINING", "SIZE 33554432", "8BITMIME", "ENHANCEDSTATUSCODES",
      "SMTPUTF8", "CHUNKING", "HELP" }) do
      assert.is_true(kw[k] == true, "EHLO lacks " .. k .. ":\n" .. r.raw)
    end
  end)

  it("answers HELO with 250 and the host name, then serves a transaction", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("HELO client.spec.test"):expect(250, "^mx%.spec%.test")
    c:message("a@spec.test", { "b@spec.test" }, "Subject: helo\r\n\r\nbody\r\n"):expect(250, "2.0.0")
  end)

  it("requires an argument for HELO and EHLO (501 5.5.4)", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("HELO"):expect(501, "5.5.4")
    c:send("EHLO"):expect(501, "5.5.4")
    c:send("EHLO client.spec.test"):expect(250)
  end)

  it("takes commands in any letter case", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("ehlo client.spec.test"):expect(250)
    c:send("mail from:<a@spec.test>"):expect(250, "2.1.0")
    c:send("Rcpt To:<b@spec.test>"):expect(250, "2.1.5")
    c:send("dAtA"):expect(354)
    c:send_raw("Subject: case\r\n\r\nx\r\n.\r\n"):expect(250, "2.0.0")
    c:send("NoOp"):expect(250, "2.0.0")
    c:send("quit"):expect(221, "2.0.0")
    c:expect_closed()
  end)

  describe("command order", function()
    it("refuses MAIL before HELO/EHLO with 503 5.5.1", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("MAIL FROM:<a@spec.test>"):expect(503, "5.5.1")
      c:send("EHLO client.spec.test"):expect(250)
      c:send("MAIL FROM:<a@spec.test>"):expect(250, "2.1.0")
    end)

    it("refuses RCPT before MAIL and DATA before RCPT with 503 5.5.1", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("RCPT TO:<b@spec.test>"):expect(503, "5.5.1")
      c:send("DATA"):expect(503, "5.5.1")
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send("DATA"):expect(503, "5.5.1")
      c:send("RCPT TO:<b@spec.test>"):expect(250)
      c:send("DATA"):expect(354)
      c:send_raw("x\r\n.\r\n"):expect(250)
    end)

    it("refuses a second MAIL inside a transaction with 503 5.5.1", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send("MAIL FROM:<other@spec.test>"):expect(503, "5.5.1")
      c:send("RCPT TO:<b@spec.test>"):expect(250)
    end)

    it("ends the transaction on RSET and on a new EHLO", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send("RSET"):expect(250, "2.0.0")
      c:send("RCPT TO:<b@spec.test>"):expect(503, "5.5.1")
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("RCPT TO:<b@spec.test>"):expect(503, "5.5.1")
    end)

    it("allows NOOP, RSET, VRFY, HELP and QUIT before HELO", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("NOOP"):expect(250, "2.0.0")
      c:send("RSET"):expect(250, "2.0.0")
      c:send("VRFY someone"):expect(252, "2.0.0")
      c:send("HELP"):expect(214, "2.0.0")
      c:send("QUIT"):expect(221, "2.0.0")
      c:expect_closed()
    end)
  end)

  describe("unknown verbs and bad syntax", function()
    it("answers an unknown verb with 500 5.5.2 and goes on", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("FOO"):expect(500, "5.5.2")
      c:send("FROBNICATE the widget"):expect(500, "5.5.2")
      c:send("EHLO client.spec.test"):expect(250)
      -- BDAT is known (bdat_spec.lua): out of sequence, its chunk read and dropped.
      c:send_raw("BDAT 10 LAST\r\nNOOP\r\nRSET"):expect(503, "5.5.1")
      c:send("NOOP"):expect(250, "2.0.0")
    end)

    -- Command syntax gets 501 5.5.4 (README). A malformed address inside
    -- well-formed command syntax gets what Postfix sends: 501 5.1.7 (bad
    -- sender address syntax) for MAIL and 501 5.1.3 for RCPT (RFC 3463).
    for _, case in ipairs({
      { "MAIL", "missing FROM:", "5.5.4" },
      { "MAIL FROM", "missing colon and path", "5.5.4" },
      { "MAIL TO:<a@spec.test>", "TO: instead of FROM:", "5.5.4" },
      { "MAIL FROM:<a@spec.test>junk", "junk after '>'", "5.5.4" },
      { "MAIL FROM:<a@spec.test", "unterminated path", "5.1.7" },
      { "MAIL FROM:<a b@spec.test>", "unquoted space in the local part", "5.1.7" },
      { "MAIL FROM:<a@>", "empty domain", "5.1.7" },
      { "MAIL FROM:<@spec.test>", "empty local part", "5.1.7" },
      { "MAIL FROM:<a@@spec.test>", "two at signs", "5.1.7" },
      { "MAIL FROM:<a@spec..test>", "empty domain label", "5.1.7" },
    }) do
      it("answers " .. case[2] .. " with 501 " .. case[3] .. ": " .. case[1], function()
        local c = session(srv)
        finally(function() c:close() end)
        c:send("EHLO client.spec.test"):expect(250)
        c:send(case[1]):expect(501, case[3])
        -- no transaction was started, and the session goes on
        c:send("RCPT TO:<b@spec.test>"):expect(503, "5.5.1")
        c:send("MAIL FROM:<a@spec.test>"):expect(250)
      end)
    end

    for _, case in ipairs({
      { "RCPT", "missing TO:", "5.5.4" },
      { "RCPT FROM:<b@spec.test>", "FROM: instead of TO:", "5.5.4" },
      { "RCPT TO:<b@spec.test>junk", "junk after '>'", "5.5.4" },
      { "RCPT TO:<>", "null forward-path", "5.1.3" },
      { "RCPT TO:<b@@spec.test>", "two at signs", "5.1.3" },
      { "RCPT TO:b@spec.test>", "missing '<'", "5.1.3" },
    }) do
      it("answers " .. case[2] .. " with 501 " .. case[3] .. ": " .. case[1], function()
        local c = session(srv)
        finally(function() c:close() end)
        c:send("EHLO client.spec.test"):expect(250)
        c:send("MAIL FROM:<a@spec.test>"):expect(250)
        c:send(case[1]):expect(501, case[3])
        c:send("DATA"):expect(503, "5.5.1") -- the bad RCPT added nobody
        c:send("RCPT TO:<b@spec.test>"):expect(250)
      end)
    end

    it("answers unknown MAIL and RCPT parameters with 555 5.5.4", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("MAIL FROM:<a@spec.test> FOO=bar"):expect(555, "5.5.4")
      c:send("MAIL FROM:<a@spec.test> XYZZY"):expect(555, "5.5.4")
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send("RCPT TO:<b@spec.test> FOO=bar"):expect(555, "5.5.4")
      c:send("DATA"):expect(503, "5.5.1")
    end)

    it("accepts the parameters it advertises", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("MAIL FROM:<a@spec.test> SIZE=100 BODY=8BITMIME SMTPUTF8"):expect(250, "2.1.0")
      c:send("RSET"):expect(250)
      c:send("MAIL FROM:<a@spec.test> body=7bit size=5"):expect(250, "2.1.0")
    end)

    it("accepts RCPT TO:<postmaster> without a domain", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("MAIL FROM:<>"):expect(250, "2.1.0")
      c:send("RCPT TO:<Postmaster>"):expect(250, "2.1.5")
    end)
  end)

  describe("VRFY, HELP, NOOP, RSET, QUIT", function()
    it("answers VRFY with 252 2.0.0", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("VRFY postmaster"):expect(252, "2.0.0")
    end)

    it("answers HELP with 214 2.0.0", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("HELP"):expect(214, "2.0.0")
      c:send("HELP MAIL"):expect(214, "2.0.0")
    end)

    it("answers NOOP with 250 2.0.0, with or without an argument", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("NOOP"):expect(250, "2.0.0")
      c:send("NOOP anything at all"):expect(250, "2.0.0")
    end)

    it("answers QUIT with 221 2.0.0 and closes", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send("QUIT"):expect(221, "2.0.0")
      c:expect_closed()
    end)

    it("carries an enhanced status code on every reply after EHLO", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      for _, cmd in ipairs({ "NOOP", "RSET", "VRFY x", "HELP", "FOO", "RCPT TO:<b@x.test>",
        "MAIL FROM:<a@x.test> FOO=1", "MAIL FROM:<a@x.test>", "RCPT TO:<b@x.test>",
        "MAIL FROM:<a@x.test>" }) do
        local r = assert(c:send(cmd):read_reply())
        for _, line in ipairs(r.lines) do
          assert.truthy(line:match("^[245]%.%d+%.%d+ "),
            "reply to " .. cmd .. " lacks an enhanced code: " .. r.raw)
          assert.are.equal(tostring(r.code):sub(1, 1), line:sub(1, 1),
            "enhanced class differs from the code: " .. r.raw)
        end
      end
    end)
  end)

  describe("line length", function()
    it("answers a 600-octet line with 500 5.5.2 Line too long and goes on", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("NOOP " .. ("x"):rep(593)) -- 598 + CRLF = 600 octets
      c:expect(500, "5.5.2")
      c:send("NOOP"):expect(250, "2.0.0")
    end)

    it("accepts a line of exactly 512 octets and refuses 513", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("NOOP " .. ("x"):rep(505)):expect(250, "2.0.0") -- 510 + CRLF
      c:send("NOOP " .. ("x"):rep(506)):expect(500, "5.5.2") -- 511 + CRLF
      c:send("NOOP"):expect(250)
    end)

    it("does not run the tail of a long line as a command", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      -- if the server cut the line at 512 octets, "MAIL FROM:<a@x>" would run
      c:send_raw("NOOP " .. ("x"):rep(507) .. "MAIL FROM:<a@spec.test>\r\nNOOP\r\n")
      c:expect(500, "5.5.2") -- README: "500 5.5.2 Line too long"

      c:expect(250, "2.0.0")
      c:send("RCPT TO:<b@spec.test>"):expect(503, "5.5.1")
    end)

    it("answers a MAIL line over 2048 octets with 500 and starts no transaction", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      local prefix = "MAIL FROM:<a@spec.test> ENVID="
      -- 2046 + CRLF = 2048 octets: read whole, refused for its ENVID
      c:send(prefix .. ("e"):rep(2046 - #prefix)):expect(501, "5.5.4")
      -- 2047 + CRLF = 2049 octets: too long
      c:send(prefix .. ("e"):rep(2047 - #prefix)):expect(500, "5.5.2")
      c:send("RCPT TO:<b@spec.test>"):expect(503, "5.5.1")
      c:send("MAIL FROM:<" .. ("a"):rep(600) .. "@spec.test>"):expect(501, "5.1.7")
    end)

    it("takes RCPT lines lengthened by DSN's parameters past 512 octets", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("MAIL FROM:<s@spec.test> RET=HDRS ENVID=" .. ("E"):rep(100)):expect(250, "2.1.0")
      -- RFC 3461 4.2: an ORCPT of 500 characters, beside a long path
      local orcpt = "rfc822;" .. ("o"):rep(493)
      local rcpt = "RCPT TO:<" .. ("r"):rep(64) .. "@" .. ("d"):rep(60) .. "." .. ("d"):rep(60) .. ".spec.test>"
        .. " NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=" .. orcpt
      assert.is_true(#rcpt + 2 > 700)
      c:send(rcpt):expect(250, "2.1.5")
      -- other commands keep 512
      c:send("NOOP " .. ("x"):rep(506)):expect(500, "5.5.2")
      c:send("RSET"):expect(250)
    end)
  end)

  describe("--max-recipients 3", function()
    it("answers the 4th recipient with 452 4.5.3 and keeps the first three", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      for i = 1, 3 do c:send("RCPT TO:<r" .. i .. "@spec.test>"):expect(250, "2.1.5") end
      c:send("RCPT TO:<r4@spec.test>"):expect(452, "4.5.3")
      c:send("RCPT TO:<r5@spec.test>"):expect(452, "4.5.3")
      c:send("DATA"):expect(354)
      c:send_raw("Subject: many\r\n\r\nx\r\n.\r\n"):expect(250, "2.0.0")
      -- a new transaction may have three recipients again
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      for i = 1, 3 do c:send("RCPT TO:<s" .. i .. "@spec.test>"):expect(250, "2.1.5") end
    end)
  end)

  describe("pipelining", function()
    it("answers MAIL, RCPT, RCPT, DATA sent in one packet in order", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO client.spec.test"):expect(250)
      c:send_raw("MAIL FROM:<a@spec.test>\r\nRCPT TO:<b@spec.test>\r\n"
        .. "RCPT TO:<c@spec.test>\r\nDATA\r\n")
      c:expect(250, "2.1.0")
      c:expect(250, "2.1.5")
      c:expect(250, "2.1.5")
      c:expect(354)
      c:send_raw("Subject: pipelined\r\n\r\nbody\r\n.\r\nNOOP\r\n")
      c:expect(250, "2.0.0")
      c:expect(250, "2.0.0")
    end)

    it("answers a batch with failures in the middle one by one, in order", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send_raw("EHLO client.spec.test\r\nMAIL FROM:<a@spec.test>\r\nRCPT TO:<>\r\n"
        .. "FOO\r\nRCPT TO:<b@spec.test> BAD=1\r\nRCPT TO:<b@spec.test>\r\nRSET\r\n"
        .. "RCPT TO:<b@spec.test>\r\nNOOP\r\n")
      c:expect(250, "^mx%.spec%.test")
      c:expect(250, "2.1.0")
      c:expect(501, "5.1.3")
      c:expect(500, "5.5.2")
      c:expect(555, "5.5.4")
      c:expect(250, "2.1.5")
      c:expect(250, "2.0.0")
      c:expect(503, "5.5.1")
      c:expect(250, "2.0.0")
      assert.is_false(c:has_data())
    end)

    it("handles a whole session in one packet, message included", function()
      local c = assert(smtp.connect(srv))
      finally(function() c:close() end)
      c:send_raw("EHLO client.spec.test\r\nMAIL FROM:<a@spec.test>\r\nRCPT TO:<b@spec.test>\r\n"
        .. "DATA\r\nSubject: one packet\r\n\r\n..dot\r\nQUIT\r\n.\r\nQUIT\r\n")
      c:expect(220)
      c:expect(250)
      c:expect(250, "2.1.0")
      c:expect(250, "2.1.5")
      c:expect(354)
      c:expect(250, "2.0.0") -- the QUIT inside the body is message text
      c:expect(221, "2.0.0")
      c:expect_closed()
    end)
  end)

  describe("byte-at-a-time input", function()
    -- a session with successes, failures, a long line and a dot-stuffed body
    local SCRIPT = {
      "EHLO client.spec.test", "NOOP", "FOO bar", "MAIL FROM:<a@spec.test> FOO=1",
      "MAIL FROM:<a@spec.test> SIZE=20", "RCPT TO:<b@spec.test>", "RCPT TO:<>",
      "RCPT TO:<c@spec.test>", "NOOP " .. ("y"):rep(520), "DATA",
      { "Subject: bytes\r\n\r\n..leading dot\r\nline\r\n.\r\n" }, "VRFY x", "RSET", "QUIT",
    }

    local function whole()
      local parts = {}
      for _, step in ipairs(SCRIPT) do
        parts[#parts + 1] = type(step) == "table" and step[1] or (step .. "\r\n")
      end
      return table.concat(parts)
    end

    local function replies_until_close(c)
      local out = {}
      while true do
        local r, err = c:read_reply()
        if not r then
          assert.are.equal("closed", err, "the session did not end with a close")
          return out
        end
        out[#out + 1] = r
      end
    end

    it("gives the same replies as the same session sent a command at a time", function()
      local a = assert(smtp.connect(srv))
      local b
      finally(function() a:close(); if b then b:close() end end)
      local lockstep = { a:expect(220) }
      for _, step in ipairs(SCRIPT) do
        if type(step) == "table" then a:send_raw(step[1]) else a:send(step) end
        lockstep[#lockstep + 1] = assert(a:read_reply())
      end
      a:expect_closed()

      b = assert(smtp.connect(srv))
      b:send_bytewise(whole(), 0.0005)
      local bytewise = replies_until_close(b)

      assert.are.same(smtp.normalise(lockstep), smtp.normalise(bytewise))
      -- and the session did what it should
      local codes = {}
      for i, r in ipairs(bytewise) do codes[i] = r.code end
      assert.are.same({ 220, 250, 250, 500, 555, 250, 250, 501, 250, 500, 354, 250, 252, 250, 221 },
        codes)
    end)
  end)
end)

describe("paths and parameters as hooks see them #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = "spec/fixtures/policies/scripted.lua",
      args = { "--hostname", "mx.spec.test" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  local function mail_echo(c, mail_arg)
    c:send("XACT on_mail echo"):expect(250)
    return c:send("MAIL FROM:" .. mail_arg)
  end

  local function fresh()
    local c = session(srv)
    c:send("EHLO client.spec.test"):expect(250)
    return c
  end

  for _, case in ipairs({
    { "<>", "on_mail got <> <{}>", "the null reverse-path as \"\"" },
    { "<\"john doe\"@example.org>", "on_mail got <\"john doe\"@example.org>",
      "a quoted local part, quotes kept" },
    { "<\"a\\\"b\"@example.org>", "on_mail got <\"a\\\"b\"@example.org>", "a quoted-pair" },
    { "<user@[1.2.3.4]>", "on_mail got <user@[1.2.3.4]>", "an IPv4 address literal" },
    { "<user@[IPv6:::1]>", "on_mail got <user@[IPv6:::1]>", "an IPv6 address literal" },
    { "<user@[IPv6:2001:db8::1]>", "on_mail got <user@[IPv6:2001:db8::1]>",
      "a longer IPv6 literal" },
    { "<@relay1.spec.test,@relay2.spec.test:user@example.org>", "on_mail got <user@example.org>",
      "a source route, dropped" },
    { "<a@spec.test> size=100 BODY=8BITMIME SMTPUTF8",
      "on_mail got <a@spec.test> <{BODY=8BITMIME,SIZE=100,SMTPUTF8}>",
      "parameters with upper-cased keys, true without a value" },
  }) do
    it("passes " .. case[3] .. " to on_mail", function()
      local c = fresh()
      finally(function() c:close() end)
      mail_echo(c, case[1]):expect(250, case[2])
    end)
  end

  it("passes a source-routed forward-path to on_rcpt without the route", function()
    local c = fresh()
    finally(function() c:close() end)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("XACT on_rcpt echo"):expect(250)
    c:send("RCPT TO:<@hop.spec.test:b@example.org>"):expect(250, "on_rcpt got <b@example.org> <{}>")
    local r = c:send("XSESSION"):expect(250)
    assert.matches("recipients=b@example.org", r.text, 1, true)
  end)

  it("keeps the sender without its source route in s.sender", function()
    local c = fresh()
    finally(function() c:close() end)
    c:send("MAIL FROM:<@r1.spec.test,@r2.spec.test:x@example.org> BODY=8BITMIME"):expect(250)
    local r = c:send("XSESSION"):expect(250)
    assert.matches(" sender=x@example.org\n", r.text, 1, true)
    assert.matches(" mail_params=BODY=8BITMIME\n", r.text, 1, true)
  end)

  it("accepts a UTF-8 address with SMTPUTF8 and passes it on", function()
    local c = fresh()
    finally(function() c:close() end)
    mail_echo(c, "<j\xc3\xb6rg@example.org> SMTPUTF8")
      :expect(250, "on_mail got <j\xc3\xb6rg@example.org> <{SMTPUTF8}>")
  end)

  it("refuses a UTF-8 address without SMTPUTF8 with a 5xx", function()
    local c = fresh()
    finally(function() c:close() end)
    local r = assert(c:send("MAIL FROM:<j\xc3\xb6rg@example.org>"):read_reply())
    assert.is_true(r.code >= 500 and r.code < 600, "got " .. r.raw)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
  end)

  it("lets on_ehlo edit the keyword list", function()
    local c = fresh()
    finally(function() c:close() end)
    c:send("XACT on_ehlo edit"):expect(250)
    local r = c:send("EHLO client.spec.test"):expect(250)
    local kw = keywords(r)
    assert.is_nil(kw.HELP, "HELP still advertised:\n" .. r.raw)
    assert.is_true(kw["X-SPEC-KEYWORD CLIENT.SPEC.TEST"], r.raw)
    assert.is_true(kw.PIPELINING, r.raw)
    -- the edit was for one EHLO only
    r = c:send("EHLO client.spec.test"):expect(250)
    assert.is_true(keywords(r).HELP, r.raw)
  end)

  it("advertises a max_size set by a hook and enforces it", function()
    local c, d = fresh(), nil
    finally(function() c:close(); if d then d:close() end end)
    c:send("XACT on_rset setsize 1000"):expect(250)
    c:send("RSET"):expect(250)
    local r = c:send("EHLO client.spec.test"):expect(250)
    assert.is_true(keywords(r)["SIZE 1000"], "SIZE not changed:\n" .. r.raw)
    c:send("MAIL FROM:<a@spec.test> SIZE=1001"):expect(552, "5.3.4")
    c:send("MAIL FROM:<a@spec.test> SIZE=1000"):expect(250)
    r = c:send("XSESSION"):expect(250)
    assert.matches("max_size=1000", r.text, 1, true)
    -- and another session still has the default
    d = fresh()
    r = d:send("EHLO client.spec.test"):expect(250)
    assert.is_true(keywords(r)["SIZE 33554432"], r.raw)
  end)
end)
