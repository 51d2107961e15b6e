-- examples/http-rcpt.lua does what its header says, against
-- spec/fixtures/http_server.py's /lookup: 200 for ok*@, 404 for nobody*@,
-- 503 for anything else, and a wait for slow*@ until /release.
local server = require "server"
local smtp = require "smtp"
local httpd = require "httpd"

local POLICY = "examples/http-rcpt.lua"

describe("examples/http-rcpt.lua #integration", function()
  local web, srv

  lazy_setup(function()
    web = assert(httpd.start())
    srv = assert(server.start({ policy = POLICY, capture = true,
      env = { RCPT_LOOKUP_URL = web.base .. "/lookup" } }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if web then web:stop() end
  end)

  it("passes --check with RCPT_LOOKUP_URL, and refuses to load without it", function()
    local code, out, err = server.run({ "--check", "--script", POLICY },
      { env = { RCPT_LOOKUP_URL = "http://127.0.0.1:1/lookup" } })
    assert.are.equal(0, code, out .. err)
    assert.matches("OK", out, 1, true)
    code, out, err = server.run({ "--check", "--script", POLICY })
    assert.are_not.equal(0, code)
    assert.matches("set RCPT_LOOKUP_URL", out .. err, 1, true)
  end)

  it("accepts on 200, rejects 550 5.1.1 on 404 and defers 451 4.3.0 on other answers", function()
    local c = smtp.session(srv)
    finally(function() c:close() end)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<ok.alice+tag@example.org>"):expect(250)
    c:send("RCPT TO:<nobody@example.org>"):expect(550, "5.1.1")
    c:send("RCPT TO:<broken@example.org>"):expect(451, "4.3.0")
    c:send("DATA"):expect(354)
    c:send_raw("Subject: x\r\n\r\nhi\r\n.\r\n"):expect(250)
    assert.are.equal("broken@example.org", web:stats().last_rcpt)
    local m = srv:messages()[1]
    assert.are.same({ "ok.alice+tag@example.org" }, m.recipients)
    assert.truthy(srv:wait_log({ "script.log", "answered 503" }))
  end)

  it("defers 451 4.3.0 when the directory is down", function()
    local down = assert(server.start({ policy = POLICY,
      env = { RCPT_LOOKUP_URL = "http://127.0.0.1:" .. httpd.free_port() .. "/lookup" } }))
    local defer = server.cleanup(finally)
    defer(function() down:stop() end)
    local c = smtp.session(down)
    defer(function() c:close() end)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<ok@example.org>"):expect(451, "4.3.0")
    assert.truthy(down:wait_log({ "script.log", "connection refused" }))
  end)

  it("sends the address percent-encoded, and other sessions go on while one waits", function()
    local slow = smtp.session(srv)
    finally(function() slow:close() end)
    slow:send("MAIL FROM:<a@spec.test>"):expect(250)
    slow:send("RCPT TO:<slow@example.org>")
    local st, ok = httpd.wait(web, function(s) return s.waiting == 1 end)
    assert.is_true(ok, "waiting: " .. st.waiting)
    local c = smtp.session(srv)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<ok&rcpt=x+y%z@example.org>"):expect(250)
    assert.are.equal("ok&rcpt=x+y%z@example.org", web:stats().last_rcpt)
    c:send("QUIT"):expect(221)
    c:close()
    assert.is_false(slow:has_data())
    web:get("/release")
    slow:expect(250)
  end)
end)
