-- examples/mta.lua and examples/smarthost.lua as their users run them:
-- a stranger cannot relay (554 5.7.1), local mail lands in a Maildir,
-- an authenticated user's mail to another domain is queued for its MX, and
-- the smarthost policy hands every message to its one next hop.
local server = require "server"
local smtp = require "smtp"
local cjson = require "cjson"
local tlskit = require "tlskit"
local dnskit = require "dns"

describe("examples/mta.lua #integration", function()
  local srv, dir

  lazy_setup(function()
    dir = server.mkdtemp()
    server.write_file(dir .. "/users", "alice:correct horse\n")
    srv = assert(server.start({ policy = "examples/mta.lua",
      env = { LOCAL_DOMAINS = "here.spec.test", MAILDIR_ROOT = dir .. "/mail",
        MTA_USERS = dir .. "/users" },
      args = { "--spool", dir .. "/spool", "--auth-plaintext", "--resolver", "127.0.0.1:9" } }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if dir then server.rmtree(dir) end
  end)

  it("refuses to relay for a stranger", function()
    local c = smtp.session(srv)
    finally(function() c:close() end)
    c:send("MAIL FROM:<spam@elsewhere.test>"):expect(250)
    c:send("RCPT TO:<victim@far.away.test>"):expect(554, "5.7.1")
    c:send("RCPT TO:<bob@here.spec.test>"):expect(250)
  end)

  it("delivers local mail into the user's Maildir, with a Received: field", function()
    local c = smtp.session(srv)
    finally(function() c:close() end)
    c:send("MAIL FROM:<x@elsewhere.test>"):expect(250)
    c:send("RCPT TO:<Bob@here.spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: local\r\n\r\nhello bob\r\n.\r\n"):expect(250)
    local files = server.ls(dir .. "/mail/bob/new")
    assert.are.equal(1, #files)
    local data = server.read_file(dir .. "/mail/bob/new/" .. files[1])
    -- The checks of mail from the Internet (no DNS here: temperror) on
    -- top of our Received: field.
    assert.matches("^Authentication%-Results: [^\r\n]*spf=temperror[^\r\n]*\r\nReceived: from ", data)
    assert.truthy(data:find("hello bob", 1, true))
  end)

  it("queues an authenticated user's mail to another domain for its MX", function()
    local c = smtp.session(srv)
    finally(function() c:close() end)
    c:send("AUTH PLAIN " .. tlskit.b64("\0alice\0correct horse")):expect(235)
    c:send("MAIL FROM:<alice@here.spec.test>"):expect(250)
    c:send("RCPT TO:<carol@far.away.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: away\r\n\r\nhi carol\r\n.\r\n"):expect(250)
    local code, out = server.run({ "queue", "list", "--json", "--spool", dir .. "/spool" })
    assert.are.equal(0, code, out)
    local q = cjson.decode(out)
    assert.are.equal(1, #q)
    assert.are.equal("alice@here.spec.test", q[1].sender)
    assert.are.equal("carol@far.away.test", q[1].recipients[1].address)
  end)
end)

-- The mail authentication in examples/mta.lua, against dnsmasq publishing
-- SPF and DMARC records and the DKIM key, with a capturing next hop as
-- the MX of far.spec.test and dkimpy checking what left.
describe("examples/mta.lua with SPF, DKIM and DMARC #integration", function()
  local srv, hop, dm, dir
  local TOOL = server.source_dir() .. "/spec/fixtures/dkim_tool.py"

  local function sh(cmd)
    local status, out = server.sh(cmd)
    assert(status == 0, cmd .. ": " .. out)
    return out
  end

  lazy_setup(function()
    dir = server.mkdtemp()
    server.write_file(dir .. "/users", "alice:correct horse\n")
    sh("openssl genpkey -algorithm ed25519 -out " .. server.quote(dir .. "/ed.pem"))
    local p = sh("openssl pkey -in " .. server.quote(dir .. "/ed.pem")
      .. " -pubout -outform DER | tail -c 32 | base64 -w0"):gsub("%s", "")
    local key = "v=DKIM1; k=ed25519; p=" .. p
    server.write_file(dir .. "/keys.json", string.format("{%q:%q}", "mail._domainkey.here.spec.test", key))
    dm = dnskit.dnsmasq({
      "--txt-record=mail._domainkey.here.spec.test," .. key,
      "--txt-record=reject.spec.test,v=spf1 ip4:192.0.2.1 -all",
      "--txt-record=_dmarc.reject.spec.test,v=DMARC1; p=reject",
      "--txt-record=quar.spec.test,v=spf1 ip4:192.0.2.1 -all",
      "--txt-record=_dmarc.quar.spec.test,v=DMARC1; p=quarantine",
      "--txt-record=good.spec.test,v=spf1 ip4:127.0.0.0/8 -all",
      "--txt-record=_dmarc.good.spec.test,v=DMARC1; p=reject",
      "--mx-host=far.spec.test,mx.far.spec.test,10",
      "--host-record=mx.far.spec.test,127.0.0.1",
    })
    hop = assert(server.start({ capture = true }))
    srv = assert(server.start({ policy = "examples/mta.lua",
      env = { LOCAL_DOMAINS = "here.spec.test", MAILDIR_ROOT = dir .. "/mail",
        MTA_USERS = dir .. "/users", DKIM_KEY = dir .. "/ed.pem" },
      args = { "--spool", dir .. "/spool", "--auth-plaintext", "--resolver", dm:addr(),
        "--relay-port", tostring(hop.port), "--hostname", "mx.here.spec.test" } }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if hop then hop:stop() end
    if dm then dm:stop() end
    if dir then server.rmtree(dir) end
  end)

  local function send(from, rcpt, body)
    local c = smtp.session(srv)
    finally(function() c:close() end)
    c:send("MAIL FROM:<" .. from .. ">"):expect(250)
    c:send("RCPT TO:<" .. rcpt .. ">"):expect(250)
    c:send("DATA"):expect(354)
    return c:send_raw(body .. ".\r\n"):read_reply()
  end

  it("refuses mail failing the p=reject DMARC policy of its From: domain", function()
    local r = send("x@reject.spec.test", "bob@here.spec.test",
      "From: x@reject.spec.test\r\nSubject: spoof\r\n\r\nhi\r\n")
    assert.are.equal(550, r.code)
    assert.matches("5.7.1 Rejected by the DMARC policy of reject.spec.test", r.text, 1, true)
    assert.are.same({}, server.ls(dir .. "/mail/bob/new"))
  end)

  it("adds Authentication-Results with the three results, removing one forged as ours", function()
    local r = send("x@good.spec.test", "carl@here.spec.test",
      "Authentication-Results: mx.here.spec.test; spf=pass; dmarc=pass\r\n"
      .. "Authentication-Results: other.example; spf=fail\r\n"
      .. "From: x@good.spec.test\r\nSubject: fine\r\n\r\nhi\r\n")
    assert.are.equal(250, r.code, r.text)
    local files = server.ls(dir .. "/mail/carl/new")
    assert.are.equal(1, #files)
    local data = server.read_file(dir .. "/mail/carl/new/" .. files[1])
    local _, ours = data:gsub("\nAuthentication%-Results: mx%.here%.spec%.test;", "")
    local first = data:match("^Authentication%-Results: ([^\r\n]*)")
    assert.truthy(first, data)
    assert.matches("^mx%.here%.spec%.test; spf=pass smtp%.mailfrom=x@good%.spec%.test", first)
    assert.matches("dmarc=pass", first, 1, true)
    assert.matches("dkim=none", first, 1, true)
    assert.are.equal(0, ours, "the forged field is gone")
    assert.truthy(data:find("Authentication-Results: other.example; spf=fail", 1, true))
  end)

  it("files a p=quarantine failure into the Junk folder", function()
    local r = send("x@quar.spec.test", "dora@here.spec.test",
      "From: x@quar.spec.test\r\nSubject: doubtful\r\n\r\nhi\r\n")
    assert.are.equal(250, r.code, r.text)
    assert.are.equal(1, #server.ls(dir .. "/mail/dora/.Junk/new"))
    assert.are.same({}, server.ls(dir .. "/mail/dora/new"))
  end)

  it("signs what it relays for a user; dkimpy verifies it at the next hop", function()
    local c = smtp.session(srv)
    finally(function() c:close() end)
    c:send("AUTH PLAIN " .. tlskit.b64("\0alice\0correct horse")):expect(235)
    c:send("MAIL FROM:<alice@here.spec.test>"):expect(250)
    c:send("RCPT TO:<erin@far.spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("From: Alice <alice@here.spec.test>\r\nTo: erin@far.spec.test\r\n"
      .. "Subject: signed\r\n\r\nhello erin\r\n.\r\n"):expect(250)
    local got = server.wait_for("the message at the next hop", function()
      for _, m in ipairs(hop:messages()) do
        if m.data:find("hello erin", 1, true) then return m end
      end
    end)
    assert.matches("DKIM%-Signature: v=1; a=ed25519%-sha256;", got.data)
    assert.matches("d=here%.spec%.test", got.data)
    server.write_file(dir .. "/out.eml", got.data)
    local out = sh("/usr/bin/python3 " .. server.quote(TOOL) .. " verify "
      .. server.quote(dir .. "/keys.json") .. " <" .. server.quote(dir .. "/out.eml"))
    assert.matches("^pass", out)
  end)
end)

describe("examples/smarthost.lua #integration", function()
  it("relays every message through the smarthost", function()
    local hop = assert(server.start({ capture = true }))
    local dir = server.mkdtemp()
    local srv = assert(server.start({ policy = "examples/smarthost.lua",
      env = { SMARTHOST = "127.0.0.1:" .. hop.port, SMARTHOST_TLS = "none" },
      args = { "--spool", dir .. "/spool" } }))
    finally(function() srv:stop(); hop:stop(); server.rmtree(dir) end)
    local c = smtp.session(srv)
    c:send("MAIL FROM:<app@spec.test>"):expect(250)
    c:send("RCPT TO:<someone@example.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: via smarthost\r\n\r\nx\r\n.\r\n"):expect(250)
    c:close()
    local deadline = os.time() + 20 * server.TIMEOUT_SCALE
    local got
    repeat
      for _, m in ipairs(hop:messages()) do
        if m.data:find("via smarthost", 1, true) then got = m end
      end
      if not got then os.execute("sleep 0.1") end
    until got or os.time() > deadline
    assert.truthy(got, "nothing reached the smarthost")
    assert.are.same({ "someone@example.test" }, got.recipients)
    assert.are.equal("app@spec.test", got.sender)
  end)

  it("refuses to start without SMARTHOST", function()
    local code, out, err = server.run({ "--check", "--script", "examples/smarthost.lua" })
    assert.are.equal(1, code, out .. err)
    assert.matches("SMARTHOST", out .. err)
  end)
end)
