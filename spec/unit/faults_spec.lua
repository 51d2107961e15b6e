-- Unit specs for lua/luamta/faults.lua: rule validation, matching and the
-- hook table it builds, with fake session/message objects and a fake
-- luamta API that records sleeps and returns recognisable tokens.
local faults = require "luamta.faults"

local DISCONNECT, REPLY = "<disconnect>", "<reply>"

local function fake_api()
  local api = { sleeps = {}, hostname = "mx.fake.test" }
  function api.sleep(n) api.sleeps[#api.sleeps + 1] = n end
  function api.disconnect(...) return DISCONNECT, ... end
  function api.reply(...) return REPLY, ... end
  return api
end

local function fake_session()
  local s = { vars = {}, recipients = {}, logs = {} }
  function s.log(self, text) self.logs[#self.logs + 1] = text end
  return s
end

local function build(rules, base)
  local api = fake_api()
  return faults.policy(rules, base, { luamta = api }), api
end

-- The values a hook returns, as a list (nils kept by count).
local function call(fn, ...)
  return table.pack(fn(...))
end

-- A whole transaction through the hooks (only those present).
local function transaction(h, s, sender, rcpts, msg_extra)
  if h.on_mail then h.on_mail(s, sender, {}) end
  s.sender = sender
  s.recipients = {}
  for _, r in ipairs(rcpts) do
    if h.on_rcpt then h.on_rcpt(s, r, {}) end
    s.recipients[#s.recipients + 1] = r
  end
  local msg = { sender = sender, recipients = rcpts }
  for k, v in pairs(msg_extra or {}) do msg[k] = v end
  local out = h.on_message and call(h.on_message, s, msg) or table.pack()
  s.sender, s.recipients = nil, {}
  return out
end

describe("luamta.faults: validation #unit", function()
  local function fails(rules, pattern)
    local ok, err = pcall(faults.policy, rules, nil, { luamta = fake_api() })
    assert.is_false(ok, "the rules were accepted")
    assert.matches(pattern, err, 1, true)
    return err
  end

  it("rejects what is not a list of tables", function()
    fails("x", "rules must be a list of tables")
    fails({ 42 }, "faults rule 1: must be a table, got number")
    fails({ a = { stage = "rcpt", reply = 550 } }, "rules must be a list (found the key a)")
  end)

  it("names an unknown field, with the rule number and name", function()
    local err = fails({ { stage = "rcpt", reply = 550 },
      { name = "typo", stage = "rcpt", rpely = 550 } }, "faults rule 2 (typo): unknown field 'rpely'")
    assert.matches("known: close, connection, delay", err, 1, true)
  end)

  it("names an unknown stage and lists the stages", function()
    fails({ { stage = "rpct", reply = 550 } },
      "faults rule 1: unknown stage 'rpct' (stages: connect, helo, ehlo, mail, rcpt, data, message, rset, quit)")
    fails({ { stage = {}, reply = 550 } }, "stage is an empty list")
  end)

  it("needs a stage it cannot infer", function()
    fails({ { reply = 550 } }, "no stage")
  end)

  it("infers the stage from the matchers", function()
    local c = faults.compile({
      { rcpt = "x", reply = 550 }, { sender = "x", reply = 550 }, { helo = "x", reply = 550 },
      { message = 2, reply = 451 }, { server_message = 1, reply = 451 },
      { connection = 1, reply = 421 }, { rcpt = "x", stall = 10 },
    })
    assert.are.same({ "rcpt" }, c[1].stages)
    assert.are.same({ "mail" }, c[2].stages)
    assert.are.same({ "helo", "ehlo" }, c[3].stages)
    assert.are.same({ "message" }, c[4].stages)
    assert.are.same({ "message" }, c[5].stages)
    assert.are.same({ "connect" }, c[6].stages)
    assert.are.same({ "message" }, c[7].stages)
  end)

  it("rejects a rule that does nothing", function()
    fails({ { stage = "rcpt", rcpt = "x" } }, "does nothing")
    fails({ { stage = "rcpt", close = false } }, "does nothing")
  end)

  it("rejects invalid patterns, numbers and matchers at stages that cannot see them", function()
    fails({ { rcpt = "^x%", reply = 550 } }, "rcpt pattern '^x%' is not a valid Lua pattern")
    fails({ { rcpt = "^x[a-", reply = 550 } }, "a set '[' is not closed")
    fails({ { rcpt = "^(x@", reply = 550 } }, "a capture '(' is not closed")
    fails({ { sender = "x)", reply = 550 } }, "a ')' closes no capture")
    fails({ { helo = "^x%b(", reply = 550 } }, "'%b' needs two characters")
    assert.has_no.errors(function()
      faults.compile({ { rcpt = { "^[%]x]@", "%b()", "%f[%w]x", "()a", "[]]" }, reply = 550 } })
    end)
    fails({ { rcpt = 5, reply = 550 } }, "rcpt must be a Lua pattern")
    fails({ { stage = "mail", rcpt = "x", reply = 550 } }, "rcpt cannot match at stage mail")
    fails({ { stage = "connect", sender = "x", reply = 550 } }, "sender cannot match at stage connect")
    fails({ { stage = "ehlo", message = 1, reply = 550 } }, "message cannot match at stage ehlo")
    fails({ { message = 0, reply = 451 } }, "message: numbers count from 1")
    fails({ { message = 1.5, reply = 451 } }, "message must be an integer")
    fails({ { stage = "rcpt", times = 0, reply = 451 } }, "times must be an integer >= 1")
    fails({ { stage = "rcpt", when = true, reply = 451 } }, "when must be a function")
  end)

  it("checks replies against the stage, as the core does", function()
    fails({ { stage = "rcpt", reply = 199 } }, "reply code 199 is not in 200-599")
    fails({ { stage = "rcpt", reply = 354 } }, "reply code 354 does not fit stage rcpt")
    fails({ { stage = "data", reply = 250 } }, "reply code 250 does not fit stage data")
    fails({ { stage = "quit", reply = 250 } }, "reply code 250 does not fit stage quit")
    fails({ { stage = "connect", reply = 250 } }, "reply code 250 does not fit stage connect")
    fails({ { stage = "rcpt", reply = "550" } }, "reply must be a code")
    fails({ { stage = "rcpt", reply = { 550, "a\r\nb" } } }, "has CR, LF or NUL")
    fails({ { stage = "rcpt", reply = { 550, {} } } }, "non-empty list of strings")
    fails({ { stage = "rcpt", reply = { 550, "x", extra = 1 } } }, "unexpected field extra")
    assert.has_no.errors(function()
      faults.compile({ { stage = "data", reply = 354 }, { stage = "quit", reply = 421 },
        { stage = "connect", reply = 220 }, { stage = "rcpt", reply = 251 } })
    end)
  end)

  it("checks the actions", function()
    fails({ { stage = "rcpt", delay = -1 } }, "delay must be from 0 to 86400")
    fails({ { stage = "rcpt", delay = "1" } }, "delay must be a number")
    fails({ { stage = "rcpt", stall = 5 } }, "stall is a sleep after the final dot")
    fails({ { stage = "rcpt", close = true } }, "close must be \"after\"")
    fails({ { stage = "rcpt", close = "instead", reply = 550 } }, "sends no reply")
    fails({ { stage = "rcpt", reply = { 250, { "a", "b" } }, line_delay = 3601 } },
      "line_delay must be from 0 to 3600")
    fails({ { stage = "rcpt", reply = { 250, { "a", "b" } }, drop_after = 65 } },
      "drop_after must be from 0 to 64")
    fails({ { stage = "rcpt", reply = { 250, { "a", "b" } }, drop_after = 1.5 } },
      "drop_after must be an integer")
    fails({ { stage = "rcpt", reply = 250, line_delay = 1 } }, "give the text as a list of lines")
    fails({ { stage = "rcpt", line_delay = 1 } }, "line_delay and drop_after shape a reply")
    assert.has_no.errors(function()
      faults.compile({ { stage = "ehlo", line_delay = 1 }, { stage = "ehlo", drop_after = 2 } })
    end)
  end)

  it("raises the error at the caller's line", function()
    local ok, err = pcall(function()
      local hooks = faults.policy({ { stage = "nope", reply = 550 } }, nil, { luamta = fake_api() })
      return hooks
    end)
    assert.is_false(ok)
    assert.matches("faults_spec%.lua:%d+: faults rule 1: unknown stage 'nope'", err)
  end)

  it("needs the luamta API outside the server", function()
    local ok, err = pcall(faults.policy, { { stage = "rcpt", reply = 550 } })
    assert.is_false(ok)
    assert.matches("no luamta API", err, 1, true)
  end)
end)

describe("luamta.faults: standard texts #unit", function()
  it("gives the usual text for a code, by stage", function()
    assert.are.equal("4.5.3 Too many recipients", faults.text(452, "rcpt"))
    assert.are.equal("4.3.1 Insufficient system storage", faults.text(452, "message"))
    assert.are.equal("5.1.1 Mailbox unavailable", faults.text(550, "rcpt"))
    assert.are.equal("5.1.0 Sender address rejected", faults.text(550, "mail"))
    assert.are.equal("4.0.0 Temporary failure (scripted)", faults.text(479, "rcpt"))
    assert.are.equal("5.0.0 Permanent failure (scripted)", faults.text(599))
  end)
end)

describe("luamta.faults: matching #unit", function()
  local function ctx(stage, fields)
    local c = { stage = stage, s = fields.s or fake_session(), state = fields.state or {} }
    for k, v in pairs(fields) do c[k] = v end
    return c
  end

  it("matches recipient patterns in lower case and returns the captures", function()
    local c = faults.compile({ { rcpt = "^rcpt%-(%d%d%d)@", reply = 550 } })
    local r, caps = faults.match(c, ctx("rcpt", { arg = "RCPT-452@Example.TEST" }))
    assert.truthy(r)
    assert.are.same({ "452" }, caps)
    assert.is_nil(faults.match(c, ctx("rcpt", { arg = "xrcpt-452@x" })))
  end)

  it("tries a list of patterns and function matchers", function()
    local c = faults.compile({
      { rcpt = { "^a@", "^b@" }, reply = 550 },
      { rcpt = function(addr) return addr == "Exact@X" end, reply = 551 },
    })
    assert.are.equal(1, faults.match(c, ctx("rcpt", { arg = "b@x" })).index)
    assert.are.equal(2, faults.match(c, ctx("rcpt", { arg = "Exact@X" })).index)
    assert.is_nil(faults.match(c, ctx("rcpt", { arg = "exact@x" })))
  end)

  it("looks at the transaction's recipients at data and message", function()
    local c = faults.compile({ { stage = { "data", "message" }, rcpt = "^bad@", reply = 451 } })
    local s = fake_session()
    s.recipients = { "ok@x", "bad@x" }
    assert.truthy(faults.match(c, ctx("data", { s = s })))
    assert.truthy(faults.match(c, ctx("message", { msg = { recipients = { "BAD@x" } } })))
    assert.is_nil(faults.match(c, ctx("message", { msg = { recipients = { "ok@x" } } })))
  end)

  it("looks at every address of the session at rset and quit", function()
    local c = faults.compile({ { stage = "quit", rcpt = "^q@", reply = 421 },
      { stage = "rset", sender = "^$", reply = 451 } })
    assert.truthy(faults.match(c, ctx("quit", { state = { rcpts = { "a@x", "q@x" } } })))
    assert.is_nil(faults.match(c, ctx("quit", { state = { rcpts = { "a@x" } } })))
    assert.truthy(faults.match(c, ctx("rset", { state = { senders = { "" } } })))
  end)

  it("matches the sender, the null sender and the HELO name", function()
    local c = faults.compile({ { sender = "^$", reply = 550 }, { sender = "^bad@", reply = 551 },
      { stage = "rcpt", helo = "^slow%.", reply = 450 } })
    assert.are.equal(1, faults.match(c, ctx("mail", { arg = "" })).index)
    assert.are.equal(2, faults.match(c, ctx("mail", { arg = "bad@x" })).index)
    local s = fake_session()
    s.helo = "slow.client"
    assert.are.equal(3, faults.match(c, ctx("rcpt", { s = s, arg = "a@x" })).index)
  end)

  it("matches message and connection numbers, lists and functions", function()
    local c = faults.compile({
      { message = { 2, 4 }, reply = 451 },
      { server_message = function(n) return n % 5 == 0 end, reply = 452 },
      { connection = 1, reply = 421 },
    })
    assert.is_nil(faults.match(c, ctx("message", { message = 1, server_message = 1 })))
    assert.are.equal(1, faults.match(c, ctx("message", { message = 4, server_message = 4 })).index)
    assert.are.equal(2, faults.match(c, ctx("message", { message = 3, server_message = 10 })).index)
    assert.are.equal(3, faults.match(c, ctx("connect", { connection = 1 })).index)
    assert.is_nil(faults.match(c, ctx("connect", { connection = 2 })))
  end)

  it("needs every matcher of a rule, takes the first rule that fires, honours when", function()
    local c = faults.compile({
      { rcpt = "^a@", sender = "^s@", reply = 550 },
      { rcpt = "^a@", when = function(x) return x.arg:match("@y$") end, reply = 551 },
      { rcpt = "^a@", reply = 552 },
    })
    local s = fake_session()
    s.sender = "s@x"
    assert.are.equal(1, faults.match(c, ctx("rcpt", { s = s, arg = "a@x" })).index)
    assert.are.equal(2, faults.match(c, ctx("rcpt", { arg = "a@y" })).index)
    assert.are.equal(3, faults.match(c, ctx("rcpt", { arg = "a@x" })).index)
  end)
end)

describe("luamta.faults: the hook table #unit", function()
  it("answers with the code and text, a standard text for a bare code", function()
    local h = build({ { rcpt = "^full@", reply = { 452, "4.2.2 Mailbox full" } },
      { rcpt = "^gone@", reply = 550 } })
    local s = fake_session()
    assert.are.same({ 452, "4.2.2 Mailbox full", n = 2 }, call(h.on_rcpt, s, "full@x", {}))
    assert.are.same({ 550, "5.1.1 Mailbox unavailable", n = 2 }, call(h.on_rcpt, s, "gone@x", {}))
    assert.are.same({ n = 0 }, call(h.on_rcpt, s, "ok@x", {}))
    assert.matches("faults.fire rule=1 stage=rcpt code=452", s.logs[1], 1, true)
  end)

  it("sleeps before the reply, then answers or falls through to the base hook", function()
    local base_called = 0
    local h, api = build({ { rcpt = "^slow@", delay = 2.5, reply = 451 },
      { rcpt = "^late@", delay = 1 } },
      { on_rcpt = function(s, rcpt) base_called = base_called + 1; return 250, "2.1.5 base " .. rcpt end })
    local s = fake_session()
    assert.are.same({ 451, "4.3.0 Local error in processing", n = 2 }, call(h.on_rcpt, s, "slow@x", {}))
    assert.are.same({ 2.5 }, api.sleeps)
    assert.are.equal(0, base_called)
    assert.are.same({ 250, "2.1.5 base late@x", n = 2 }, call(h.on_rcpt, s, "late@x", {}))
    assert.are.same({ 2.5, 1 }, api.sleeps)
    assert.are.same({ 250, "2.1.5 base other@x", n = 2 }, call(h.on_rcpt, s, "other@x", {}))
    assert.are.equal(2, base_called)
  end)

  it("closes after the reply, instead of it, and after any 421", function()
    local h = build({
      { rcpt = "^after@", reply = 554, close = "after" },
      { rcpt = "^bare@", close = "after" },
      { rcpt = "^instead@", close = "instead" },
      { rcpt = "^four21@", reply = 421 },
      { rcpt = "^open421@", reply = 421, close = false },
    })
    local s = fake_session()
    assert.are.same({ DISCONNECT, 554, "5.7.1 Transaction failed", n = 3 }, call(h.on_rcpt, s, "after@x"))
    assert.are.same({ DISCONNECT, 421, faults.text(421), n = 3 }, call(h.on_rcpt, s, "bare@x"))
    assert.are.same({ DISCONNECT, n = 1 }, call(h.on_rcpt, s, "instead@x"))
    assert.are.same({ DISCONNECT, 421, faults.text(421), n = 3 }, call(h.on_rcpt, s, "four21@x"))
    assert.are.same({ 421, faults.text(421), n = 2 }, call(h.on_rcpt, s, "open421@x"))
  end)

  it("paces lines and drops mid-reply through luamta.reply", function()
    local lines = { "one", "two", "three" }
    local h = build({
      { rcpt = "^paced@", reply = { 250, lines }, line_delay = 0.5 },
      { rcpt = "^drop@", reply = { 451, lines }, drop_after = 1 },
      { rcpt = "^pclose@", reply = { 250, lines }, line_delay = 1, close = "after" },
    })
    local s = fake_session()
    assert.are.same({ REPLY, 250, lines, { line_delay = 0.5 }, n = 4 }, call(h.on_rcpt, s, "paced@x"))
    assert.are.same({ REPLY, 451, lines, { drop_after = 1 }, n = 4 }, call(h.on_rcpt, s, "drop@x"))
    assert.are.same({ REPLY, 250, lines, { line_delay = 1, drop_after = 3 }, n = 4 },
      call(h.on_rcpt, s, "pclose@x"))
  end)

  it("paces the server's own EHLO reply when no reply is given", function()
    local h = build({ { stage = "ehlo", helo = "^slow$", line_delay = 2 } })
    local s = fake_session()
    assert.are.same({ REPLY, 250, { "mx.fake.test", "PIPELINING", "HELP" }, { line_delay = 2 }, n = 4 },
      call(h.on_ehlo, s, "slow", { "PIPELINING", "HELP" }))
    assert.are.same({ n = 0 }, call(h.on_ehlo, s, "fast", { "PIPELINING" }))
  end)

  it("stalls after the data, then runs the base on_message", function()
    local delivered
    local h, api = build({ { rcpt = "^stall@", stall = 30 } },
      { on_message = function(s, msg) delivered = msg.sender end })
    local out = transaction(h, fake_session(), "a@x", { "stall@x" })
    assert.are.same({ 30 }, api.sleeps)
    assert.are.same({ n = 0 }, out)
    assert.are.equal("a@x", delivered)
  end)

  it("counts messages per session at MAIL: 1st accepted, 2nd rejected, 3rd accepted", function()
    local h = build({ { message = 2, reply = { 451, "4.3.0 Second message" } } })
    local s = fake_session()
    assert.are.same({ n = 0 }, transaction(h, s, "a@x", { "b@x" }))
    assert.are.same({ 451, "4.3.0 Second message", n = 2 }, transaction(h, s, "a@x", { "b@x" }))
    assert.are.same({ n = 0 }, transaction(h, s, "a@x", { "b@x" }))
    -- a new session counts from 1 again
    local s2 = fake_session()
    assert.are.same({ n = 0 }, transaction(h, s2, "a@x", { "b@x" }))
    assert.are.same({ 451, "4.3.0 Second message", n = 2 }, transaction(h, s2, "a@x", { "b@x" }))
  end)

  it("counts messages and connections over the whole server", function()
    local h = build({ { server_message = 3, reply = 452 }, { connection = 2, reply = 421 } })
    local s1, s2 = fake_session(), fake_session()
    assert.are.same({ n = 0 }, call(h.on_connect, s1))
    assert.are.same({ DISCONNECT, 421, faults.text(421), n = 3 }, call(h.on_connect, s2))
    assert.are.same({ n = 0 }, transaction(h, s1, "a@x", { "b@x" }))
    assert.are.same({ n = 0 }, transaction(h, s2, "a@x", { "b@x" }))
    assert.are.same({ 452, "4.3.1 Insufficient system storage", n = 2 },
      transaction(h, s1, "a@x", { "b@x" }))
  end)

  it("fires a rule at most `times` times", function()
    local h = build({ { rcpt = "^flaky@", times = 2, reply = 450 } })
    local s = fake_session()
    assert.are.equal(450, h.on_rcpt(s, "flaky@x"))
    assert.are.equal(450, h.on_rcpt(s, "flaky@x"))
    assert.is_nil(h.on_rcpt(s, "flaky@x"))
  end)

  it("computes values with functions, from the captures", function()
    local h, api = build({
      { rcpt = "^rcpt%-(%d+)@", reply = function(ctx) return tonumber(ctx.captures[1]) end },
      { rcpt = "^delay%-(%d+)@", delay = function(ctx) return tonumber(ctx.captures[1]) end },
      { rcpt = "^two@", reply = function() return 550, "5.1.1 two values" end },
      { rcpt = "^bad@", reply = function() return 354 end },
      { rcpt = "^baddelay@", delay = function() return "x" end },
    })
    local s = fake_session()
    assert.are.same({ 452, "4.5.3 Too many recipients", n = 2 }, call(h.on_rcpt, s, "rcpt-452@x"))
    assert.is_nil(h.on_rcpt(s, "delay-7@x"))
    assert.are.same({ 7 }, api.sleeps)
    assert.are.same({ 550, "5.1.1 two values", n = 2 }, call(h.on_rcpt, s, "two@x"))
    assert.has_error(function() h.on_rcpt(s, "bad@x") end,
      "faults rule 4: reply code 354 does not fit stage rcpt"
        .. " (4xx/5xx anywhere; 220 at connect, 354 at data, 221 at quit, 2xx elsewhere)")
    assert.has_error(function() h.on_rcpt(s, "baddelay@x") end,
      "faults rule 5: delay returned by a function: delay must be a number or a function")
  end)

  it("keeps the base table's other hooks and verbs, and only adds what it needs", function()
    local verbs = { NOW = function() return 250 end }
    local auth = function() return true end
    local h = build({ { stage = "quit", reply = 421 } }, { verbs = verbs, on_auth = auth })
    assert.are.equal(verbs, h.verbs)
    assert.are.equal(auth, h.on_auth)
    assert.is_function(h.on_quit)
    assert.is_nil(h.on_ehlo)
    assert.is_nil(h.on_message)
  end)

  it("keeps the state of nested policies apart", function()
    local api = fake_api()
    local inner = faults.policy({ { message = 2, reply = 451 } }, nil, { luamta = api })
    local outer = faults.policy({ { message = 3, reply = 452 } }, inner, { luamta = api })
    local s = fake_session()
    assert.are.same({ n = 0 }, transaction(outer, s, "a@x", { "b@x" }))
    assert.are.equal(451, transaction(outer, s, "a@x", { "b@x" })[1])
    assert.are.equal(452, transaction(outer, s, "a@x", { "b@x" })[1])
    assert.are.same({ n = 0 }, transaction(outer, s, "a@x", { "b@x" }))
  end)
end)
