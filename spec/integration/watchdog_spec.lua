-- spec/integration/watchdog_spec.lua - the master's watchdog: a hook stuck
-- where the Lua budget cannot interrupt it (inside string.match, inside a
-- __gc finalizer, which runs with hooks off) freezes its worker's loop; the
-- master kills that worker, names the session and the hook, and restarts it.
local server = require "server"
local smtp = require "smtp"

-- Five lazy captures against a name that ends wrong: string.match tries
-- every split of the ~400 bytes before it gives up (over a minute), all
-- inside one C call the count hook never sees.
local POLICY = [[
return {
  on_helo = function(s, name)
    if name == "gc.loop" then
      setmetatable({}, { __gc = function() while true do end end })
      collectgarbage()
    elseif name:match("^(.-)%.(.-)%.(.-)%.(.-)%.(.-)%.example$") then
      return 550, "5.7.1 no"
    end
    return 250, "2.0.0 hello"
  end,
}
]]

local CATASTROPHIC = ("a."):rep(204) .. "b"

-- The session id the server gave the connection from this client port.
local function sid_of(srv, c)
  local line = assert(srv:wait_log({ "smtp%.connect", "port=" .. c:local_port() .. " " }))
  return (assert(line:match("^%S+ %S+ (%x+) smtp%.connect"), line))
end

-- Sends a HELO that freezes the worker, then checks what the watchdog did.
local function stall_and_recover(srv, helo_name)
  local c, c2 = assert(smtp.connect(srv)), nil
  -- busted keeps one finally per test: it closes both clients.
  finally(function()
    c:close()
    if c2 then c2:close() end
  end)
  c:expect(220)
  local sid = sid_of(srv, c)
  c:send("HELO " .. helo_name)
  local line = srv:wait_log({ "worker%.watchdog", "sid=" .. sid }, 60)
  assert(line, "no watchdog line; log:\n" .. srv:log_tail(40))
  assert.truthy(line:find("worker=1 ", 1, true), line)
  assert.truthy(line:find("hook=on_helo", 1, true), line)
  assert.matches("stalled=%d+%.%d", line)
  -- Killed, so the client is cut off rather than answered.
  assert.is_true(c:closed_by_peer(30))
  assert(srv:wait_log({ "worker%.died", "worker=1", "signal=9" }, 30))
  assert(srv:wait_log({ "worker%.ready", "worker=1" }, 30, 2))
  c2 = assert(smtp.connect(srv))
  c2:expect(220)
  c2:send("EHLO spec.test"):expect(250)
end

describe("--watchdog #integration", function()
  local srv
  before_each(function()
    srv = assert(server.start({ workers = 1, script_source = POLICY,
      args = { "--hook-timeout", "1", "--watchdog", "2" } }))
    assert(srv:wait_log({ "worker%.ready" }, 20))
  end)
  after_each(function() srv:stop() end)

  it("kills a worker stuck inside string.match and restarts it", function()
    stall_and_recover(srv, CATASTROPHIC)
  end)

  it("kills a worker stuck in a looping __gc finalizer and restarts it", function()
    stall_and_recover(srv, "gc.loop")
  end)
end)

describe("--watchdog on the command line #integration", function()
  it("refuses a watchdog no longer than the hook budget", function()
    local code, out, err = server.run({ "--hook-timeout", "5", "--watchdog", "5",
      "--listen", "127.0.0.1:0" }, { timeout = 20 })
    assert.are.equal(2, code)
    assert.matches("--watchdog", out .. err, 1, true)
  end)

  it("defaults to 3 x --hook-timeout", function()
    local srv = assert(server.start({ workers = 1, args = { "--hook-timeout", "4" } }))
    finally(function() srv:stop() end)
    assert(srv:wait_log({ "master%.ready", "watchdog=12%.0" }))
  end)

  it("is off with --watchdog 0", function()
    local srv = assert(server.start({ workers = 1, args = { "--watchdog", "0" } }))
    finally(function() srv:stop() end)
    assert(srv:wait_log({ "master%.ready", "watchdog=0%.0" }))
  end)
end)
