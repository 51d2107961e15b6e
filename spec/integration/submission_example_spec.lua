-- examples/submission.lua: a port-587-style policy. TLS before MAIL, AUTH
-- against the $SUBMISSION_USERS file before MAIL, delivery into $MAILDIR;
-- driven by swaks (--tls and --tlsc, PLAIN and LOGIN) and Python's smtplib.
local server = require "server"
local smtp = require "smtp"
local tlskit = require "tlskit"

local EXAMPLE = "examples/submission.lua"
local USERS = "# submission users\r\n"
  .. "alice:correct horse\r\n"
  .. "\r\n"
  .. "bob:b0b-pw\n"
  .. "carol:pa:ss word\n"
  .. "#mallory:commented-out\n"
local SECRETS = { "correct horse", "b0b-pw", "pa:ss word", "wrong guess" }

local function explain(r, srv)
  return "command: " .. tostring(r.command) .. "\nstatus: " .. tostring(r.status)
    .. "\n--- output ---\n" .. r.output .. "\n--- server log ---\n" .. srv:log_tail(40)
end

local function maildir_files(srv)
  return server.ls(srv.dir .. "/Maildir/new")
end

local function assert_no_secrets(srv)
  local log = srv:log()
  for _, secret in ipairs(SECRETS) do
    assert.is_nil(log:find(secret, 1, true), "the log contains a password")
    assert.is_nil(log:find(tlskit.b64(secret), 1, true), "the log contains a base64 password")
    for _, user in ipairs({ "alice", "bob", "carol", "nobody" }) do
      assert.is_nil(log:find(tlskit.plain(user, secret), 1, true),
        "the log contains a PLAIN response")
    end
  end
end

local function start(pki, extra)
  local users = pki.dir .. "/users"
  server.write_file(users, USERS)
  local args = tlskit.server_args(pki, { implicit = true }, { "--hostname", "submit.spec.test" })
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return assert(server.start({ policy = EXAMPLE, args = args,
    env = { SUBMISSION_USERS = users, MAILDIR = "{dir}/Maildir" } }))
end

describe("examples/submission.lua loading #integration", function()
  local pki
  lazy_setup(function() pki = tlskit.pki() end)
  lazy_teardown(function() if pki then pki:cleanup() end end)

  it("passes --check with a users file", function()
    server.write_file(pki.dir .. "/users", USERS)
    local code, out, err = server.run({ "--check", "--script", EXAMPLE },
      { env = { SUBMISSION_USERS = pki.dir .. "/users" } })
    assert.are.equal(0, code, out .. err)
    assert.matches("OK", out, 1, true)
  end)

  it("refuses to start without its users file, naming the variable", function()
    local code, out, err = server.run({ "--check", "--script", EXAMPLE },
      { env = { SUBMISSION_USERS = pki.dir .. "/missing-users" } })
    assert.are.equal(1, code, out .. err)
    assert.matches("SUBMISSION_USERS", out .. err, 1, true)
    assert.matches("missing-users", out .. err, 1, true)
  end)
end)

describe("examples/submission.lua #integration", function()
  local pki, srv
  lazy_setup(function()
    pki = tlskit.pki()
    srv = start(pki)
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  it("in plaintext: STARTTLS offered, no AUTH, MAIL gets 530 5.7.0 Must issue a STARTTLS", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    local r = c:send("EHLO plain.spec.test"):expect(250)
    assert.matches("\nSTARTTLS\n", r.text .. "\n", 1, true)
    assert.is_nil(r.text:find("AUTH", 1, true), r.raw)
    r = c:send("MAIL FROM:<alice@spec.test>"):expect(530, "5.7.0")
    assert.are.equal("5.7.0 Must issue a STARTTLS command first", r.text)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", "correct horse")):expect(538, "5.7.11")
  end)

  it("swaks --tls --auth PLAIN: the message lands in the Maildir", function()
    local before = #maildir_files(srv)
    local r = tlskit.swaks({ "--server", "127.0.0.1", "--port", tostring(srv.port), "--tls",
      "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "correct horse",
      "--from", "alice@spec.test", "--to", "bob@elsewhere.test",
      "--header", "Subject: submitted over STARTTLS" })
    assert.are.equal(0, r.status, explain(r, srv))
    assert.matches("<~  235 2.7.0", r.output, 1, true)
    assert.matches("<~  250 2%.0%.0 Ok: queued as", r.output)
    local files = maildir_files(srv)
    assert.are.equal(before + 1, #files)
    assert_no_secrets(srv)
  end)

  it("swaks --tlsc --auth LOGIN on the implicit listener", function()
    local before = #maildir_files(srv)
    local r = tlskit.swaks({ "--server", "127.0.0.1", "--port", tostring(tlskit.tls_port(srv)),
      "--tlsc", "--auth", "LOGIN", "--auth-user", "bob", "--auth-password", "b0b-pw",
      "--from", "bob@spec.test", "--to", "alice@elsewhere.test" })
    assert.are.equal(0, r.status, explain(r, srv))
    assert.matches("<~  220 submit%.spec%.test", r.output)
    assert.matches("<~  235 2.7.0", r.output, 1, true)
    assert.matches("<~  250 2%.0%.0 Ok: queued as", r.output)
    assert.are.equal(before + 1, #maildir_files(srv))
    assert_no_secrets(srv)
  end)

  it("over TLS without AUTH: MAIL gets 530 5.7.0 Authentication required", function()
    local before = #maildir_files(srv)
    local r = tlskit.swaks({ "--server", "127.0.0.1", "--port", tostring(srv.port), "--tls",
      "--from", "anon@spec.test", "--to", "bob@elsewhere.test" })
    assert.are_not.equal(0, r.status, explain(r, srv))
    assert.matches("<~%* 530 5%.7%.0 Authentication required", r.output)
    assert.are.equal(before, #maildir_files(srv))
  end)

  it("a wrong password, an unknown user and a commented-out user get 535 5.7.8", function()
    for _, who in ipairs({ { "alice", "wrong guess" }, { "nobody", "correct horse" },
      { "mallory", "commented-out" }, { "#mallory", "commented-out" } }) do
      local r = tlskit.swaks({ "--server", "127.0.0.1", "--port", tostring(srv.port), "--tls",
        "--auth", "PLAIN", "--auth-user", who[1], "--auth-password", who[2],
        "--from", "x@spec.test", "--to", "y@elsewhere.test" })
      assert.are_not.equal(0, r.status, explain(r, srv))
      assert.matches("<~%* 535 5%.7%.8", r.output)
      assert.is_nil(r.output:find("Ok: queued", 1, true))
    end
    assert.truthy(srv:wait_log({ "submission.auth_failed mech=PLAIN user=nobody" }))
    assert_no_secrets(srv)
  end)

  it("takes the password after the first colon (Python smtplib, byte for byte)", function()
    local message = "Subject: from carol\r\n\r\n.dotted\r\nbody\r\n"
    local before = {}
    for _, n in ipairs(maildir_files(srv)) do before[n] = true end
    local o, r = tlskit.smtplib({ port = srv.port, mode = "starttls", ca = pki.ca_cert,
      user = "carol", password = "pa:ss word", from = "carol@spec.test",
      to = { "dave@elsewhere.test" }, message = message })
    assert.is_table(o, explain(r, srv))
    assert.is_nil(o.error, explain(r, srv))
    assert.are.same({ 235, "2.7.0 Authentication successful" }, o.login)
    assert.are.same({}, o.refused)
    local added = {}
    for _, n in ipairs(maildir_files(srv)) do
      if not before[n] then added[#added + 1] = n end
    end
    assert.are.equal(1, #added)
    local data = server.read_file(srv.dir .. "/Maildir/new/" .. added[1])
    -- Authenticated over TLS: the Received: field says ESMTPSA.
    assert.matches(" with ESMTPSA id ", select(2, server.unreceived(data)), 1, true)
    assert.are.equal(message, server.unreceived(data))
    assert_no_secrets(srv)
  end)
end)

describe("examples/submission.lua with --auth-plaintext #integration", function()
  local pki, srv
  lazy_setup(function()
    pki = tlskit.pki()
    srv = start(pki, { "--auth-plaintext" })
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  it("still refuses AUTH in plaintext with 538 5.7.11, even with the right password", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    local r = c:send("EHLO plain.spec.test"):expect(250)
    assert.matches("\nAUTH PLAIN LOGIN\n", r.text .. "\n", 1, true)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", "correct horse")):expect(538, "5.7.11")
    c:send("MAIL FROM:<alice@spec.test>"):expect(530, "5.7.0")
    assert_no_secrets(srv)
  end)
end)
