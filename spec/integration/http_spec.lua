-- luamta.http.request: what a hook sends and gets back over HTTP and HTTPS,
-- against spec/fixtures/http_server.py on loopback; that a waiting request
-- does not hold the worker up; keep-alive. The faults (refused, reset,
-- timeouts, sizes, a session gone while its request waits) are in
-- http_faults_spec.lua, which also runs under valgrind.
local server = require "server"
local smtp = require "smtp"
local httpd = require "httpd"
local tlskit = require "tlskit"
local cjson = require "cjson"

local probe = httpd.probe
local POLICY = "spec/fixtures/policies/http_probe.lua"

local function mail(srv)
  local c = smtp.session(srv)
  c:send("MAIL FROM:<a@spec.test>"):expect(250)
  return c
end

describe("luamta.http.request #integration", function()
  local srv, web

  lazy_setup(function()
    web = assert(httpd.start())
    srv = assert(server.start({ policy = POLICY }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if web then web:stop() end
  end)

  it("sends a GET with the script's header fields and returns status, headers and body", function()
    local c = mail(srv)
    finally(function() c:close() end)
    local res, reply = probe(srv, c, "get", ([[
      return luamta.http.request{ url = %q,
        headers = { ["X-A"] = "b", ["X-Num"] = 5, ["X-Empty"] = "" } }
    ]]):format(web.base .. "/echo?q=1"))
    assert.are.equal(250, reply.code)
    local r = res[1]
    assert.are.equal(200, r.status)
    assert.are.equal("application/json", r.headers["content-type"])
    local echo = cjson.decode(r.body)
    assert.are.equal("GET", echo.method)
    assert.are.equal("/echo?q=1", echo.path)
    assert.are.equal("b", echo.headers["x-a"])
    assert.are.equal("5", echo.headers["x-num"])
    assert.are.equal("", echo.headers["x-empty"])
    assert.matches("^luamta/", echo.headers["user-agent"])
    assert.is_nil(echo.headers["expect"])
    assert.are.equal("", echo.body)
  end)

  it("sends bodies with POST (the default with a body), PUT, any token method and GET", function()
    local c = mail(srv)
    finally(function() c:close() end)
    local res = probe(srv, c, "methods", ([[
      local base = %q
      local out = {}
      local function echo(opts)
        opts.url = base .. "/echo"
        local r = assert(luamta.http.request(opts))
        out[#out + 1] = r.body
      end
      echo{ body = "a=1" }
      echo{ method = "PUT", body = "put body", headers = { ["Content-Type"] = "text/plain" } }
      echo{ method = "PROPFIND" }
      echo{ method = "GET", body = "get body" }
      echo{ method = "POST" }
      echo{ body = string.rep("z", 200000) }
      return out
    ]]):format(web.base))
    local e = {}
    for i, body in ipairs(res[1]) do e[i] = cjson.decode(body) end
    assert.are.equal(6, #e)
    assert.are.same({ "POST", "a=1" }, { e[1].method, e[1].body })
    assert.is_nil(e[1].headers["content-type"], "curl's form type was not asked for")
    assert.are.same({ "PUT", "put body", "text/plain" }, { e[2].method, e[2].body,
      e[2].headers["content-type"] })
    assert.are.same({ "PROPFIND", "" }, { e[3].method, e[3].body })
    assert.are.same({ "GET", "get body" }, { e[4].method, e[4].body })
    assert.are.same({ "POST", "", "0" }, { e[5].method, e[5].body, e[5].headers["content-length"] })
    assert.are.equal(200000, #e[6].body)
    assert.is_nil(e[6].headers["expect"], "no 100-continue wait")
  end)

  it("returns 4xx and 5xx answers as answers, not errors", function()
    local c = mail(srv)
    finally(function() c:close() end)
    local res = probe(srv, c, "statuses", ([[
      local base, out = %q, {}
      for _, n in ipairs({ 204, 404, 500, 503 }) do
        local r, err = luamta.http.request{ url = base .. "/status/" .. n }
        out[#out + 1] = r and (r.status .. ":" .. r.body) or err
      end
      return out
    ]]):format(web.base))
    assert.are.same({ "204:", "404:status 404", "500:status 500", "503:status 503" }, res[1])
  end)

  it("lower-cases header names, joins repeated fields and unfolds folded ones", function()
    local c = mail(srv)
    finally(function() c:close() end)
    local res = probe(srv, c, "headers", ([[
      return luamta.http.request{ url = %q }
    ]]):format(web.base .. "/headers"))
    local h = res[1].headers
    assert.are.equal("a=1, b=2", h["set-cookie"])
    assert.are.equal("Yes", h["x-mixed-case"])
    assert.are.equal("one two", h["x-folded"])
    assert.is_nil(h["X-Mixed-Case"])
    assert.are.equal("ok", res[1].body)
  end)

  it("answers HEAD without a body, and follows redirects only when asked", function()
    local c = mail(srv)
    finally(function() c:close() end)
    local res = probe(srv, c, "redirects", ([[
      local base = %q
      local head = assert(luamta.http.request{ method = "HEAD", url = base .. "/status/200" })
      local moved = assert(luamta.http.request{ url = base .. "/redirect" })
      local followed = assert(luamta.http.request{ url = base .. "/redirect", follow = true })
      return { head.status, head.body, head.headers["content-length"] },
        { moved.status, moved.headers.location },
        { followed.status, followed.headers["content-type"] }
    ]]):format(web.base))
    assert.are.same({ 200, "", "10" }, res[1])
    assert.are.same({ 302, "/echo" }, res[2])
    assert.are.same({ 200, "application/json" }, res[3])
  end)

  it("raises on bad arguments", function()
    local c = mail(srv)
    finally(function() c:close() end)
    local res = probe(srv, c, "badargs", ([[
      local base, out = %q, {}
      local cases = {
        "not a table",
        {},
        { url = "file:///etc/passwd" },
        { url = "ftp://127.0.0.1/" },
        { url = "127.0.0.1/no-scheme" },
        { url = base, headers = { ["Bad Name"] = "x" } },
        { url = base, headers = { ["X-A"] = "a\r\nX-Injected: 1" } },
        { url = base, headers = { "positional" } },
        { url = base, method = "GET /x" },
        { url = base, method = "HEAD", body = "x" },
        { url = base, timeout = 0 },
        { url = base, timeout = "5" },
        { url = base, max_body = 1.5 },
        { url = base, follow = 1 },
        { url = base, tiemout = 5 },
      }
      for i, opts in ipairs(cases) do
        local ok, err = pcall(luamta.http.request, opts)
        out[i] = ok and "no error" or err
      end
      return out
    ]]):format(web.base))
    local want = { "table expected", "url is required", "http:// or https://", "http:// or https://",
      "http:// or https://", "bad header name 'Bad Name'", "X-A holds CR, LF or NUL",
      "header names must be strings", "bad method", "HEAD request has no body",
      "timeout must be over 0", "timeout must be a number", "max_body must be an integer",
      "follow must be a boolean", "unknown option 'tiemout'" }
    for i, w in ipairs(want) do
      assert.matches(w, res[1][i], 1, true)
    end
    assert.are.equal(#want, #res[1])
  end)
end)

describe("luamta.http keep-alive #integration", function()
  it("reuses one connection for requests from several sessions", function()
    local web = assert(httpd.start())
    local srv = assert(server.start({ policy = POLICY }))
    local defer = server.cleanup(finally)
    defer(function() web:stop() end)
    defer(function() srv:stop() end)
    for i = 1, 3 do
      local c = mail(srv)
      local res = probe(srv, c, "keep" .. i, ([[
        local r = assert(luamta.http.request{ url = %q })
        local r2 = assert(luamta.http.request{ url = %q })
        return r.status + r2.status
      ]]):format(web.base .. "/status/200", web.base .. "/echo"))
      c:close()
      assert.are.equal(400, res[1])
    end
    local st = web:stats()
    assert.are.equal(6 + 1, st.requests, "six requests, then /stats")
    -- The spec's own /stats request is the second connection.
    assert.are.equal(2, st.connections)
  end)
end)

describe("luamta.http over HTTPS #integration", function()
  local pki, web, srv

  lazy_setup(function()
    pki = tlskit.pki()
    web = assert(httpd.start({ cert = pki.chain, key = pki.server_key }))
    srv = assert(server.start({ policy = POLICY }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if web then web:stop() end
    if pki then pki:cleanup() end
  end)

  it("verifies the server against cafile, and refuses an unknown CA by default", function()
    local c = mail(srv)
    finally(function() c:close() end)
    local res = probe(srv, c, "https", ([[
      local url, ca = %q, %q
      local r1, e1 = luamta.http.request{ url = url, cafile = ca }
      local r2, e2 = luamta.http.request{ url = url }
      local r3, e3 = luamta.http.request{ url = url, verify = false }
      local r4, e4 = luamta.http.request{ url = url, cafile = "/nonexistent/ca.pem" }
      return { r1 and r1.status or e1, r2 and r2.status or e2, r3 and r3.status or e3,
        r4 and r4.status or e4 }
    ]]):format(web.base .. "/status/201", pki.ca_cert))
    assert.are.same({ 201, "certificate verification failed", 201 }, { res[1][1], res[1][2], res[1][3] })
    assert.is_string(res[1][4])
  end)
end)

describe("luamta.http does not block the worker #integration", function()
  it("serves a whole session while 100 others wait on their requests", function()
    local web = assert(httpd.start())
    local srv = assert(server.start({ policy = POLICY }))
    local defer = server.cleanup(finally)
    defer(function() web:stop() end)
    defer(function() srv:stop() end)
    server.write_file(srv.dir .. "/case-slow.lua", ([[
      local r, err = luamta.http.request{ url = %q, timeout = 60 }
      return r, err
    ]]):format(web.base .. "/slow?delay=30"))
    server.write_file(srv.dir .. "/case-fast.lua", ([[
      return luamta.http.request{ url = %q }
    ]]):format(web.base .. "/status/200"))
    local waiting = {}
    defer(function() for _, c in ipairs(waiting) do c:close() end end)
    for i = 1, 100 do
      local c = mail(srv)
      c:send("RCPT TO:<slow@spec.test>")
      waiting[i] = c
    end
    -- Every one of the 100 requests is in the HTTP server at once.
    local st, ok = httpd.wait(web, function(s) return s.waiting == 100 end)
    assert.is_true(ok, "requests waiting: " .. st.waiting)
    -- A whole session goes through meanwhile, with a request of its own.
    local c = mail(srv)
    c:send("RCPT TO:<fast@spec.test>"):expect(250, "2.1.5 status 200")
    c:send("DATA"):expect(354)
    c:send_raw("Subject: x\r\n\r\nhi\r\n.\r\n"):expect(250)
    c:send("QUIT"):expect(221)
    c:close()
    for i, w in ipairs(waiting) do
      assert.is_false(w:has_data(), "session " .. i .. " was answered before its request was")
    end
    assert.are.equal(100, web:stats().waiting)
    assert.are.equal("released", (web:get("/release")))
    for _, w in ipairs(waiting) do
      w:expect(250, "2.1.5 status 200")
    end
  end)
end)
