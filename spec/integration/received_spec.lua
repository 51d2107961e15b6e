-- The Received: field every accepted message gets (RFC 5321 4.4), as a
-- real client's message shows it in the capture: the protocol names of
-- RFC 3848 (HELO, EHLO, STARTTLS, AUTH, both), "for" with exactly one
-- recipient, the rDNS name only once a hook asked s:rdns() (dnsmasq on
-- loopback), hostile HELO names, msg:header("Received") in on_message,
-- the hop limit (--max-hops, 554 5.4.6) and s.add_received.
local testing = require "luamta.testing"
local tlskit = require "tlskit"
local dnskit = require "dns"

local DATE = "%a%a%a, %d%d? %a%a%a %d%d%d%d %d%d:%d%d:%d%d %+0000"

-- Inline hooks: the sender picks what a hook does.
local HOOKS = {
  on_mail = function(s, sender)
    if sender:match("^rdns@") then s:rdns() end
    if sender:match("^raw@") then s.add_received = false end
    if sender:match("^show@") then
      return 250, "2.1.0 add_received=" .. tostring(s.add_received)
    end
  end,
  on_rcpt = function(s, rcpt)
    if rcpt:match("^raw@") then s.add_received = false end
    if rcpt:match("^bad@") then
      local ok, err = pcall(function() s.add_received = "no" end)
      return 250, "2.1.5 " .. tostring(ok) .. " " .. tostring(err)
    end
  end,
  on_data = function(s)
    if s.sender:match("^rawdata@") then s.add_received = false end
  end,
  on_auth = function() return true end,
  on_message = function(s, msg)
    luamta.log("spec.on_message qid=" .. msg.qid)
    return 250, "2.0.0 hops=" .. #msg:headers("Received") .. " first="
      .. tostring(msg:header("Received"))
  end,
}

local function session(srv, greet, opts)
  local c = assert(testing.connect(srv, opts))
  c:expect(220)
  c:send(greet or "EHLO client.spec.test"):expect(250)
  return c
end

-- The last captured message: its data without our field, and the field
-- unfolded.
local function last(srv)
  local list = srv:messages()
  local m = assert(list[#list], "nothing captured")
  local rest, field = testing.unreceived(m.data)
  return m, rest, field
end

local BODY = "Subject: trace\r\n\r\nbody\r\n"

describe("the Received: field #integration", function()
  local pki, srv
  lazy_setup(function()
    pki = tlskit.pki()
    srv = assert(testing.start({ capture = true, hooks = HOOKS,
      args = tlskit.server_args(pki, nil, { "--hostname", "mx.spec.test", "--auth-plaintext" }) }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  it("is on top of what an EHLO client sent, with the one recipient, seen by on_message", function()
    local c = session(srv)
    finally(function() c:close() end)
    local r = c:message("a@spec.test", "b@spec.test", BODY):expect(250, "2.0.0 hops=1 first=")
    local m, rest, field = last(srv)
    assert.are.equal(BODY, rest)
    assert.matches("^Received: from client%.spec%.test %(unknown %[127%.0%.0%.1%]%) by "
      .. "mx%.spec%.test %(luamta%) with ESMTP id " .. m.qid .. " for <b@spec%.test>; "
      .. DATE .. "$", field)
    -- The hook saw the same field (unfolded) as msg:header("Received").
    assert.are.equal("2.0.0 hops=1 first=" .. field:gsub("^Received: ", ""), r.text)
    -- Folded within 78 octets, CRLF line ends, and the client's message after it.
    local raw = m.data:sub(1, #m.data - #BODY)
    assert.matches("^Received: [^\r\n]+\r\n\t[^\r\n]+\r\n", raw)
    for line in raw:gmatch("([^\n]*)\n") do
      assert.is_true(#line <= 77, line)
      assert.are.equal("\r", line:sub(-1))
    end
  end)

  it("says SMTP after HELO and names no recipient when there are several", function()
    local c = session(srv, "HELO old.spec.test")
    finally(function() c:close() end)
    c:message("a@spec.test", { "b@spec.test", "c@spec.test" }, BODY):expect(250)
    local m, _, field = last(srv)
    assert.matches("^Received: from old%.spec%.test %(unknown %[127%.0%.0%.1%]%) by "
      .. "mx%.spec%.test %(luamta%) with SMTP id " .. m.qid .. "; " .. DATE .. "$", field)
  end)

  it("says ESMTPA after AUTH, ESMTPS after STARTTLS, ESMTPSA after both", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", "pw")):expect(235)
    c:message("a@spec.test", "b@spec.test", BODY):expect(250)
    local _, _, field = last(srv)
    assert.matches(" with ESMTPA id ", field, 1, true)

    for _, user in ipairs({ false, "alice" }) do
      local o, r = tlskit.smtplib({ mode = "starttls", ca = pki.ca_cert, port = srv.port,
        user = user or nil, password = user and "pw" or nil,
        from = "a@spec.test", to = { "b@spec.test" }, message = BODY })
      assert.is_table(o, r and r.output)
      assert.is_nil(o.error, o.error)
      local m, rest
      m, rest, field = last(srv)
      assert.are.equal(BODY, rest)
      assert.matches(user and " with ESMTPSA id " or " with ESMTPS id ", field, 1, true)
      assert.matches(" for <b@spec.test>; ", field, 1, true)
      assert.are.equal(user or nil, m.user)
    end
  end)

  it("keeps a hostile HELO name from forging comments, clauses or 8-bit text", function()
    local c, c2 = session(srv, "EHLO evil (forged [1.2.3.4]) by x; \xc3\xa9"), nil
    finally(function()
      c:close()
      if c2 then c2:close() end
    end)
    c:message("a@spec.test", "b@spec.test", BODY):expect(250)
    local m, rest, field = last(srv)
    assert.are.equal(BODY, rest)
    assert.are.equal("evil (forged [1.2.3.4]) by x; \xc3\xa9", m.helo)
    assert.matches("^Received: from evil%?%?forged%?%?1%.2%.3%.4%?%?%?by%?x%?%?%?%? "
      .. "%(unknown %[127%.0%.0%.1%]%) by mx%.spec%.test ", field)
    -- Still one comment and one date.
    assert.are.equal(1, select(2, field:gsub("%(unknown", "")))
    assert.are.equal(1, select(2, field:gsub(";", "")))
    -- An address literal keeps its brackets.
    c2 = session(srv, "EHLO [127.0.0.1]")
    c2:message("a@spec.test", "b@spec.test", BODY):expect(250)
    _, _, field = last(srv)
    assert.matches("^Received: from %[127%.0%.0%.1%] %(unknown %[127%.0%.0%.1%]%) by ", field)
  end)

  it("is switched off by s.add_received = false for one transaction only", function()
    local c = session(srv)
    finally(function() c:close() end)
    -- on_mail, on_rcpt and on_data may each switch it off: exact bytes.
    for _, env in ipairs({ { "raw@spec.test", "b@spec.test" }, { "a@spec.test", "raw@spec.test" },
      { "rawdata@spec.test", "b@spec.test" } }) do
      c:message(env[1], env[2], BODY):expect(250, "2.0.0 hops=0 first=nil")
      local list = srv:messages()
      assert.are.equal(BODY, list[#list].data)
    end
    -- The next MAIL starts with it on again.
    c:send("MAIL FROM:<show@spec.test>"):expect(250, "add_received=true")
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw(BODY .. ".\r\n"):expect(250, "hops=1")
    -- Only a boolean is taken.
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<bad@spec.test>"):expect(250, "false .*boolean expected")
    c:send("RSET"):expect(250)
  end)
end)

describe("the hop limit #integration", function()
  local function hops(n)
    local lines = {}
    for i = 1, n do
      lines[i] = "Received: from h" .. i .. ".spec.test by mx.spec.test; Mon, 1 Jan 2024 00:00:00 +0000"
    end
    -- Folded and body lines that look like fields do not count.
    lines[#lines + 1] = " Received: continuation"
    lines[#lines + 1] = "Subject: hops"
    lines[#lines + 1] = ""
    lines[#lines + 1] = "Received: in the body"
    return table.concat(lines, "\r\n") .. "\r\n"
  end

  it("passes 50 Received: fields and refuses 51 with 554 5.4.6 by default", function()
    local srv = assert(testing.start({ capture = true, hooks = HOOKS }))
    local c
    finally(function()
      if c then c:close() end
      srv:stop()
    end)
    c = session(srv)
    c:message("a@spec.test", "b@spec.test", hops(50)):expect(250, "hops=51")
    local r = c:message("a@spec.test", "b@spec.test", hops(51)):expect(554, "5.4.6")
    assert.are.equal("5.4.6 Too many hops (mail loop?)", r.text)
    assert.truthy(srv:wait_log({ "result=reject error=loop hops=51 max=50" }))
    -- on_message ran for the first message only, which alone was captured.
    assert.are.equal(1, srv:count_log("spec.on_message"))
    assert.are.equal(1, #srv:messages())
    -- The session goes on.
    c:message("a@spec.test", "b@spec.test", BODY):expect(250, "hops=1")
  end)

  it("follows --max-hops, and counts our own field on the next hop", function()
    local srv = assert(testing.start({ capture = true, hooks = HOOKS, args = { "--max-hops", "3" } }))
    local c
    finally(function()
      if c then c:close() end
      srv:stop()
    end)
    c = session(srv)
    c:message("a@spec.test", "b@spec.test", hops(3)):expect(250, "hops=4")
    c:message("a@spec.test", "b@spec.test", hops(4)):expect(554, "5.4.6")
    -- A message sent on again with the field we added: now 4, a loop.
    local m = srv:messages()[1]
    c:message("a@spec.test", "b@spec.test", testing.stuff(m.data)):expect(554, "5.4.6")
    -- Even when a hook switched our field off: the count is the client's.
    c:message("raw@spec.test", "b@spec.test", hops(4)):expect(554, "5.4.6")
    assert.are.equal(1, srv:count_log("spec.on_message"))
  end)
end)

describe("the Received: field with reverse DNS #integration", function()
  local dm, srv
  lazy_setup(function()
    dm = dnskit.dnsmasq({ "--host-record=mail.spec.test,127.0.0.2" })
    srv = assert(testing.start({ capture = true, hooks = HOOKS,
      args = { "--resolver", dm:addr(), "--hostname", "mx.spec.test" } }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if dm then dm:stop() end
  end)

  it("names the client as s:rdns() found it, and never looks it up itself", function()
    local c = session(srv, "EHLO client.spec.test", { bind = "127.0.0.2" })
    finally(function() c:close() end)
    c:message("a@spec.test", "b@spec.test", BODY):expect(250)
    local _, _, field = last(srv)
    assert.matches("^Received: from client%.spec%.test %(unknown %[127%.0%.0%.2%]%) by ", field)
    c:message("rdns@spec.test", "b@spec.test", BODY):expect(250)
    _, _, field = last(srv)
    assert.matches("^Received: from client%.spec%.test %(mail%.spec%.test %[127%.0%.0%.2%]%) by ",
      field)
  end)
end)
