-- luamta.spf against the OpenSPF RFC 7208 test suite (rfc7208-tests.yml,
-- from Debian's python3-spf) served by spec/fixtures/spf_zone_server.py on
-- loopback, every test of it; our own cases (spec/fixtures/spf_extra.yml)
-- compared with pyspf's results on the same server; and s:spf() in a
-- policy that rejects a fail at MAIL (RFC 7372's 5.7.23).
local server = require "server"
local smtp = require "smtp"
local dnskit = require "dns"
local cjson = require "cjson"

local SUITE = "/usr/share/doc/python3-spf/rfc7208-tests.yml.gz"
local EXTRA = server.source_dir() .. "/spec/fixtures/spf_extra.yml"
local PYSPF = server.source_dir() .. "/spec/fixtures/spf_pyspf.py"
local q = server.quote

-- XSPF <ip> <helo> <sender>, each hex ("-" for ""): luamta.spf.check's
-- result and explanation (hex, "-" for nil). on_mail rejects a fail of
-- s:spf(); on_rcpt says what s:spf() gives then, and whether it was kept.
local POLICY = [[
local spf = luamta.spf
local function unhex(h)
  if h == "-" then return "" end
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end
local function hex(s)
  if s == nil or s == "" then return "-" end
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
return {
  verbs = {
    XSPF = function(s, arg)
      local ip, helo, sender = arg:match("^(%S+) (%S+) (%S+)$")
      local r, exp = spf.check { ip = unhex(ip), helo = unhex(helo), sender = unhex(sender),
        timeout = 2 }
      return 250, r .. " " .. hex(exp)
    end,
    -- bad arguments raise; their messages, "|"-separated
    XSPFBAD = function(s)
      local out = {}
      for _, a in ipairs { { ip = "not-an-ip", helo = "h.example", sender = "" },
        { ip = "192.0.2.1", helo = 1, sender = "" }, { ip = "192.0.2.1", helo = "h" },
        { ip = "192.0.2.1", helo = "h", sender = "", timeout = 0 }, "nope" } do
        local ok, err = pcall(spf.check, a)
        out[#out + 1] = ok and "ok" or tostring(err)
      end
      return 250, table.concat(out, "|")
    end,
  },
  on_mail = function(s, path)
    local r, exp = s:spf { timeout = 2 }
    s.vars.spf_calls = (s.vars.spf_calls or 0) + 1
    if r == "fail" then
      return 550, "5.7.23 SPF validation failed" .. (exp and (": " .. exp) or "")
    end
  end,
  on_rcpt = function(s, rcpt)
    local r, exp = s:spf()
    return 250, "2.1.5 spf=" .. r .. " exp=" .. tostring(exp)
  end,
}
]]

local function hex(s)
  if s == "" then return "-" end
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function unhex(h)
  if h == "-" then return nil end
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function check(c, ip, helo, sender)
  c:send("XSPF " .. hex(ip) .. " " .. hex(helo) .. " " .. hex(sender))
  local r = c:expect(250)
  local res, exp = r.text:match("(%l+) (%S+)$")
  return res, unhex(exp)
end

local function read_tests(zone)
  return cjson.decode((assert(server.read_file(zone.tests_file))))
end

-- Runs tests (all of one file) through c, scenario by scenario; returns
-- the failures as lines and the luamta results by test name.
local function run_tests(zone, c, tests)
  local failures, results, scenario = {}, {}, nil
  for _, t in ipairs(tests) do
    if t.scenario ~= scenario then
      scenario = t.scenario
      assert(zone:ask(scenario .. ".scenario.spf-control.invalid"))
    end
    local res, exp = check(c, t.host, t.helo, t.mailfrom)
    results[t.name] = { result = res, explanation = exp }
    local ok = false
    for _, want in ipairs(t.result) do ok = ok or want == res end
    -- the suite's driver names the default explanation "DEFAULT": ours
    -- is none (nil)
    local want_exp = t.explanation
    if want_exp == "DEFAULT" then want_exp = cjson.null end
    if t.explanation ~= nil and t.explanation ~= cjson.null
      and (exp or cjson.null) ~= want_exp then
      ok = false
    end
    if not ok then
      failures[#failures + 1] = string.format("%s: got %s (%s), want %s (%s)", t.name, res,
        tostring(exp), table.concat(t.result, "|"), tostring(t.explanation))
    end
  end
  return failures, results
end

describe("luamta.spf #integration", function()
  local zone, srv, c, tests
  lazy_setup(function()
    zone = dnskit.spf_zone({ SUITE, EXTRA })
    tests = read_tests(zone)
    srv = assert(server.start({ script_source = POLICY,
      args = { "--resolver", "127.0.0.1:" .. zone.port } }))
    c = smtp.session(srv)
  end)
  lazy_teardown(function()
    if c then c:close() end
    if srv then srv:stop() end
    if zone then zone:stop() end
  end)

  it("passes every test of the OpenSPF RFC 7208 suite", function()
    local suite = {}
    for _, t in ipairs(tests) do
      if t.file == "rfc7208-tests.yml.gz" then suite[#suite + 1] = t end
    end
    local failures = run_tests(zone, c, suite)
    print(string.format("rfc7208-tests.yml: %d of %d passed", #suite - #failures, #suite))
    for _, f in ipairs(failures) do print("  " .. f) end
    assert.are.equal(203, #suite)
    assert.are.same({}, failures)
  end)

  it("gives pyspf's results on our own cases, differences named", function()
    local extra = {}
    for _, t in ipairs(tests) do
      if t.file == "spf_extra.yml" then extra[#extra + 1] = t end
    end
    local p = assert(io.popen("/usr/bin/python3 " .. q(PYSPF) .. " " .. zone.port .. " "
      .. q(zone.tests_file) .. " spf_extra.yml"))
    local py = cjson.decode(p:read("*a"))
    p:close()
    local failures, ours = run_tests(zone, c, extra)
    local same, named = 0, 0
    for _, t in ipairs(extra) do
      local want = t.pyspf ~= cjson.null and t.pyspf or ours[t.name].result
      local pexp = py[t.name].explanation
      if pexp == cjson.null then pexp = nil end
      if py[t.name].result ~= want then
        failures[#failures + 1] = string.format("%s: pyspf says %s, we say %s", t.name,
          py[t.name].result, ours[t.name].result)
      elseif ours[t.name].result == "fail" and pexp ~= ours[t.name].explanation then
        failures[#failures + 1] = string.format("%s: pyspf explains %q, we %q", t.name,
          tostring(pexp), tostring(ours[t.name].explanation))
      elseif t.pyspf ~= cjson.null then
        named = named + 1
      else
        same = same + 1
      end
    end
    print(string.format("spf_extra.yml: %d cases, %d as pyspf, %d known differences",
      #extra, same, named))
    for _, f in ipairs(failures) do print("  " .. f) end
    assert.are.same({}, failures)
    assert.are.equal(#extra, same + named)
  end)

  -- The scenario of spf_extra.yml whose zone has local.example.net.
  local function small_site()
    for _, t in ipairs(tests) do
      if t.file == "spf_extra.yml" and t.name == "mx-pass" then
        assert(zone:ask(t.scenario .. ".scenario.spf-control.invalid"))
        return
      end
    end
    error("no small-site scenario")
  end

  local function txt_queries(name)
    local n = 0
    for line in zone:log():gmatch("[^\n]+") do
      if line == name .. " TXT" then n = n + 1 end
    end
    return n
  end

  it("s:spf() rejects a fail at MAIL (5.7.23) and keeps a result for its transaction",
    function()
      small_site()
      local m = smtp.session(srv, "client.spec.test")
      m:send("MAIL FROM:<alice@other.example.net>")
      local r = m:expect(550)
      assert.matches("5.7.23 SPF validation failed: 127.0.0.1 is not other.example.net's",
        r.text, 1, true)
      m:send("MAIL FROM:<bob@local.example.net>"):expect(250)
      m:send("RCPT TO:<x@spec.test>")
      assert.matches("spf=pass exp=nil", m:expect(250).text, 1, true)
      m:send("RCPT TO:<y@spec.test>"):expect(250)
      -- asked once for the whole transaction
      assert.are.equal(1, txt_queries("local.example.net"))
      -- RSET forgets it; the null sender is HELO's identity
      m:send("RSET"):expect(250)
      m:send("MAIL FROM:<bob@local.example.net>"):expect(250)
      assert.are.equal(2, txt_queries("local.example.net"))
      m:send("RSET"):expect(250)
      m:send("EHLO local.example.net"):expect(250)
      m:send("MAIL FROM:<>"):expect(250)
      m:send("RCPT TO:<x@spec.test>")
      assert.matches("spf=pass", m:expect(250).text, 1, true)
      assert.are.equal(3, txt_queries("local.example.net"))
      m:close()
    end)

  it("checks its arguments", function()
    c:send("XSPFBAD")
    local r = c:expect(250)
    assert.are.same({ "luamta.spf.check: invalid IP address 'not-an-ip'",
      "luamta.spf.check: helo must be a string", "luamta.spf.check: sender must be a string",
      "luamta.spf.check: timeout must be above 0 and at most 3600 seconds",
      "bad argument #1 to '?' (table expected, got string)" },
      { r.text:gsub("^2%.0%.0 ", ""):match("^(.-)|(.-)|(.-)|(.-)|(.*)$") })
  end)
end)
