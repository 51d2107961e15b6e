-- AUTH (RFC 4954): PLAIN and LOGIN with real clients (swaks --tls and
-- --tlsc, Python's smtplib) and by hand; the on_auth return convention;
-- s.user in later hooks; MAIL ... AUTH=; every AUTH error; the limit on
-- failed attempts; AUTH only over TLS unless --auth-plaintext; and no
-- password (nor its base64) in the log, even at debug level.
local server = require "server"
local smtp = require "smtp"
local tlskit = require "tlskit"

local POLICY = "spec/fixtures/policies/tls_auth_echo.lua"
local PASSWORD = "s3cret-pw"
local WRONG = { "wrong-pw-1", "wrong-pw-2", "wrong-pw-3" }

local function session(srv, port)
  local c = assert(smtp.connect(port or srv.port, srv))
  c:expect(220)
  return c
end

local function ehlo(srv, port)
  local c = session(srv, port)
  c:send("EHLO auth.spec.test"):expect(250)
  return c
end

local function explain(r, srv)
  return "command: " .. tostring(r.command) .. "\nstatus: " .. tostring(r.status)
    .. "\n--- output ---\n" .. r.output .. "\n--- server log ---\n" .. srv:log_tail(40)
end

-- The log holds no password, in clear or in any of the encodings a client
-- sent it in.
local function assert_no_secrets(srv)
  local log = srv:log()
  local secrets = { PASSWORD, tlskit.b64(PASSWORD), tlskit.plain("alice", PASSWORD),
    tlskit.plain("custom", PASSWORD), tlskit.plain("silent", PASSWORD) }
  for _, w in ipairs(WRONG) do
    secrets[#secrets + 1] = w
    secrets[#secrets + 1] = tlskit.b64(w)
    secrets[#secrets + 1] = tlskit.plain("alice", w)
  end
  for _, secret in ipairs(secrets) do
    assert.is_nil(log:find(secret, 1, true), "the log contains a secret (" .. secret .. ")")
  end
end

describe("AUTH with real clients over TLS #integration", function()
  local pki, srv
  lazy_setup(function()
    pki = tlskit.pki()
    srv = assert(server.start({ policy = POLICY, args = tlskit.server_args(pki,
      { implicit = true }, { "--hostname", "mx.spec.test", "--log-level", "debug" }) }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  for _, tls in ipairs({ "--tls", "--tlsc" }) do
    for _, mech in ipairs({ "PLAIN", "LOGIN" }) do
      it("swaks " .. tls .. " --auth " .. mech .. ": authenticated message, s.user in on_mail", function()
        local port = tls == "--tlsc" and tlskit.tls_port(srv) or srv.port
        local r = tlskit.swaks({ "--server", "127.0.0.1", "--port", tostring(port), tls,
          "--auth", mech, "--auth-user", "alice", "--auth-password", PASSWORD,
          "--helo", "swaks.spec.test", "--from", "alice@spec.test", "--to", "rcpt@spec.test" })
        assert.are.equal(0, r.status, explain(r, srv))
        assert.matches("=== TLS started with cipher TLSv1.2:ECDHE", r.output, 1, true)
        if tls == "--tls" then
          assert.matches("<%-  250%-STARTTLS", r.output)
          assert.is_nil(r.output:find("<-  250-AUTH", 1, true), "AUTH offered in plaintext")
          assert.matches("<-  220 2.0.0 Ready to start TLS", r.output, 1, true)
        else
          assert.matches("<~  220 mx%.spec%.test", r.output)
        end
        assert.matches("<~  250-AUTH PLAIN LOGIN", r.output, 1, true)
        assert.is_nil(r.output:find("<~  250-STARTTLS", 1, true), "STARTTLS offered in TLS")
        if mech == "LOGIN" then
          assert.matches("<~  334 VXNlcm5hbWU6\n", r.output, 1, true)
          assert.matches("<~  334 UGFzc3dvcmQ6\n", r.output, 1, true)
        end
        assert.matches("<~  235 2.7.0 Authentication successful", r.output, 1, true)
        assert.matches("<~  250 2.1.0 from=<alice@spec.test> user=alice auth=- tls=TLSv1.2",
          r.output, 1, true)
        assert.matches("<~  250 2%.0%.0 Ok: queued as", r.output)
        assert.truthy(srv:wait_log({ "smtp.auth result=accept mech=" .. mech .. ' user="alice"' }))
        assert_no_secrets(srv)
      end)
    end
  end

  for _, mech in ipairs({ "PLAIN", "LOGIN" }) do
    it("Python smtplib starttls() then AUTH " .. mech .. " and sendmail()", function()
      local o, r = tlskit.smtplib({ port = srv.port, mode = "starttls", ca = pki.ca_cert,
        user = "alice", password = PASSWORD, mech = mech, from = "alice@spec.test",
        to = { "rcpt@spec.test" }, message = "Subject: smtplib " .. mech .. "\r\n\r\nhi\r\n" })
      assert.is_table(o, explain(r, srv))
      assert.is_nil(o.error, explain(r, srv))
      assert.are.same({ 235, "2.7.0 Authentication successful" }, o.login)
      assert.are.same({}, o.refused, explain(r, srv))
      assert.truthy(srv:wait_log({ "smtp.auth result=accept mech=" .. mech }))
      assert_no_secrets(srv)
    end)
  end

  it("Python smtplib login() with a wrong password: 535 5.7.8, nothing sent", function()
    local o, r = tlskit.smtplib({ port = tlskit.tls_port(srv), mode = "implicit",
      ca = pki.ca_cert, user = "alice", password = WRONG[1] })
    assert.is_table(o, explain(r, srv))
    assert.matches("SMTPAuthenticationError", o.error or "", 1, true)
    assert.matches("535", o.error, 1, true)
    assert.matches("5.7.8", o.error, 1, true)
    assert_no_secrets(srv)
  end)
end)

describe("AUTH by hand (--auth-plaintext) #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = POLICY, args = { "--hostname", "mx.spec.test",
      "--auth-plaintext", "--log-level", "debug" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("advertises AUTH PLAIN LOGIN in plaintext with --auth-plaintext", function()
    local c = session(srv)
    finally(function() c:close() end)
    local r = c:send("EHLO auth.spec.test"):expect(250)
    assert.matches("\nAUTH PLAIN LOGIN\n", r.text .. "\n", 1, true)
  end)

  it("PLAIN with an initial response: 235 2.7.0, then s.user in on_mail", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    c:send("WHOAMI"):expect(250, "user=- plain")
    c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD))
      :expect(235, "^2%.7%.0 Authentication successful$")
    c:send("WHOAMI"):expect(250, "user=alice plain")
    local r = c:send("MAIL FROM:<alice@spec.test>"):expect(250)
    assert.are.equal("2.1.0 from=<alice@spec.test> user=alice auth=- tls=none cert=none", r.text)
    c:send("RCPT TO:<rcpt@spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: as alice\r\n\r\nhi\r\n.\r\n"):expect(250, "2.0.0")
    assert.truthy(srv:wait_log({ "spec.hook on_message user=alice ok=true" }))
    c:send("RSET"):expect(250)
    c:send("WHOAMI"):expect(250, "user=alice") -- RSET keeps the identity
    assert_no_secrets(srv)
  end)

  it("PLAIN after an empty 334 challenge", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    local r = c:send("AUTH PLAIN"):expect(334)
    assert.are.equal("334 \r\n", r.raw)
    c:send(tlskit.plain("alice", PASSWORD)):expect(235, "2.7.0")
    c:send("WHOAMI"):expect(250, "user=alice")
  end)

  it("PLAIN with an authorization identity equal to the user", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    c:send("AUTH PLAIN " .. tlskit.b64("alice\0alice\0" .. PASSWORD)):expect(235, "2.7.0")
    c:send("WHOAMI"):expect(250, "user=alice")
  end)

  it("PLAIN with another authorization identity: 535 5.7.8, on_auth not asked", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    local before = srv:count_log({ "spec.hook on_auth" })
    c:send("AUTH PLAIN " .. tlskit.b64("root\0alice\0" .. PASSWORD)):expect(535, "5.7.8")
    c:send("WHOAMI"):expect(250, "user=-")
    assert.are.equal(before, srv:count_log({ "spec.hook on_auth" }))
  end)

  it("LOGIN: 334 Username:, 334 Password:, 235", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    local r = c:send("AUTH LOGIN"):expect(334)
    assert.are.equal("334 VXNlcm5hbWU6\r\n", r.raw)
    r = c:send(tlskit.b64("alice")):expect(334)
    assert.are.equal("334 UGFzc3dvcmQ6\r\n", r.raw)
    c:send(tlskit.b64(PASSWORD)):expect(235, "2.7.0")
    c:send("MAIL FROM:<alice@spec.test>"):expect(250, "user=alice")
    assert.truthy(srv:wait_log({ "spec.hook on_auth mech=LOGIN user=alice" }))
    assert_no_secrets(srv)
  end)

  it("LOGIN with an initial response takes it as the user name", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    local r = c:send("AUTH login " .. tlskit.b64("alice")):expect(334)
    assert.are.equal("334 UGFzc3dvcmQ6\r\n", r.raw)
    c:send(tlskit.b64(PASSWORD)):expect(235, "2.7.0")
    c:send("WHOAMI"):expect(250, "user=alice")
  end)

  it("on_auth false: 535 5.7.8; a later correct AUTH in the same session succeeds", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", WRONG[1]))
      :expect(535, "^5%.7%.8 Authentication credentials invalid$")
    c:send("WHOAMI"):expect(250, "user=-")
    c:send("MAIL FROM:<x@spec.test>"):expect(250, "user=-")
    c:send("RSET"):expect(250)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(235, "2.7.0")
    assert.truthy(srv:wait_log({ "smtp.auth result=reject mech=PLAIN", "failures=1" }))
    assert_no_secrets(srv)
  end)

  it("on_auth returning nothing does not let anybody in: 535 5.7.8", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    c:send("AUTH PLAIN " .. tlskit.plain("silent", PASSWORD)):expect(535, "5.7.8")
    c:send("WHOAMI"):expect(250, "user=-")
  end)

  it("on_auth custom replies: 235 with its own text, 454 4.7.0", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    c:send("AUTH PLAIN " .. tlskit.plain("tempfail", PASSWORD))
      :expect(454, "^4%.7%.0 Try again later$")
    c:send("WHOAMI"):expect(250, "user=-")
    c:send("AUTH PLAIN " .. tlskit.plain("custom", PASSWORD))
      :expect(235, "^2%.7%.0 Welcome custom$")
    c:send("WHOAMI"):expect(250, "user=custom")
  end)

  it("MAIL ... AUTH=<> is accepted once AUTH was advertised", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    c:send("MAIL FROM:<a@spec.test> AUTH=<>"):expect(250, "auth=<>")
    c:send("RSET"):expect(250)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(235)
    c:send("MAIL FROM:<alice@spec.test> AUTH=alice@spec.test")
      :expect(250, "user=alice auth=alice@spec.test")
  end)

  it("AUTH before EHLO (and after HELO): 503 5.5.1", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(503, "5.5.1")
    c:send("HELO auth.spec.test"):expect(250)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(503, "5.5.1")
    c:send("WHOAMI"):expect(250, "user=-")
    c:send("EHLO auth.spec.test"):expect(250)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(235, "2.7.0")
  end)

  it("AUTH twice: 503 5.5.1, the first identity stays", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(235)
    c:send("AUTH PLAIN " .. tlskit.plain("custom", PASSWORD)):expect(503, "5.5.1")
    c:send("AUTH LOGIN"):expect(503, "5.5.1")
    c:send("WHOAMI"):expect(250, "user=alice")
  end)

  it("AUTH during a transaction: 503 5.5.1, the transaction goes on", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(503, "5.5.1")
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    c:send("AUTH LOGIN"):expect(503, "5.5.1")
    c:send("WHOAMI"):expect(250, "user=-")
    c:send("DATA"):expect(354)
    c:send_raw("Subject: tx\r\n\r\nx\r\n.\r\n"):expect(250, "2.0.0")
  end)

  it("an unknown mechanism: 504 5.5.4", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    c:send("AUTH CRAM-MD5"):expect(504, "5.5.4")
    c:send("AUTH XOAUTH2 " .. tlskit.b64("user=alice\1auth=Bearer x\1\1")):expect(504, "5.5.4")
    c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(235)
  end)

  it("malformed base64: 501 5.5.2 (initial response, after 334, LOGIN steps)", function()
    for _, steps in ipairs({
      { "AUTH PLAIN AGFsaWNl!!!" },
      { "AUTH PLAIN", "not base64 at all" },
      { "AUTH PLAIN", "AGFs aWNlAHMzY3JldC1wdw==" }, -- a space inside
      { "AUTH PLAIN AGFsaWNlAHMzY3JldC1wdw====" }, -- too much padding
      { "AUTH PLAIN AG=saWNlAHMzY3JldC1wdw==" }, -- padding in the middle
      { "AUTH LOGIN", "YWxp@2U=" },
      { "AUTH LOGIN", tlskit.b64("alice"), "czNj%%%" },
      { "AUTH LOGIN #$%^" },
    }) do
      local c = ehlo(srv)
      finally(function() c:close() end)
      for i = 1, #steps - 1 do c:send(steps[i]):expect(334) end
      c:send(steps[#steps]):expect(501, "5.5.2")
      -- no AUTH exchange is left half-open: the next line is a command
      c:send("WHOAMI"):expect(250, "user=-")
      c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(235, "2.7.0")
      c:close()
    end
  end)

  -- RFC 4954 4 (and its ABNF: groups of 4 characters, a padded last group)
  -- with RFC 4648 3.2: a response that is not whole base64 cannot be decoded
  -- and gets 501; it is no credential and not a failed attempt.
  it("base64 cut short (length not a multiple of 4): 501 5.5.2, on_auth not asked", function()
    for _, steps in ipairs({
      { "AUTH PLAIN AGFsaWNlAHMzY3JldC1wd" },
      { "AUTH PLAIN", "AGFsaWNlAHMzY3JldC1wdw" },
      { "AUTH PLAIN A" },
      { "AUTH LOGIN", tlskit.b64("alice"), "czNjcmV0LXB" },
    }) do
      local before = srv:count_log({ "spec.hook on_auth" })
      local c = ehlo(srv)
      finally(function() c:close() end)
      for i = 1, #steps - 1 do c:send(steps[i]):expect(334) end
      c:send(steps[#steps]):expect(501, "5.5.2")
      c:send("WHOAMI"):expect(250, "user=-")
      assert.are.equal(before, srv:count_log({ "spec.hook on_auth" }),
        "on_auth was asked about an undecodable response")
      c:close()
    end
  end)

  it("a malformed PLAIN message: 501 5.5.2", function()
    for _, bad in ipairs({ "alice", "alice\0" .. PASSWORD, "\0\0" .. PASSWORD,
      "\0alice\0" .. PASSWORD .. "\0extra" }) do
      local c = ehlo(srv)
      finally(function() c:close() end)
      c:send("AUTH PLAIN " .. tlskit.b64(bad)):expect(501, "5.5.2")
      c:send("WHOAMI"):expect(250, "user=-")
      c:close()
    end
  end)

  it("the client cancels with *: 501 5.7.0 at every step", function()
    for _, steps in ipairs({ { "AUTH PLAIN" }, { "AUTH LOGIN" },
      { "AUTH LOGIN", tlskit.b64("alice") } }) do
      local c = ehlo(srv)
      finally(function() c:close() end)
      for _, s in ipairs(steps) do c:send(s):expect(334) end
      c:send("*"):expect(501, "5.7.0")
      c:send("WHOAMI"):expect(250, "user=-")
      c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(235, "2.7.0")
      c:close()
    end
  end)

  it("AUTH without a mechanism: 501", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    c:send("AUTH"):expect(501)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(235)
  end)

  it("after 3 failed attempts: 535, then 421 4.7.0 and the connection is closed", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", WRONG[1])):expect(535, "5.7.8")
    c:send("AUTH LOGIN"):expect(334)
    c:send(tlskit.b64("alice")):expect(334)
    c:send(tlskit.b64(WRONG[2])):expect(535, "5.7.8")
    c:send("AUTH PLAIN " .. tlskit.plain("alice", WRONG[3])):expect(535, "5.7.8")
    c:expect(421, "4.7.0")
    c:expect_closed()
    assert.truthy(srv:wait_log({ "smtp.auth result=reject", "failures=3" }))
    assert.truthy(srv:wait_log({ "smtp.close reason=auth_failures" }))
    assert_no_secrets(srv)
  end)

  it("the limit is per session: a new connection may authenticate", function()
    local c = ehlo(srv)
    finally(function() c:close() end)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(235, "2.7.0")
  end)
end)

describe("AUTH needs TLS without --auth-plaintext #integration", function()
  local pki, srv
  lazy_setup(function()
    pki = tlskit.pki()
    srv = assert(server.start({ policy = POLICY, args = tlskit.server_args(pki, nil,
      { "--hostname", "mx.spec.test", "--max-auth-failures", "1" }) }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  it("does not advertise AUTH in plaintext and answers it 538 5.7.11", function()
    local c = session(srv)
    finally(function() c:close() end)
    local r = c:send("EHLO plain.spec.test"):expect(250)
    assert.is_nil(r.text:find("AUTH", 1, true), r.raw)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(538, "5.7.11")
    c:send("AUTH LOGIN"):expect(538, "5.7.11")
    c:send("WHOAMI"):expect(250, "user=- plain")
    assert.are.equal(0, srv:count_log({ "spec.hook on_auth" }))
    -- AUTH= is not a MAIL parameter while AUTH is not advertised
    c:send("MAIL FROM:<a@spec.test> AUTH=<>"):expect(555, "5.5.4")
  end)

  it("offers and accepts AUTH after STARTTLS", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO plain.spec.test"):expect(250)
    c:send("STARTTLS"):expect(220, "2.0.0")
    local o, r = tlskit.takeover(c, { ca = pki.ca_cert, lines = { "EHLO tls.spec.test",
      "AUTH PLAIN " .. tlskit.plain("alice", PASSWORD), "MAIL FROM:<alice@spec.test> AUTH=<>" } })
    assert.is_table(o, explain(r, srv))
    assert.is_nil(o.error, explain(r, srv))
    assert.matches("\r\n250%-AUTH PLAIN LOGIN\r\n", o.replies[1])
    assert.are.equal("235 2.7.0 Authentication successful\r\n", o.replies[2])
    assert.are.equal("250 2.1.0 from=<alice@spec.test> user=alice auth=<> tls=TLSv1.2 cert=none\r\n",
      o.replies[3])
    assert_no_secrets(srv)
  end)

  it("--max-auth-failures 1 closes after the first failure", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO plain.spec.test"):expect(250)
    c:send("STARTTLS"):expect(220, "2.0.0")
    local o, r = tlskit.takeover(c, { ca = pki.ca_cert, lines = { "EHLO tls.spec.test",
      "AUTH PLAIN " .. tlskit.plain("alice", WRONG[1]) } })
    assert.is_table(o, explain(r, srv))
    assert.is_nil(o.error, explain(r, srv))
    assert.matches("^535 5%.7%.8 ", o.replies[2])
    assert.matches("^421 4%.7%.0 ", o.extra)
    assert.truthy(srv:wait_log({ "smtp.close reason=auth_failures" }))
    assert_no_secrets(srv)
  end)
end)

describe("AUTH without an on_auth hook #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ args = { "--hostname", "mx.spec.test", "--auth-plaintext" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("is not advertised and answers 503 5.5.1; AUTH= is an unknown MAIL parameter", function()
    local c = session(srv)
    finally(function() c:close() end)
    local r = c:send("EHLO noauth.spec.test"):expect(250)
    assert.is_nil(r.text:find("AUTH", 1, true), r.raw)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", PASSWORD)):expect(503, "5.5.1")
    c:send("AUTH LOGIN"):expect(503, "5.5.1")
    c:send("MAIL FROM:<a@spec.test> AUTH=<>"):expect(555, "5.5.4")
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
  end)
end)
