-- The next hop's connection outlives a delivery (smtp_client_cache.c): a
-- relaying luamta with a host route to a capturing luamta. Messages for one
-- destination share a connection, each one after RSET; a connection the
-- next hop closed while it was parked, or one whose RSET gets 421, is
-- given up for a fresh one and the message still goes; a reload and a stop
-- close the parked connections; with --workers 2 each entry is delivered
-- once. Every wait is on a log line or a file, never on the clock: the
-- parked connections wait 600 s here (--connection-cache-time), so only
-- what a test does closes them.
local server = require "server"
local smtp = require "smtp"

-- The destination: its on_rset may answer 421 (and close) when told so
-- through a file, as a server shedding load would.
local DEST_POLICY = [[
local flag = os.getenv("RSET_421")
return {
  on_rset = function(s)
    local f = flag and io.open(flag)
    if f then
      f:close()
      os.remove(flag)
      return 421, "4.3.2 closing, try again"
    end
  end,
}
]]

local RELAY_POLICY = [[
local port = tonumber(os.getenv("DEST_PORT"))
return {
  on_message = function(s, msg)
    msg:relay{ host = "127.0.0.1", port = port, tls = "none" }
  end,
}
]]

local function send(srv, subject)
  local c = smtp.session(srv)
  c:send("MAIL FROM:<a@spec.test>"):expect(250)
  c:send("RCPT TO:<b@dest.spec.test>"):expect(250)
  c:send("DATA"):expect(354)
  c:send_raw("Subject: " .. subject .. "\r\n\r\nbody of " .. subject .. "\r\n.\r\n"):expect(250)
  c:send("QUIT"):expect(221)
  c:close()
end

local function count_arrived(dest, subject)
  local n = 0
  for _, m in ipairs(dest:messages()) do
    if m.data:find("Subject: " .. subject .. "\r\n", 1, true) then n = n + 1 end
  end
  return n
end

-- Starts a destination and a relay pointing at it (opts: dest_args,
-- relay_args, workers) and registers their cleanup with finally (busted
-- keeps one finally per test: this is it).
local function start_pair(finally, opts)
  opts = opts or {}
  local dir = server.mkdtemp()
  local flag = dir .. "/rset_421"
  local dest, relay
  finally(function()
    if relay then relay:stop() end
    if dest then dest:stop() end
    server.rmtree(dir)
  end)
  local dargs = { "--log-level", "debug" }
  for _, a in ipairs(opts.dest_args or {}) do dargs[#dargs + 1] = a end
  dest = assert(server.start({ script_source = DEST_POLICY, capture = true,
    env = { RSET_421 = flag }, args = dargs }))
  local args = { "--spool", dir .. "/spool", "--log-level", "debug",
    "--connection-cache-time", "600" }
  for _, a in ipairs(opts.relay_args or {}) do args[#args + 1] = a end
  relay = assert(server.start({ script_source = RELAY_POLICY, workers = opts.workers,
    env = { DEST_PORT = tostring(dest.port) }, args = args }))
  return dest, relay, flag
end

describe("next-hop connection reuse #integration", function()
  it("delivers messages for one destination over one connection, RSET before each reuse", function()
    local dest, relay = start_pair(finally)
    for i = 1, 4 do
      send(relay, "reuse " .. i)
      -- relay.done follows the parking of the connection: the next
      -- message finds it in the cache.
      assert(relay:wait_log({ "relay.done" }, 20, i))
    end
    for i = 1, 4 do assert.are.equal(1, count_arrived(dest, "reuse " .. i)) end
    assert.are.equal(1, dest:count_log({ "smtp.connect" }))
    assert.are.equal(3, dest:count_log({ "smtp.command", "verb=RSET" }))
    assert.are.equal(1, relay:count_log({ "relay.attempt", "result=done", "reuse=0" }))
    assert.are.equal(1, relay:count_log({ "relay.attempt", "result=done", "reuse=3" }))
  end)

  it("gives up a parked connection the next hop closed, and delivers on a fresh one", function()
    -- The destination closes a session idle for 1 s (421 4.4.2 timeout).
    local dest, relay = start_pair(finally, { dest_args = { "--timeout", "1" } })
    send(relay, "before close")
    assert(relay:wait_log({ "relay.done" }, 20, 1))
    assert(dest:wait_log({ "smtp.close", "reason=timeout" }, 20))
    assert(relay:wait_log({ "smtp_client.cache_close", "why=peer" }, 20))
    send(relay, "after close")
    assert(relay:wait_log({ "relay.done" }, 20, 2))
    assert.are.equal(1, count_arrived(dest, "after close"))
    assert.are.equal(2, dest:count_log({ "smtp.connect" }))
    assert.are.equal(2, relay:count_log({ "relay.attempt", "result=done", "reuse=0" }))
    assert.are.equal(0, relay:count_log({ "relay.attempt", "result=failed" }))
  end)

  it("takes a fresh connection when the cached one answers RSET with 421", function()
    local dest, relay, flag = start_pair(finally)
    send(relay, "first")
    assert(relay:wait_log({ "relay.done" }, 20, 1))
    local f = assert(io.open(flag, "w"))
    f:close()
    send(relay, "second")
    assert(relay:wait_log({ "relay.done" }, 20, 2))
    assert(relay:wait_log({ "relay.attempt", "result=failed",
      "answered RSET on a cached connection with 421" }, 1))
    assert.are.equal(1, count_arrived(dest, "second"))
    assert.are.equal(2, dest:count_log({ "smtp.connect" }))
    -- Nothing of the message went over the refused connection.
    assert.are.equal(2, #dest:messages())
    assert.are.equal(0, relay:count_log({ "relay.deferred" }))
  end)

  it("closes parked connections at a reload, with QUIT", function()
    local dest, relay = start_pair(finally)
    send(relay, "reload")
    assert(relay:wait_log({ "relay.done" }, 20, 1))
    assert.are.equal(0, dest:count_log({ "smtp.close" }))
    relay:signal("HUP")
    assert(relay:wait_log({ "smtp_client.cache_close", "why=flush", "uses=1" }, 20))
    assert(dest:wait_log({ "smtp.close", "reason=quit" }, 20))
    -- The next message connects afresh.
    send(relay, "after reload")
    assert(relay:wait_log({ "relay.done" }, 20, 2))
    assert.are.equal(2, dest:count_log({ "smtp.connect" }))
  end)

  it("closes parked connections when the server stops", function()
    local dest, relay = start_pair(finally)
    send(relay, "stop")
    assert(relay:wait_log({ "relay.done" }, 20, 1))
    -- Parked: the destination's session is still open.
    assert.are.equal(0, dest:count_log({ "smtp.close" }))
    -- terminate() keeps the log to read; the cleanup's stop() checks the status.
    assert.are.equal(0, relay:terminate())
    assert.are.equal(1, relay:count_log({ "smtp_client.cache_close", "why=flush" }))
    assert(dest:wait_log({ "smtp.close", "reason=quit" }, 20))
  end)

  it("delivers each entry once with two workers, each with its own cache", function()
    local dest, relay = start_pair(finally, { workers = 2 })
    assert(relay:wait_log({ "worker.ready" }, 20, 2))
    local n = 12
    for i = 1, n do send(relay, "workers " .. i) end
    assert(relay:wait_log({ "relay.done" }, 30, n))
    for i = 1, n do assert.are.equal(1, count_arrived(dest, "workers " .. i)) end
    assert.are.equal(n, #dest:messages())
    assert.are.equal(n, relay:count_log({ "relay.done" }))
  end)
end)
