-- XCLIENT (Postfix's extension): a client in --xclient-trusted says who
-- the real client is (NAME ADDR PORT PROTO HELO LOGIN), the session starts
-- over with a fresh greeting and the policy sees the new attributes;
-- anyone else gets 550 5.7.0 and nothing changes. With swaks --xclient
-- and by hand.
local server = require "server"
local smtp = require "smtp"

local POLICY = [[
return {
  on_connect = function(s)
    if s.peer_ip == "192.0.2.66" then return 554, "5.7.1 Go away" end
  end,
  on_mail = function(s, from)
    return 250, "2.1.0 ip=" .. s.peer_ip .. " port=" .. s.peer_port .. " helo=" .. tostring(s.helo)
      .. " user=" .. tostring(s.user) .. " esmtp=" .. tostring(s.esmtp)
      -- No lookup for the real client (this test asks no DNS server).
      .. " rdns=" .. (s.peer_ip == "127.0.0.1" and "-" or tostring((s:rdns())))
  end,
  on_rcpt = function(s, rcpt)
    if s.peer_ip == "192.0.2.9" then return 550, "5.7.1 Not from 192.0.2.9" end
  end,
}
]]

describe("XCLIENT #integration", function()
  local trusted, plain

  lazy_setup(function()
    trusted = assert(server.start({ script_source = POLICY,
      args = { "--xclient-trusted", "127.0.0.0/8" } }))
    plain = assert(server.start({ script_source = POLICY }))
  end)
  lazy_teardown(function()
    if trusted then trusted:stop() end
    if plain then plain:stop() end
  end)

  it("is offered to a trusted client and changes what the policy sees", function()
    local c = assert(smtp.connect(trusted))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO proxy.spec.test"):expect(250, "XCLIENT NAME ADDR PORT PROTO HELO LOGIN")
    c:send("XCLIENT NAME=mail.example.org ADDR=192.0.2.7 PORT=4711 HELO=real+2Bclient LOGIN=alice")
      :expect(220, "ESMTP luamta")
    c:send("EHLO again.spec.test"):expect(250)
    -- HELO came from XCLIENT, then the client's own EHLO replaced it.
    c:send("MAIL FROM:<a@spec.test>")
      :expect(250, "ip=192.0.2.7 port=4711 helo=again.spec.test user=alice esmtp=true"
        .. " rdns=mail.example.org")
    assert(trusted:wait_log({ "smtp.xclient result=ok peer=192.0.2.7 port=4711",
      "name=mail.example.org" }))
    -- Not inside a transaction.
    c:send("XCLIENT ADDR=192.0.2.8"):expect(503, "5.5.1")
    c:send("RSET"):expect(250)
    c:send("XCLIENT ADDR=IPV6:2001:db8::5 NAME=[UNAVAILABLE] PROTO=SMTP"):expect(220)
    c:send("HELO x.spec.test"):expect(250)
    c:send("MAIL FROM:<a@spec.test>"):expect(250, "ip=2001:db8::5 .* esmtp=false rdns=nil")
  end)

  it("runs on_connect again: a refused address is refused", function()
    local c = assert(smtp.connect(trusted))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO proxy.spec.test"):expect(250)
    c:send("XCLIENT ADDR=192.0.2.66"):expect(554, "5.7.1 Go away")
    c:expect_closed()
  end)

  it("answers bad attributes 501 5.5.4 and changes nothing", function()
    local c = assert(smtp.connect(trusted))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO proxy.spec.test"):expect(250)
    c:send("XCLIENT FOO=1"):expect(501, "5.5.4")
    c:send("XCLIENT ADDR=999.1.1.1"):expect(501, "5.5.4")
    c:send("XCLIENT"):expect(501, "5.5.4")
    c:send("MAIL FROM:<a@spec.test>"):expect(250, "ip=127.0.0.1 ")
  end)

  it("is neither offered nor obeyed for an untrusted client", function()
    local c = assert(smtp.connect(plain))
    finally(function() c:close() end)
    c:expect(220)
    local r = c:send("EHLO proxy.spec.test"):expect(250)
    assert.falsy(r.text:find("XCLIENT", 1, true))
    c:send("XCLIENT ADDR=192.0.2.7"):expect(550, "5.7.0")
    c:send("MAIL FROM:<a@spec.test>"):expect(250, "ip=127.0.0.1 ")
    assert(plain:wait_log({ "smtp.xclient result=refused peer=127.0.0.1" }))
  end)

  it("lets swaks --xclient-addr pretend to be another client", function()
    local code, out = server.sh("swaks --server 127.0.0.1 --port " .. trusted.port
      .. " --xclient-addr 192.0.2.9 --xclient-name mx.example.net --from a@spec.test"
      .. " --to b@spec.test --helo swaks.spec.test 2>&1")
    assert.are_not.equal(0, code, out)
    assert.matches("550 5.7.1 Not from 192.0.2.9", out, 1, true)
    code, out = server.sh("swaks --server 127.0.0.1 --port " .. trusted.port
      .. " --xclient-addr 192.0.2.10 --from a@spec.test --to b@spec.test 2>&1")
    assert.are.equal(0, code, out)
  end)
end)
