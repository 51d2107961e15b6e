-- spec/integration/restart_spec.lua - what a restarted worker serves: the
-- generation the master last loaded, whatever is on disk since (a broken
-- file, or an edit nobody reloaded), or what --watch reloaded; each worker
-- draws its own math.random sequence; and a worker whose master dies exits
-- instead of serving on.
local server = require "server"
local smtp = require "smtp"

local function policy(gen)
  return ([[
return {
  on_helo = function(s, name)
    return 250, "2.0.0 %s draw " .. math.random(1 << 40)
  end,
}
]]):format(gen)
end

-- HELO on a fresh connection; returns the reply text. It closes the
-- client itself: busted keeps one finally per test, the test's own.
local function helo(srv)
  local c = assert(smtp.connect(srv))
  local ok, r = pcall(function()
    c:expect(220)
    return c:send("HELO restart.spec.test"):expect(250)
  end)
  c:close()
  if not ok then error(r, 0) end
  return r.text
end

-- The pid of the nth worker.ready line.
local function worker_pid(srv, n)
  local _, lines = srv:wait_log({ "worker%.ready", "worker=1" }, 30, n)
  assert(lines, "no worker.ready number " .. n .. "; log:\n" .. srv:log_tail(40))
  return tonumber(lines[n]:match("pid=(%d+)"))
end

-- kill -9 the current worker and wait for the (n+1)th to be ready.
local function restart_worker(srv, n)
  local pid = worker_pid(srv, n)
  assert(os.execute("kill -9 " .. pid))
  assert(srv:wait_log({ "worker%.died", "pid=" .. pid, "signal=9" }, 30))
  return worker_pid(srv, n + 1)
end

-- Whether a process is gone (a zombie nobody reaped counts as gone).
local function gone(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return true end
  local stat = f:read("a") or ""
  f:close()
  return stat:match("^%d+ %b() (%a)") == "Z"
end

describe("a restarted worker #integration", function()
  local srv
  before_each(function()
    srv = assert(server.start({ workers = 1, script_source = policy("gen-A") }))
    worker_pid(srv, 1)
  end)
  after_each(function() srv:stop() end)

  it("serves the last good generation after a reload failed", function()
    assert.truthy(helo(srv):find("gen-A", 1, true))
    server.write_file(srv.script, "return { on_helo = function( }\n")
    srv:signal("HUP")
    assert(srv:wait_log({ "server%.reload", "result=failed", "policy.lua:1:" }))
    restart_worker(srv, 1)
    assert.truthy(helo(srv):find("gen-A", 1, true))
  end)

  it("serves the loaded generation, not an edit nobody reloaded, until SIGHUP", function()
    server.write_file(srv.script, policy("gen-B"))
    restart_worker(srv, 1)
    assert.truthy(helo(srv):find("gen-A", 1, true))
    srv:signal("HUP")
    assert(srv:wait_log({ "server%.reload", "result=ok", "worker=1" }))
    assert.truthy(helo(srv):find("gen-B", 1, true))
    -- And the master kept B: the next restart serves it too.
    restart_worker(srv, 2)
    assert.truthy(helo(srv):find("gen-B", 1, true))
  end)

  it("draws its own math.random sequence, not a copy of the master's", function()
    local first = helo(srv):match("draw (%d+)")
    restart_worker(srv, 1)
    local second = helo(srv):match("draw (%d+)")
    assert.is_not_nil(first)
    assert.are_not.equal(first, second)
  end)
end)

describe("a restarted worker with --watch #integration", function()
  it("serves what the workers reloaded, since the master follows the files too", function()
    local srv = assert(server.start({ workers = 1, script_source = policy("gen-A"),
      args = { "--watch" } }))
    finally(function() srv:stop() end)
    worker_pid(srv, 1)
    server.write_file(srv.script, policy("gen-W"))
    assert(srv:wait_log({ "server%.reload", "result=ok", "why=watch", "worker=1" }, 30))
    assert(srv:wait_log({ "master%.reload", "result=ok", "why=watch" }, 30))
    assert.truthy(helo(srv):find("gen-W", 1, true))
    restart_worker(srv, 1)
    assert.truthy(helo(srv):find("gen-W", 1, true))
  end)
end)

describe("a worker whose master dies #integration", function()
  it("drains and exits rather than serving on as an orphan", function()
    local srv = assert(server.start({ workers = 1, script_source = policy("gen-A") }))
    local pid = worker_pid(srv, 1)
    finally(function()
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
      srv:terminate("KILL")
      srv:cleanup()
    end)
    assert(os.execute("kill -9 " .. srv.pid))
    assert(srv:wait_log({ "server%.stop", "worker=1", "signal=TERM" }, 30))
    local deadline = os.time() + 30
    while not gone(pid) and os.time() < deadline do
      os.execute("sleep 0.05")
    end
    assert.is_true(gone(pid), "worker " .. pid .. " outlived its master")
  end)
end)
