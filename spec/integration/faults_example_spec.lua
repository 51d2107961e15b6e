-- Fault injection: examples/faults.lua (the address selects the outcome)
-- and lua/luamta/faults.lua through fixture policies. Every fault kind is
-- checked as the client sees it: the code and text, a delay (by ordering:
-- the reply comes after the client sent, and after another session was
-- served; a loose lower bound only as an extra), a close after or instead
-- of the reply, a stall after the data, paced lines and a drop mid-reply.
-- Python's smtplib checks the exceptions a real client library raises.
local socket = require "socket"
local server = require "server"
local smtp = require "smtp"

local EXAMPLE = "examples/faults.lua"
local BODY = "Subject: faults\r\n\r\nhello\r\n"
local THREE = { "2.0.0 scripted multi-line reply", "2.0.0 second line", "2.0.0 last line" }

-- One finally() for all cleanups (busted keeps only the last one).
local function cleanup() return server.cleanup(finally) end

local session = smtp.session -- connect, 220, EHLO name or client.spec.test

-- One raw line of a reply (CRLF stripped), or nil and "timeout"/"closed".
local function read_line(c, timeout)
  assert.are.equal("", c.buf, "the client has buffered input; read_line needs none")
  c.sock:settimeout(timeout)
  local line, err = c.sock:receive("*l")
  c.sock:settimeout(c.timeout)
  return line, err
end

-- Another session, served from start to end (greeting to 221).
local function other_session(srv)
  local b = assert(smtp.connect(srv))
  b:expect(220)
  b:send("EHLO other.spec.test"):expect(250)
  b:message("other@spec.test", "ok@spec.test", BODY):expect(250, "2.0.0")
  b:send("QUIT"):expect(221)
  b:close()
end

-- Runs a Python 3 script (smtplib) with the port as argv[1]; returns its output.
local function python(srv, script)
  local status, out = server.sh("python3 - " .. srv.port .. " <<'PYEOF'\n" .. script .. "\nPYEOF\n")
  assert.are.equal(0, status, "python3 failed:\n" .. out .. "\n--- server log ---\n" .. srv:log_tail(30))
  return out
end

describe("examples/faults.lua loading #integration", function()
  it("passes --check", function()
    local defer = cleanup()
    local code, out, err = server.run({ "--check", "--script", EXAMPLE })
    assert.are.equal(0, code, out .. err)
    assert.matches("OK", out, 1, true)
  end)

  it("refuses a bad FAULTS_CONNECT at load, naming it", function()

    local defer = cleanup()
    local code, out, err = server.run({ "--check", "--script", EXAMPLE },
      { env = { FAULTS_CONNECT = "sometimes" } })
    assert.are.equal(1, code, out .. err)
    assert.matches("FAULTS_CONNECT must be", out .. err, 1, true)
  end)
end)

describe("examples/faults.lua #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = EXAMPLE,
      env = { FAULTS_STALL = "30", MAILDIR = "{dir}/Maildir" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  describe("codes and texts", function()
    it("answers RCPT with the code of rcpt-<code>, and the session goes on", function()
      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      local r = c:send("RCPT TO:<rcpt-452@example.test>"):expect(452, "4.5.3")
      assert.are.equal("4.5.3 Too many recipients", r.text)
      r = c:send("RCPT TO:<RCPT-550@Example.TEST>"):expect(550, "5.1.1")
      assert.are.equal("5.1.1 Mailbox unavailable", r.text)
      c:send("RCPT TO:<rcpt-450@example.test>"):expect(450, "4.2.1")
      c:send("RCPT TO:<rcpt-479@example.test>"):expect(479, "4.0.0")
      c:send("RCPT TO:<rcpt-251@example.test>"):expect(251, "2.1.5")
      c:send("RCPT TO:<ok@example.test>"):expect(250, "2.1.5")
      c:send("DATA"):expect(354)
      c:send_raw(BODY .. ".\r\n"):expect(250, "2.0.0")
    end)

    it("answers MAIL with the code of mail-<code> (per sender)", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      local r = c:send("MAIL FROM:<mail-550@example.test>"):expect(550, "5.1.0")
      assert.are.equal("5.1.0 Sender address rejected", r.text)
      c:send("MAIL FROM:<mail-451@example.test>"):expect(451, "4.3.0")
      c:send("MAIL FROM:<fine@example.test>"):expect(250, "2.1.0")
    end)

    it("answers DATA with the code of datacmd-<code>", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send("RCPT TO:<datacmd-554@example.test>"):expect(250)
      c:send("DATA"):expect(554, "5.7.1")
      c:send("NOOP"):expect(250)
    end)

    it("answers the end of data with the code of data-<code>, nothing delivered", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      local r = c:message("a@spec.test", { "ok@example.test", "data-451@example.test" }, BODY)
        :expect(451, "4.3.0")
      assert.are.equal("4.3.0 Local error in processing", r.text)
      c:message("a@spec.test", "data-554@example.test", BODY):expect(554, "5.7.1")
      local before = #server.ls(srv.dir .. "/Maildir/new")
      c:message("a@spec.test", "delivered@example.test", BODY):expect(250, "2.0.0")
      assert.are.equal(before + 1, #server.ls(srv.dir .. "/Maildir/new"),
        "the accepted message was not delivered into $MAILDIR")
    end)

    it("answers EHLO with the code of an ehlo-<code> name; HELO is then accepted", function()

      local defer = cleanup()
      local c = assert(smtp.connect(srv))
      defer(function() c:close() end)
      c:expect(220)
      c:send("EHLO ehlo-502"):expect(502, "5.5.1")
      c:send("HELO ehlo-502"):expect(250)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      local h = assert(smtp.connect(srv))
      defer(function() h:close() end)
      h:expect(220)
      h:send("HELO helo-554"):expect(554, "5.7.1")
    end)

    it("answers the n-th message of a session (msg-2-451: 1st accepted, 2nd 451, 3rd accepted)", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:message("a@spec.test", "msg-2-451@example.test", BODY):expect(250, "2.0.0")
      c:message("a@spec.test", "msg-2-451@example.test", BODY):expect(451, "4.3.0")
      c:message("a@spec.test", "msg-2-451@example.test", BODY):expect(250, "2.0.0")
      -- a new session counts from 1 again
      local d = session(srv)
      defer(function() d:close() end)
      d:message("a@spec.test", "msg-2-451@example.test", BODY):expect(250, "2.0.0")
      d:message("a@spec.test", "msg-2-451@example.test", BODY):expect(451, "4.3.0")
    end)

    it("answers a code that does not fit the command with 451 4.3.0 (data-354)", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:message("a@spec.test", "data-354@example.test", BODY):expect(451, "4.3.0")
      c:send("NOOP"):expect(250)
    end)
  end)

  describe("delay before the reply", function()
    it("answers RCPT after the delay of delay-<n>, serving another session meanwhile", function()
      local defer = cleanup()
      local a = session(srv)
      defer(function() a:close() end)
      a:send("MAIL FROM:<a@spec.test>"):expect(250)
      local t0 = socket.gettime()
      a:send("RCPT TO:<delay-4@example.test>")
      assert.is_false(a:has_data(), "the RCPT reply came at once")
      other_session(srv)
      assert.is_false(a:has_data(), "the delayed reply came before another session was served")
      a:expect(250, "2.1.5")
      assert.is_true(socket.gettime() - t0 >= 3, "the reply came before the delay was over")
      a:send("RCPT TO:<ok@example.test>"):expect(250)
    end)

    it("delays MAIL (delay-mail-<n>), DATA (delay-datacmd-<n>) and the end of data (delay-data-<n>)", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:send("MAIL FROM:<delay-mail-3@example.test>")
      assert.is_false(c:has_data(), "the MAIL reply came at once")
      other_session(srv)
      assert.is_false(c:has_data(), "the MAIL reply came before another session was served")
      c:expect(250, "2.1.0")
      c:send("RCPT TO:<delay-datacmd-3@example.test>"):expect(250)
      c:send("RCPT TO:<delay-data-3@example.test>"):expect(250)
      c:send("DATA")
      assert.is_false(c:has_data(), "the 354 came at once")
      other_session(srv)
      assert.is_false(c:has_data(), "the 354 came before another session was served")
      c:expect(354)
      c:send_raw(BODY .. ".\r\n")
      assert.is_false(c:has_data(), "the end-of-data reply came at once")
      other_session(srv)
      assert.is_false(c:has_data(), "the end-of-data reply came before another session was served")
      c:expect(250, "2.0.0")
    end)

    it("delays the EHLO reply of a delay-ehlo-<n> name", function()

      local defer = cleanup()
      local c = assert(smtp.connect(srv))
      defer(function() c:close() end)
      c:expect(220)
      c:send("EHLO delay-ehlo-3")
      assert.is_false(c:has_data(), "the EHLO reply came at once")
      other_session(srv)
      assert.is_false(c:has_data(), "the EHLO reply came before another session was served")
      c:expect(250)
    end)
  end)

  describe("close after the reply", function()
    it("answers RCPT and closes (close-rcpt-<code>, and any 421)", function()
      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send("RCPT TO:<close-rcpt-554@example.test>"):expect(554, "5.7.1")
      c:expect_closed()
      local d = session(srv)
      defer(function() d:close() end)
      d:send("MAIL FROM:<a@spec.test>"):expect(250)
      d:send("RCPT TO:<rcpt-421@example.test>"):expect(421, "4.3.2")
      d:expect_closed()
    end)

    it("accepts the message and closes before QUIT (close-data-250)", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:message("a@spec.test", "close-data-250@example.test", BODY):expect(250, "2.0.0")
      c:expect_closed()
    end)

    it("answers MAIL and DATA and closes (close-mail-<code>, close-datacmd-<code>)", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:send("MAIL FROM:<close-mail-451@example.test>"):expect(451, "4.3.0")
      c:expect_closed()
      local d = session(srv)
      defer(function() d:close() end)
      d:send("MAIL FROM:<a@spec.test>"):expect(250)
      d:send("RCPT TO:<close-datacmd-451@example.test>"):expect(250)
      d:send("DATA"):expect(451, "4.3.0")
      d:expect_closed()
    end)
  end)

  describe("close instead of the reply", function()
    local function closes_silently(c)
      local r, err, partial = c:read_reply()
      assert.is_nil(r, "a reply came before the close")
      assert.are.equal("closed", err)
      assert.are.equal("", partial)
    end

    it("closes at RCPT without a reply (disconnect-rcpt)", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send("RCPT TO:<disconnect-rcpt@example.test>")
      closes_silently(c)
    end)

    it("closes at MAIL, DATA, the end of data and EHLO without a reply", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:send("MAIL FROM:<disconnect-mail@example.test>")
      closes_silently(c)

      local d = session(srv)
      defer(function() d:close() end)
      d:send("MAIL FROM:<a@spec.test>"):expect(250)
      d:send("RCPT TO:<disconnect-datacmd@example.test>"):expect(250)
      d:send("DATA")
      closes_silently(d)

      local before = #server.ls(srv.dir .. "/Maildir/new")
      local e = session(srv)
      defer(function() e:close() end)
      e:message("a@spec.test", "disconnect-data@example.test", BODY)
      closes_silently(e)
      assert.are.equal(before, #server.ls(srv.dir .. "/Maildir/new"),
        "a message closed on without a reply was delivered")

      local f = assert(smtp.connect(srv))
      defer(function() f:close() end)
      f:expect(220)
      f:send("EHLO disconnect-ehlo")
      closes_silently(f)
    end)
  end)

  describe("stall after 354", function()
    it("stalls after the data (data-timeout): the client's read times out, the session stays open", function()
      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:message("a@spec.test", "data-timeout@example.test", BODY)
      local r, err = c:read_reply(1)
      assert.is_nil(r, "a reply came during the stall")
      assert.are.equal("timeout", err)
      local closed, what = c:closed_by_peer(0.2)
      assert.is_false(closed, "the server closed the stalled session")
      assert.are.equal("timeout", what)
      other_session(srv)
      assert.is_false(c:has_data(), "the stall ended while another session was served")
      assert.truthy(srv:wait_log({ "faults.fire", "stage=message", "delay=30" }),
        "no faults.fire line for the stall")
      -- closing the client ends the stall; the next session is served
      c:close()
      other_session(srv)
    end)
  end)

  describe("delay between lines", function()
    it("sends the lines of a multi-line RCPT reply apart (lines-rcpt-<n>)", function()
      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send("RCPT TO:<lines-rcpt-2@example.test>")
      assert.are.equal("250-" .. THREE[1], read_line(c, 10))
      assert.is_false(c:has_data(), "the second line came with the first")
      assert.are.equal("250-" .. THREE[2], read_line(c, 10))
      assert.is_false(c:has_data(), "the last line came with the second")
      assert.are.equal("250 " .. THREE[3], read_line(c, 10))
      c:send("RCPT TO:<ok@example.test>"):expect(250)
    end)

    it("sends the lines of the end-of-data reply apart (lines-data-<n>)", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:message("a@spec.test", "lines-data-2@example.test", BODY)
      assert.are.equal("250-" .. THREE[1], read_line(c, 10))
      assert.is_false(c:has_data(), "the rest of the reply came with the first line")
      local r = c:expect(250, "2.0.0")
      assert.are.same({ THREE[2], THREE[3] }, r.lines)
    end)

    it("sends the lines of the EHLO reply apart (lines-ehlo-<n>)", function()

      local defer = cleanup()
      local c = assert(smtp.connect(srv))
      defer(function() c:close() end)
      c:expect(220)
      c:send("EHLO lines-ehlo-1")
      local first = read_line(c, 10)
      assert.matches("^250%-", first)
      assert.is_false(c:has_data(), "the EHLO keywords came with the first line")
      local r = c:expect(250)
      assert.truthy(r.text:find("PIPELINING", 1, true), "no keywords in the EHLO reply")
    end)
  end)

  describe("drop mid multi-line reply", function()
    local function dropped_after(c, lines)
      local r, err, partial = c:read_reply()
      assert.is_nil(r, "a whole reply came")
      assert.are.equal("closed", err)
      local want = {}
      for i = 1, lines do want[i] = "250-" .. THREE[i] .. "\r\n" end
      assert.are.equal(table.concat(want), partial)
    end

    it("cuts the RCPT reply after the first line (drop-rcpt-1)", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send("RCPT TO:<drop-rcpt-1@example.test>")
      dropped_after(c, 1)
    end)

    it("cuts before any line (drop-rcpt-0) and after two (drop-data-2)", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send("RCPT TO:<drop-rcpt-0@example.test>")
      dropped_after(c, 0)
      local d = session(srv)
      defer(function() d:close() end)
      d:message("a@spec.test", "drop-data-2@example.test", BODY)
      dropped_after(d, 2)
    end)

    it("sends the whole reply, then closes (drop-rcpt-3)", function()

      local defer = cleanup()
      local c = session(srv)
      defer(function() c:close() end)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      local r = c:send("RCPT TO:<drop-rcpt-3@example.test>"):expect(250, "2.0.0")
      assert.are.same(THREE, r.lines)
      c:expect_closed()
    end)

    it("cuts the EHLO reply after the first line (drop-ehlo-1)", function()

      local defer = cleanup()
      local c = assert(smtp.connect(srv))
      defer(function() c:close() end)
      c:expect(220)
      c:send("EHLO drop-ehlo-1")
      local r, err, partial = c:read_reply()
      assert.is_nil(r, "the whole EHLO reply came")
      assert.are.equal("closed", err)
      assert.matches("^250%-[^\r\n]*\r\n$", partial)
    end)
  end)

  describe("seen by Python's smtplib", function()
    it("raises SMTPRecipientsRefused for rcpt-550 and SMTPServerDisconnected for drops", function()
      local defer = cleanup()
      local out = python(srv, [[
import smtplib, sys
port = int(sys.argv[1])
msg = "Subject: smtplib\r\n\r\nhello\r\n"
s = smtplib.SMTP("127.0.0.1", port, timeout=10)
try:
    s.sendmail("a@spec.test", ["rcpt-550@example.test"], msg)
    print("no exception")
except smtplib.SMTPRecipientsRefused as e:
    code, text = e.recipients["rcpt-550@example.test"]
    print("refused", code, text.decode())
s.quit()
for rcpt in ["disconnect-rcpt@example.test", "drop-rcpt-1@example.test",
             "disconnect-data@example.test"]:
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    try:
        s.sendmail("a@spec.test", [rcpt], msg)
        print("no exception", rcpt)
    except smtplib.SMTPServerDisconnected as e:
        print("disconnected", rcpt)
    s.close()
s = smtplib.SMTP("127.0.0.1", port, timeout=10)
try:
    s.sendmail("a@spec.test", ["data-451@example.test"], msg)
except smtplib.SMTPDataError as e:
    print("data error", e.smtp_code, e.smtp_error.decode())
s.quit()
s = smtplib.SMTP("127.0.0.1", port, timeout=1)
try:
    s.sendmail("a@spec.test", ["data-timeout@example.test"], msg)
except (TimeoutError, OSError) as e:
    print("timed out", type(e).__name__)
s.close()
]])
      assert.matches("refused 550 5.1.1 Mailbox unavailable\n", out, 1, true)
      assert.matches("disconnected disconnect-rcpt@example.test\n", out, 1, true)
      assert.matches("disconnected drop-rcpt-1@example.test\n", out, 1, true)
      assert.matches("disconnected disconnect-data@example.test\n", out, 1, true)
      assert.matches("data error 451 4.3.0 Local error in processing\n", out, 1, true)
      assert.matches("timed out", out, 1, true)
      assert.is_nil(out:find("no exception", 1, true), out)
    end)
  end)

  it("is seen by swaks: rcpt-452 fails the transaction with 452 4.5.3", function()

    local defer = cleanup()
    local status, out = server.sh("swaks --server 127.0.0.1:" .. srv.port
      .. " --from a@spec.test --to rcpt-452@example.test --timeout 10")
    assert.are_not.equal(0, status, out)
    assert.matches("<%*%* 452 4%.5%.3 Too many recipients", out)
  end)
end)

describe("examples/faults.lua FAULTS_CONNECT #integration", function()
  it("answers the greeting 421 and closes, for the first FAULTS_CONNECT_TIMES connections", function()
    local defer = cleanup()
    local srv = assert(server.start({ policy = EXAMPLE,
      env = { FAULTS_CONNECT = "421", FAULTS_CONNECT_TIMES = "1" } }))
    defer(function() srv:stop() end)
    local c = assert(smtp.connect(srv))
    defer(function() c:close() end)
    c:expect(421, "4.3.2")
    c:expect_closed()
    local d = assert(smtp.connect(srv))
    defer(function() d:close() end)
    d:expect(220)
  end)

  it("closes without a greeting (disconnect) and delays it (delay-<n>)", function()

    local defer = cleanup()
    local srv = assert(server.start({ policy = EXAMPLE, env = { FAULTS_CONNECT = "disconnect" } }))
    defer(function() srv:stop() end)
    local c = assert(smtp.connect(srv))
    defer(function() c:close() end)
    c:expect_closed()

    local slow = assert(server.start({ policy = EXAMPLE, env = { FAULTS_CONNECT = "delay-3" } }))
    defer(function() slow:stop() end)
    local a = assert(smtp.connect(slow))
    defer(function() a:close() end)
    assert.is_false(a:has_data(), "the greeting came at once")
    a:expect(220, nil, 10)
  end)
end)

describe("luamta.faults rules in a policy #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = "spec/fixtures/policies/faults_stages.lua" }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("answers HELO and EHLO by the client's name", function()

    local defer = cleanup()
    local c = assert(smtp.connect(srv))
    defer(function() c:close() end)
    c:expect(220)
    local r = c:send("EHLO refuse.test"):expect(550, "5.7.1")
    assert.are.equal("5.7.1 EHLO refused by rule", r.text)
    r = c:send("HELO refuse.test"):expect(550, "5.7.1")
    assert.are.equal("5.7.1 HELO refused by rule", r.text)
    c:send("EHLO fine.test"):expect(250)
  end)

  it("answers MAIL and RCPT per sender, and leaves the rest to the base hooks", function()

    local defer = cleanup()
    local c = session(srv)
    defer(function() c:close() end)
    local r = c:send("MAIL FROM:<blocked@spec.test>"):expect(553, "5.7.1")
    assert.are.equal("5.7.1 Sender blocked by rule", r.text)
    c:send("MAIL FROM:<restricted@spec.test>"):expect(250)
    c:send("RCPT TO:<internal@spec.test>"):expect(250)
    r = c:send("RCPT TO:<external@spec.test>"):expect(550, "5.7.1")
    assert.are.equal("5.7.1 Restricted sender", r.text)
    r = c:send("RCPT TO:<base-reject@spec.test>"):expect(550, "5.7.1")
    assert.are.equal("5.7.1 Refused by the base hook", r.text)
    c:send("DATA"):expect(354)
    r = c:send_raw(BODY .. ".\r\n"):expect(250, "2.0.0")
    assert.are.equal("2.0.0 Accepted by the base hook", r.text)
  end)

  it("answers RSET and QUIT", function()

    local defer = cleanup()
    local c = session(srv)
    defer(function() c:close() end)
    c:send("RSET"):expect(250)
    c:send("MAIL FROM:<norset@spec.test>"):expect(250)
    local r = c:send("RSET"):expect(451, "4.3.0")
    assert.are.equal("4.3.0 RSET refused by rule", r.text)
    c:send("QUIT"):expect(221)
    c:expect_closed()

    local q = session(srv)
    defer(function() q:close() end)
    q:send("MAIL FROM:<quit421@spec.test>"):expect(250)
    q:send("RSET"):expect(250)
    r = q:send("QUIT"):expect(421, "4.3.2")
    assert.are.equal("4.3.2 QUIT answered 421 by rule", r.text)
    q:expect_closed()

    local d = session(srv)
    defer(function() d:close() end)
    d:send("MAIL FROM:<a@spec.test>"):expect(250)
    d:send("RCPT TO:<quitdrop@spec.test>"):expect(250)
    d:send("RSET"):expect(250)
    d:send("QUIT")
    local reply, err, partial = d:read_reply()
    assert.is_nil(reply, "QUIT was answered")
    assert.are.equal("closed", err)
    assert.are.equal("", partial)
  end)

  it("answers the 2nd message of a session from a sender: 1st accepted, 2nd 451, 3rd accepted", function()

    local defer = cleanup()
    local c = session(srv)
    defer(function() c:close() end)
    c:message("counted@spec.test", "b@spec.test", BODY):expect(250, "2.0.0")
    local r = c:message("counted@spec.test", "b@spec.test", BODY):expect(451, "4.3.0")
    assert.are.equal("4.3.0 Second message refused", r.text)
    c:message("counted@spec.test", "b@spec.test", BODY):expect(250, "2.0.0")
  end)

  it("fires a rule `times` times, then lets the recipient through", function()

    local defer = cleanup()
    local c = session(srv)
    defer(function() c:close() end)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<twice@spec.test>"):expect(450, "4.2.1")
    c:send("RCPT TO:<twice@spec.test>"):expect(450, "4.2.1")
    c:send("RCPT TO:<twice@spec.test>"):expect(250)
  end)

  it("paces a rejecting multi-line reply and closes after its last line", function()

    local defer = cleanup()
    local c = session(srv)
    defer(function() c:close() end)
    c:message("paced@spec.test", "b@spec.test", BODY)
    assert.are.equal("554-5.7.1 first", read_line(c, 10))
    assert.is_false(c:has_data(), "the second line came with the first")
    local r = c:expect(554, "5.7.1")
    assert.are.same({ "5.7.1 second", "5.7.1 third" }, r.lines)
    c:expect_closed()
  end)

  it("delays the EHLO reply, serving another session meanwhile", function()

    local defer = cleanup()
    local c = assert(smtp.connect(srv))
    defer(function() c:close() end)
    c:expect(220)
    c:send("EHLO slowbanner.test")
    assert.is_false(c:has_data(), "the EHLO reply came at once")
    local b = session(srv)
    b:send("QUIT"):expect(221)
    b:close()
    assert.is_false(c:has_data(), "the EHLO reply came before another session was served")
    c:expect(250)
  end)
end)

describe("luamta.faults connection numbers #integration", function()
  it("refuses the 1st connection, drops the 2nd, delays the 3rd, serves the 4th", function()
    local defer = cleanup()
    local srv = assert(server.start({ policy = "spec/fixtures/policies/faults_connect.lua" }))
    defer(function() srv:stop() end)
    local c1 = assert(smtp.connect(srv))
    defer(function() c1:close() end)
    local r = c1:expect(421, "4.3.2")
    assert.are.equal("4.3.2 First connection refused", r.text)
    c1:expect_closed()
    local c2 = assert(smtp.connect(srv))
    defer(function() c2:close() end)
    c2:expect_closed()
    local c3 = assert(smtp.connect(srv))
    defer(function() c3:close() end)
    assert.is_false(c3:has_data(), "the greeting came at once")
    local c4 = assert(smtp.connect(srv))
    defer(function() c4:close() end)
    c4:expect(220)
    c4:send("QUIT"):expect(221)
    assert.is_false(c3:has_data(), "the delayed greeting came before another session was served")
    c3:expect(220)
  end)
end)
