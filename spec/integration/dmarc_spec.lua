-- luamta.dmarc.check, luamta.auth_results and msg:remove_forged_auth_results
-- through a real server: dnsmasq on loopback publishes the _dmarc records
-- (p=reject, quarantine with pct=0 and pct=100, strict alignment, sp= at an
-- organizational domain, two records at once), the policy calls the check
-- with SPF and DKIM results the message itself describes (X-Test-SPF,
-- X-Test-DKIM: the real checks are other modules), and the captured
-- message shows the Authentication-Results field it prepended and which
-- earlier ones it removed.
local testing = require "luamta.testing"
local dnskit = require "dns"

local HOOKS = {
  on_message = function(s, msg)
    local spf = msg:header("X-Test-SPF")
    local dkim = {}
    for _, v in ipairs(msg:headers("X-Test-DKIM")) do
      local result, domain, selector = v:match("^(%S+) (%S+) (%S+)$")
      dkim[#dkim + 1] = { result = result, domain = domain, selector = selector,
        algorithm = "rsa-sha256", reason = result ~= "pass" and "signature did not verify" or nil }
    end
    if msg:header("X-Test-No-DKIM") then dkim = nil end
    local result, disposition, info = luamta.dmarc.check(msg, spf, dkim)
    local removed = msg:remove_forged_auth_results()
    msg:prepend_header("Authentication-Results", luamta.auth_results{
      spf = spf, mailfrom = msg.sender, helo = s.helo, dkim = dkim, dmarc = info })
    return 250, string.format("2.0.0 dmarc=%s dis=%s policy=%s aligned=%s/%s removed=%d reason=%s",
      result, disposition, tostring(info.policy), tostring(info.spf_aligned),
      tostring(info.dkim_aligned), removed, tostring(info.reason))
  end,
  verbs = {
    -- XAR: luamta.auth_results on fixed inputs, and its errors.
    XAR = function(_, arg)
      local ok, v = pcall(luamta.auth_results, load("return " .. arg, "=xar", "t", {})())
      return 250, (ok and "ok " or "err ") .. v
    end,
  },
}

local DNS = {
  "--local=/org.test/",
  "--txt-record=_dmarc.reject.spec.test,v=DMARC1; p=reject",
  "--txt-record=_dmarc.quar0.spec.test,v=DMARC1; p=quarantine; pct=0",
  "--txt-record=_dmarc.quar100.spec.test,v=DMARC1; p=quarantine; pct=100",
  "--txt-record=_dmarc.rej0.spec.test,v=DMARC1; p=reject; pct=0",
  "--txt-record=_dmarc.strict.spec.test,v=DMARC1; p=reject; adkim=s; aspf=s",
  "--txt-record=_dmarc.two.spec.test,v=DMARC1; p=reject",
  "--txt-record=_dmarc.two.spec.test,v=DMARC1; p=none",
  "--txt-record=_dmarc.broken.spec.test,v=DMARC1; p=block",
  "--txt-record=_dmarc.spf.spec.test,v=spf1 -all",
  "--txt-record=_dmarc.org.test,v=DMARC1; p=reject; sp=quarantine",
}

local function message(from, extra)
  return "From: " .. from .. "\r\n" .. (extra or "") .. "Subject: dmarc\r\n\r\nbody\r\n"
end

describe("luamta.dmarc #integration", function()
  local dm, srv, c
  lazy_setup(function()
    dm = dnskit.dnsmasq(DNS)
    srv = assert(testing.start({ capture = true, hooks = HOOKS,
      args = { "--resolver", dm:addr(), "--hostname", "mx.spec.test" } }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if dm then dm:stop() end
  end)
  before_each(function()
    c = assert(testing.connect(srv))
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
  end)
  after_each(function() c:close() end)

  -- Sends the message and returns the 250's text and the captured data.
  local function send(sender, from, extra)
    local r = c:message(sender, "rcpt@spec.test", message(from, extra)):expect(250)
    local list = srv:messages()
    return r.text, testing.unreceived(list[#list].data)
  end

  it("passes on aligned SPF (relaxed) and says so in Authentication-Results", function()
    local text, data = send("bounce@mail.reject.spec.test", "Alice <alice@reject.spec.test>",
      "X-Test-SPF: pass\r\n")
    assert.matches("dmarc=pass dis=none policy=reject aligned=true/false removed=0", text, 1, true)
    assert.matches("^Authentication%-Results: mx%.spec%.test; "
      .. "spf=pass smtp%.mailfrom=bounce@mail%.reject%.spec%.test; "
      .. "dmarc=pass %(p=reject dis=none%) header%.from=reject%.spec%.test; dkim=none\r\nFrom: ",
      data)
  end)

  it("fails under p=reject when nothing aligns", function()
    local text, data = send("x@evil.test", "alice@reject.spec.test",
      "X-Test-SPF: pass\r\nX-Test-DKIM: pass evil.test s1\r\nX-Test-DKIM: fail reject.spec.test s2\r\n")
    assert.matches("dmarc=fail dis=reject policy=reject aligned=false/false", text, 1, true)
    assert.matches("Authentication-Results: mx.spec.test; spf=pass smtp.mailfrom=x@evil.test; "
      .. "dmarc=fail (p=reject dis=reject) header.from=reject.spec.test; "
      .. "dkim=pass header.d=evil.test header.s=s1 header.a=rsa-sha256; "
      .. "dkim=fail reason=\"signature did not verify\" header.d=reject.spec.test "
      .. "header.s=s2 header.a=rsa-sha256\r\n", data, 1, true)
  end)

  it("passes on an aligned DKIM signature alone", function()
    local text = send("x@evil.test", "alice@reject.spec.test",
      "X-Test-SPF: fail\r\nX-Test-DKIM: pass mail.reject.spec.test s1\r\n")
    assert.matches("dmarc=pass dis=none policy=reject aligned=false/true", text, 1, true)
  end)

  it("honours strict alignment", function()
    local text = send("x@mail.strict.spec.test", "alice@strict.spec.test",
      "X-Test-SPF: pass\r\nX-Test-DKIM: pass mail.strict.spec.test s1\r\n")
    assert.matches("dmarc=fail dis=reject policy=reject aligned=false/false", text, 1, true)
    text = send("x@strict.spec.test", "alice@strict.spec.test", "X-Test-SPF: pass\r\n")
    assert.matches("dmarc=pass dis=none", text, 1, true)
  end)

  it("samples with pct: 0 falls one step back, 100 applies the policy", function()
    for _ = 1, 3 do
      assert.matches("dmarc=fail dis=none policy=quarantine",
        (send("x@evil.test", "a@quar0.spec.test")), 1, true)
      assert.matches("dmarc=fail dis=quarantine policy=reject",
        (send("x@evil.test", "a@rej0.spec.test")), 1, true)
      assert.matches("dmarc=fail dis=quarantine policy=quarantine",
        (send("x@evil.test", "a@quar100.spec.test")), 1, true)
    end
  end)

  it("falls back to the organizational domain's record, with sp= for subdomains", function()
    local text, data = send("x@evil.test", "a@news.deep.org.test")
    assert.matches("dmarc=fail dis=quarantine policy=quarantine", text, 1, true)
    assert.matches("dmarc=fail (p=quarantine dis=quarantine) header.from=news.deep.org.test",
      data, 1, true)
    text = send("x@evil.test", "a@org.test")
    assert.matches("dmarc=fail dis=reject policy=reject", text, 1, true)
    -- Aligned in relaxed mode through the organizational domain.
    text = send("x@mail.org.test", "a@news.org.test", "X-Test-SPF: pass\r\n")
    assert.matches("dmarc=pass dis=none policy=quarantine aligned=true", text, 1, true)
  end)

  it("is none without a record, permerror for broken ones", function()
    assert.matches("dmarc=none dis=none policy=nil aligned=false/false removed=0 reason=no DMARC record",
      (send("x@evil.test", "a@nopolicy.spec.test")), 1, true)
    assert.matches("dmarc=none dis=none", (send("x@evil.test", "a@spf.spec.test")), 1, true)
    assert.matches("dmarc=permerror dis=none policy=nil aligned=false/false removed=0 "
      .. "reason=several DMARC records", (send("x@evil.test", "a@two.spec.test")), 1, true)
    assert.matches("dmarc=permerror dis=none .*reason=invalid DMARC record",
      (send("x@evil.test", "a@broken.spec.test")))
  end)

  it("is permerror without exactly one From address (RFC 7489 6.6.1)", function()
    local text, data = send("x@evil.test", "a@reject.spec.test, b@reject.spec.test")
    assert.matches("dmarc=permerror dis=none .*reason=several From addresses", text)
    assert.matches("^Authentication%-Results: mx%.spec%.test; dmarc=permerror; dkim=none\r\n", data)
    text = send("x@evil.test", "a@reject.spec.test", "From: b@reject.spec.test\r\n")
    assert.matches("reason=several From fields", text, 1, true)
    text = send("x@evil.test", "Group: a@reject.spec.test;")
    assert.matches("reason=several From addresses", text, 1, true)
    text = send("x@evil.test", "no address here")
    assert.matches("dmarc=permerror dis=none .*reason=no usable From address", text)
    local r = c:message("x@evil.test", "rcpt@spec.test", "Subject: none\r\n\r\nbody\r\n"):expect(250)
    assert.matches("reason=no From field", r.text, 1, true)
  end)

  it("is temperror when DNS fails", function()
    -- dnsmasq serves only spec.test and org.test: it refuses the rest.
    local text = send("x@evil.test", "a@elsewhere.example")
    assert.matches("dmarc=temperror dis=none .*reason=dns refused", text)
  end)

  it("uses the HELO name for the null sender", function()
    c:send("EHLO mail.reject.spec.test"):expect(250)
    local text, data = send("", "a@reject.spec.test", "X-Test-SPF: pass\r\nX-Test-No-DKIM: 1\r\n")
    assert.matches("dmarc=pass dis=none policy=reject aligned=true/false", text, 1, true)
    assert.matches("spf=pass smtp.helo=mail.reject.spec.test; dmarc=pass", data, 1, true)
  end)

  it("removes forged Authentication-Results fields of ours, keeps the others", function()
    local forged = "Authentication-Results: mx.spec.test; dmarc=pass header.from=reject.spec.test\r\n"
      .. "Authentication-Results: other.example;\r\n spf=pass\r\n"
      .. "authentication-results : (forged) \"MX.SPEC.TEST\" 1;\r\n\tdkim=pass\r\n"
    local body = forged .. "From: a@reject.spec.test\r\nSubject: x\r\n\r\n"
      .. "Authentication-Results: mx.spec.test; in the body, untouched\r\n"
    local r = c:message("x@evil.test", "rcpt@spec.test", body):expect(250)
    assert.matches("dmarc=fail dis=reject .*removed=2", r.text)
    local list = srv:messages()
    local data = testing.unreceived(list[#list].data)
    assert.are.equal("Authentication-Results: mx.spec.test; dmarc=fail (p=reject dis=reject) "
      .. "header.from=reject.spec.test; dkim=none\r\n"
      .. "Authentication-Results: other.example;\r\n spf=pass\r\n"
      .. "From: a@reject.spec.test\r\nSubject: x\r\n\r\n"
      .. "Authentication-Results: mx.spec.test; in the body, untouched\r\n", data)
    assert.are.equal(#list[#list].data, list[#list].size)
  end)

  it("removes them from a message past 128 KiB, which lives in a file", function()
    local filler = string.rep(string.rep("x", 998) .. "\r\n", 200)
    local head = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
      .. "Authentication-Results: mx.spec.test; dkim=pass header.d=reject.spec.test\r\n"
      .. "From: a@reject.spec.test\r\n\r\n"
    local r = c:message("x@evil.test", "rcpt@spec.test", head .. filler):expect(250)
    assert.matches("removed=1", r.text, 1, true)
    local list = srv:messages()
    local data = testing.unreceived(list[#list].data)
    assert.are.equal("Authentication-Results: mx.spec.test; dmarc=fail (p=reject dis=reject) "
      .. "header.from=reject.spec.test; dkim=none\r\n"
      .. "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
      .. "From: a@reject.spec.test\r\n\r\n" .. filler, data)
    assert.are.equal(#list[#list].data, list[#list].size)
  end)

  it("builds Authentication-Results from plain values, and refuses bad ones", function()
    local function xar(arg)
      return (c:send("XAR " .. arg):expect(250).text:gsub("^2%.0%.0 ", ""))
    end
    assert.are.equal("ok mx.spec.test; none", xar("{}"))
    -- A quoted local part: the whole address goes in a quoted-string.
    assert.are.equal("ok \"my id\"; spf=softfail smtp.mailfrom=\"\\\"a b\\\"@x.example\"; dkim=none",
      xar("{ authserv_id = 'my id', spf = 'softfail', mailfrom = '\"a b\"@x.example', dkim = {} }"))
    assert.are.equal("ok mx.spec.test; dmarc=fail header.from=x.example",
      xar("{ dmarc = 'fail', from = 'x.example' }"))
    assert.matches("^err .*bad spf result", xar("{ spf = 'pa ss' }"))
    assert.matches("^err .*dkim must be an array", xar("{ dkim = 'pass' }"))
    assert.matches("^err .*mailfrom must be a string", xar("{ spf = 'pass', mailfrom = 1 }"))
  end)
end)

describe("luamta.dmarc outside on_message #integration", function()
  it("refuses a handle that is not a live message", function()
    local srv = assert(testing.start({ hooks = {
      on_mail = function(s)
        local ok, err = pcall(luamta.dmarc.check, s, "pass", {})
        return 250, "2.1.0 " .. tostring(ok) .. " " .. tostring(err)
      end,
    } }))
    finally(function() srv:stop() end)
    local c = assert(testing.connect(srv))
    c:expect(220)
    c:send("HELO x"):expect(250)
    c:send("MAIL FROM:<a@b.example>"):expect(250, "false")
    c:close()
  end)
end)
