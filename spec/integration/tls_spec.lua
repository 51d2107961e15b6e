-- TLS: STARTTLS (RFC 3207) and implicit TLS (RFC 8314) with real clients
-- (Python's smtplib and ssl, swaks, openssl s_client) against certificates
-- made at run time; s.tls in Lua and client certificates; the STARTTLS
-- command-injection case (CVE-2011-0411); stalled and garbage handshakes;
-- the STARTTLS errors; --require-tls and s.require_tls; on_starttls.
local server = require "server"
local smtp = require "smtp"
local tlskit = require "tlskit"

local POLICY = "spec/fixtures/policies/tls_auth_echo.lua"
local PASSWORD = "s3cret-pw"

local function session(srv, port)
  local c = assert(smtp.connect(port or srv.port, srv))
  c:expect(220)
  return c
end

-- The SMTP reply lines s_client printed on stdout (the session after the
-- handshake), as a list and as one text.
local function reply_lines(stdout)
  local out = {}
  for line in stdout:gmatch("[^\r\n]+") do
    if line:match("^%d%d%d[ %-]") then out[#out + 1] = line end
  end
  return out, table.concat(out, "\n")
end

local function has_line(lines, pat)
  for _, l in ipairs(lines) do
    if l:find(pat) then return true end
  end
  return false
end

local function explain(r, srv)
  return "command: " .. tostring(r.command) .. "\nstatus: " .. tostring(r.status)
    .. "\n--- output ---\n" .. r.output .. "\n--- server log ---\n" .. srv:log_tail(40)
end

-- Runs f and returns the one file that appeared in <dir>/Maildir/new.
local function new_maildir_file(srv, f)
  local dir = srv.dir .. "/Maildir/new"
  local before = {}
  for _, n in ipairs(server.ls(dir)) do before[n] = true end
  f()
  local added = {}
  for _, n in ipairs(server.ls(dir)) do
    if not before[n] then added[#added + 1] = n end
  end
  assert.are.equal(1, #added, "expected one new file in Maildir/new, got " .. #added
    .. "\n" .. srv:log_tail(30))
  return server.read_file(dir .. "/" .. added[1])
end

-- Reads until the server closes the connection; returns everything it sent
-- and whether it did close (false: the read timed out).
local function read_to_close(c, timeout)
  c.sock:settimeout(timeout or 20)
  local data, err, partial = c.sock:receive("*a")
  if data then return c.buf .. data, true end
  return c.buf .. (partial or ""), err == "closed"
end

describe("TLS with real clients #integration", function()
  local pki, srv
  lazy_setup(function()
    pki = tlskit.pki()
    srv = assert(server.start({ policy = POLICY, args = tlskit.server_args(pki,
      { implicit = true, client_ca = true }, { "--hostname", "mx.spec.test",
        "--log-level", "debug" }) }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  it("Python smtplib: starttls(), login(), sendmail() over STARTTLS", function()
    local o, r = tlskit.smtplib({ port = srv.port, mode = "starttls", ca = pki.ca_cert,
      user = "alice", password = PASSWORD, from = "py@spec.test", to = { "rcpt@spec.test" },
      message = "Subject: smtplib starttls\r\n\r\nhello\r\n" })
    assert.is_table(o, explain(r, srv))
    assert.is_nil(o.error, explain(r, srv))
    assert.are.same({ 220, "2.0.0 Ready to start TLS" }, o.starttls)
    assert.is_truthy(o.greeting_features and
      table.concat(o.greeting_features, " "):find("starttls", 1, true),
      "STARTTLS not advertised in plaintext: " .. explain(r, srv))
    for _, f in ipairs(o.features) do
      assert.are_not.equal("starttls", f, "STARTTLS still advertised inside TLS")
    end
    assert.are.equal(" PLAIN LOGIN", o.auth_feature)
    assert.are.equal("TLSv1.2", o.tls.version)
    assert.matches("^ECDHE%-", o.tls.cipher)
    assert.are.same({ 235, "2.7.0 Authentication successful" }, o.login)
    assert.are.same({}, o.refused)
    assert.are.same({ 221, "2.0.0 Bye" }, o.quit)
    assert.truthy(srv:wait_log({ "spec.hook on_message user=alice ok=true" }))
  end)

  it("Python smtplib over the implicit-TLS listener: greeting after the handshake", function()
    local o, r = tlskit.smtplib({ port = tlskit.tls_port(srv), mode = "implicit",
      ca = pki.ca_cert, user = "alice", password = PASSWORD, from = "py@spec.test",
      to = { "rcpt@spec.test" }, message = "Subject: smtplib implicit\r\n\r\nhello\r\n" })
    assert.is_table(o, explain(r, srv))
    assert.is_nil(o.error, explain(r, srv))
    assert.are.equal("TLSv1.2", o.tls.version)
    for _, f in ipairs(o.features) do assert.are_not.equal("starttls", f) end
    assert.are.same({ 235, "2.7.0 Authentication successful" }, o.login)
    assert.are.same({}, o.refused)
    assert.truthy(srv:wait_log({ "smtp.connect", "tls=implicit" }))
  end)

  it("delivers a message received over TLS byte for byte into the Maildir", function()
    local original = "Subject: over TLS\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
      .. ".leading dot\r\n..two dots\r\n.\r\nJ\xc3\xb6rg \xe2\x9c\x93\r\n\r\n"
      .. ("0123456789abcdef"):rep(1200) .. "\r\nlast line\r\n"
    for _, mode in ipairs({ "starttls", "implicit" }) do
      local data = new_maildir_file(srv, function()
        local o, r = tlskit.smtplib({ mode = mode, ca = pki.ca_cert,
          port = mode == "implicit" and tlskit.tls_port(srv) or srv.port,
          from = "bytes@spec.test", to = { "rcpt@spec.test" }, message = original })
        assert.is_table(o, explain(r, srv))
        assert.is_nil(o.error, explain(r, srv))
        assert.are.same({}, o.refused, explain(r, srv))
      end)
      local rest, field = server.unreceived(data)
      assert.are.equal(original, rest, mode)
      -- RFC 3848: STARTTLS and implicit TLS alike are ESMTPS.
      assert.matches(" with ESMTPS id ", field, 1, true)
    end
  end)

  it("openssl s_client -starttls smtp: verified server certificate, AUTH and no STARTTLS", function()
    local r = tlskit.s_client(srv.port, { "-starttls", "smtp", "-CAfile", pki.ca_cert,
      "-verify_return_error", "-verify_hostname", "localhost" },
      "EHLO sclient.spec.test\nTLSINFO\nMAIL FROM:<s@spec.test>\nQUIT\n")
    assert.are.equal(0, r.status, explain(r, srv))
    assert.matches("Verification: OK", r.stdout, 1, true)
    local lines, text = reply_lines(r.stdout)
    assert.is_true(has_line(lines, "^250%-mx%.spec%.test$"), text)
    assert.is_true(has_line(lines, "^250%-AUTH PLAIN LOGIN$"), text)
    assert.is_false(has_line(lines, "STARTTLS"), text)
    assert.is_true(has_line(lines,
      "^250 2%.0%.0 version=TLSv1%.2 cipher=%S*ECDHE%S* client_cert=none$"), text)
    assert.is_true(has_line(lines, "^250 2%.1%.0 from=<s@spec%.test> user=%- auth=%- tls=TLSv1%.2"),
      text)
    assert.are.equal("221 2.0.0 Bye", lines[#lines], text)
  end)

  it("plain openssl s_client on the implicit listener: handshake, then 220", function()
    local r = tlskit.s_client(tlskit.tls_port(srv), { "-CAfile", pki.ca_cert,
      "-verify_return_error", "-verify_hostname", "localhost" },
      "EHLO sclient.spec.test\nTLSINFO\nQUIT\n")
    assert.are.equal(0, r.status, explain(r, srv))
    assert.matches("Verification: OK", r.stdout, 1, true)
    local lines, text = reply_lines(r.stdout)
    assert.matches("^220 mx%.spec%.test", lines[1], nil, text)
    assert.is_true(has_line(lines, "^250%-AUTH PLAIN LOGIN$"), text)
    assert.is_false(has_line(lines, "STARTTLS"), text)
    assert.is_true(has_line(lines, "^250 2%.0%.0 version=TLSv1%.2 cipher=%S*ECDHE%S*GCM%S* "
      .. "client_cert=none$") or has_line(lines, "^250 2%.0%.0 version=TLSv1%.2 cipher=%S*ECDHE"
      .. "%S*CHACHA20%S* client_cert=none$"), text)
    assert.are.equal("221 2.0.0 Bye", lines[#lines], text)
  end)

  it("s.tls is nil in plaintext", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO plain.spec.test"):expect(250)
    c:send("TLSINFO"):expect(250, "^2%.0%.0 tls=none$")
    c:send("MAIL FROM:<p@spec.test>"):expect(250, "tls=none cert=none")
  end)

  it("a client certificate signed by the CA is verified; subject and fingerprint reach Lua", function()
    local r = tlskit.s_client(tlskit.tls_port(srv), { "-CAfile", pki.ca_cert,
      "-cert", pki.client_cert, "-key", pki.client_key },
      "EHLO cert.spec.test\nTLSINFO\nQUIT\n")
    assert.are.equal(0, r.status, explain(r, srv))
    local lines, text = reply_lines(r.stdout)
    local info
    for _, l in ipairs(lines) do
      if l:find("^250 2%.0%.0 version=") then info = l end
    end
    assert.truthy(info, text)
    assert.matches("subject=%[[^%]]*CN=luamta spec client[^%]]*%]", info)
    assert.matches("subject=%[[^%]]*O=luamta spec[,%]]", info)
    assert.matches(" fingerprint=" .. pki.client_fp .. " ", info, 1, true)
    assert.matches(" verified=true ", info, 1, true)
    assert.truthy(srv:wait_log({ "smtp.tls version=TLSv1.2", "client_cert=verified" }))
  end)

  it("a self-signed stranger certificate is reported unverified, with an error", function()
    local r = tlskit.s_client(tlskit.tls_port(srv), { "-CAfile", pki.ca_cert,
      "-cert", pki.stranger_cert, "-key", pki.stranger_key },
      "EHLO stranger.spec.test\nTLSINFO\nQUIT\n")
    assert.are.equal(0, r.status, explain(r, srv))
    local lines, text = reply_lines(r.stdout)
    local info
    for _, l in ipairs(lines) do
      if l:find("^250 2%.0%.0 version=") then info = l end
    end
    assert.truthy(info, text)
    assert.matches("subject=%[[^%]]*CN=luamta spec stranger", info)
    assert.matches(" fingerprint=" .. pki.stranger_fp .. " ", info, 1, true)
    assert.matches(" verified=false ", info, 1, true)
    assert.matches("error=%[[^%]%-][^%]]*%]$", info) -- a non-empty error text
    assert.truthy(srv:wait_log({ "smtp.tls version=TLSv1.2", "client_cert=unverified" }))
  end)

  it("swaks --tls with --tls-cert/--tls-key: the client certificate is verified", function()
    local r = tlskit.swaks({ "--server", "127.0.0.1", "--port", tostring(srv.port), "--tls",
      "--tls-cert", pki.client_cert, "--tls-key", pki.client_key, "--helo", "swaks.spec.test",
      "--from", "sw@spec.test", "--to", "rcpt@spec.test" })
    assert.are.equal(0, r.status, explain(r, srv))
    assert.matches("<%-  220 2%.0%.0 Ready to start TLS", r.output)
    assert.matches("=== TLS started with cipher TLSv1.2:ECDHE", r.output, 1, true)
    assert.matches("<~  250 2.1.0 from=<sw@spec.test> user=- auth=- tls=TLSv1.2 cert=verified",
      r.output, 1, true)
    assert.matches("<~  250 2%.0%.0 Ok: queued as", r.output)
  end)

  it("swaks --tlsc with the stranger certificate: the session goes on, unverified", function()
    local r = tlskit.swaks({ "--server", "127.0.0.1", "--port", tostring(tlskit.tls_port(srv)),
      "--tlsc", "--tls-cert", pki.stranger_cert, "--tls-key", pki.stranger_key,
      "--from", "sw@spec.test", "--to", "rcpt@spec.test" })
    assert.are.equal(0, r.status, explain(r, srv))
    assert.matches("<~  220 mx%.spec%.test", r.output)
    assert.matches("<~  250 2.1.0 from=<sw@spec.test> user=- auth=- tls=TLSv1.2 cert=unverified",
      r.output, 1, true)
    assert.matches("<~  250 2%.0%.0 Ok: queued as", r.output)
  end)

  it("EHLO after STARTTLS lists AUTH and not STARTTLS; HELO and AUTH are forgotten", function()
    local c = session(srv)
    finally(function() c:close() end)
    local r = c:send("EHLO before.spec.test"):expect(250)
    assert.matches("\nSTARTTLS\n", r.text .. "\n", 1, true)
    assert.is_nil(r.text:find("AUTH", 1, true), "AUTH offered in plaintext:\n" .. r.raw)
    c:send("STARTTLS"):expect(220, "2.0.0")
    assert.are.equal("", c.buf)
    local o, run = tlskit.takeover(c, { ca = pki.ca_cert, lines = {
      "MAIL FROM:<early@spec.test>", "EHLO after.spec.test", "WHOAMI", "STARTTLS" } })
    assert.is_table(o, explain(run, srv))
    assert.is_nil(o.error, explain(run, srv))
    -- RFC 3207 4.2: the client must EHLO again; the HELO name is gone.
    assert.matches("^503 5%.5%.1 ", o.replies[1])
    assert.matches("^250%-mx%.spec%.test\r\n", o.replies[2])
    assert.matches("\r\n250%-AUTH PLAIN LOGIN\r\n", o.replies[2])
    assert.is_nil(o.replies[2]:find("STARTTLS", 1, true), o.replies[2])
    assert.are.equal("250 2.0.0 user=- tls\r\n", o.replies[3])
    assert.matches("^503 5%.5%.1 ", o.replies[4]) -- STARTTLS twice
    assert.are.equal("", o.extra)
    assert.are.equal(0, srv:count_log({ "spec.hook on_mail from=early@spec.test" }))
  end)

  it("a stalled handshake costs only its own connection", function()
    local staller = assert(smtp.connect(tlskit.tls_port(srv), srv))
    finally(function() staller:close() end)
    local half = session(srv)
    finally(function() half:close() end)
    half:send("EHLO half.spec.test"):expect(250)
    half:send("STARTTLS"):expect(220, "2.0.0")
    -- Both wait for a handshake that never comes; another client is served.
    local o, r = tlskit.smtplib({ port = tlskit.tls_port(srv), mode = "implicit",
      ca = pki.ca_cert, user = "alice", password = PASSWORD, from = "py@spec.test",
      to = { "rcpt@spec.test" }, message = "Subject: meanwhile\r\n\r\nhello\r\n" })
    assert.is_table(o, explain(r, srv))
    assert.is_nil(o.error, explain(r, srv))
    assert.are.same({}, o.refused)
    -- The stalled ones are still open (the handshake timeout is 30 s).
    assert.is_false(staller:has_data())
    assert.is_falsy(staller.eof)
    assert.is_false(half:has_data())
    assert.is_falsy(half.eof)
  end)
end)

describe("STARTTLS command injection (CVE-2011-0411) #integration", function()
  local pki, srv
  lazy_setup(function()
    pki = tlskit.pki()
    srv = assert(server.start({ policy = POLICY, args = tlskit.server_args(pki, nil,
      { "--hostname", "mx.spec.test", "--auth-plaintext" }) }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  it("discards plaintext pipelined after STARTTLS; the first TLS reply answers the first TLS command", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO inject.spec.test"):expect(250)
    local injected = "MAIL FROM:<injected@spec.test>\r\nMARK injected\r\nRSET\r\n"
    -- One write, so STARTTLS and the injected commands arrive together.
    c:send_raw("STARTTLS\r\n" .. injected)
    c:expect(220, "2.0.0")
    assert.are.equal("", c.buf, "the server sent more than the 220 in plaintext")
    local o, r = tlskit.takeover(c, { ca = pki.ca_cert,
      lines = { "EHLO after.spec.test", "MAIL FROM:<real@spec.test>" } })
    assert.is_table(o, explain(r, srv))
    assert.is_nil(o.error, explain(r, srv))
    -- Had the injected MAIL run after the handshake, its reply (503: no
    -- EHLO yet) would come first and every reply would be one step late.
    assert.matches("^250%-mx%.spec%.test\r\n", o.replies[1])
    assert.are.equal("250 2.1.0 from=<real@spec.test> user=- auth=- tls=TLSv1.2 cert=none\r\n",
      o.replies[2])
    assert.are.equal("", o.extra, "an unexpected reply followed")
    assert.truthy(srv:wait_log({ "smtp.starttls_injection discarded=" .. #injected .. "$" }),
      srv:log_tail(20))
    assert.are.equal(0, srv:count_log({ "spec.mark executed" }))
    assert.are.equal(0, srv:count_log({ "spec.hook on_mail from=injected@spec.test" }))
    assert.are.equal(0, srv:count_log({ "spec.hook on_rset" }))
    assert.are.equal(1, srv:count_log({ "spec.hook on_mail from=real@spec.test" }))
  end)

  it("discards an injected AUTH too: the session is not authenticated after the handshake", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO inject.spec.test"):expect(250)
    local injected = "AUTH PLAIN " .. tlskit.plain("alice", PASSWORD) .. "\r\n"
    c:send_raw("STARTTLS\r\n" .. injected)
    c:expect(220, "2.0.0")
    assert.are.equal("", c.buf)
    local o, r = tlskit.takeover(c, { ca = pki.ca_cert,
      lines = { "EHLO after.spec.test", "WHOAMI" } })
    assert.is_table(o, explain(r, srv))
    assert.is_nil(o.error, explain(r, srv))
    assert.matches("^250%-mx%.spec%.test\r\n", o.replies[1])
    assert.are.equal("250 2.0.0 user=- tls\r\n", o.replies[2])
    assert.are.equal("", o.extra)
    assert.truthy(srv:wait_log({ "smtp.starttls_injection discarded=" .. #injected .. "$" }))
    assert.are.equal(0, srv:count_log({ "spec.hook on_auth" }))
  end)
end)

describe("TLS handshake timeout and garbage #integration", function()
  local pki, srv
  lazy_setup(function()
    pki = tlskit.pki()
    srv = assert(server.start({ policy = POLICY, args = tlskit.server_args(pki,
      { implicit = true }, { "--hostname", "mx.spec.test", "--tls-timeout", "1" }) }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  local function full_session()
    local o, r = tlskit.smtplib({ port = tlskit.tls_port(srv), mode = "implicit",
      ca = pki.ca_cert, user = "alice", password = PASSWORD, from = "py@spec.test",
      to = { "rcpt@spec.test" }, message = "Subject: still served\r\n\r\nhello\r\n" })
    assert.is_table(o, explain(r, srv))
    assert.is_nil(o.error, explain(r, srv))
    assert.are.same({ 235, "2.7.0 Authentication successful" }, o.login)
    assert.are.same({}, o.refused)
  end

  it("closes an implicit-TLS connection that sends nothing, without a reply", function()
    local before = srv:count_log({ "smtp.close reason=tls_timeout" })
    local c = assert(smtp.connect(tlskit.tls_port(srv), srv))
    finally(function() c:close() end)
    full_session() -- meanwhile, another client is served
    local data, closed = read_to_close(c)
    assert.is_true(closed, "the server did not close the stalled connection")
    assert.are.equal("", data)
    assert.truthy(srv:wait_log({ "smtp.close reason=tls_timeout" }, 10, before + 1))
  end)

  it("closes a connection that stalls in the middle of a ClientHello", function()
    local before = srv:count_log({ "smtp.close reason=tls_timeout" })
    local c = assert(smtp.connect(tlskit.tls_port(srv), srv))
    finally(function() c:close() end)
    -- A handshake record header announcing 512 bytes, then only a few.
    c:send_raw("\22\3\1\2\0\1\0\1\252\3\3" .. ("\0"):rep(16))
    full_session()
    local data, closed = read_to_close(c)
    assert.is_true(closed, "the server did not close the stalled connection")
    assert.is_nil(data:find("220", 1, true), "an SMTP greeting in the clear")
    assert.truthy(srv:wait_log({ "smtp.close reason=tls_timeout" }, 10, before + 1))
  end)

  it("closes a STARTTLS session whose client never starts the handshake", function()
    local before = srv:count_log({ "smtp.close reason=tls_timeout" })
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO stall.spec.test"):expect(250)
    c:send("STARTTLS"):expect(220, "2.0.0")
    full_session()
    local data, closed = read_to_close(c)
    assert.is_true(closed, "the server did not close the stalled connection")
    assert.are.equal("", data, "no plaintext reply fits in a handshake")
    assert.truthy(srv:wait_log({ "smtp.close reason=tls_timeout" }, 10, before + 1))
  end)

  it("closes a connection that sends garbage instead of a ClientHello, and logs it", function()
    local garbage = { "EHLO not.tls.spec.test\r\n" .. ("\255\0\17"):rep(200),
      "\22\3\3\0\64" .. ("\1\2\3\4\5\6\7\8"):rep(8) }
    for i, bytes in ipairs(garbage) do
      local before = srv:count_log({ "smtp.conn_error state=connected" })
      local c = assert(smtp.connect(tlskit.tls_port(srv), srv))
      finally(function() c:close() end)
      c:send_raw(bytes)
      local data, closed = read_to_close(c)
      assert.is_true(closed, "garbage " .. i .. ": the connection stayed open")
      assert.is_nil(data:find("220", 1, true), "garbage " .. i .. ": an SMTP greeting")
      assert.truthy(srv:wait_log({ "smtp.conn_error state=connected error=" }, 10, before + 1),
        "garbage " .. i .. ": no error logged\n" .. srv:log_tail(20))
      full_session()
    end
  end)

  it("closes a STARTTLS session that answers the 220 with garbage", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO garbage.spec.test"):expect(250)
    c:send("STARTTLS"):expect(220, "2.0.0")
    c:send_raw("NOOP\r\nNOOP\r\n" .. ("\0\255"):rep(64))
    local data, closed = read_to_close(c)
    assert.is_true(closed, "the connection stayed open")
    assert.is_nil(data:find("250", 1, true), "a plaintext NOOP was answered")
    full_session()
  end)
end)

describe("STARTTLS errors #integration", function()
  local pki, srv, bare
  lazy_setup(function()
    pki = tlskit.pki()
    srv = assert(server.start({ policy = POLICY, args = tlskit.server_args(pki, nil,
      { "--hostname", "mx.spec.test" }) }))
    bare = assert(server.start({ policy = POLICY, args = { "--hostname", "bare.spec.test" } }))
  end)
  lazy_teardown(function()
    local ok1, err1 = pcall(function() if srv then srv:stop() end end)
    if bare then bare:stop() end
    if pki then pki:cleanup() end
    assert(ok1, err1)
  end)

  it("STARTTLS with an argument: 501 5.5.4, the session goes on in plaintext", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO args.spec.test"):expect(250)
    c:send("STARTTLS now"):expect(501, "5.5.4")
    c:send("TLSINFO"):expect(250, "tls=none")
    c:send("STARTTLS"):expect(220, "2.0.0")
  end)

  it("STARTTLS inside TLS: 503 5.5.1 (openssl s_client)", function()
    local r = tlskit.s_client(srv.port, { "-starttls", "smtp", "-CAfile", pki.ca_cert },
      "EHLO twice.spec.test\nSTARTTLS\nTLSINFO\nQUIT\n")
    assert.are.equal(0, r.status, explain(r, srv))
    local lines, text = reply_lines(r.stdout)
    assert.is_true(has_line(lines, "^503 5%.5%.1 "), text)
    assert.is_true(has_line(lines, "^250 2%.0%.0 version=TLSv1%.2 "), text)
    assert.are.equal("221 2.0.0 Bye", lines[#lines], text)
  end)

  it("STARTTLS during a transaction: 503 5.5.1", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO tx.spec.test"):expect(250)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("STARTTLS"):expect(503, "5.5.1")
    c:send("RCPT TO:<b@spec.test>"):expect(250)
  end)

  it("without a certificate: no STARTTLS in EHLO, STARTTLS gets 502 5.5.1", function()
    local c = session(bare)
    finally(function() c:close() end)
    local r = c:send("EHLO nocert.spec.test"):expect(250)
    assert.is_nil(r.text:find("STARTTLS", 1, true), r.raw)
    c:send("STARTTLS"):expect(502, "5.5.1")
    c:send("TLSINFO"):expect(250, "tls=none")
  end)

  it("on_starttls returning false refuses with 454 4.7.0; the session stays usable", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO refuse.spec.test"):expect(250)
    c:send("STARTTLS"):expect(454, "4.7.0")
    c:send("TLSINFO"):expect(250, "tls=none")
    c:send("MAIL FROM:<a@spec.test>"):expect(250, "tls=none")
  end)

  it("on_starttls may refuse with its own reply", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO custom-refuse.spec.test"):expect(250)
    local r = c:send("STARTTLS"):expect(554, "5.7.1")
    assert.are.equal("5.7.1 No TLS for you", r.text)
    c:send("NOOP"):expect(250)
  end)
end)

describe("--require-tls #integration", function()
  local pki, srv
  lazy_setup(function()
    pki = tlskit.pki()
    srv = assert(server.start({ policy = POLICY, args = tlskit.server_args(pki,
      { implicit = true }, { "--hostname", "mx.spec.test", "--require-tls" }) }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  it("answers MAIL before STARTTLS with 530 5.7.0 and no transaction starts", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO req.spec.test"):expect(250)
    local r = c:send("MAIL FROM:<a@spec.test>"):expect(530, "5.7.0")
    assert.are.equal("5.7.0 Must issue a STARTTLS command first", r.text)
    c:send("RCPT TO:<b@spec.test>"):expect(503, "5.5.1")
    assert.are.equal(0, srv:count_log({ "spec.hook on_mail from=a@spec.test" }))
  end)

  it("accepts MAIL after STARTTLS and on the implicit listener", function()
    local r = tlskit.s_client(srv.port, { "-starttls", "smtp", "-CAfile", pki.ca_cert },
      "EHLO req.spec.test\nMAIL FROM:<a@spec.test>\nQUIT\n")
    assert.are.equal(0, r.status, explain(r, srv))
    local lines, text = reply_lines(r.stdout)
    assert.is_true(has_line(lines, "^250 2%.1%.0 from=<a@spec%.test> .* tls=TLSv1%.2"), text)
    r = tlskit.swaks({ "--server", "127.0.0.1", "--port", tostring(tlskit.tls_port(srv)),
      "--tlsc", "--from", "b@spec.test", "--to", "rcpt@spec.test" })
    assert.are.equal(0, r.status, explain(r, srv))
    assert.matches("<~  250 2.1.0 from=<b@spec.test>", r.output, 1, true)
    assert.matches("<~  250 2%.0%.0 Ok: queued as", r.output)
  end)
end)

describe("s.require_tls set by a hook #integration", function()
  local pki, srv
  lazy_setup(function()
    pki = tlskit.pki()
    srv = assert(server.start({ policy = "spec/fixtures/policies/tls_require_hook.lua",
      args = tlskit.server_args(pki, nil, { "--hostname", "mx.spec.test" }) }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  it("answers MAIL in plaintext with 530 5.7.0, accepts it after STARTTLS", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO hook.spec.test"):expect(250)
    c:send("MAIL FROM:<a@spec.test>"):expect(530, "5.7.0")
    c:send("STARTTLS"):expect(220, "2.0.0")
    local o, r = tlskit.takeover(c, { ca = pki.ca_cert,
      lines = { "EHLO hook.spec.test", "MAIL FROM:<a@spec.test>" } })
    assert.is_table(o, explain(r, srv))
    assert.is_nil(o.error, explain(r, srv))
    assert.matches("^250%-", o.replies[1])
    assert.are.equal("250 2.1.0 from=<a@spec.test> require_tls=true tls=TLSv1.2\r\n",
      o.replies[2])
  end)
end)
