-- examples/greylist.lua: the first attempt of a (client IP, sender,
-- recipient) triplet gets 451 4.7.1, a retry before GREYLIST_DELAY is over
-- gets 451 again, a retry after it 250; the table survives a reload and
-- old entries expire. Waits are lower bounds only (the spec sleeps longer
-- than the delay), never upper bounds.
local socket = require "socket"
local server = require "server"
local smtp = require "smtp"

local EXAMPLE = "examples/greylist.lua"
local BODY = "Subject: greylist\r\n\r\nhello\r\n"

-- One finally() for all cleanups (busted keeps only the last one).
local function cleanup() return server.cleanup(finally) end

local function session(srv, opts)
  local c = assert(smtp.connect(srv, opts))
  c:expect(220)
  c:send("EHLO client.spec.test"):expect(250)
  return c
end

-- One attempt of a triplet in its own session: returns the RCPT reply.
local function attempt(srv, sender, rcpt, opts)
  local c = session(srv, opts)
  c:send("MAIL FROM:<" .. sender .. ">"):expect(250)
  local r = c:send("RCPT TO:<" .. rcpt .. ">"):expect({ 250, 451 })
  if r.code == 250 then
    c:send("DATA"):expect(354)
    c:send_raw(BODY .. ".\r\n"):expect(250, "2.0.0")
  end
  c:send("QUIT"):expect(221)
  c:close()
  return r
end

local function greylisted(r)
  assert.are.equal(451, r.code, "expected 451 4.7.1, got " .. r.raw)
  assert.are.equal("4.7.1", r.enhanced)
  assert.matches("Greylisted", r.text, 1, true)
end

local function sleep_past(t0, seconds)
  -- os.time() has whole seconds: one more second makes "more than" sure
  local wait = t0 + seconds + 1.2 - socket.gettime()
  if wait > 0 then socket.sleep(wait) end
end

describe("examples/greylist.lua loading #integration", function()
  it("passes --check, and refuses a bad GREYLIST_DELAY", function()
    local code, out, err = server.run({ "--check", "--script", EXAMPLE })
    assert.are.equal(0, code, out .. err)
    assert.matches("OK", out, 1, true)
    code, out, err = server.run({ "--check", "--script", EXAMPLE },
      { env = { GREYLIST_DELAY = "soon" } })
    assert.are.equal(1, code, out .. err)
    assert.matches("GREYLIST_DELAY must be a number of seconds", out .. err, 1, true)
  end)
end)

describe("examples/greylist.lua #integration", function()
  local DELAY = 2
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = EXAMPLE,
      env = { GREYLIST_DELAY = tostring(DELAY), MAILDIR = "{dir}/Maildir" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("answers 451 first, 451 to a retry too early, 250 to a retry after the delay", function()
    local t0 = socket.gettime()
    greylisted(attempt(srv, "alice@sender.test", "bob@spec.test"))
    greylisted(attempt(srv, "alice@sender.test", "bob@spec.test"))
    -- the same triplet, in another case: still the same triplet
    greylisted(attempt(srv, "ALICE@sender.test", "Bob@spec.test"))
    sleep_past(t0, DELAY)
    local r = attempt(srv, "alice@sender.test", "bob@spec.test")
    assert.are.equal(250, r.code, r.raw)
    assert.are.equal(1, #server.ls(srv.dir .. "/Maildir/new"), "the accepted message was not delivered")
    -- a passed triplet goes through at once from then on
    assert.are.equal(250, attempt(srv, "alice@sender.test", "bob@spec.test").code)
  end)

  it("greylists each triplet on its own: recipient, sender and client IP", function()
    local t0 = socket.gettime()
    greylisted(attempt(srv, "carol@sender.test", "dave@spec.test"))
    sleep_past(t0, DELAY)
    assert.are.equal(250, attempt(srv, "carol@sender.test", "dave@spec.test").code)
    greylisted(attempt(srv, "carol@sender.test", "erin@spec.test"))
    greylisted(attempt(srv, "frank@sender.test", "dave@spec.test"))
    greylisted(attempt(srv, "", "dave@spec.test"))
    greylisted(attempt(srv, "carol@sender.test", "dave@spec.test", { bind = "127.0.0.2" }))
  end)

  it("greylists recipients of one transaction one by one", function()
    local defer = cleanup()
    local t0 = socket.gettime()
    local c = session(srv)
    defer(function() c:close() end)
    c:send("MAIL FROM:<gina@sender.test>"):expect(250)
    greylisted(c:send("RCPT TO:<one@spec.test>"):expect(451))
    c:send("RSET"):expect(250)
    c:close()
    sleep_past(t0, DELAY)
    local d = session(srv)
    defer(function() d:close() end)
    d:send("MAIL FROM:<gina@sender.test>"):expect(250)
    d:send("RCPT TO:<one@spec.test>"):expect(250, "2.1.5")
    greylisted(d:send("RCPT TO:<two@spec.test>"):expect(451))
    d:send("DATA"):expect(354)
    d:send_raw(BODY .. ".\r\n"):expect(250, "2.0.0")
  end)

  it("is seen by Python's smtplib as a refused recipient with 451, then accepted", function()
    local script = [[
import smtplib, sys, time
port, delay = int(sys.argv[1]), float(sys.argv[2])
msg = "Subject: smtplib greylist\r\n\r\nhello\r\n"
def send():
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    try:
        s.sendmail("py@sender.test", ["py@spec.test"], msg)
        print("accepted")
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients["py@spec.test"]
        print("refused", code, text.decode().split(",")[0])
    s.quit()
send()
time.sleep(delay + 1.2)
send()
]]
    local status, out = server.sh("python3 - " .. srv.port .. " " .. DELAY
      .. " <<'PYEOF'\n" .. script .. "\nPYEOF\n")
    assert.are.equal(0, status, out)
    assert.are.equal("refused 451 4.7.1 Greylisted\naccepted\n", out)
  end)
end)

describe("examples/greylist.lua state #integration", function()
  it("keeps the table across a reload (luamta.shared)", function()
    local defer = cleanup()
    local srv = assert(server.start({ policy = EXAMPLE, env = { GREYLIST_DELAY = "1" } }))
    defer(function() srv:stop() end)
    local t0 = socket.gettime()
    greylisted(attempt(srv, "a@sender.test", "pending@spec.test"))
    greylisted(attempt(srv, "a@sender.test", "passed@spec.test"))
    sleep_past(t0, 1)
    assert.are.equal(250, attempt(srv, "a@sender.test", "passed@spec.test").code)
    srv:signal("HUP")
    assert.truthy(srv:wait_log({ "server.reload", "result=ok", "generation=2" }, 20),
      "no reload: " .. srv:log_tail(20))
    -- a pending triplet kept its first-seen time, a passed one stays passed
    assert.are.equal(250, attempt(srv, "a@sender.test", "pending@spec.test").code)
    assert.are.equal(250, attempt(srv, "a@sender.test", "passed@spec.test").code)
    assert.are.equal(2, srv:count_log("greylist.new"), "a triplet was greylisted again")
  end)

  it("forgets a triplet not retried within GREYLIST_RETRY_WINDOW, and sweeps it", function()
    local defer = cleanup()
    local srv = assert(server.start({ policy = EXAMPLE, env = { GREYLIST_DELAY = "0",
      GREYLIST_RETRY_WINDOW = "1", GREYLIST_SWEEP = "0" } }))
    defer(function() srv:stop() end)
    local t0 = socket.gettime()
    greylisted(attempt(srv, "late@sender.test", "x@spec.test"))
    sleep_past(t0, 1)
    -- another triplet's RCPT sweeps the expired entry
    greylisted(attempt(srv, "other@sender.test", "y@spec.test"))
    assert.truthy(srv:wait_log({ "greylist.sweep", "removed=1" }), "no sweep: " .. srv:log_tail(20))
    -- the late retry counts as a first attempt again
    greylisted(attempt(srv, "late@sender.test", "x@spec.test"))
    assert.are.equal(2, srv:count_log({ "greylist.new", "x@spec.test" }))
  end)
end)

describe("examples/greylist.lua with GREYLIST_REDIS #integration", function()
  local redis = require "redis"

  it("shares one greylist between two servers through Redis", function()
    local defer = cleanup()
    local r = assert(redis.start())
    defer(function() r:cleanup() end)
    local env = { GREYLIST_DELAY = "1", GREYLIST_REDIS = r:address() }
    local a = assert(server.start({ policy = EXAMPLE, env = env }))
    defer(function() a:stop() end)
    local b = assert(server.start({ policy = EXAMPLE, env = env }))
    defer(function() b:stop() end)
    local t0 = socket.gettime()
    greylisted(attempt(a, "shared@sender.test", "x@spec.test"))
    -- the same triplet on the other server: still early, not new there
    greylisted(attempt(b, "shared@sender.test", "x@spec.test"))
    assert.are.equal(0, b:count_log("greylist.new"))
    sleep_past(t0, 1)
    assert.are.equal(250, attempt(b, "shared@sender.test", "x@spec.test").code)
    assert.are.equal(1, b:count_log({ "greylist.pass", "x@spec.test" }))
    assert.are.equal(250, attempt(a, "shared@sender.test", "x@spec.test").code)
    -- Redis expires the entry: a pending one within the retry window
    local ttl = tonumber(r:cli("TTL", "greylist:127.0.0.1/shared@sender.test/x@spec.test"))
    assert.truthy(ttl and ttl > 172800, "a passed triplet keeps GREYLIST_MAX_AGE: " .. tostring(ttl))
    greylisted(attempt(a, "other@sender.test", "x@spec.test"))
    ttl = tonumber(r:cli("TTL", "greylist:127.0.0.1/other@sender.test/x@spec.test"))
    assert.truthy(ttl and ttl > 0 and ttl <= 172800, "a new triplet expires: " .. tostring(ttl))
  end)

  it("accepts with a log line when Redis is down (fails open)", function()
    local defer = cleanup()
    local srv = assert(server.start({ policy = EXAMPLE, env = { GREYLIST_DELAY = "1",
      GREYLIST_REDIS = "127.0.0.1:" .. redis.free_port() } }))
    defer(function() srv:stop() end)
    assert.are.equal(250, attempt(srv, "down@sender.test", "x@spec.test").code)
    assert.truthy(srv:wait_log({ "greylist.redis_error", "connection refused", "action=accept" }))
  end)

  it("refuses a malformed GREYLIST_REDIS", function()
    local code, out, err = server.run({ "--check", "--script", EXAMPLE },
      { env = { GREYLIST_REDIS = "nowhere" } })
    assert.are.equal(1, code, out .. err)
    assert.matches("GREYLIST_REDIS must be host:port", out .. err, 1, true)
  end)
end)
