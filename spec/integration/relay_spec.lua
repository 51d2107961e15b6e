-- msg:relay end to end: a luamta that queues and relays, dnsmasq on
-- loopback for the MX records, and luamta servers capturing what arrives
-- on 127.0.0.2 and 127.0.0.3 (the destinations' port is --relay-port).
-- Covers MX delivery, a host route, a null MX and a domain that does not
-- exist (bounces back to the sender's own MX), a 4xx then a retry, flush,
-- the outbound hooks, the 451 when the queue cannot take the message, and
-- msg:relay's argument checks.
local server = require "server"
local smtp = require "smtp"
local dnskit = require "dns"
local cjson = require "cjson"

local wait_for = server.wait_for

-- The policy of the relaying server: every recipient is accepted; the
-- message goes to each recipient's MX, except those of route.spec.test,
-- which go to a host route. The outbound hooks log what they see.
local RELAY_POLICY = [[
local port = tonumber(os.getenv("DEST_PORT"))
return {
  on_message = function(s, msg)
    local mx, routed = {}, {}
    for _, r in ipairs(msg.recipients) do
      if r:find("@route%.spec%.test$") then routed[#routed + 1] = r else mx[#mx + 1] = r end
    end
    if #mx > 0 then msg:relay{ rcpts = mx } end
    if #routed > 0 then
      msg:relay{ rcpts = routed, host = "127.0.0.3", port = port, tls = "none" }
    end
    if msg:header("Subject") == "bad args" then
      local ok, err = pcall(msg.relay, msg, { tsl = "none" })
      luamta.log("relay args: " .. tostring(ok) .. " " .. tostring(err))
    end
  end,
  on_delivered = function(entry, rcpt, reply)
    luamta.log("hook delivered " .. rcpt .. " id=" .. entry.id .. " reply=" .. reply)
  end,
  on_deferred = function(entry, rcpt, reply)
    luamta.log("hook deferred " .. rcpt .. " attempts=" .. entry.recipients[1].attempts)
  end,
  on_bounce = function(entry, rcpt, reply)
    luamta.log("hook bounce " .. rcpt .. " reply=" .. reply)
    if rcpt:find("^quiet") then return false end
  end,
}
]]

-- The destinations: capture everything, but defer "later@" once.
local DEST_POLICY = [[
local seen = {}
return {
  on_rcpt = function(s, rcpt)
    if rcpt:find("^later%d*@") and not seen[rcpt] then
      seen[rcpt] = true
      return 451, "4.7.1 Try again later"
    end
    if rcpt:find("^nobody@") then return 550, "5.1.1 No such user here" end
  end,
}
]]

describe("msg:relay #integration", function()
  local dm, dest2, dest3, relay, spool, port

  lazy_setup(function()
    port = dnskit.free_port()
    dm = dnskit.dnsmasq({
      "--mx-host=dest.spec.test,mx.dest.spec.test,10",
      "--host-record=mx.dest.spec.test,127.0.0.2",
      "--mx-host=sender.spec.test,mx.sender.spec.test,10",
      "--host-record=mx.sender.spec.test,127.0.0.3",
      "--mx-host=nullmx.spec.test,.,0",
    })
    dest2 = assert(server.start({ script_source = DEST_POLICY, capture = true,
      listen = { "127.0.0.2:" .. port } }))
    dest3 = assert(server.start({ script_source = DEST_POLICY, capture = true,
      listen = { "127.0.0.3:" .. port } }))
    spool = server.mkdtemp() .. "/spool"
    relay = assert(server.start({ script_source = RELAY_POLICY,
      env = { DEST_PORT = tostring(port) },
      args = { "--resolver", dm:addr(), "--relay-port", tostring(port), "--spool", spool,
        "--retry-min", "1", "--retry-max", "2", "--log-level", "debug" } }))
  end)

  lazy_teardown(function()
    if relay then relay:stop() end
    if dest2 then dest2:stop() end
    if dest3 then dest3:stop() end
    if dm then dm:stop() end
    if spool then server.rmtree(spool:gsub("/spool$", "")) end
  end)

  local function send(from, rcpts, subject)
    local c = smtp.session(relay)
    c:send("MAIL FROM:<" .. from .. ">"):expect(250)
    for _, r in ipairs(rcpts) do c:send("RCPT TO:<" .. r .. ">"):expect(250) end
    c:send("DATA"):expect(354)
    local r = c:send_raw("Subject: " .. subject .. "\r\nMessage-Id: <" .. subject:gsub(" ", ".")
      .. "@spec.test>\r\n\r\nbody of " .. subject .. "\r\n..leading dot\r\n.\r\n"):expect(250)
    c:send("QUIT"):expect(221)
    c:close()
    return r
  end

  local function arrived(srv, subject)
    for _, m in ipairs(srv:messages()) do
      if m.data:find("Subject: " .. subject, 1, true) then return m end
    end
  end

  local function queue_json()
    local code, out, err = server.run({ "queue", "list", "--json", "--spool", spool })
    assert.are.equal(0, code, out .. err)
    return cjson.decode(out)
  end

  it("delivers to the recipient's MX, dot-stuffed as it came, and empties the queue", function()
    send("alice@sender.spec.test", { "bob@dest.spec.test", "carol@dest.spec.test" }, "to mx")
    local m = wait_for("the message at mx.dest", function() return arrived(dest2, "to mx") end)
    assert.are.same({ "bob@dest.spec.test", "carol@dest.spec.test" }, m.recipients)
    assert.are.equal("alice@sender.spec.test", m.sender)
    assert.truthy(m.data:find("\r\n.leading dot\r\n", 1, true))
    wait_for("the hooks", function()
      return relay:count_log({ "hook delivered", "dest.spec.test" }) == 2
    end)
    wait_for("an empty queue", function()
      for _, e in ipairs(queue_json()) do
        for _, r in ipairs(e.recipients) do
          if r.address:find("dest.spec.test") then return false end
        end
      end
      return true
    end)
  end)

  it("takes a host route for some recipients and the MX for the others", function()
    send("alice@sender.spec.test", { "dan@route.spec.test", "erin@dest.spec.test" }, "split")
    local a = wait_for("the routed part", function() return arrived(dest3, "split") end)
    local b = wait_for("the mx part", function() return arrived(dest2, "split") end)
    assert.are.same({ "dan@route.spec.test" }, a.recipients)
    assert.are.same({ "erin@dest.spec.test" }, b.recipients)
  end)

  it("retries a deferred recipient and delivers it", function()
    send("alice@sender.spec.test", { "later@dest.spec.test" }, "later")
    assert(relay:wait_log({ "hook deferred later@dest.spec.test attempts=1" }, 20))
    wait_for("the retry", function() return arrived(dest2, "later") end, 30)
    assert(relay:wait_log({ "hook delivered later@dest.spec.test" }, 20))
  end)

  it("bounces a null MX, a missing domain and a 550 to the sender, once", function()
    send("alice@sender.spec.test", { "x@nullmx.spec.test", "y@nx.spec.test",
      "nobody@dest.spec.test" }, "doomed")
    local b = wait_for("the bounce at the sender's MX", function()
      for _, m in ipairs(dest3:messages()) do
        if m.sender == "" and m.data:find("doomed", 1, true) then return m end
      end
    end, 30)
    assert.are.same({ "alice@sender.spec.test" }, b.recipients)
    assert.truthy(b.data:find("multipart/report", 1, true))
    assert.truthy(b.data:find("Status: 5.1.10", 1, true))
    assert.truthy(b.data:find("Status: 5.1.2", 1, true))
    assert.truthy(b.data:find("Status: 5.1.1", 1, true))
    assert.truthy(b.data:find("Final-Recipient: rfc822; nobody@dest.spec.test", 1, true))
    assert(relay:wait_log({ "hook bounce x@nullmx.spec.test", "556" }, 5))
  end)

  it("sends no bounce when on_bounce returns false, nor for a null sender", function()
    send("alice@sender.spec.test", { "quiet@nx.spec.test" }, "quiet one")
    send("", { "nobody@dest.spec.test" }, "null sender")
    assert(relay:wait_log({ "hook bounce quiet@nx.spec.test" }, 20))
    assert(relay:wait_log({ "hook bounce nobody@dest.spec.test" }, 20))
    -- Both decided; give a bounce (there should be none) time to arrive
    -- by delivering one more message through the same path after them.
    send("alice@sender.spec.test", { "fred@route.spec.test" }, "marker")
    wait_for("the marker", function() return arrived(dest3, "marker") end)
    for _, m in ipairs(dest3:messages()) do
      assert.is_falsy(m.sender == "" and (m.data:find("quiet one", 1, true)
        or m.data:find("null sender", 1, true)), "an unwanted bounce arrived")
    end
  end)

  it("retries at once when told by `luamta queue flush`, and holds what is held", function()
    -- A second relaying server whose retries would wait an hour.
    local slow_spool = server.mkdtemp()
    local slow = assert(server.start({ script_source = RELAY_POLICY,
      env = { DEST_PORT = tostring(port) },
      args = { "--resolver", dm:addr(), "--relay-port", tostring(port), "--spool", slow_spool,
        "--retry-min", "3600", "--retry-max", "3600" } }))
    finally(function() slow:stop(); server.rmtree(slow_spool) end)
    local c = smtp.session(slow)
    c:send("MAIL FROM:<alice@sender.spec.test>"):expect(250)
    c:send("RCPT TO:<later3@dest.spec.test>"):expect(250)
    c:send("RCPT TO:<later4@dest.spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: flushed\r\n\r\nx\r\n.\r\n"):expect(250)
    c:close()
    assert(slow:wait_log({ "relay.deferred", "later4@dest.spec.test", "retry_in=3600" }, 20))
    local code, out = server.run({ "queue", "list", "--json", "--spool", slow_spool })
    assert.are.equal(0, code, out)
    local q = cjson.decode(out)
    assert.are.equal(1, #q)
    local id = q[1].id
    assert.are.equal("deferred", q[1].recipients[1].state)
    -- Held: a flush does not deliver it.
    assert.are.equal(0, (server.run({ "queue", "hold", id, "--spool", slow_spool })))
    assert.are.equal(0, (server.run({ "queue", "flush", "--spool", slow_spool })))
    os.execute("sleep 1")
    assert.is_nil(arrived(dest2, "flushed"))
    -- Released: the running server is told and delivers now.
    assert.are.equal(0, (server.run({ "queue", "release", id, "--spool", slow_spool })))
    wait_for("the flushed message", function() return arrived(dest2, "flushed") end, 20)
    wait_for("an empty queue", function()
      local _, o = server.run({ "queue", "list", "--json", "--spool", slow_spool })
      return #cjson.decode(o) == 0
    end)
  end)

  it("raises on bad options (caught here) and queues only whole routes", function()
    send("alice@sender.spec.test", { "gina@dest.spec.test" }, "bad args")
    assert(relay:wait_log({ "relay args: false", "unknown option tsl" }, 10))
    wait_for("the message", function() return arrived(dest2, "bad args") end)
  end)
end)

describe("an outbound hook that waits across a reload #integration", function()
  it("keeps its generation until it ends", function()
    local dest = assert(server.start({ capture = true }))
    local spool = server.mkdtemp()
    local srv = assert(server.start({ script_source = [[
local port = tonumber(os.getenv("DEST_PORT"))
return {
  on_message = function(s, msg) msg:relay{ host = "127.0.0.1", port = port, tls = "none" } end,
  on_delivered = function(entry, rcpt, reply)
    luamta.log("hook sleeping")
    luamta.sleep(1)
    luamta.log("hook woke " .. rcpt)
  end,
}
]], env = { DEST_PORT = tostring(dest.port) }, args = { "--spool", spool } }))
    finally(function() srv:stop(); dest:stop(); server.rmtree(spool) end)
    local c = smtp.session(srv)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: reload\r\n\r\nx\r\n.\r\n"):expect(250)
    c:close()
    assert(srv:wait_log({ "hook sleeping" }, 20))
    srv:signal("HUP")
    assert(srv:wait_log({ "server.reload", "result=ok" }, 10))
    assert(srv:wait_log({ "hook woke b@spec.test" }, 10))
  end)
end)

describe("msg:relay when the queue cannot take the message #integration", function()
  it("answers 451 and queues nothing", function()
    local srv = assert(server.start({ script_source = [[
return { on_message = function(s, msg) msg:relay() end }
]], args = { "--spool", "/dev/null/spool" } }))
    server.cleanup(finally)
    local c = smtp.session(srv)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: x\r\n\r\nx\r\n.\r\n"):expect(451, "4.3.0")
    c:send("QUIT"):expect(221)
    c:close()
    assert(srv:wait_log({ "smtp.queue", "result=failed" }, 5))
    srv:stop()
  end)
end)

describe("the queue across a kill -9, and with several workers #integration", function()
  local dm, port

  lazy_setup(function()
    port = dnskit.free_port()
    dm = dnskit.dnsmasq({
      "--mx-host=dest.spec.test,mx.dest.spec.test,10",
      "--host-record=mx.dest.spec.test,127.0.0.2",
    })
  end)
  lazy_teardown(function() if dm then dm:stop() end end)

  local function relay_server(spool, extra)
    local args = { "--resolver", dm:addr(), "--relay-port", tostring(port), "--spool", spool,
      "--retry-min", "1", "--retry-max", "1" }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    return assert(server.start({ script_source = RELAY_POLICY, env = { DEST_PORT = tostring(port) },
      args = args, workers = extra and extra.workers }))
  end

  local function send_one(srv, subject)
    local c = smtp.session(srv)
    c:send("MAIL FROM:<alice@sender.spec.test>"):expect(250)
    c:send("RCPT TO:<bob@dest.spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: " .. subject .. "\r\n\r\nx\r\n.\r\n"):expect(250)
    c:send("QUIT"):expect(221)
    c:close()
  end

  it("delivers after a kill -9 what was accepted before it", function()
    local spool = server.mkdtemp()
    local a = relay_server(spool)
    -- The destination is down: the message waits in the queue.
    send_one(a, "survivor")
    assert(a:wait_log({ "relay.deferred", "bob@dest.spec.test" }, 20))
    a:terminate("KILL")
    a:cleanup()
    local dest = assert(server.start({ capture = true, listen = { "127.0.0.2:" .. port } }))
    local b = relay_server(spool)
    finally(function() b:stop(); dest:stop(); server.rmtree(spool) end)
    wait_for("the message after the restart", function()
      for _, m in ipairs(dest:messages()) do
        if m.data:find("Subject: survivor", 1, true) then return true end
      end
    end, 30)
  end)

  it("never has two workers deliver the same entry", function()
    local spool = server.mkdtemp()
    local dest = assert(server.start({ capture = true, listen = { "127.0.0.2:" .. port } }))
    local srv = relay_server(spool, { workers = 2 })
    finally(function() srv:stop(); dest:stop(); server.rmtree(spool) end)
    for i = 1, 20 do send_one(srv, "worker mail " .. i) end
    local counts
    wait_for("twenty messages", function()
      counts = {}
      local n = 0
      for _, m in ipairs(dest:messages()) do
        local k = m.data:match("Subject: (worker mail %d+)")
        if k then
          counts[k] = (counts[k] or 0) + 1
          n = n + 1
        end
      end
      return n >= 20
    end, 40)
    -- Every message once: a second copy would show as a count of 2.
    os.execute("sleep 2")
    counts = {}
    for _, m in ipairs(dest:messages()) do
      local k = m.data:match("Subject: (worker mail %d+)")
      if k then counts[k] = (counts[k] or 0) + 1 end
    end
    for i = 1, 20 do assert.are.equal(1, counts["worker mail " .. i], "worker mail " .. i) end
  end)
end)

describe("msg:relay over LMTP into a real Dovecot #integration", function()
  local dovecot = require "dovecot"
  local run_it = dovecot.available() and it or pending

  run_it("delivers alice's copy and bounces bob's, per recipient", function()
    local d = assert(dovecot.start())
    local spool = server.mkdtemp()
    local srv = assert(server.start({ script_source = [[
local socket = os.getenv("LMTP_SOCKET")
return {
  on_message = function(s, msg)
    msg:relay{ socket = socket, lmtp = true }
  end,
}
]], env = { LMTP_SOCKET = d.socket }, args = { "--spool", spool } }))
    finally(function() srv:stop(); d:stop(); server.rmtree(spool) end)
    local c = smtp.session(srv)
    -- The null sender: bob's failure is recorded, and no bounce is made.
    c:send("MAIL FROM:<>"):expect(250)
    c:send("RCPT TO:<alice@x.test>"):expect(250)
    c:send("RCPT TO:<bob@x.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: to dovecot\r\n\r\nhello alice\r\n.\r\n"):expect(250)
    c:close()
    local files = wait_for("the message in alice's Maildir", function()
      local f = d:maildir_files("alice")
      return #f > 0 and f or nil
    end)
    assert.truthy(files[1]:find("hello alice", 1, true))
    assert.truthy(files[1]:find("Received: from ", 1, true))
    assert(srv:wait_log({ "relay.bounced", "bob@x.test", "550" }, 20))
    assert(srv:wait_log({ "relay.delivered", "alice@x.test" }, 20))
  end)
end)

describe("msg:relay to a real Postfix smtpd #integration", function()
  local postfix = require "postfix"
  local run_it = postfix.available() and it or pending

  run_it("hands the message over and Postfix takes it", function()
    local port = dnskit.free_port()
    local p = assert(postfix.start({ port = port, main = {
      mydestination = "dest.spec.test", local_transport = "discard",
      local_recipient_maps = "" } }))
    local spool = server.mkdtemp()
    local srv = assert(server.start({ script_source = [[
local port = tonumber(os.getenv("PF_PORT"))
return {
  on_message = function(s, msg) msg:relay{ host = "127.0.0.1", port = port, tls = "may" } end,
}
]], env = { PF_PORT = tostring(port) }, args = { "--spool", spool } }))
    finally(function() srv:stop(); p:stop(); server.rmtree(spool) end)
    local c = smtp.session(srv)
    c:send("MAIL FROM:<alice@sender.spec.test>"):expect(250)
    c:send("RCPT TO:<bob@dest.spec.test>"):expect(250)
    c:send("RCPT TO:<nobody@elsewhere.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: to postfix\r\nMessage-Id: <pf.1@spec.test>\r\n\r\n..x\r\n.\r\n")
      :expect(250)
    c:close()
    -- Postfix takes both (127.0.0.1 is in its mynetworks): bob, of its
    -- own domain, is discarded at once; the other stays in its queue.
    assert(p:wait_log("message%-id=<pf%.1@spec%.test>"), p:log())
    assert(p:wait_log("to=<bob@dest%.spec%.test>.*status=sent"), p:log())
    assert(srv:wait_log({ "relay.delivered", "bob@dest.spec.test", "remote=\"127.0.0.1" }, 20))
    assert(srv:wait_log({ "relay.delivered", "nobody@elsewhere.test" }, 20))
  end)
end)
