-- "cmake --install" lays out an FHS tree that works on its own: the
-- installed binary reads its Lua modules from the installed share/ (never
-- from the source tree it was built from), the man page formats without a
-- warning, the systemd unit passes systemd-analyze with the paths of that
-- very install, and a second install keeps an edited policy.
local server = require "server"
local smtp = require "smtp"

local q, sh = server.quote, server.sh

-- The build directory: CMake passes it; else the one holding LUAMTA_BIN.
local function build_dir()
  local d = os.getenv("LUAMTA_BUILD_DIR")
  if d and d ~= "" then return d end
  return (server.bin():gsub("/[^/]+$", ""))
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

describe("cmake --install #integration", function()
  local prefix, top, src

  setup(function()
    top = server.mkdtemp()
    prefix = top .. "/usr"
    src = server.source_dir()
    local status, out = sh("cmake --install " .. q(build_dir()) .. " --prefix " .. q(prefix))
    assert(status == 0, "cmake --install failed:\n" .. out)
  end)

  teardown(function() server.rmtree(top) end)

  it("lays out the binary, the modules, the examples, the man page and the unit", function()
    for _, f in ipairs({
      "sbin/luamta",
      "share/luamta/lua/luamta/testing.lua",
      "share/luamta/lua/luamta/faults.lua",
      "share/luamta/lua/luamta/capture.lua",
      "share/doc/luamta/examples/mta.lua",
      "share/doc/luamta/examples/faults.lua",
      "share/doc/luamta/README.md",
      "share/man/man8/luamta.8",
      "lib/systemd/system/luamta.service",
      "lib/tmpfiles.d/luamta.conf",
      "lib/sysusers.d/luamta.conf",
      "etc/luamta/policy.lua",
    }) do
      assert.is_true(exists(prefix .. "/" .. f), "not installed: " .. f)
    end
    local status = sh("test -x " .. q(prefix .. "/sbin/luamta"))
    assert.are.equal(0, status)
  end)

  it("checks an installed example that requires an installed module", function()
    local code, out, err = server.run({ "--check", "--script",
      prefix .. "/share/doc/luamta/examples/faults.lua" },
      { bin = prefix .. "/sbin/luamta", cwd = "/" })
    assert.are.equal(0, code, out .. err)
    assert.matches("^OK ", out)
    code, out, err = server.run({ "--check", "--script", prefix .. "/etc/luamta/policy.lua" },
      { bin = prefix .. "/sbin/luamta", cwd = "/" })
    assert.are.equal(0, code, out .. err)
  end)

  it("serves with its modules from the installed share/, not from the source tree", function()
    -- The policy reports where require finds a module and the whole
    -- package.path; the server runs in a directory of its own.
    local dir = server.mkdtemp()
    finally(function() server.rmtree(dir) end)
    server.write_file(dir .. "/policy.lua", [[
      local faults = require "luamta.faults"
      local where = package.searchpath("luamta.faults", package.path)
      return {
        verbs = {
          WHERE = function(s) return 250, where end,
          PATH = function(s) return 250, package.path end,
        },
      }
    ]])
    local srv = assert(server.start({ policy = dir .. "/policy.lua",
      bin = prefix .. "/sbin/luamta" }))
    finally(function() srv:stop() end)
    local c = smtp.session(srv)
    local r = c:send("WHERE"):expect(250)
    assert.are.equal("2.0.0 " .. prefix .. "/share/luamta/lua/luamta/faults.lua", r.text)
    r = c:send("PATH"):expect(250)
    assert.is_nil(r.text:find(src .. "/lua", 1, true),
      "package.path names the source tree: " .. r.text)
    c:send("QUIT"):expect(221)
    c:close()
  end)

  it("installs a man page that formats without warnings", function()
    local page = prefix .. "/share/man/man8/luamta.8"
    local status, out = sh("groff -man -Tutf8 -ww -z " .. q(page))
    assert.are.equal(0, status, out)
    assert.are.equal("", out)
    status, out = sh("MANWIDTH=80 man -l " .. q(page) .. " | col -b")
    assert.are.equal(0, status, out)
    assert.matches("luamta %- SMTP server", out)
    -- The paths of this install, filled in.
    assert.truthy(out:find(prefix .. "/etc/luamta/policy.lua", 1, true), out)
    assert.is_nil(out:find("@LUAMTA_", 1, true))
    -- Every long option --help lists is documented.
    local _, help = server.run({ "--help" })
    for opt in help:gmatch("%-%-[%a%-]+") do
      assert.truthy(out:find(opt, 1, true), opt .. " is not in the man page")
    end
  end)

  it("installs a unit that systemd-analyze verifies, with this install's paths", function()
    local unit = prefix .. "/lib/systemd/system/luamta.service"
    local text = server.read_file(unit)
    assert.truthy(text:find("ExecStart=" .. prefix .. "/sbin/luamta --script "
      .. prefix .. "/etc/luamta/policy.lua", 1, true), text)
    for _, want in ipairs({ "Type=notify", "NotifyAccess=main", "KillMode=mixed",
      "ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes", "ProtectSystem=strict",
      "ReadWritePaths=/var/spool/luamta", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
      "SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes" }) do
      assert.truthy(text:find("\n" .. want .. "\n", 1, true), "missing: " .. want)
    end
    -- The drain (--shutdown-timeout) fits in TimeoutStopSec.
    local drain = tonumber(text:match("%-%-shutdown%-timeout (%d+)"))
    local stop = tonumber(text:match("\nTimeoutStopSec=(%d+)"))
    assert.is_true(drain ~= nil and stop ~= nil and stop > drain)
    -- verify checks the syntax of every directive (unknown keys and bad
    -- values are warnings on stderr), that ExecStart's binary exists and
    -- that the Documentation= page opens with man: all offline.
    local status, out = sh("cd / && MANPATH=" .. q(prefix .. "/share/man") .. ": "
      .. "SYSTEMD_LOG_COLOR=0 systemd-analyze verify " .. q(unit))
    assert.are.equal(0, status, out)
    assert.are.equal("", out)
    -- And its exposure, as systemd rates the sandbox (0 to 10, lower is
    -- tighter): "OK" is under 4.0; this unit is at 1.6.
    status, out = sh("systemd-analyze security --offline=true --threshold=25 " .. q(unit))
    assert.are.equal(0, status, out)
  end)

  it("keeps an edited policy on a second install", function()
    local policy = prefix .. "/etc/luamta/policy.lua"
    server.write_file(policy, "return {} -- edited\n")
    local status, out = sh("cmake --install " .. q(build_dir()) .. " --prefix " .. q(prefix))
    assert.are.equal(0, status, out)
    assert.are.equal("return {} -- edited\n", server.read_file(policy))
  end)
end)
