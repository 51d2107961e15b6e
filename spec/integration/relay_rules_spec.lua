-- The relay's rules that take DNS records or the clock: MX records tried
-- by preference, the implicit MX (a domain with only an address), the
-- back-off from --retry-min doubling up to --retry-max, and a recipient
-- still deferred after --queue-lifetime bounced with its last reply, in
-- an RFC 3464 report read by Python's email package. dnsmasq answers for
-- the test domains; luamta servers on 127.0.0.2/3 are the destinations.
local server = require "server"
local dnskit = require "dns"

local wait_for = server.wait_for

local RELAY_POLICY = [[
return { on_message = function(s, msg) msg:relay() end }
]]

-- "later@" is deferred for ever; everything else is taken.
local DEST_POLICY = [[
return {
  on_rcpt = function(s, rcpt)
    if rcpt:find("^later@") then return 451, "4.7.1 Not today" end
  end,
}
]]

-- Parses a bounce with Python's email package and prints what a spec
-- compares: the report's type, then each delivery-status field.
local PARSE_DSN = [[
import email, sys
from email import policy
m = email.message_from_binary_file(sys.stdin.buffer, policy=policy.compat32)
print("type=" + m.get_content_type() + ";" + m.get_param("report-type"))
for part in m.walk():
    if part.get_content_type() == "message/delivery-status":
        for block in part.get_payload():
            for k, v in block.items():
                print(k + "=" + " ".join(v.split()))
]]

describe("the relay's DNS and retry rules #integration", function()
  local dm, dest2, dest3, relay, tmp, port

  lazy_setup(function()
    port = dnskit.free_port()
    dm = dnskit.dnsmasq({
      -- Preference 10 has no server; 20 does; 30 is never needed.
      "--mx-host=order.spec.test,mx10.order.spec.test,10",
      "--mx-host=order.spec.test,mx20.order.spec.test,20",
      "--mx-host=order.spec.test,mx30.order.spec.test,30",
      "--host-record=mx10.order.spec.test,127.0.0.5",
      "--host-record=mx20.order.spec.test,127.0.0.2",
      "--host-record=mx30.order.spec.test,127.0.0.3",
      -- No MX at all: the domain's own address.
      "--host-record=implicit.spec.test,127.0.0.3",
      "--mx-host=sender.spec.test,mx.sender.spec.test,10",
      "--host-record=mx.sender.spec.test,127.0.0.3",
    })
    dest2 = assert(server.start({ script_source = DEST_POLICY, capture = true,
      listen = { "127.0.0.2:" .. port } }))
    dest3 = assert(server.start({ script_source = DEST_POLICY, capture = true,
      listen = { "127.0.0.3:" .. port } }))
    tmp = server.mkdtemp()
    relay = assert(server.start({ script_source = RELAY_POLICY,
      args = { "--resolver", dm:addr(), "--relay-port", tostring(port), "--spool", tmp .. "/spool",
        "--retry-min", "1", "--retry-max", "4", "--queue-lifetime", "12" } }))
  end)

  lazy_teardown(function()
    for _, s in ipairs({ relay, dest2, dest3 }) do s:stop() end
    if dm then dm:stop() end
    if tmp then server.rmtree(tmp) end
  end)

  local function send(rcpt, subject)
    local c = server.session(relay)
    c:message("alice@sender.spec.test", { rcpt }, "Subject: " .. subject .. "\r\n\r\nhi\r\n")
    c:expect(250)
    c:send("QUIT"):expect(221)
    c:close()
  end

  local function arrived(srv, subject)
    for _, m in ipairs(srv:messages()) do
      if m.data:find("Subject: " .. subject .. "\r\n", 1, true) then return m end
    end
  end

  it("tries the MX hosts by preference and delivers to the first that answers", function()
    send("bob@order.spec.test", "by preference")
    local m = wait_for("the message at mx20", function() return arrived(dest2, "by preference") end)
    assert.are.same({ "bob@order.spec.test" }, m.recipients)
    assert.is_nil((arrived(dest3, "by preference")))
    -- mx10 was tried first and refused the connection.
    local lines = relay:log_lines({ "relay.attempt", "mx" })
    assert.truthy(lines[1] and lines[1]:find('host="mx10.order.spec.test" addr="127.0.0.5"', 1, true),
      table.concat(lines, "\n"))
    assert.truthy(lines[2] and lines[2]:find('host="mx20.order.spec.test"', 1, true)
      and lines[2]:find("result=done", 1, true)
      and lines[2]:find("delivered=1", 1, true), table.concat(lines, "\n"))
  end)

  it("delivers to the domain's own address when it has no MX", function()
    send("carol@implicit.spec.test", "implicit mx")
    local m = wait_for("the message at 127.0.0.3", function() return arrived(dest3, "implicit mx") end)
    assert.are.same({ "carol@implicit.spec.test" }, m.recipients)
  end)

  it("backs off from --retry-min doubling to --retry-max, then bounces at --queue-lifetime", function()
    send("later@order.spec.test", "deferred")
    local lines = wait_for("four deferrals", function()
      local l = relay:log_lines({ "relay.deferred", "later@order.spec.test" })
      return #l >= 4 and l
    end, 30)
    local waits = {}
    for i = 1, 4 do waits[i] = tonumber(lines[i]:match("retry_in=(%d+)")) end
    assert.are.same({ 1, 2, 4, 4 }, waits)
    -- Past the lifetime: bounced with the last reply, from the null sender.
    assert(relay:wait_log({ "relay.bounced", "later@order.spec.test", "why=lifetime" }, 30))
    local b = wait_for("the bounce at the sender's MX", function()
      for _, m in ipairs(dest3:messages()) do
        if m.sender == "" and m.data:find("later@order.spec.test", 1, true) then return m end
      end
    end)
    assert.are.same({ "alice@sender.spec.test" }, b.recipients)
    local path = tmp .. "/bounce.eml"
    local f = assert(io.open(path, "wb"))
    f:write(b.data)
    f:close()
    local code, out = server.sh("/usr/bin/python3 -c '" .. PARSE_DSN .. "' < " .. path)
    assert.are.equal(0, code, out)
    assert.truthy(out:find("type=multipart/report;delivery-status\n", 1, true), out)
    assert.truthy(out:find("Final-Recipient=rfc822; later@order.spec.test\n", 1, true), out)
    assert.truthy(out:find("Action=failed\n", 1, true), out)
    assert.truthy(out:find("Status=4.7.1\n", 1, true), out)
    assert.truthy(out:find("Remote-MTA=dns; mx20.order.spec.test\n", 1, true), out)
    assert.truthy(out:find("Diagnostic-Code=smtp; 451 4.7.1 Not today\n", 1, true), out)
    -- And the queue is empty again.
    wait_for("an empty queue", function()
      local _, listing = server.sh(server.bin() .. " queue list --json --spool " .. tmp .. "/spool")
      return listing:match("^%s*%[%s*%]%s*$")
    end)
  end)
end)

-- kill -9 while the next hop holds the final dot: the message was handed
-- over but the relay never heard so. After a restart it is delivered once
-- more: at least once, and at most twice in all.
describe("a relay killed during a delivery #integration", function()
  local STALL_POLICY = [[
local stalled = false
return {
  on_message = function(s, msg)
    if not stalled then
      stalled = true
      luamta.log("stalling before the reply")
      luamta.sleep(3)
    end
  end,
}
]]

  it("delivers the message again after the restart, and only once more", function()
    local port = dnskit.free_port()
    local tmp = server.mkdtemp()
    local dest = assert(server.start({ script_source = STALL_POLICY, capture = true,
      listen = { "127.0.0.2:" .. port } }))
    local function relay_server()
      return assert(server.start({ script_source = [[
return { on_message = function(s, msg)
  msg:relay{ host = "127.0.0.2", port = tonumber(os.getenv("DEST_PORT")), tls = "none" }
end }
]], env = { DEST_PORT = tostring(port) },
        args = { "--spool", tmp .. "/spool", "--retry-min", "1", "--retry-max", "1" } }))
    end
    local a, b = relay_server(), nil
    finally(function()
      if b then b:stop() end
      dest:stop()
      server.rmtree(tmp)
    end)
    local c = server.session(a)
    c:message("alice@spec.test", { "bob@spec.test" }, "Subject: killed\r\n\r\nx\r\n")
    c:expect(250)
    c:close()
    assert(dest:wait_log({ "stalling before the reply" }, 20))
    a:terminate("KILL")
    a:cleanup()
    b = relay_server()
    assert(b:wait_log({ "relay.delivered" }, 30))
    local copies
    wait_for("the first copy too", function()
      copies = 0
      for _, m in ipairs(dest:messages()) do
        if m.data:find("Subject: killed\r\n", 1, true) then copies = copies + 1 end
      end
      return copies >= 2
    end)
    -- The queue is empty: nothing more will come.
    wait_for("an empty queue", function()
      local _, listing = server.sh(server.bin() .. " queue list --json --spool " .. tmp .. "/spool")
      return listing:match("^%s*%[%s*%]%s*$")
    end)
    os.execute("sleep 1.5")
    copies = 0
    for _, m in ipairs(dest:messages()) do
      if m.data:find("Subject: killed\r\n", 1, true) then copies = copies + 1 end
    end
    assert.are.equal(2, copies)
  end)
end)

-- RFC 5321 4.5.3.1.10: a next hop that takes two recipients a transaction
-- and answers 452 to the rest gets them in the next transactions at once
-- (on the same connection), not after --retry-min.
describe("a next hop with a recipient limit #integration", function()
  local LIMIT_POLICY = [[
local n = 0
return {
  on_mail = function(s) n = 0 end,
  on_rcpt = function(s, rcpt)
    n = n + 1
    if n > 2 then return 452, "4.5.3 Too many recipients" end
  end,
}
]]

  it("gets the recipients it deferred with 452 in the next transactions, at once", function()
    local port = dnskit.free_port()
    local tmp = server.mkdtemp()
    local dest = assert(server.start({ script_source = LIMIT_POLICY, capture = true,
      listen = { "127.0.0.2:" .. port } }))
    local relay = assert(server.start({ script_source = [[
return { on_message = function(s, msg)
  msg:relay{ host = "127.0.0.2", port = tonumber(os.getenv("DEST_PORT")), tls = "none" }
end }
]], env = { DEST_PORT = tostring(port) },
      args = { "--spool", tmp .. "/spool", "--retry-min", "300", "--retry-max", "600" } }))
    finally(function()
      relay:stop()
      dest:stop()
      server.rmtree(tmp)
    end)
    local rcpts = { "r1@spec.test", "r2@spec.test", "r3@spec.test", "r4@spec.test", "r5@spec.test" }
    local c = server.session(relay)
    c:message("alice@spec.test", rcpts, "Subject: five\r\n\r\nx\r\n")
    c:expect(250)
    c:close()
    -- Within the wait, far below --retry-min: three transactions of
    -- two, two and one.
    local got = wait_for("all five recipients", function()
      local all = {}
      for _, m in ipairs(dest:messages()) do
        for _, r in ipairs(m.recipients) do all[#all + 1] = r end
      end
      return #all == 5 and all
    end)
    table.sort(got)
    assert.are.same(rcpts, got)
    local sizes = {}
    for _, m in ipairs(dest:messages()) do sizes[#sizes + 1] = #m.recipients end
    assert.are.same({ 2, 2, 1 }, sizes)
    assert.are.equal(4, relay:count_log({ "relay.deferred", "retry_in=0 why=carried" }))
  end)
end)
