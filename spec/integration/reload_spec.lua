-- spec/integration/reload_spec.lua - SIGHUP and --watch reload the policy:
-- new connections get the new generation, running sessions finish on the
-- one they started with, a broken script changes nothing, luamta.shared
-- survives, and old generations are freed (counted, and LeakSanitizer
-- checks the exit).
local server = require "server"
local smtp = require "smtp"
local socket = require "socket"

local function policy(tag)
  return ([[
luamta.shared.loads = (luamta.shared.loads or 0) + 1
luamta.shared.seen = luamta.shared.seen or {}
return {
  on_helo = function(s, name)
    luamta.shared.seen[name] = true
    return 250, "2.0.0 policy %s load " .. luamta.shared.loads
  end,
  on_rcpt = function(s, rcpt)
    return 250, "2.1.5 policy %s"
  end,
}
]]):format(tag, tag)
end

local function hup(srv)
  assert(os.execute("kill -HUP " .. srv.pid))
end

-- Waits until the log has n lines matching pats.
local function wait_count(srv, pats, n)
  assert(srv:wait_log(pats, 20, n), "no " .. n .. " log lines matching "
    .. table.concat(pats, " ") .. "\n" .. srv:log_tail(20))
end

describe("reload #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ script_source = policy("A"),
      args = { "--log-level", "debug" } }))
  end)
  lazy_teardown(function() srv:stop() end)

  it("gives new connections the new policy while an open session keeps the old one", function()
    local old = assert(smtp.connect(srv))
    local new
    finally(function() old:close(); if new then new:close() end end)
    old:expect(220)
    old:send("HELO old.spec.test"):expect(250, "policy A load 1")
    old:send("MAIL FROM:<a@spec.test>"):expect(250)

    server.write_file(srv.script, policy("B"))
    hup(srv)
    wait_count(srv, { "server.reload", "result=ok", "generation=2" }, 1)

    new = assert(smtp.connect(srv))
    new:expect(220)
    -- luamta.shared was carried over: the new generation counts load 2.
    new:send("HELO new.spec.test"):expect(250, "policy B load 2")
    -- The open session finishes on generation 1.
    old:send("RCPT TO:<b@spec.test>"):expect(250, "policy A")
    old:send("QUIT"):expect(221)
  end)

  it("frees the old generation once its last session has ended", function()
    -- Generation 1 was pinned by the session above, which has now quit.
    wait_count(srv, { "script.free", "generation=1" }, 1)
  end)

  it("keeps the policy in force when the new script does not load, and logs file and line", function()
    server.write_file(srv.script, "return {\n  on_helo = function( end,\n}\n")
    hup(srv)
    wait_count(srv, { "server.reload", "result=failed", "policy.lua:2:" }, 1)
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("HELO after-broken.spec.test"):expect(250, "policy B load 2")
  end)

  it("carries only plain data in luamta.shared across a reload", function()
    server.write_file(srv.script, [[
assert(luamta.shared.seen["new.spec.test"], "shared table lost")
return { on_helo = function() return 250, "2.0.0 policy C" end }
]])
    hup(srv)
    wait_count(srv, { "server.reload", "result=ok", "generation=3" }, 1)
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("HELO x.spec.test"):expect(250, "policy C")
  end)
end)

describe("reload under load #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ script_source = policy("L0"),
      args = { "--log-level", "debug" } }))
  end)
  lazy_teardown(function() srv:stop() end)

  it("drops no session and fails no message during 20 reloads", function()
    local clients, sent, accepted = {}, 0, 0
    finally(function() for _, c in ipairs(clients) do c:close() end end)
    local function fresh(i)
      if clients[i] then clients[i]:send("QUIT"):expect(221); clients[i]:close() end
      clients[i] = assert(smtp.connect(srv))
      clients[i]:expect(220)
      clients[i]:send("EHLO load" .. i .. ".spec.test"):expect(250)
    end
    for i = 1, 4 do fresh(i) end
    for round = 1, 20 do
      -- Every client is in the middle of a transaction when the reload
      -- lands, half of them reconnect afterwards.
      for i, c in ipairs(clients) do
        c:send("MAIL FROM:<s" .. i .. "@spec.test>"):expect(250)
        c:send("RCPT TO:<r" .. i .. "@spec.test>"):expect(250)
      end
      server.write_file(srv.script, policy("L" .. round))
      hup(srv)
      wait_count(srv, { "server.reload", "result=ok", "generation=" .. (round + 1) .. "$" }, 1)
      for i, c in ipairs(clients) do
        c:send("DATA"):expect(354)
        c:send_raw("Subject: round " .. round .. "\r\n\r\nbody\r\n.\r\n")
        sent = sent + 1
        c:expect(250, "2.0.0")
        accepted = accepted + 1
        if (i + round) % 2 == 0 then fresh(i) end
      end
    end
    assert.are.equal(80, sent)
    assert.are.equal(sent, accepted)
  end)

  it("leaves no generation behind but the current one once sessions are gone", function()
    -- 21 generations existed; after the clients quit, 20 are freed.
    wait_count(srv, { "script.free" }, 20)
    assert.are.equal(20, srv:count_log({ "script.free" }))
  end)
end)

describe("reload with --watch #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ script_source = policy("W1"), args = { "--watch" } }))
  end)
  lazy_teardown(function() srv:stop() end)

  it("reloads when the policy file changes", function()
    server.write_file(srv.script, policy("W2"))
    wait_count(srv, { "server.reload", "result=ok", "why=watch" }, 1)
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("HELO w.spec.test"):expect(250, "policy W2")
  end)
end)

describe("many reloads #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ script_source = policy("M"),
      args = { "--log-level", "debug" } }))
  end)
  lazy_teardown(function() srv:stop() end)

  it("frees every old generation over 1,000 reloads", function()
    for i = 1, 1000 do
      hup(srv)
      -- One at a time: the kernel merges pending SIGHUPs.
      wait_count(srv, { "server.reload", "result=ok" }, i)
    end
    assert.are.equal(1000, srv:count_log({ "script.free" }))
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("HELO m.spec.test"):expect(250, "policy M load 1001")
    -- srv:stop() in lazy_teardown asserts exit status 0: LeakSanitizer
    -- fails it if any generation's Lua state were still allocated.
  end)
end)
