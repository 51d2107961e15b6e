-- Delay warnings (--delay-warning, RFC 3461 NOTIFY=DELAY, RFC 3464
-- "Action: delayed") end to end: a next hop answers 451 until the spec
-- tells it otherwise (a file per recipient: "accept" or "refuse"); the
-- relay retries every 1-2 s and warns once an entry has waited 1 s; the
-- reports go to the sender's MX (dnsmasq: 127.0.0.3), a capturing luamta.
-- A warning is sent once per entry (not once per retry, not again after a
-- restart), names only the deferred recipients whose NOTIFY is absent or
-- has DELAY, and changes nothing of the success and failure reports that
-- follow. No timing is asserted: "none" is checked after the entry was
-- retried well past the delay, by its log lines.
local server = require "server"
local dnskit = require "dns"
local cjson = require "cjson"
local dsnkit = require "dsnkit"


local RELAY_POLICY = [[
return {
  on_message = function(s, msg)
    msg:relay{ host = "127.0.0.2", port = tonumber(os.getenv("DEST_PORT")), tls = "none" }
  end,
}
]]

-- The next hop: no DSN (so a success is the relay's to report), and each
-- recipient's fate in $STATE/<address>: accept, refuse, else 451.
local DEST_POLICY = [[
return {
  on_ehlo = function(s, name, keywords)
    for i = #keywords, 1, -1 do
      if keywords[i] == "DSN" then table.remove(keywords, i) end
    end
  end,
  on_rcpt = function(s, rcpt)
    local f = io.open(os.getenv("STATE") .. "/" .. rcpt:lower())
    local what = f and f:read("a") or ""
    if f then f:close() end
    if what:find("accept") then return end
    if what:find("refuse") then return 550, "5.1.1 No such user" end
    return 451, "4.4.7 Not yet, try later"
  end,
}
]]

local LIFETIME = 100000
local SENDER = "alice@sender.spec.test"

describe("delay warnings (--delay-warning) #integration", function()
  local dm, hop, sink, relay, relay_off, tmp, port, relay_args

  lazy_setup(function()
    port = dnskit.free_port()
    dm, sink = dsnkit.sender_mx(port)
    tmp = server.mkdtemp()
    assert(os.execute("mkdir -p " .. server.quote(tmp .. "/state")))
    hop = assert(server.start({ script_source = DEST_POLICY, env = { STATE = tmp .. "/state" },
      listen = { "127.0.0.2:" .. port } }))
    relay_args = function(spool, extra)
      local a = { "--resolver", dm:addr(), "--relay-port", tostring(port), "--spool", spool,
        "--retry-min", "1", "--retry-max", "2", "--queue-lifetime", tostring(LIFETIME) }
      for _, x in ipairs(extra) do a[#a + 1] = x end
      return a
    end
    relay = assert(server.start({ script_source = RELAY_POLICY, env = { DEST_PORT = tostring(port) },
      args = relay_args(tmp .. "/spool", { "--delay-warning", "1" }) }))
    relay_off = assert(server.start({ script_source = RELAY_POLICY,
      env = { DEST_PORT = tostring(port) }, args = relay_args(tmp .. "/spool-off", {}) }))
  end)

  lazy_teardown(function()
    for _, s in ipairs({ relay, relay_off, hop, sink }) do
      if s then s:stop() end
    end
    if dm then dm:stop() end
    if tmp then server.rmtree(tmp) end
  end)

  local function send(srv, subject, mail, rcpts)
    local spec = { from = SENDER, mail = mail, rcpts = rcpts,
      msg = "From: " .. SENDER .. "\r\nSubject: " .. subject .. "\r\n\r\nbody of " .. subject .. "\r\n" }
    local r, out = dsnkit.send(srv.port, spec)
    assert.are.equal(250, r.replies[#r.replies][1], out)
    -- The entry's id, from its first deferral.
    local line = assert(srv:wait_log({ "relay.deferred", "to=<" .. rcpts[1][1] .. ">" }, 30),
      srv:log_tail())
    return line:match("id=(%S+)")
  end

  -- The reports at the sender's MX that quote subject (in the original's
  -- header, which every report carries), oldest first.
  local function reports(subject)
    return dsnkit.reports(sink, subject, SENDER)
  end


  -- The n-th report quoting subject, parsed.
  local function report(subject, n)
    return dsnkit.report(sink, subject, SENDER, n)
  end

  -- Waits until the entry's recipient has been deferred `more` more times
  -- (by srv) than it had been: the passes in between are over.
  local function more_deferrals(srv, id, rcpt, more)
    local pats = { "relay.deferred id=" .. id .. " ", "to=<" .. rcpt .. ">" }
    local n = srv:count_log(pats)
    assert(srv:wait_log(pats, 30, n + more), srv:log_tail())
  end

  local function fate(rcpt, what)
    server.write_file(tmp .. "/state/" .. rcpt, what)
  end

  it("warns once, for the deferred recipients NOTIFY allows, with Will-Retry-Until", function()
    local id = send(relay, "slow one", { "RET=FULL", "ENVID=ENV+2B1" }, {
      { "defer-a@next.spec.test", { "NOTIFY=DELAY", "ORCPT=rfc822;orig-a@x" } },
      { "defer-b@next.spec.test", {} },
      { "defer-c@next.spec.test", { "NOTIFY=FAILURE" } },
      { "defer-d@next.spec.test", { "NOTIFY=NEVER" } },
      { "defer-e@next.spec.test", { "NOTIFY=SUCCESS,DELAY,FAILURE" } },
    })
    local out = report("slow one")
    assert.truthy(out:find("type=multipart/report;delivery-status\n", 1, true), out)
    assert.truthy(out:find("Subject=Delayed Mail (still being retried)\n", 1, true), out)
    assert.truthy(out:find("notice=[^\n]*This is a warning only"), out)
    assert.truthy(out:find("Original-Envelope-Id=ENV+1\n", 1, true), out)
    assert.truthy(out:find("X-Luamta-Queue-ID=" .. id .. "\n", 1, true), out)
    local function group(rcpt, orcpt)
      return (orcpt and ("Original-Recipient=" .. orcpt .. "\n") or "")
        .. "Final-Recipient=rfc822; " .. rcpt .. "\nAction=delayed\nStatus=4.4.7\n"
        .. "Remote-MTA=dns; 127.0.0.2\n"
        .. "Diagnostic-Code=smtp; 451 4.4.7 Not yet, try later\n"
    end
    assert.truthy(out:find(group("defer-a@next.spec.test", "rfc822;orig-a@x"), 1, true), out)
    assert.truthy(out:find("\n" .. group("defer-b@next.spec.test"), 1, true), out)
    assert.truthy(out:find("\n" .. group("defer-e@next.spec.test"), 1, true), out)
    assert.is_nil(out:find("defer-c@", 1, true), out)
    assert.is_nil(out:find("defer-d@", 1, true), out)
    -- Will-Retry-Until: the arrival plus --queue-lifetime, for each.
    local untils = 0
    for secs in out:gmatch("retry_after_arrival=(%d+)\n") do
      assert.are.equal(LIFETIME, tonumber(secs), out)
      untils = untils + 1
    end
    assert.are.equal(3, untils, out)
    -- The header only, though RET=FULL: that is for failures.
    assert.truthy(out:find("third=text/rfc822-headers\n", 1, true), out)
    assert.is_nil(out:find("body of slow one", 1, true), out)
    -- Three more passes, all deferred: still the one report.
    more_deferrals(relay, id, "defer-a@next.spec.test", 3)
    assert.are.equal(1, relay:count_log({ "relay.bounce id=" .. id .. " " }), relay:log_tail())
    assert.are.equal(1, relay:count_log({ "relay.bounce id=" .. id .. " ", "kind=delay" }))
    assert.are.equal(1, #reports("slow one"))
  end)

  it("sends none when every recipient's NOTIFY is FAILURE only", function()
    local id = send(relay, "failure only", {}, {
      { "quiet-f1@next.spec.test", { "NOTIFY=FAILURE" } },
      { "quiet-f2@next.spec.test", { "NOTIFY=SUCCESS,FAILURE" } },
    })
    -- The second pass came a second or more after the arrival: past the
    -- delay. Its commit is over once a third has deferred.
    more_deferrals(relay, id, "quiet-f1@next.spec.test", 2)
    assert.are.same({}, relay:log_lines({ "relay.bounce id=" .. id .. " " }))
    assert.are.equal(0, #reports("failure only"))
  end)

  it("sends none for NOTIFY=NEVER", function()
    local id = send(relay, "never", {}, { { "quiet-n@next.spec.test", { "NOTIFY=NEVER" } } })
    more_deferrals(relay, id, "quiet-n@next.spec.test", 2)
    assert.are.same({}, relay:log_lines({ "relay.bounce id=" .. id .. " " }))
    assert.are.equal(0, #reports("never"))
  end)

  it("sends none without --delay-warning (the default, 0)", function()
    local id = send(relay_off, "default off", {}, { { "off-a@next.spec.test", {} },
      { "off-b@next.spec.test", { "NOTIFY=DELAY" } } })
    more_deferrals(relay_off, id, "off-a@next.spec.test", 2)
    assert.are.same({}, relay_off:log_lines({ "relay.bounce id=" .. id .. " " }))
    assert.are.equal(0, #reports("default off"))
  end)

  it("leaves the success and failure reports that follow as they were", function()
    local id = send(relay, "then decided", { "ENVID=D1" }, {
      { "later-ok@next.spec.test", { "NOTIFY=SUCCESS,DELAY" } },
      { "later-quiet@next.spec.test", {} },
      { "later-no@next.spec.test", { "NOTIFY=DELAY,FAILURE" } },
    })
    local out = report("then decided")
    assert.truthy(out:find("Subject=Delayed Mail (still being retried)\n", 1, true), out)
    for _, r in ipairs({ "later-ok", "later-quiet", "later-no" }) do
      assert.truthy(out:find("Final-Recipient=rfc822; " .. r .. "@next.spec.test\nAction=delayed\n",
        1, true), out)
    end
    fate("later-ok@next.spec.test", "accept")
    fate("later-quiet@next.spec.test", "accept")
    fate("later-no@next.spec.test", "refuse")
    assert(relay:wait_log({ "relay.done id=" .. id }, 30), relay:log_tail())
    -- One report of the last pass, as without the warning: the failure
    -- (the whole message: no RET=HDRS) and the success NOTIFY asked for;
    -- nothing for the recipient without NOTIFY, delivered.
    out = report("then decided", 2)
    assert.truthy(out:find("Subject=Undelivered Mail Returned to Sender\n", 1, true), out)
    assert.truthy(out:find("Original-Envelope-Id=D1\n", 1, true), out)
    assert.truthy(out:find("Final-Recipient=rfc822; later-no@next.spec.test\nAction=failed\n"
      .. "Status=5.1.1\n", 1, true), out)
    assert.truthy(out:find("Final-Recipient=rfc822; later-ok@next.spec.test\nAction=relayed\n"
      .. "Status=2.0.0\n", 1, true), out)
    assert.is_nil(out:find("later-quiet", 1, true), out)
    assert.is_nil(out:find("Will-Retry-Until", 1, true), out)
    assert.truthy(out:find("third=message/rfc822\n", 1, true), out)
    assert.are.equal(2, relay:count_log({ "relay.bounce id=" .. id .. " " }), relay:log_tail())
    assert.are.equal(2, #reports("then decided"))
  end)

  it("does not warn again after a restart", function()
    local spool = tmp .. "/spool-restart"
    local args = relay_args(spool, { "--delay-warning", "1" })
    local first = assert(server.start({ script_source = RELAY_POLICY,
      env = { DEST_PORT = tostring(port) }, args = args }))
    local ok, err = pcall(function()
      local id = send(first, "restarted", {}, { { "again@next.spec.test", {} } })
      local line = assert(first:wait_log({ "relay.bounce id=" .. id .. " ", "kind=delay" }, 30),
        first:log_tail())
      -- The warning itself delivered and gone from the queue: stopped any
      -- earlier, the next process would send it again (at least once).
      local bid = assert(line:match("bounce=(%x+)"), line)
      assert(first:wait_log("relay.done id=" .. bid, 30), first:log_tail())
      first:stop()
      first = nil
      -- The envelope says so.
      local env = assert(server.read_file(spool .. "/" .. id .. ".env"))
      assert.truthy(env:find("^luamta%-queue 3\n"), env)
      assert.truthy(env:find("\ndelay_warned %d+\n"), env)
      local status, shown = server.run({ "queue", "show", id, "--json", "--spool", spool })
      assert.are.equal(0, status, shown)
      assert.is_number(cjson.decode(shown).delay_warned, shown)
      local second = assert(server.start({ script_source = RELAY_POLICY,
        env = { DEST_PORT = tostring(port) }, args = args }))
      finally(function() second:stop() end)
      -- The new process retries the entry, long past the delay, and
      -- sends no second warning.
      more_deferrals(second, id, "again@next.spec.test", 2)
      assert.are.same({}, second:log_lines({ "relay.bounce id=" .. id .. " " }))
      report("restarted")
      assert.are.equal(1, #reports("restarted"))
    end)
    if first then first:stop() end
    assert(ok, err)
  end)
end)
