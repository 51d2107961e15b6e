-- spec/integration/options_spec.lua - the command line of the connection
-- limits, the watchdog and --delay-warning (seconds, as the queue's other
-- times): what is accepted, what is refused and how.
-- What the limits do to sessions is limits_spec's business.
local server = require "server"

-- Runs luamta with args and --check: the options are parsed, nothing binds.
local function check(args)
  local all = { "--check" }
  for _, a in ipairs(args) do all[#all + 1] = a end
  local code, out, err = server.run(all, { timeout = 20 })
  return code, out .. err
end

describe("limit and watchdog options #integration", function()
  it("are listed by --help with their defaults", function()
    local code, text = check({ "--help" })
    assert.are.equal(0, code, text)
    for _, s in ipairs({ "--max-conn-rate", "--max-data-memory", "--limit-exempt",
      "--watchdog", "127.0.0.0/8,::1/128", "default 50" }) do
      assert.matches(s, text, 1, true)
    end
  end)

  it("accepts networks, lists, repeats, none and IPv4-mapped IPv6", function()
    for _, args in ipairs({
      { "--limit-exempt", "192.0.2.0/24" },
      { "--limit-exempt", "192.0.2.0/24, 2001:db8::/32", "--limit-exempt", "198.51.100.7" },
      { "--limit-exempt", "none" },
      { "--limit-exempt", "::ffff:192.0.2.0/120" },
      { "--max-conn-rate", "60", "--max-per-ip", "0", "--max-data-memory", "1048576" },
      { "--watchdog", "0" },
      { "--hook-timeout", "2", "--watchdog", "2.5" },
      { "--delay-warning", "0" },
      { "--delay-warning", "14400", "--queue-lifetime", "86400" },
    }) do
      local code, text = check(args)
      assert.are.equal(0, code, table.concat(args, " ") .. ": " .. text)
    end
  end)

  it("refuses a network with host bits, a bad prefix or no address, naming it", function()
    for _, bad in ipairs({ "10.1.2.3/8", "10.0.0.0/33", "2001:db8::/129", "example.org",
      "10.0.0.0/8,", "" }) do
      local code, text = check({ "--limit-exempt", bad })
      assert.are.equal(2, code, bad .. ": " .. text)
      assert.matches("--limit-exempt", text, 1, true)
    end
  end)

  it("refuses out-of-range values", function()
    for _, args in ipairs({
      { "--max-conn-rate", "-1" },
      { "--max-data-memory", "10" },
      { "--max-per-ip", "x" },
      { "--watchdog", "-1" },
      { "--hook-timeout", "5", "--watchdog", "4" },
      { "--delay-warning", "-1" },
      { "--delay-warning", "4h" },
    }) do
      local code, text = check(args)
      assert.are.equal(2, code, table.concat(args, " ") .. ": " .. text)
      assert.matches(args[#args - 1], text, 1, true)
    end
  end)
end)
