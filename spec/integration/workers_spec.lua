-- spec/integration/workers_spec.lua - the master and its workers: load is
-- shared, a killed worker is replaced, SIGHUP reaches every worker, SIGTERM
-- drains, a worker busy in a blocking hook does not hold the others up,
-- and --user drops privileges after binding.
local server = require "server"
local smtp = require "smtp"

local POLICY = "spec/fixtures/policies/workers.lua"

-- HELO on a fresh connection; returns the serving pid and the client.
local function helo(srv, name)
  local c = assert(smtp.connect(srv))
  c:expect(220)
  local r = c:send("HELO " .. (name or "w.spec.test")):expect(250)
  return tonumber(r.text:match("pid (%d+)")), c, r
end

local function pids_of_children(pid)
  local p = io.popen("pgrep -P " .. pid)
  local out = {}
  for line in p:lines() do out[#out + 1] = tonumber(line) end
  p:close()
  return out
end

describe("workers #integration", function()
  local srv
  lazy_setup(function()
    -- The blocking hook must outlast neither budget, however loaded the
    -- machine: it is the worker it blocks that matters here.
    srv = assert(server.start({ policy = POLICY, workers = 2,
      args = { "--hook-timeout", "120", "--hook-instructions", "1e13" } }))
    assert(srv:wait_log({ "worker.ready" }, 20, 2))
  end)
  lazy_teardown(function() srv:stop() end)

  it("runs the requested number of workers, none of them the master", function()
    local kids = pids_of_children(srv.pid)
    assert.are.equal(2, #kids)
    local seen = {}
    -- Sequential sessions may all land on one worker; the busy-worker test
    -- below shows the second one serving. Here: every pid is a worker.
    for _ = 1, 10 do
      local pid, c = helo(srv)
      c:close()
      assert.are_not.equal(srv.pid, pid)
      seen[pid] = true
    end
    for pid in pairs(seen) do
      assert.truthy(pid == kids[1] or pid == kids[2], "session served by " .. pid)
    end
  end)

  it("keeps serving other clients while one worker is stuck in a blocking hook", function()
    local busy = assert(smtp.connect(srv))
    finally(function() busy:close() end)
    busy:expect(220)
    busy:send("HELO block3")
    assert(srv:wait_log({ "script.log", "blocking for 3" }))
    -- A whole session completes on the other worker while the first one
    -- is still spinning: its HELO reply has not arrived yet.
    local pid, c = helo(srv)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: x\r\n\r\nbody\r\n.\r\n"):expect(250)
    c:send("QUIT"):expect(221)
    c:close()
    assert.is_nil(busy:read_reply(0), "the blocked worker answered before the other finished")
    local r = busy:expect(250)
    assert.are_not.equal(pid, tonumber(r.text:match("pid (%d+)")))
  end)

  it("replaces a worker killed mid-session, and new connections succeed", function()
    local pid, c = helo(srv)
    finally(function() c:close() end)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    assert(os.execute("kill -9 " .. pid))
    assert.is_true(c:closed_by_peer(5))
    assert(srv:wait_log({ "worker.died", "pid=" .. pid, "signal=9" }))
    assert(srv:wait_log({ "worker.ready" }, 20, 3))
    assert.are.equal(2, #pids_of_children(srv.pid))
    for _ = 1, 5 do
      local p2, c2 = helo(srv)
      c2:close()
      assert.are_not.equal(pid, p2)
    end
  end)

  it("forwards SIGHUP to every worker", function()
    srv:signal("HUP")
    assert(srv:wait_log({ "server.reload", "result=ok", "worker=" }, 20, 2))
    local _, c = helo(srv)
    c:close()
  end)
end)

describe("workers and SIGTERM #integration", function()
  it("stops accepting, lets open sessions finish in every worker, exits 0", function()
    local srv = assert(server.start({ policy = POLICY, workers = 2 }))
    assert(srv:wait_log({ "worker.ready" }, 20, 2))
    local _, c = helo(srv)
    finally(function() c:close() end)
    srv:signal("TERM")
    assert(srv:wait_log({ "server.stop", "sessions=1" }))
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("QUIT"):expect(221)
    assert.are.equal(0, srv:stop("TERM"))
  end)
end)

describe("reload of a broken script with workers #integration", function()
  it("logs the failure once in the master and keeps the old policy in every worker", function()
    local srv = assert(server.start({ workers = 2,
      script_source = server.read_file(server.absolute(POLICY)) }))
    finally(function() srv:stop() end)
    assert(srv:wait_log({ "worker.ready" }, 20, 2))
    server.write_file(srv.script, "return { on_helo = function( }\n")
    srv:signal("HUP")
    assert(srv:wait_log({ "server.reload", "result=failed", "policy.lua:1:" }))
    assert.are.equal(1, srv:count_log({ "server.reload", "result=failed" }))
    for _ = 1, 4 do
      local _, c, r = helo(srv)
      c:close()
      assert.truthy(r.text:find("gen A", 1, true))
    end
  end)
end)

describe("--user #integration", function()
  it("serves as the given user after binding as root", function()
    local p = io.popen("id -u")
    local me = p:read("n")
    p:close()
    if me ~= 0 then
      pending("needs root to drop privileges")
      return
    end
    -- The workers load the script after the drop, so it must be readable
    -- by that user: the fixture in the source tree is.
    local srv = assert(server.start({ workers = 1, policy = POLICY,
      args = { "--user", "nobody" } }))
    finally(function() srv:stop() end)
    assert(srv:wait_log({ "worker.ready" }))
    local _, c, r = helo(srv)
    c:close()
    local p2 = io.popen("id -u nobody")
    local nobody = p2:read("n")
    p2:close()
    assert.truthy(r.text:find("uid " .. nobody, 1, true), r.text)
  end)
end)
