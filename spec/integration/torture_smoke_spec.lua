-- scripts/torture --smoke: a small, fast run of the load, fault and
-- hostile-client scenarios (50 concurrent sessions, 20 slow clients, one of
-- each hostile input, a few faulty sessions, kill -9 rounds, 1,000 idle
-- connections with /metrics scraped throughout) against the
-- binary under test, so the torture runner cannot rot. Each scenario prints
-- one "TORTURE scenario=... result=PASS|FAIL" line; every one must say PASS
-- (that includes: no message lost, no partial file in the Maildir, the
-- server never died and stopped cleanly, sanitizers quiet). No latency is
-- asserted here beyond the runner's own "absurd" bound (5 s).
local server = require "server"

local SCENARIOS = { "concurrency", "slowloris", "hostile", "faults", "durability", "idle" }

-- name -> { key = value } for every "TORTURE scenario=... k=v ..." line.
local function parse(out)
  local lines = {}
  for line in out:gmatch("[^\n]+") do
    if line:sub(1, 8) == "TORTURE " then
      local f = { line = line }
      for k, v in line:gmatch("(%S+)=(%S*)") do f[k] = v end
      assert.is_string(f.scenario, "TORTURE line without scenario=: " .. line)
      lines[f.scenario] = f
    end
  end
  return lines
end

describe("scripts/torture --smoke #integration", function()
  local status, out, lines

  lazy_setup(function()
    status, out = server.sh("cd " .. server.quote(server.source_dir())
      .. " && timeout -s KILL 240 scripts/torture --smoke --bin " .. server.quote(server.bin()))
    lines = parse(out)
  end)

  it("prints one line per scenario", function()
    for _, name in ipairs(SCENARIOS) do
      local f = lines[name]
      assert.truthy(f, "no TORTURE line for " .. name .. "\n" .. out)
      for _, key in ipairs({ "sessions", "messages", "failures", "lost" }) do
        assert.matches("^%d+$", f[key] or "", nil, false, name .. " " .. key .. "\n" .. f.line)
      end
      assert.is_true(tonumber(f.sessions) > 0, f.line)
    end
  end)

  for _, name in ipairs(SCENARIOS) do
    it("passes " .. name, function()
      local f = lines[name]
      assert.truthy(f, "no TORTURE line for " .. name .. "\n" .. out)
      assert.are.equal("PASS", f.result, f.line .. "\n\n" .. out)
      assert.are.equal("0", f.lost, f.line)
      assert.are.equal("0", f.failures, f.line)
    end)
  end

  it("delivers every message of the concurrent sessions byte-exact", function()
    local f = lines.concurrency
    assert.truthy(f, out)
    assert.are.equal(tonumber(f.sessions) * 3, tonumber(f.exact), f.line)
  end)

  it("holds every idle connection open and greeted, as the gauge counts them", function()
    local f = lines.idle
    assert.truthy(f, out)
    assert.are.equal(f.connections, f.sessions, f.line)
    assert.is_true(tonumber(f.scrapes) >= 2, f.line)
  end)

  it("exits 0", function()
    assert.are.equal(0, status, out)
  end)
end)
