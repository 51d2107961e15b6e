-- Unit specs for the public test kit (lua/luamta/testing.lua) and the
-- capture mode (lua/luamta/capture.lua), without the real binary:
-- capture.wrap runs against fake session, message and luamta tables, and
-- testing.start against a fake binary (a shell script). The integration
-- side is spec/integration/capture_spec.lua.
local testing = require "luamta.testing"
local capture = require "luamta.capture"
local cjson = require "cjson"

local read_file, write_file = testing.read_file, testing.write_file

-- A fake luamta API: disconnect() returns a unique token first, like the
-- core's; append() really appends (or fails when told to).
local TOKEN = setmetatable({}, { __tostring = function() return "DISCONNECT" end })
local REPLY = setmetatable({}, { __tostring = function() return "REPLY" end })

local function fake_api()
  local api = { logs = {} }
  function api.disconnect(...) return TOKEN, ... end
  function api.reply(code, text, opts) return REPLY, code, text, opts end
  function api.append(path, text)
    if api.fail_append then return nil, "No space left on device" end
    local f = assert(io.open(path, "ab"))
    f:write(text)
    f:close()
    api.appends = (api.appends or 0) + 1
    return true
  end
  function api.log(text) api.logs[#api.logs + 1] = text end
  return api
end

local function fake_session()
  return { id = "3f9c0a12d4e6b701", peer_ip = "127.0.0.1", peer_port = 40001,
    local_ip = "127.0.0.1", local_port = 2525, helo = "client.spec.test", esmtp = true,
    mail_params = { SIZE = "30", BODY = "8BITMIME" }, sender = "a@spec.test",
    recipients = { "b@spec.test", "c@spec.test" } }
end

local BODY = "Subject: capture\r\n\r\nhello\r\n"

local function fake_message(qid)
  local msg = { qid = qid or "0A1B2C3D4E5F", sender = "a@spec.test",
    recipients = { "b@spec.test", "c@spec.test" }, data = BODY, size = #BODY }
  function msg:save(path)
    if self.fail_save then return nil, "Permission denied" end
    write_file(path, self.data)
    self.saved = path
    return true
  end
  return msg
end

local function jsonl_lines(dir)
  local out = {}
  for line in (read_file(dir .. "/messages.jsonl") or ""):gmatch("([^\n]*)\n") do
    out[#out + 1] = line
  end
  return out
end

describe("capture.wrap #unit", function()
  local dir, api, saved

  before_each(function()
    dir = testing.mkdtemp()
    api = fake_api()
    saved = package.loaded.luamta
    package.loaded.luamta = api
  end)
  after_each(function()
    package.loaded.luamta = saved
    testing.rmtree(dir)
  end)

  it("creates messages.jsonl at once, so readers always find the file", function()
    capture.wrap({}, dir)
    assert.are.equal("", read_file(dir .. "/messages.jsonl"))
    assert.are.same({}, capture.read(dir))
  end)

  it("stores an accepted message without an original on_message, and returns nothing", function()
    local p = capture.wrap({}, dir)
    local s, msg = fake_session(), fake_message()
    assert.are.equal(0, select("#", p.on_message(s, msg)))
    assert.are.equal(BODY, read_file(dir .. "/0A1B2C3D4E5F.eml"))
    local lines = jsonl_lines(dir)
    assert.are.equal(1, #lines)
    local e = cjson.decode(lines[1])
    assert.are.equal("0A1B2C3D4E5F", e.qid)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", e.time)
    assert.are.equal("3f9c0a12d4e6b701", e.session)
    assert.are.equal("a@spec.test", e.sender)
    assert.are.same({ "b@spec.test", "c@spec.test" }, e.recipients)
    assert.are.same({ SIZE = "30", BODY = "8BITMIME" }, e.mail_params)
    assert.are.equal("127.0.0.1", e.peer_ip)
    assert.are.equal(40001, e.peer_port)
    assert.are.equal(2525, e.local_port)
    assert.are.equal("client.spec.test", e.helo)
    assert.is_true(e.esmtp)
    assert.are.equal(cjson.null, e.tls)   -- present, as JSON null
    assert.are.equal(cjson.null, e.user)
    assert.are.equal(#BODY, e.size)
    assert.are.equal("0A1B2C3D4E5F.eml", e.eml)
    assert.are.same({ code = 250, text = "2.0.0 Ok: queued as 0A1B2C3D4E5F" }, e.reply)
  end)

  it("records TLS and the authenticated user when the session has them", function()
    local p = capture.wrap({}, dir)
    local s = fake_session()
    s.tls = { version = "TLSv1.2", cipher = "TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384" }
    s.user = "alice"
    p.on_message(s, fake_message())
    local e = capture.read(dir)[1]
    assert.are.same(s.tls, e.tls)
    assert.are.equal("alice", e.user)
  end)

  it("keeps every other field of the policy, and leaves the original table alone", function()
    local function on_rcpt() end
    local function on_message() end
    local verbs = { NOW = function() end }
    local policy = { on_rcpt = on_rcpt, on_message = on_message, verbs = verbs, limit = 3 }
    local p = capture.wrap(policy, dir)
    assert.are_not.equal(policy, p)
    assert.are.equal(on_rcpt, p.on_rcpt)
    assert.are.equal(verbs, p.verbs)
    assert.are.equal(3, p.limit)
    assert.are_not.equal(on_message, p.on_message)
    assert.are.equal(on_message, policy.on_message)
  end)

  -- What the original returns -> what the client gets, when it accepts.
  local accepting = {
    { "nothing", {}, "2.0.0 Ok: queued as Q1" },
    { "nil", { nil, n = 1 }, "2.0.0 Ok: queued as Q1" },
    { "true", { true }, "2.0.0 Ok: queued as Q1" },
    { "a 250 without text", { 250 }, "2.0.0 Ok" },
    { "a custom 250", { 250, "Queued here" }, "2.0.0 Queued here" },
    { "a 250 with its own enhanced code", { 250, "2.6.0 Stored" }, "2.6.0 Stored" },
    { "a 251", { 251, "Forwarded" }, "2.0.0 Forwarded", 251 },
    { "a float code with an integer value", { 250.0, "ok" }, "2.0.0 ok" },
    { "a number as text", { 250, 42 }, "2.0.0 42" },
    { "a multi-line reply", { 250, { "2.1.0 first", "second" } }, "2.1.0 first\n2.1.0 second" },
    { "a multi-line reply without codes", { 250, { "first", "2.6.0 second" } },
      "2.0.0 first\n2.6.0 second" },
    { "luamta.disconnect(250, text)", { TOKEN, 250, "Bye" }, "2.0.0 Bye" },
    { "luamta.reply(250, text)", { REPLY, 250, "Paced" }, "2.0.0 Paced" },
    { "luamta.reply(250, lines, { line_delay = 0 })", { REPLY, 250, { "a", "b" }, { line_delay = 0 } },
      "2.0.0 a\n2.0.0 b", 250, { line_delay = 0 } },
  }
  for _, case in ipairs(accepting) do
    local name, ret, text, code, extra = case[1], case[2], case[3], case[4] or 250, case[5]
    it("stores the message when the original accepts with " .. name
      .. ", and returns its values unchanged", function()
      local n = ret.n or #ret
      local p = capture.wrap({ on_message = function() return table.unpack(ret, 1, n) end }, dir)
      local got = table.pack(p.on_message(fake_session(), fake_message("Q1")))
      assert.are.equal(n, got.n)
      for i = 1, n do assert.are.equal(ret[i], got[i]) end
      local list = capture.read(dir)
      assert.are.equal(1, #list)
      local want = { code = code, text = text }
      for k, v in pairs(extra or {}) do want[k] = v end
      assert.are.same(want, list[1].reply)
      assert.are.equal(BODY, list[1].data)
    end)
  end

  -- Returns that do not accept the message (or that the core refuses).
  local refusing = {
    { "false", { false } },
    { "a 550", { 550, "5.7.1 No" } },
    { "a 451", { 451 } },
    { "luamta.disconnect()", { TOKEN } },
    { "luamta.disconnect(421, text)", { TOKEN, 421, "4.7.0 Go away" } },
    { "a 354 (does not fit on_message)", { 354, "go on" } },
    { "a 199", { 199 } },
    { "a code that is not an integer", { 250.5 } },
    { "a string instead of a code", { "250" } },
    { "text with CRLF", { 250, "ok\r\n250 forged" } },
    { "text with a NUL", { 250, "ok\0" } },
    { "text that is not UTF-8", { 250, "caf\xe9" } },
    { "text over 506 bytes", { 250, string.rep("x", 507) } },
    { "an enhanced code of another class", { 250, "5.7.1 Accepted?" } },
    { "an empty list of lines", { 250, {} } },
    { "a list with a table in it", { 250, { "a", {} } } },
    { "luamta.reply(550, text)", { REPLY, 550, "5.1.1 No" } },
    { "luamta.reply with options that are not a table", { REPLY, 250, "x", 3 } },
    { "luamta.reply with a negative line_delay", { REPLY, 250, "x", { line_delay = -1 } } },
    { "luamta.reply with drop_after over 64", { REPLY, 250, "x", { drop_after = 65 } } },
  }
  for _, case in ipairs(refusing) do
    local name, ret = case[1], case[2]
    it("stores nothing when the original returns " .. name .. ", and returns it unchanged",
      function()
        local n = #ret
        local p = capture.wrap({ on_message = function() return table.unpack(ret, 1, n) end },
          dir)
        local got = table.pack(p.on_message(fake_session(), fake_message("Q2")))
        assert.are.equal(n, got.n)
        for i = 1, n do assert.are.equal(ret[i], got[i]) end
        assert.are.same({}, capture.read(dir))
        assert.is_nil(read_file(dir .. "/Q2.eml"))
      end)
  end

  it("lets an error in the original through and stores nothing", function()
    local p = capture.wrap({ on_message = function() error("boom") end }, dir)
    local ok, err = pcall(p.on_message, fake_session(), fake_message())
    assert.is_false(ok)
    assert.matches("boom", err, 1, true)
    assert.are.same({}, capture.read(dir))
  end)

  it("passes the session and a stand-in for the message that forwards fields and methods",
    function()
      local seen = {}
      local p = capture.wrap({ on_message = function(s, msg)
        seen.s, seen.qid, seen.sender = s, msg.qid, msg.sender
        seen.header = msg:header("Subject")
        msg.data = "X-Added: 1\r\n" .. msg.data -- what msg:prepend_header does
      end }, dir)
      local s, msg = fake_session(), fake_message()
      function msg:header(name)
        assert(rawequal(self, msg), "a method must get the real message as self")
        return self.data:match("\n?" .. name .. ": ([^\r]*)")
      end
      p.on_message(s, msg)
      assert.are.equal(s, seen.s)
      assert.are.equal("0A1B2C3D4E5F", seen.qid)
      assert.are.equal("a@spec.test", seen.sender)
      assert.are.equal("capture", seen.header)
      assert.are.equal("X-Added: 1\r\n" .. BODY, capture.read(dir)[1].data)
    end)

  it("stores nothing when a deliverer failed (the core answers 451 whatever the hook says)",
    function()
      for _, how in ipairs({ "deliver_maildir", "deliver_mbox", "print" }) do
        local p = capture.wrap({ on_message = function(_, msg)
          local ok, err = msg[how](msg, "/nowhere")
          assert(ok == nil and err == "disk on fire", "the failure reaches the policy")
          return 250, "accepted anyway"
        end }, dir)
        local msg = fake_message("F")
        msg[how] = function(self)
          assert(rawequal(self, msg), "a deliverer must get the real message as self")
          self.delivery_failed = true -- as the core's deliverers do
          return nil, "disk on fire"
        end
        local code, text = p.on_message(fake_session(), msg)
        assert.are.equal(250, code)
        assert.are.equal("accepted anyway", text)
      end
      assert.are.same({}, capture.read(dir))
    end)

  it("stores the message when a deliverer succeeded", function()
    local p = capture.wrap({ on_message = function(_, msg)
      assert(msg:deliver_maildir("/somewhere"))
    end }, dir)
    local msg = fake_message("G")
    function msg.deliver_maildir() return true end
    p.on_message(fake_session(), msg)
    assert.are.equal("G", capture.read(dir)[1].qid)
  end)

  it("stores nothing when the core flags msg.delivery_failed", function()
    local p = capture.wrap({}, dir)
    local msg = fake_message("H")
    msg.delivery_failed = true
    assert.are.equal(0, select("#", p.on_message(fake_session(), msg)))
    assert.are.same({}, capture.read(dir))
  end)

  it("records the pacing of luamta.reply: the client may see only drop_after lines", function()
    local p = capture.wrap({ on_message = function()
      return REPLY, 250, { "one", "two", "three" }, { drop_after = 1, line_delay = 0.5 }
    end }, dir)
    p.on_message(fake_session(), fake_message("P"))
    local reply = capture.read(dir)[1].reply
    assert.are.same({ code = 250, text = "2.0.0 one\n2.0.0 two\n2.0.0 three", drop_after = 1,
      line_delay = 0.5 }, reply)
  end)

  it("lets the original wait (luamta.sleep yields) inside the wrapper", function()
    local p = capture.wrap({ on_message = function()
      coroutine.yield("sleeping")
      return 250, "after the nap"
    end }, dir)
    local co = coroutine.create(p.on_message)
    local ok, what = coroutine.resume(co, fake_session(), fake_message())
    assert.is_true(ok)
    assert.are.equal("sleeping", what)
    assert.are.same({}, capture.read(dir)) -- nothing stored while it waits
    local ok2, code, text = coroutine.resume(co)
    assert.is_true(ok2)
    assert.are.equal(250, code)
    assert.are.equal("after the nap", text)
    assert.are.equal("2.0.0 after the nap", capture.read(dir)[1].reply.text)
  end)

  it("answers 451 4.3.0 Capture failed and logs when the .eml cannot be saved", function()
    local p = capture.wrap({ on_message = function() return 250, "fine" end }, dir)
    local msg = fake_message("Q3")
    msg.fail_save = true
    local code, text = p.on_message(fake_session(), msg)
    assert.are.equal(451, code)
    assert.are.equal("4.3.0 Capture failed", text)
    assert.are.same({}, capture.read(dir))
    assert.are.equal(1, #api.logs)
    assert.matches("capture.error qid=Q3 error=save Q3.eml: Permission denied", api.logs[1], 1, true)
  end)

  it("answers 451 4.3.0 Capture failed when the JSON line cannot be appended", function()
    api.fail_append = true
    local p = capture.wrap({}, dir)
    local code, text = p.on_message(fake_session(), fake_message("Q4"))
    assert.are.equal(451, code)
    assert.are.equal("4.3.0 Capture failed", text)
    assert.matches("append messages.jsonl: No space left on device", api.logs[1], 1, true)
  end)

  it("answers 451 rather than writing outside the directory for a strange qid", function()
    local p = capture.wrap({}, dir)
    local code = p.on_message(fake_session(), fake_message("../escape"))
    assert.are.equal(451, code)
    assert.is_nil(read_file(dir .. "/../escape.eml"))
  end)

  it("appends one line per message, in order, each with its own .eml", function()
    local p = capture.wrap({}, dir)
    for i = 1, 3 do
      local msg = fake_message("Q" .. i)
      msg.data = "Subject: " .. i .. "\r\n\r\n" .. i .. "\r\n"
      p.on_message(fake_session(), msg)
    end
    local list = capture.read(dir)
    assert.are.equal(3, #list)
    for i = 1, 3 do
      assert.are.equal("Q" .. i, list[i].qid)
      assert.are.equal("Subject: " .. i .. "\r\n\r\n" .. i .. "\r\n", list[i].data)
    end
    assert.are.equal(3, api.appends)
  end)

  it("accepts a directory with a trailing slash", function()
    local p = capture.wrap({}, dir .. "/")
    p.on_message(fake_session(), fake_message("Q5"))
    assert.are.equal("Q5", capture.read(dir)[1].qid)
  end)

  it("refuses bad arguments and a directory it cannot write in", function()
    assert.has_error(function() capture.wrap(nil, dir) end,
      "capture.wrap: policy must be a table, got nil")
    assert.has_error(function() capture.wrap({}, "") end,
      "capture.wrap: dir must be a directory path")
    assert.has_error(function() capture.wrap({ on_message = 1 }, dir) end,
      "capture.wrap: policy.on_message must be a function")
    local ok, err = pcall(capture.wrap, {}, dir .. "/missing")
    assert.is_false(ok)
    assert.matches("capture: cannot write in " .. dir .. "/missing", err, 1, true)
  end)
end)

describe("capture.read #unit", function()
  local dir
  before_each(function() dir = testing.mkdtemp() end)
  after_each(function() testing.rmtree(dir) end)

  it("turns JSON nulls into nil and reads each .eml", function()
    write_file(dir .. "/A.eml", "one\r\n")
    write_file(dir .. "/messages.jsonl",
      '{"qid":"A","eml":"A.eml","tls":null,"user":null,"reply":{"code":250,"text":"x"}}\n')
    local list = assert(capture.read(dir))
    assert.are.equal(1, #list)
    assert.is_nil(list[1].tls)
    assert.is_nil(list[1].user)
    assert.are.equal("one\r\n", list[1].data)
    assert.are.equal(250, list[1].reply.code)
    assert.are.equal("integer", math.type(list[1].reply.code)) -- not 250.0
  end)

  it("leaves out a last line still being written", function()
    write_file(dir .. "/A.eml", "one\r\n")
    write_file(dir .. "/messages.jsonl", '{"qid":"A","eml":"A.eml"}\n{"qid":"B","em')
    local list = assert(capture.read(dir))
    assert.are.equal(1, #list)
    assert.are.equal("A", list[1].qid)
  end)

  it("returns nil and an error for a missing file, bad JSON or a missing .eml", function()
    local list, err = capture.read(dir)
    assert.is_nil(list)
    assert.matches("messages.jsonl", err, 1, true)
    write_file(dir .. "/messages.jsonl", "{nope}\n")
    list, err = capture.read(dir)
    assert.is_nil(list)
    assert.matches("messages.jsonl line 1", err, 1, true)
    write_file(dir .. "/messages.jsonl", '{"qid":"C","eml":"C.eml"}\n')
    list, err = capture.read(dir)
    assert.is_nil(list)
    assert.matches("missing " .. dir .. "/C.eml", err, 1, true)
    write_file(dir .. "/messages.jsonl", '{"qid":"C","eml":"../C.eml"}\n')
    list, err = capture.read(dir)
    assert.is_nil(list)
    assert.matches("has no eml file name", err, 1, true)
  end)
end)

describe("testing.hooks_source: inline hook tables #unit", function()
  local function load_policy(src)
    return assert(load(src, "=policy", "t"))()
  end

  it("ships functions as bytecode that behave like the originals", function()
    local src = testing.hooks_source({
      on_rcpt = function(s, rcpt)
        if rcpt:match("^nobody@") then return 550, string.format("5.1.1 <%s> unknown", rcpt) end
      end,
      verbs = { NOW = function() return 250, "now" end },
    })
    assert.matches('load(code, name, "b")', src, 1, true)
    local p = load_policy(src)
    assert.are.same({ 550, "5.1.1 <nobody@x> unknown" }, { p.on_rcpt(nil, "nobody@x") })
    assert.are.equal(0, select("#", p.on_rcpt(nil, "b@x")))
    assert.are.same({ 250, "now" }, { p.verbs.NOW() })
  end)

  it("keeps plain data: strings (any bytes), numbers, booleans, nested tables", function()
    local data = { s = "a\0b\r\n\255\"", i = 42, f = 1.5, neg = -3, t = true, no = false,
      list = { "x", "y", { z = 1 } }, ["not an identifier"] = 1, [7] = "seven" }
    local p = load_policy(testing.hooks_source({ data = data }))
    assert.are.same(data, p.data)
  end)

  it("keeps the spec's file and line in the bytecode, for the server's tracebacks", function()
    local p = load_policy(testing.hooks_source({ on_helo = function() error("nope") end }))
    local ok, err = pcall(p.on_helo)
    assert.is_false(ok)
    assert.matches("testing_spec.lua:%d+: nope", err)
  end)

  it("refuses a function with an upvalue, naming it and the hook", function()
    local limit = 3
    local ok, err = pcall(testing.hooks_source, {
      verbs = { COUNT = function() return 250, tostring(limit) end },
    })
    assert.is_false(ok)
    assert.matches("hooks.verbs.COUNT uses the local variable 'limit'", err, 1, true)
    assert.matches("upvalue", err, 1, true)
  end)

  it("refuses C functions, cyclic tables, odd keys and values, and a non-table", function()
    local cyc = {}
    cyc.self = cyc
    local cases = {
      { { on_quit = print }, "hooks.on_quit is a C function" },
      { { data = cyc }, "hooks.data.self is a cyclic table" },
      { { [true] = 1 }, "hooks has a key of type boolean" },
      { { co = coroutine.create(print) }, "hooks.co is a thread" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(testing.hooks_source, case[1])
      assert.is_false(ok)
      assert.matches(case[2], err, 1, true)
    end
    assert.has_error(function() testing.hooks_source("return {}") end,
      "hooks must be a table of hook functions, got string")
  end)
end)

describe("testing.start and the client against a fake binary #unit", function()
  local fake_dir, fake
  -- Prints its arguments, writes the ready file, stops on TERM.
  local FAKE = [=[#!/bin/sh
ready=
echo "args: $*" >&2
while [ $# -gt 0 ]; do
  case "$1" in --ready-file) ready=$2; shift ;; esac
  shift
done
trap 'exit 0' TERM
printf '127.0.0.1 4242\n' > "$ready.tmp" && mv "$ready.tmp" "$ready"
while :; do sleep 0.05; done
]=]

  lazy_setup(function()
    fake_dir = testing.mkdtemp()
    fake = fake_dir .. "/fake"
    write_file(fake, FAKE)
    assert(os.execute("chmod +x " .. testing.quote(fake)))
  end)
  lazy_teardown(function() testing.rmtree(fake_dir) end)

  it("runs opts.bin, writes opts.hooks as the policy and passes --script", function()
    local srv = assert(testing.start({ bin = fake,
      hooks = { on_rcpt = function() return 550 end } }))
    finally(function() srv:stop() end)
    assert.are.equal(4242, srv.port)
    assert.are.equal("127.0.0.1", srv.host)
    assert.are.equal(srv.dir .. "/policy.lua", srv.script)
    assert.truthy(srv:wait_log("args: --script " .. srv.dir .. "/policy.lua"))
    local p = assert(loadfile(srv.script, "t"))()
    assert.are.equal(550, p.on_rcpt())
  end)

  it("passes --capture with a fresh directory and reads it back with srv:messages()", function()
    local srv = assert(testing.start({ bin = fake, capture = true }))
    finally(function() srv:stop() end)
    assert.are.equal(srv.dir .. "/capture", srv.capture_dir)
    assert.truthy(srv:wait_log("--capture " .. srv.dir .. "/capture --foreground"))
    -- What the server would have written:
    write_file(srv.capture_dir .. "/Q.eml", "hi\r\n")
    write_file(srv.capture_dir .. "/messages.jsonl",
      cjson.encode({ qid = "Q", eml = "Q.eml", sender = "a@x", tls = cjson.null }) .. "\n")
    local m = srv:messages()
    assert.are.equal(1, #m)
    assert.are.equal("a@x", m[1].sender)
    assert.are.equal("hi\r\n", m[1].data)
    assert.is_nil(m[1].tls)
  end)

  it("refuses srv:messages() on a server started without capture", function()
    local srv = assert(testing.start({ bin = fake }))
    finally(function() srv:stop() end)
    assert.has_error(function() srv:messages() end, "this server was started without opts.capture")
  end)

  it("rejects two policy sources and bad hooks before starting anything", function()
    assert.has_error(function()
      testing.start({ bin = fake, policy = "x.lua", hooks = {} })
    end, "start: give one of policy, script_source and hooks")
    local up = 1
    local ok, err = pcall(testing.start, { bin = fake, hooks = { on_helo = function() return up end } })
    assert.is_false(ok)
    assert.matches("start: hooks.on_helo uses the local variable 'up'", err, 1, true)
  end)

  it("stop() is idempotent once the server has exited 0", function()
    local srv = assert(testing.start({ bin = fake }))
    assert.are.equal(0, srv:stop())
    assert.are.equal(0, srv:stop())
  end)

  it("stops and removes a server nobody stopped once it is garbage", function()
    local function start_and_forget()
      local srv = assert(testing.start({ bin = fake }))
      return srv.dir, srv.pid
    end
    local dir, pid = start_and_forget()
    assert.is_string(read_file(dir .. "/ready"))
    collectgarbage()
    collectgarbage()
    assert.is_nil(read_file(dir .. "/ready")) -- directory removed
    assert.is_falsy((os.execute("kill -0 " .. pid .. " 2>/dev/null"))) -- process gone
  end)

  it("connect() refuses something that is neither a server nor a port", function()
    local not_a_server = {}
    assert.has_error(function() testing.connect(not_a_server) end,
      "connect: expected a server or a port number, got " .. tostring(not_a_server))
  end)
end)

describe("testing.unreceived", function()
  it("takes the first Received: field of the header off, with its folded lines", function()
    local rest, field = testing.unreceived("X-A: 1\r\nReceived: from a (b [c])\r\n\tby d;\r\n"
      .. " Mon, 1 Jan 2024\r\nReceived: older\r\nSubject: s\r\n\r\nbody\r\n")
    assert.are.equal("X-A: 1\r\nReceived: older\r\nSubject: s\r\n\r\nbody\r\n", rest)
    assert.are.equal("Received: from a (b [c]) by d; Mon, 1 Jan 2024", field)
    -- LF lines (an mbox), a case-insensitive name, the field last.
    rest, field = testing.unreceived("received: x\n\tY\n")
    assert.are.equal("", rest)
    assert.are.equal("received: x Y", field)
  end)

  it("raises when the header has none (a Received: in the body does not count)", function()
    assert.has_error(function() testing.unreceived("Subject: s\r\n\r\nReceived: x\r\n") end,
      "no Received: field in the message header")
    assert.has_error(function() testing.unreceived("") end)
  end)
end)

describe("testing.wait_for", function()
  it("returns the first true value f gives, after as many calls as it takes", function()
    local calls = 0
    local v = testing.wait_for("the third call", function()
      calls = calls + 1
      return calls == 3 and "done"
    end, 5)
    assert.are.equal("done", v)
    assert.are.equal(3, calls)
  end)

  it("raises, naming what it waited for, once the time is up", function()
    local ok, err = pcall(testing.wait_for, "nothing", function() return false end, 0)
    assert.is_false(ok)
    assert.matches("timed out waiting for nothing", err, 1, true)
  end)
end)
