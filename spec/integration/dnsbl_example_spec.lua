-- examples/dnsbl.lua: a client listed in a DNSBL of DNSBL_ZONES gets
-- 554 5.7.1 with the list's reason at RCPT; one that is not listed, or
-- whose lookup fails for now, is accepted. The DNSBL is
-- spec/fixtures/dns_responder.py: its zone bl.spec.test lists 127.0.0.2
-- only, and any zone with a "servfail" label fails.
local server = require "server"
local smtp = require "smtp"
local dnskit = require "dns"

local EXAMPLE = "examples/dnsbl.lua"

local function from(srv, ip)
  local c = assert(smtp.connect(srv, { bind = ip }))
  c:expect(220)
  c:send("EHLO client.spec.test"):expect(250)
  c:send("MAIL FROM:<a@spec.test>"):expect(250)
  return c
end

describe("examples/dnsbl.lua #integration", function()
  local rs
  lazy_setup(function() rs = dnskit.responder() end)
  lazy_teardown(function() if rs then rs:stop() end end)

  local function start(zones)
    return assert(server.start({ policy = EXAMPLE, env = { DNSBL_ZONES = zones },
      args = { "--resolver", rs:addr() } }))
  end

  it("rejects a listed client with the list's reason, and accepts others", function()
    local srv = start("servfail.spec.test, bl.spec.test")
    local c, d
    finally(function()
      if c then c:close() end
      if d then d:close() end
      srv:stop()
    end)
    c = from(srv, "127.0.0.2")
    local r = c:send("RCPT TO:<b@spec.test>"):expect(554, "5.7.1")
    assert.matches("Client host [127.0.0.2] blocked using bl.spec.test; "
      .. "Listed by bl.spec.test: see https://bl.spec.test/", r.text, 1, true)
    c:send("RCPT TO:<c@spec.test>"):expect(554, "5.7.1")
    -- Asked once per session: A, then TXT for the reason.
    assert.are.equal(2, rs:count("2.0.0.127.bl.spec.test"))
    assert.truthy(srv:wait_log({ "dnsbl.tempfail zone=servfail.spec.test ip=127.0.0.2 error=servfail" }))
    assert.truthy(srv:wait_log({ "dnsbl.listed zone=bl.spec.test ip=127.0.0.2 code=127.0.0.2" }))

    d = from(srv, "127.0.0.1")
    d:send("RCPT TO:<b@spec.test>"):expect(250)
    d:send("DATA"):expect(354)
    d:send("Subject: fine\r\n\r\nhello\r\n."):expect(250)
  end)

  it("accepts when every list fails for now", function()
    local srv = start("servfail.spec.test")
    local c
    finally(function()
      if c then c:close() end
      srv:stop()
    end)
    c = from(srv, "127.0.0.2")
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    assert.truthy(srv:wait_log({ "dnsbl.tempfail zone=servfail.spec.test" }))
  end)

  it("refuses to load without DNSBL_ZONES", function()
    local code, out, err = server.run({ "--check", "--script", EXAMPLE })
    assert.are_not.equal(0, code)
    assert.matches("DNSBL_ZONES must name at least one zone", out .. err, 1, true)
    code, out, err = server.run({ "--check", "--script", EXAMPLE },
      { env = { DNSBL_ZONES = "bl.spec.test" } })
    assert.are.equal(0, code, out .. err)
  end)
end)
