-- DSN (RFC 3461) end to end, with Python's smtplib as the client: EHLO
-- advertises DSN; RET, ENVID, NOTIFY and ORCPT reach the hooks decoded;
-- malformed ones get 501 5.5.4; a relayed message's report honours
-- NOTIFY (NEVER: none; no NOTIFY: a failure report), RET=HDRS (the header
-- only), ENVID and ORCPT (Original-Envelope-Id, Original-Recipient);
-- NOTIFY=SUCCESS gives a "relayed" report when the next hop has no DSN,
-- and when it has (a luamta) the parameters go on to it instead and no
-- report comes. dnsmasq sends the reports to the sender's MX (127.0.0.3).
local server = require "server"
local dnskit = require "dns"
local cjson = require "cjson"
local dsnkit = require "dsnkit"


-- The relay: the hooks log what they see, each recipient goes to the
-- next hop its domain names (dsn.spec.test: 127.0.0.2, which offers DSN;
-- nodsn.spec.test: 127.0.0.4, which does not).
local RELAY_POLICY = [[
local function words(t) return t and table.concat(t, ",") or "-" end
return {
  on_mail = function(s, sender, params)
    luamta.log("hook mail ret=" .. tostring(params.ret) .. " envid=" .. tostring(params.envid)
      .. " raw=" .. tostring(params.ENVID))
  end,
  on_rcpt = function(s, rcpt, params)
    luamta.log("hook rcpt " .. rcpt .. " notify=" .. words(params.notify)
      .. " orcpt=" .. tostring(params.orcpt) .. " raw=" .. tostring(params.ORCPT))
  end,
  on_message = function(s, msg)
    local d = msg.dsn
    for _, r in ipairs(d.recipients) do
      luamta.log("hook message " .. r.address .. " ret=" .. tostring(d.ret) .. " envid="
        .. tostring(d.envid) .. " notify=" .. words(r.notify) .. " orcpt=" .. tostring(r.orcpt))
    end
    local port = tonumber(os.getenv("DEST_PORT"))
    for _, r in ipairs(msg.recipients) do
      local host = r:find("@nodsn%.spec%.test$") and "127.0.0.4" or "127.0.0.2"
      msg:relay{ rcpts = { r }, host = host, port = port, tls = "none" }
    end
  end,
  on_bounce = function(entry, rcpt)
    for _, r in ipairs(entry.recipients) do
      if r.address == rcpt then
        luamta.log("hook bounce " .. rcpt .. " ret=" .. tostring(entry.ret) .. " envid="
          .. tostring(entry.envid) .. " notify=" .. words(r.notify) .. " orcpt=" .. tostring(r.orcpt))
      end
    end
  end,
}
]]

-- A next hop: logs the parameters it gets, refuses "refuse*@"; without
-- DSN when NO_DSN is set.
local DEST_POLICY = [[
return {
  on_ehlo = function(s, name, keywords)
    if os.getenv("NO_DSN") then
      for i = #keywords, 1, -1 do
        if keywords[i] == "DSN" then table.remove(keywords, i) end
      end
    end
  end,
  on_mail = function(s, sender, params)
    luamta.log("next mail " .. sender .. " RET=" .. tostring(params.RET)
      .. " ENVID=" .. tostring(params.ENVID))
  end,
  on_rcpt = function(s, rcpt, params)
    luamta.log("next rcpt " .. rcpt .. " NOTIFY=" .. tostring(params.NOTIFY)
      .. " ORCPT=" .. tostring(params.ORCPT))
    if rcpt:find("^refuse") then return 550, "5.1.1 No such user" end
  end,
}
]]

describe("DSN parameters (RFC 3461) #integration", function()
  local dm, dsn_hop, plain_hop, sink, relay, tmp, port

  lazy_setup(function()
    port = dnskit.free_port()
    dm, sink = dsnkit.sender_mx(port)
    dsn_hop = assert(server.start({ script_source = DEST_POLICY, capture = true,
      listen = { "127.0.0.2:" .. port } }))
    plain_hop = assert(server.start({ script_source = DEST_POLICY, capture = true,
      env = { NO_DSN = "1" }, listen = { "127.0.0.4:" .. port } }))
    tmp = server.mkdtemp()
    relay = assert(server.start({ script_source = RELAY_POLICY, env = { DEST_PORT = tostring(port) },
      args = { "--resolver", dm:addr(), "--relay-port", tostring(port), "--spool", tmp .. "/spool",
        "--retry-min", "1", "--retry-max", "2" } }))
  end)

  lazy_teardown(function()
    for _, s in ipairs({ relay, dsn_hop, plain_hop, sink }) do
      if s then s:stop() end
    end
    if dm then dm:stop() end
    if tmp then server.rmtree(tmp) end
  end)

  local function client(spec)
    return (dsnkit.send(relay.port, spec))
  end

  local function message(subject)
    return "From: alice@sender.spec.test\r\nSubject: " .. subject .. "\r\n\r\nbody of " .. subject
      .. "\r\n"
  end

  -- The report at the sender's MX that quotes subject, parsed.
  local function report(subject)
    return dsnkit.report(sink, subject, "alice@sender.spec.test")
  end

  it("advertises DSN and hands the decoded parameters to the hooks and the next hop", function()
    local r = client({ sendmail = true, from = "alice@sender.spec.test",
      mail = { "RET=HDRS", "ENVID=QQ+2B1" },
      rcpts = { { "ok1@dsn.spec.test", { "NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;a+2Bb@x" } } },
      msg = message("passed on") })
    assert.truthy(r.sent)
    local has = {}
    for _, f in ipairs(r.features) do has[f] = true end
    assert.truthy(has.dsn, cjson.encode(r.features))
    assert(relay:wait_log({ "hook mail ret=HDRS envid=QQ+1 raw=QQ+2B1" }, 10))
    assert(relay:wait_log({ "hook rcpt ok1@dsn.spec.test notify=SUCCESS,FAILURE",
      "orcpt=rfc822;a+b@x raw=rfc822;a+2Bb@x" }, 10))
    assert(relay:wait_log({ "hook message ok1@dsn.spec.test ret=HDRS envid=QQ+1",
      "notify=SUCCESS,FAILURE orcpt=rfc822;a+b@x" }, 10))
    -- The next hop offers DSN: it gets them, xtext-encoded again ...
    assert(dsn_hop:wait_log({ "next mail alice@sender.spec.test RET=HDRS ENVID=QQ+2B1" }, 20))
    assert(dsn_hop:wait_log({ "next rcpt ok1@dsn.spec.test NOTIFY=SUCCESS,FAILURE",
      "ORCPT=rfc822;a+2Bb@x" }, 20))
    -- ... and the success is its to report, not ours.
    local line = assert(relay:wait_log({ "relay.delivered", "to=<ok1@dsn.spec.test>" }, 20))
    local id = line:match("id=(%S+)")
    assert(relay:wait_log({ "relay.done id=" .. id }, 10))
    assert.are.same({}, relay:log_lines({ "relay.bounce id=" .. id }))
  end)

  it("refuses malformed or repeated parameters with 501 5.5.4", function()
    local cases = {
      { mail = { "RET=BOGUS" } },
      { mail = { "RET=FULL", "RET=HDRS" } },
      { mail = { "ENVID=" .. string.rep("e", 101) } },
      { mail = { "ENVID=a+2b" } },
      { mail = { "ENVID=a+00" } },
      { rcpt = { "NOTIFY=NEVER,SUCCESS" } },
      { rcpt = { "NOTIFY=SOMETIMES" } },
      { rcpt = { "NOTIFY=SUCCESS", "NOTIFY=FAILURE" } },
      { rcpt = { "ORCPT=a@x" } },
      { rcpt = { "ORCPT=rfc822;a+2bb@x" } },
      { rcpt = { "ORCPT=rfc822;a+0Ab@x" } },
    }
    for _, c in ipairs(cases) do
      local r = client({ from = "alice@sender.spec.test", mail = c.mail or {},
        rcpts = { { "x@dsn.spec.test", c.rcpt or {} } } })
      local reply = c.mail and r.replies[1] or r.replies[2]
      assert.are.equal(501, reply[1], cjson.encode(c) .. " " .. cjson.encode(r.replies))
      assert.truthy(reply[2]:find("^5%.5%.4 "), reply[2])
    end
    -- RCPT's parameters are not MAIL's.
    local r = client({ from = "alice@sender.spec.test", mail = { "NOTIFY=NEVER" }, rcpts = {} })
    assert.are.equal(555, r.replies[1][1])
  end)

  it("bounces as NOTIFY asks, with RET=HDRS, ENVID and Original-Recipient", function()
    local r = client({ from = "alice@sender.spec.test", mail = { "RET=HDRS", "ENVID=ENV+2B7" },
      rcpts = {
        { "refuse-never@dsn.spec.test", { "NOTIFY=NEVER" } },
        { "refuse-default@dsn.spec.test", { "ORCPT=rfc822;orig+2Bx@y" } },
        { "ok2@dsn.spec.test", {} },
      }, msg = message("failed for one") })
    assert.are.equal(250, r.replies[#r.replies][1], cjson.encode(r.replies))
    local out = report("failed for one")
    assert.truthy(out:find("type=multipart/report;delivery-status\n", 1, true), out)
    assert.truthy(out:find("Subject=Undelivered Mail Returned to Sender\n", 1, true), out)
    assert.truthy(out:find("Original-Envelope-Id=ENV+7\n", 1, true), out)
    assert.truthy(out:find("Original-Recipient=rfc822;orig+x@y\n"
      .. "Final-Recipient=rfc822; refuse-default@dsn.spec.test\nAction=failed\n", 1, true), out)
    assert.is_nil(out:find("refuse-never", 1, true), out)
    assert.is_nil(out:find("ok2@", 1, true), out)
    -- RET=HDRS: the header, not the body.
    assert.truthy(out:find("third=text/rfc822-headers\n", 1, true), out)
    assert.truthy(out:find("Subject: failed for one", 1, true), out)
    assert.is_nil(out:find("body of failed for one", 1, true), out)
    -- The outbound hooks see them in the entry; on_bounce runs for NEVER too.
    assert(relay:wait_log({ "hook bounce refuse-default@dsn.spec.test ret=HDRS envid=ENV+7",
      "notify=- orcpt=rfc822;orig+x@y" }, 10))
    assert(relay:wait_log({ "hook bounce refuse-never@dsn.spec.test ret=HDRS envid=ENV+7",
      "notify=NEVER orcpt=nil" }, 10))
    -- NOTIFY=NEVER alone: no report at all.
    r = client({ from = "alice@sender.spec.test", mail = {},
      rcpts = { { "refuse-quiet@dsn.spec.test", { "NOTIFY=NEVER" } } }, msg = message("never") })
    local line = assert(relay:wait_log({ "relay.bounced", "to=<refuse-quiet@dsn.spec.test>" }, 20))
    local id = line:match("id=(%S+)")
    assert(relay:wait_log({ "relay.done id=" .. id }, 10))
    assert.are.same({}, relay:log_lines({ "relay.bounce id=" .. id }))
    -- Without NOTIFY and RET: the whole message comes back.
    client({ from = "alice@sender.spec.test", mail = {},
      rcpts = { { "refuse-full@dsn.spec.test", {} } }, msg = message("whole") })
    out = report("whole")
    assert.truthy(out:find("third=message/rfc822\n", 1, true), out)
    assert.truthy(out:find("body of whole", 1, true), out)
    assert.is_nil(out:find("Original-Envelope-Id", 1, true), out)
  end)

  it("reports a success as relayed to a next hop without DSN", function()
    local r = client({ from = "alice@sender.spec.test", mail = { "ENVID=S1" },
      rcpts = { { "ok3@nodsn.spec.test", { "NOTIFY=SUCCESS", "ORCPT=rfc822;ok3@nodsn.spec.test" } } },
      msg = message("relayed on") })
    assert.are.equal(250, r.replies[#r.replies][1], cjson.encode(r.replies))
    -- The next hop got no parameters (it offers no DSN).
    assert(plain_hop:wait_log({ "next rcpt ok3@nodsn.spec.test NOTIFY=nil ORCPT=nil" }, 20))
    assert(plain_hop:wait_log({ "next mail alice@sender.spec.test RET=nil ENVID=nil" }, 20))
    local out = report("relayed on")
    assert.truthy(out:find("Subject=Successful Mail Delivery Report\n", 1, true), out)
    assert.truthy(out:find("Original-Envelope-Id=S1\n", 1, true), out)
    assert.truthy(out:find("Original-Recipient=rfc822;ok3@nodsn.spec.test\n"
      .. "Final-Recipient=rfc822; ok3@nodsn.spec.test\nAction=relayed\nStatus=2.0.0\n", 1, true), out)
    assert.truthy(out:find("third=text/rfc822-headers\n", 1, true), out)
  end)
end)
