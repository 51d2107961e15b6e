-- scripts/bench --smoke: a tiny run of the benchmark (a few hundred messages)
-- against the binary under test, so the bench cannot rot. No timed
-- assertions: only that every figure is printed in the stable format, that
-- smtp-source saw no error, that luamta accepted every message sent (its
-- smtp.message log lines) and that it stopped cleanly (sanitizers included).
local server = require "server"

local SOURCE, SINK = "/usr/sbin/smtp-source", "/usr/sbin/smtp-sink"
local SCENARIOS = { "conc1", "conc16", "conc128", "per_conn100", "size100k" }
local VARIANTS = { lua = "luamta", bare = "luamta", sink = "smtp-sink" }

local function executable(path)
  return os.execute("test -x " .. server.quote(path)) == true
end

-- name -> { key = value } for every "BENCH name=... k=v ..." line.
local function parse(out)
  local figures = {}
  for line in out:gmatch("[^\n]+") do
    if line:sub(1, 6) == "BENCH " then
      local f = {}
      for k, v in line:gmatch("(%S+)=(%S*)") do f[k] = v end
      assert.is_string(f.name, "BENCH line without name=: " .. line)
      if f.name == "server_exit" then
        figures["server_exit/" .. f.script] = f
      else
        figures[f.name] = f
      end
    end
  end
  return figures
end

local NUMBER = "^%d+%.?%d*$"

describe("scripts/bench --smoke #integration", function()
  local status, out, figures

  lazy_setup(function()
    assert(executable(SOURCE) and executable(SINK),
      "smtp-source/smtp-sink missing: install the Debian package postfix "
        .. "(scripts/lib/bench_deps.sh: bench_install_postfix)")
    status, out = server.sh("cd " .. server.quote(server.source_dir())
      .. " && timeout -s KILL 240 scripts/bench --smoke --bin " .. server.quote(server.bin()))
    figures = parse(out)
  end)

  it("exits 0", function()
    assert.are.equal(0, status, out)
  end)

  it("prints the tables", function()
    assert.matches("== throughput", out, 1, true)
    assert.matches("== latency", out, 1, true)
    assert.matches("== memory", out, 1, true)
    assert.truthy(figures.meta, out)
    assert.are.equal("smoke", figures.meta.mode)
  end)

  it("prints messages per second and CPU per message for luamta and smtp-sink", function()
    for _, sc in ipairs(SCENARIOS) do
      local sent
      for v, srv in pairs(VARIANTS) do
        local f = figures[sc .. "_" .. v]
        assert.truthy(f, "no BENCH line for " .. sc .. "_" .. v .. "\n" .. out)
        assert.are.equal(srv, f.server)
        assert.matches(NUMBER, f.msgs_per_sec, nil, false, sc .. "_" .. v)
        assert.matches(NUMBER, f.cpu_us_per_msg, nil, false, sc .. "_" .. v)
        assert.is_true(tonumber(f.msgs) > 0)
        sent = sent or f.msgs
        assert.are.equal(sent, f.msgs, "every server gets the same load")
        assert.are.equal("0", f.errors, "smtp-source errors against " .. sc .. "_" .. v)
        if srv == "luamta" then
          assert.matches(NUMBER, f.rate_ratio)
          assert.matches(NUMBER, f.cpu_ratio)
        end
      end
    end
  end)

  it("loses no message: luamta logged an accepted message for every one sent", function()
    for _, sc in ipairs(SCENARIOS) do
      for _, v in ipairs({ "lua", "bare" }) do
        local f = figures[sc .. "_" .. v]
        assert.truthy(f, out)
        assert.are.equal("0", f.lost, sc .. "_" .. v .. " lost messages\n" .. out)
      end
    end
  end)

  it("prints session latency and idle-connection memory for both", function()
    for v in pairs(VARIANTS) do
      local l = figures["latency_" .. v]
      assert.truthy(l, "no latency_" .. v .. "\n" .. out)
      assert.matches(NUMBER, l.p50_us)
      assert.matches(NUMBER, l.p99_us)
      local m = figures["mem_idle100_" .. v]
      assert.truthy(m, "no mem_idle100_" .. v .. "\n" .. out)
      assert.matches("^%-?%d+%.%d+$", m.kib_per_conn)
    end
  end)

  it("prints the DNSBL part: both policies, no failed lookup, nothing lost", function()
    for _, mode in ipairs({ "without", "with" }) do
      local f = figures["dnsbl_" .. mode]
      assert.truthy(f, "no dnsbl_" .. mode .. "\n" .. out)
      assert.matches(NUMBER, f.cpu_us_per_msg)
      assert.are.equal("0", f.errors)
      assert.are.equal("0", f.lost)
    end
    assert.are.equal("0", figures.dnsbl_lookups.failed, out)
  end)

  it("prints the relay part: every message relayed, with its delays", function()
    local kinds = { "luamta" }
    if io.popen("id -u"):read("*l") == "0" and executable("/usr/sbin/postfix") then
      kinds[2] = "postfix"
    end
    for _, kind in ipairs(kinds) do
      local f = figures["relay_" .. kind]
      assert.truthy(f, "no relay_" .. kind .. "\n" .. out)
      assert.are.equal(f.msgs, f.relayed, kind .. " relayed every message")
      assert.matches(NUMBER, f.delay_p99_ms)
      assert.matches(NUMBER, f.cpu_us_per_msg)
      assert.are.equal("0", f.errors)
    end
  end)

  it("stops luamta cleanly after the load", function()
    for _, script in ipairs({ "bench.lua", "none" }) do
      local e = figures["server_exit/" .. script]
      assert.truthy(e, out)
      assert.are.equal("0", e.status, out)
      assert.are.equal("0", e.log_errors, "luamta logged errors under load\n" .. out)
    end
  end)
end)
