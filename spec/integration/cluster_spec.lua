-- More than one machine, for real: HAProxy in TCP mode with send-proxy-v2
-- in front of two luamta processes (own ports, own spools) that share one
-- redis-server. The policy sees the real client through HAProxy; a
-- triplet greylisted through one node passes on the other after the delay;
-- a per-sender rate limit holds across both; when a node is killed, new
-- sessions go to the other and none fails (HAProxy's health check wants a
-- 220 greeting). The policy is examples/greylist.lua and
-- examples/ratelimit.lua, as an operator would combine them.
local server = require "server"
local smtp = require "smtp"
local redis = require "redis"
local haproxy = require "haproxy"
local socket = require "socket"

local CLIENT = "127.0.0.5" -- the "real" client: HAProxy itself connects from 127.0.0.1

local POLICY = [[
local examples = os.getenv("EXAMPLES")
local greylist = dofile(examples .. "/greylist.lua")
local ratelimit = dofile(examples .. "/ratelimit.lua")
local node = os.getenv("NODE")
return {
  on_mail = function(s, from, params)
    if from:match("^limited@") then
      local code, text = ratelimit.on_mail(s, from, params)
      if code then return code, text .. " node=" .. node end
    end
    return 250, "2.1.0 Ok node=" .. node .. " peer=" .. s.peer_ip
      .. " via=" .. (s.proxy and s.proxy.ip .. " v" .. s.proxy.version or "-")
  end,
  on_rcpt = function(s, rcpt)
    if rcpt:match("^grey") then
      local code, text = greylist.on_rcpt(s, rcpt)
      if code then return code, text .. " node=" .. node end
    end
    return 250, "2.1.5 Ok node=" .. node
  end,
}
]]

describe("two nodes behind HAProxy, sharing Redis #integration", function()
  local r, a, b, h

  local function start_node(name)
    return assert(server.start({ script_source = POLICY,
      args = { "--listen-proxy", "127.0.0.1:0", "--spool", "spool" },
      env = { NODE = name, EXAMPLES = server.source_dir() .. "/examples",
        GREYLIST_REDIS = "127.0.0.1:" .. r.port, GREYLIST_DELAY = "1",
        RATELIMIT_REDIS = "127.0.0.1:" .. r.port, RATELIMIT_MAX = "3",
        RATELIMIT_WINDOW = "600" } }))
  end

  lazy_setup(function()
    r = assert(redis.start())
    a = start_node("a")
    b = start_node("b")
    h = assert(haproxy.start({
      servers = { { name = "a", port = a.listeners[2].port },
        { name = "b", port = b.listeners[2].port } },
      -- Three failed checks before a node is down: one check slowed by a
      -- loaded machine (the sanitizer build) must not take a node out
      -- and break the round robin the tests below count on.
      server_opts = "send-proxy-v2 check inter 300 fall 3 rise 1" }))
    server.wait_for("both nodes up in HAProxy", function()
      return h:server_state("a") == "UP" and h:server_state("b") == "UP"
    end)
  end)
  lazy_teardown(function()
    if h then h:stop() end
    if a then a:stop() end
    if b then b:stop() end
    if r then r:cleanup() end
  end)

  -- One session through HAProxy from CLIENT: MAIL FROM:<from>, and RCPT
  -- TO:<rcpt> when given and the session is on node want (or want is nil).
  -- Returns the node that served it and the replies.
  local function through(from, rcpt, want)
    local c = assert(smtp.connect(h.port, nil, { bind = CLIENT }))
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    local m = c:send("MAIL FROM:<" .. from .. ">"):read_reply()
    local node = m.text:match("node=(%a)")
    local rr
    if rcpt and m.code == 250 and (want == nil or node == want) then
      rr = c:send("RCPT TO:<" .. rcpt .. ">"):read_reply()
    end
    c:send("QUIT"):expect(221)
    c:close()
    return node, m, rr
  end

  -- Sessions until one is served by node want (round robin: at most two).
  local function on_node(want, from, rcpt)
    for _ = 1, 4 do
      local node, m, rr = through(from, rcpt, want)
      if node == want then return m, rr end
    end
    error("no session reached node " .. want)
  end

  it("shows the policy the real client, whichever node serves it", function()
    local seen = {}
    for _ = 1, 4 do
      local node, m = through("someone@spec.test")
      assert.are.equal(250, m.code)
      assert.matches("peer=" .. CLIENT .. " via=127.0.0.1 v2", m.text, 1, true)
      seen[node] = true
    end
    assert.is_true(seen.a and seen.b, "round robin should reach both nodes")
    assert(a:wait_log({ "smtp.connect peer=" .. CLIENT, "proxy=127.0.0.1" }))
    assert(b:wait_log({ "smtp.connect peer=" .. CLIENT, "proxy=127.0.0.1" }))
  end)

  it("greylists a triplet on node a and lets it pass on node b after the delay", function()
    local _, rr = on_node("a", "sender@spec.test", "grey1@spec.test")
    assert.are.equal(451, rr.code, rr.text)
    -- On b at once: the same triplet, seen in Redis, still too early.
    _, rr = on_node("b", "sender@spec.test", "grey1@spec.test")
    assert.are.equal(451, rr.code, rr.text)
    -- More than GREYLIST_DELAY (1 s, counted in whole seconds) later.
    socket.sleep(2.2)
    _, rr = on_node("b", "sender@spec.test", "grey1@spec.test")
    assert.are.equal(250, rr.code, rr.text)
    assert.matches("node=b", rr.text, 1, true)
    assert(a:wait_log({ "greylist.new rcpt=grey1@spec.test" }))
    assert(b:wait_log({ "greylist.pass rcpt=grey1@spec.test" }))
  end)

  it("holds a per-sender rate limit across both nodes", function()
    local served, codes = {}, {}
    for i = 1, 5 do
      local node, m = through("limited@spec.test")
      served[node] = true
      codes[i] = m.code
    end
    assert.are.same({ 250, 250, 250, 451, 451 }, codes)
    assert.is_true(served.a and served.b)
    assert.are.equal("5", r:cli("GET", "ratelimit:limited@spec.test"))
  end)

  it("sends new sessions to the other node when one is killed, and none fails", function()
    a:signal("KILL")
    -- Once it is gone (a session it had accepted just before would die
    -- with it, as on any MTA), but before HAProxy's check has seen it: a
    -- refused connection is redispatched to b; then the check marks a down.
    server.wait_for("node a's port to refuse connections", function()
      local c = socket.tcp()
      c:settimeout(1)
      local ok = c:connect("127.0.0.1", a.listeners[2].port)
      c:close()
      return not ok
    end)
    for _ = 1, 6 do
      local node, m = through("after@spec.test")
      assert.are.equal(250, m.code)
      assert.are.equal("b", node)
    end
    server.wait_for("HAProxy marks node a down", function()
      return (h:server_state("a") or ""):match("DOWN") ~= nil
    end)
    for _ = 1, 4 do
      local node = through("after@spec.test")
      assert.are.equal("b", node)
    end
    -- Killed on purpose: its exit status is not checked.
    a:cleanup()
    a = nil
  end)
end)
