-- examples/mta.lua and examples/smarthost.lua as their users run them:
-- a stranger cannot relay (554 5.7.1), local mail lands in a Maildir,
-- an authenticated user's mail to another domain is queued for its MX, and
-- the smarthost policy hands every message to its one next hop.
local server = require "server"
local smtp = require "smtp"
local cjson = require "cjson"
local tlskit = require "tlskit"

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
    assert.matches("^Received: from ", data)
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
