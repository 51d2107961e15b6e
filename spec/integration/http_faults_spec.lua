-- luamta.http.request when things go wrong: nothing listening, a reset in
-- the middle of an answer, a server that never answers, answers over the
-- size bounds, a session that ends while its request waits, a server
-- stopped with requests in flight, and a call where Lua cannot wait.
-- Also run under valgrind (CMakeLists.txt's LUAMTA_VALGRIND_SPECS): keep it
-- short, with one server for most cases.
local server = require "server"
local smtp = require "smtp"
local httpd = require "httpd"

local probe = httpd.probe
local POLICY = "spec/fixtures/policies/http_probe.lua"

local function mail(srv)
  local c = smtp.session(srv)
  c:send("MAIL FROM:<a@spec.test>"):expect(250)
  return c
end

describe("luamta.http.request faults #integration", function()
  local srv, web

  lazy_setup(function()
    web = assert(httpd.start())
    srv = assert(server.start({ policy = POLICY }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if web then web:stop() end
  end)

  it("returns nil and a short error for refused, reset, closed and hung servers", function()
    local c = mail(srv)
    finally(function() c:close() end)
    local res, reply = probe(srv, c, "faults", ([[
      local refused, base = %q, %q
      local out = {}
      local function try(opts)
        local r, err = luamta.http.request(opts)
        out[#out + 1] = r and ("status " .. r.status) or err
      end
      try{ url = refused }
      try{ url = base .. "/reset" }
      try{ url = base .. "/close" }
      try{ url = base .. "/hang", timeout = 0.5 }
      -- The connection pool still works after all that.
      try{ url = base .. "/status/200" }
      return out
    ]]):format("http://127.0.0.1:" .. httpd.free_port() .. "/", web.base))
    assert.are.equal(250, reply.code)
    assert.are.same({ "connection refused", "reset", "empty reply", "timeout", "status 200" }, res[1])
  end)

  it("refuses answers over max_body, with or without a length, and over 16 MiB by default", function()
    local c = mail(srv)
    finally(function() c:close() end)
    local res = probe(srv, c, "big", ([[
      local base, out = %q, {}
      local function try(opts)
        local r, err = luamta.http.request(opts)
        out[#out + 1] = r and #r.body or err
      end
      try{ url = base .. "/huge?size=100001", max_body = 100000 }
      try{ url = base .. "/huge?size=100001&chunked=1", max_body = 100000 }
      try{ url = base .. "/huge?size=100000&chunked=1", max_body = 100000 }
      try{ url = base .. "/huge?size=" .. (16 * 1024 * 1024 + 1) }
      try{ url = base .. "/huge?size=0", max_body = 0 }
      try{ url = base .. "/bigheaders?n=100" }
      try{ url = base .. "/bigheaders?n=1000" }
      return out
    ]]):format(web.base))
    assert.are.same({ "response too large", "response too large", 100000, "response too large", 0,
      11, "response headers too large" }, res[1])
  end)

  it("follows no redirect to another protocol than http and https", function()
    local c = mail(srv)
    finally(function() c:close() end)
    local res = probe(srv, c, "proto", ([[
      return luamta.http.request{ url = %q, follow = true }
    ]]):format(web.base .. "/redirect?to=file:///etc/passwd"))
    assert.is_nil(res[1])
    assert.matches("file", res[2], 1, true)
  end)

  it("raises a clear error where Lua cannot wait (table.sort's comparator)", function()
    local c = mail(srv)
    finally(function() c:close() end)
    local res = probe(srv, c, "sort", ([[
      local url = %q
      local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b)
        luamta.http.request{ url = url }
        return a < b
      end)
      local ok2, err2 = pcall(string.gsub, "ab", "%%a", function()
        luamta.http.request{ url = url }
      end)
      return { ok, err, ok2, err2 }
    ]]):format(web.base .. "/status/200"))
    assert.is_false(res[1][1])
    assert.matches("luamta.http.request cannot wait here", res[1][2], 1, true)
    assert.is_false(res[1][3])
    assert.matches("luamta.http.request cannot wait here", res[1][4], 1, true)
  end)

  it("cancels the request of a session that disconnects while its hook waits", function()
    server.write_file(srv.dir .. "/case-wait.lua", ([[
      return luamta.http.request{ url = %q, timeout = 60 }
    ]]):format(web.base .. "/slow?delay=30"))
    local gone, stay = {}, {}
    finally(function()
      for _, c in ipairs(gone) do c:close() end
      for _, c in ipairs(stay) do c:close() end
    end)
    for i = 1, 3 do
      gone[i] = mail(srv)
      gone[i]:send("RCPT TO:<wait@spec.test>")
    end
    for i = 1, 2 do
      stay[i] = mail(srv)
      stay[i]:send("RCPT TO:<wait@spec.test>")
    end
    local st, ok = httpd.wait(web, function(s) return s.waiting == 5 end)
    assert.is_true(ok, "waiting: " .. st.waiting)
    -- A reset, not a close: after a FIN the parked hook would still
    -- finish and answer; a reset ends the session, which cancels the run.
    for _, c in ipairs(gone) do
      assert(c.sock:setoption("linger", { on = true, timeout = 0 }))
      c:close()
    end
    assert.truthy(srv:wait_log({ "http.cancel" }, nil, 3), "three requests cancelled")
    web:get("/release")
    for _, c in ipairs(stay) do c:expect(250, "2.1.5 status 200") end
    assert.are.equal(3, #srv:log_lines({ "http.cancel" }))
    -- The worker goes on serving requests.
    local c = mail(srv)
    local res = probe(srv, c, "after", ([[
      return luamta.http.request{ url = %q }
    ]]):format(web.base .. "/status/200"))
    c:close()
    assert.are.equal(200, res[1].status)
  end)
end)

describe("luamta.http at shutdown #integration", function()
  it("frees the requests still in flight when the server stops", function()
    local web = assert(httpd.start())
    local srv = assert(server.start({ policy = POLICY, args = { "--shutdown-timeout", "0.5" } }))
    local defer = server.cleanup(finally)
    defer(function() web:stop() end)
    local c = mail(srv)
    defer(function() c:close() end)
    server.write_file(srv.dir .. "/case-hang.lua", ([[
      return luamta.http.request{ url = %q, timeout = 60 }
    ]]):format(web.base .. "/slow?delay=30"))
    c:send("RCPT TO:<hang@spec.test>")
    local st, ok = httpd.wait(web, function(s) return s.waiting == 1 end)
    assert.is_true(ok, "waiting: " .. st.waiting)
    srv:terminate()
    assert.matches("http.cancel", srv:log(), 1, true)
    -- Exit status 0 and, under the sanitizers or valgrind, no leak report.
    assert.are.equal(0, srv:stop())
  end)
end)
