-- `luamta queue ...` on spools filled by the test-only queue_make
-- ($LUAMTA_QUEUE_MAKE): list (for people and as JSON, valid whatever bytes
-- the addresses and replies hold), show, hold, release, remove, flush,
-- unknown ids, an entry locked by another process (util-linux flock), a
-- corrupt envelope (listed as corrupt, not skipped), options before and
-- after the subcommand, and an empty or missing spool.
local server = require "server"
local cjson = require "cjson"

local q = server.quote
local PYTHON = "/usr/bin/python3" -- Debian's: the PATH one may be another

local function make_bin()
  local b = os.getenv("LUAMTA_QUEUE_MAKE")
  assert(b and b ~= "", "LUAMTA_QUEUE_MAKE is not set (CMake sets it for ctest)")
  return b
end

-- Queues one message with queue_make; args are its options (values
-- %XX-encoded where they hold odd bytes). Returns the new ids.
local function make(spool, msgfile, args)
  local words = { q(make_bin()), "--spool", q(spool), "--msg", q(msgfile) }
  for _, a in ipairs(args) do words[#words + 1] = q(a) end
  local status, out = server.sh(table.concat(words, " "))
  assert.are.equal(0, status, out)
  local ids = {}
  for id in out:gmatch("[^\n]+") do ids[#ids + 1] = id end
  return ids
end

local function queue(args)
  return server.run(args, { timeout = 30 })
end

local function stdout_of(args)
  local _, out = queue(args)
  return out
end

-- Strict JSON and strict UTF-8, by a parser other than ours and cjson.
local function assert_valid_json(text)
  local dir = server.mkdtemp()
  finally(function() server.rmtree(dir) end)
  server.write_file(dir .. "/out.json", text)
  local status, out = server.sh(PYTHON .. " -c " .. q(
    "import json,sys; json.loads(open(sys.argv[1],'rb').read().decode('utf-8','strict'))")
    .. " " .. q(dir .. "/out.json"))
  assert.are.equal(0, status, "not valid JSON: " .. out .. "\n" .. text)
end

local function sorted(t)
  table.sort(t)
  return t
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

describe("luamta queue #integration", function()
  local dir, spool, msgfile

  before_each(function()
    dir = server.mkdtemp()
    spool = dir .. "/spool"
    msgfile = dir .. "/m.eml"
    server.write_file(msgfile, "Subject: test\r\n\r\nhello\r\n")
  end)
  after_each(function() server.rmtree(dir) end)

  it("lists a missing or an empty spool as an empty queue", function()
    local code, out, err = queue({ "queue", "list", "--spool", spool })
    assert.are.equal(0, code, err)
    assert.matches("empty", out)
    code, out, err = queue({ "queue", "list", "--json", "--spool", spool })
    assert.are.equal(0, code, err)
    assert.are.same({}, cjson.decode(out))
    assert.are.equal("[]\n", out)
    os.execute("mkdir " .. q(spool))
    code, out = queue({ "queue", "list", "--spool", spool })
    assert.are.equal(0, code)
    assert.matches("empty", out)
  end)

  it("lists entries for people, with hostile bytes made visible", function()
    local id = make(spool, msgfile, { "--sender", "evil%1B[2J%0Aline@x", "--host", "mx.test",
      "--rcpt", "a@example.net", "--state", "deferred", "--attempts", "3", "--next", "1900000000",
      "--reply", "451%204.7.1%20greylisted%0D%0AFAKE%20LINE",
      "--rcpt", "b@example.net", "--state", "delivered", "--reply", "250%20ok" })[1]
    local code, out, err = queue({ "queue", "list", "--spool", spool })
    assert.are.equal(0, code, err)
    assert.matches(id, out, 1, true)
    assert.matches("<evil\\x1b[2J\\x0aline@x>", out, 1, true)
    assert.matches("deferred%s+<a@example.net>%s+attempts 3, next ", out)
    assert.matches("(451 4.7.1 greylisted\\x0d\\x0aFAKE LINE)", out, 1, true)
    assert.matches("delivered%s+<b@example.net>", out)
    assert.matches("1 entry, 2 recipients", out, 1, true)
    -- No raw control byte reaches the terminal.
    assert.is_nil(out:find("[%z\1-\9\11-\31\127]"))
  end)

  it("lists entries as one JSON array, valid whatever bytes they hold", function()
    local hostile = { "%00", "%01%02%7F", "%22%5C%2F", "%C3%A9%E2%82%AC", "%FF%FE%C0%80",
      "%ED%A0%80", "%F4%90%80%80", "%E2%82", "%0D%0A.%0D%0A" }
    for i, h in ipairs(hostile) do
      make(spool, msgfile, { "--sender", "s" .. h .. "@x", "--rcpt", "r" .. i .. h .. "@y",
        "--state", "deferred", "--reply", "451 " .. h, "--auth-user", "u" .. h,
        "--auth-pass", "SECRET" .. i })
    end
    local ids = make(spool, msgfile, { "--entries", "2", "--socket", "/run/x.sock", "--lmtp",
      "--tls", "none", "--held", "--rcpt", "c@z" })
    local code, out, err = queue({ "queue", "list", "--json", "--spool", spool })
    assert.are.equal(0, code, err)
    assert_valid_json(out)
    assert.is_nil(out:find("SECRET", 1, true))
    local list = cjson.decode(out)
    assert.are.equal(#hostile + 2, #list)
    local by_id = {}
    for _, e in ipairs(list) do by_id[e.id] = e end
    local e = by_id[ids[2]]
    assert.are.equal("", e.sender)
    assert.is_true(e.held)
    assert.are.same({ host = cjson.null, port = 0, socket = "/run/x.sock", lmtp = true,
      tls = "none", auth_user = cjson.null }, e.route)
    assert.are.same({ { address = "c@z", state = "queued", attempts = 0, next_attempt = 0,
      last_reply = cjson.null } }, e.recipients)
    assert.are.equal(#"Subject: test\r\n\r\nhello\r\n", e.size)
    assert.is_true(math.abs(os.time() - e.created) < 3600)
    -- Every field of every entry is there, with its type.
    for _, x in ipairs(list) do
      assert.are.equal("string", type(x.id))
      assert.are.equal("string", type(x.sender))
      assert.are.equal("number", type(x.size))
      assert.are.equal("number", type(x.created))
      assert.are.equal("boolean", type(x.held))
      assert.are.equal("table", type(x.route))
      for _, r in ipairs(x.recipients) do
        assert.are.equal("string", type(r.address))
        assert.are.equal("number", type(r.attempts))
        assert.are.equal("number", type(r.next_attempt))
      end
    end
    -- Valid UTF-8 passes through; invalid bytes become U+FFFD; controls
    -- are escaped.
    local senders = {}
    for _, x in ipairs(list) do senders[x.sender] = true end
    assert.is_true(senders["s\1\2\127@x"])
    assert.is_true(senders["s\"\\/@x"])
    assert.is_true(senders["s\xc3\xa9\xe2\x82\xac@x"])
    assert.is_true(senders["s\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd@x"])
    assert.is_true(senders["s\r\n.\r\n@x"])
  end)

  it("shows one entry, for people or as one JSON object, never the password", function()
    local id = make(spool, msgfile, { "--sender", "s@x", "--host", "smtp.test", "--port", "587",
      "--tls", "require", "--auth-user", "me", "--auth-pass", "SECRET",
      "--rcpt", "r@y", "--state", "bounced", "--attempts", "1",
      "--reply", "550%205.1.1%20no%20such%20user" })[1]
    local code, out, err = queue({ "queue", "show", id, "--spool", spool })
    assert.are.equal(0, code, err)
    assert.matches("route: host smtp.test port 587 tls=require auth=me", out, 1, true)
    assert.matches("bounced%s+<r@y>%s+attempts 1", out)
    assert.matches("(550 5.1.1 no such user)", out, 1, true)
    assert.is_nil(out:find("SECRET", 1, true))
    code, out, err = queue({ "queue", "show", "--json", id, "--spool", spool })
    assert.are.equal(0, code, err)
    assert_valid_json(out)
    assert.is_nil(out:find("SECRET", 1, true))
    local e = cjson.decode(out)
    assert.are.equal(id, e.id)
    assert.are.same({ host = "smtp.test", port = 587, socket = cjson.null, lmtp = false,
      tls = "require", auth_user = "me" }, e.route)
    assert.are.equal("bounced", e.recipients[1].state)
    assert.are.equal("550 5.1.1 no such user", e.recipients[1].last_reply)
  end)

  it("shows DSN's parameters (RET, ENVID; NOTIFY, ORCPT per recipient), as --json has them", function()
    local id = make(spool, msgfile, { "--sender", "s@x", "--ret", "HDRS", "--envid", "QQ+1",
      "--rcpt", "a@y", "--notify", "SUCCESS,FAILURE", "--orcpt", "rfc822;a+b@x",
      "--rcpt", "b@y", "--rcpt", "c@y", "--notify", "NEVER" })[1]
    local code, out, err = queue({ "queue", "show", id, "--spool", spool })
    assert.are.equal(0, code, err)
    assert.matches("\n    dsn: ret HDRS, envid QQ+1\n", out, 1, true)
    assert.matches("<a@y>  attempts 0\n              dsn: notify SUCCESS,FAILURE, orcpt rfc822;a+b@x\n",
      out, 1, true)
    assert.matches("<b@y>  attempts 0\n    queued", out, 1, true) -- none given: no line
    assert.matches("<c@y>  attempts 0\n              dsn: notify NEVER\n", out, 1, true)
    local e = cjson.decode(stdout_of({ "queue", "show", id, "--json", "--spool", spool }))
    assert.are.equal("HDRS", e.ret)
    assert.are.equal("QQ+1", e.envid)
    assert.are.equal("SUCCESS,FAILURE", e.recipients[1].notify)
    assert.are.equal("rfc822;a+b@x", e.recipients[1].orcpt)
    assert.is_nil(e.recipients[2].notify)
    assert.is_nil(e.recipients[2].orcpt)
    assert.are.equal("NEVER", e.recipients[3].notify)
    assert.is_nil(e.recipients[3].orcpt)
    -- An entry without them has no dsn line at all.
    local plain = make(spool, msgfile, { "--sender", "s@x", "--rcpt", "d@y" })[1]
    code, out, err = queue({ "queue", "show", plain, "--spool", spool })
    assert.are.equal(0, code, err)
    assert.is_nil(out:find("dsn:", 1, true), out)
  end)

  it("takes its options before or after the subcommand", function()
    local id = make(spool, msgfile, { "--rcpt", "r@y" })[1]
    for _, args in ipairs({
      { "--spool", spool, "queue", "list", "--json" },
      { "--json", "--spool", spool, "queue", "list" },
      { "queue", "--spool", spool, "list", "--json" },
      { "queue", "list", "--json", "--spool", spool },
      { "queue", "list", "--spool=" .. spool, "--json" },
    }) do
      local code, out, err = queue(args)
      assert.are.equal(0, code, table.concat(args, " ") .. ": " .. err)
      local list = cjson.decode(out)
      assert.are.equal(1, #list, table.concat(args, " "))
      assert.are.equal(id, list[1].id)
    end
  end)

  it("holds and releases an entry durably, and release asks for a retry", function()
    local id = make(spool, msgfile, { "--rcpt", "a@y", "--state", "deferred", "--next",
      "1900000000", "--rcpt", "b@y", "--state", "delivered", "--next", "5" })[1]
    local code, out, err = queue({ "queue", "hold", id, "--spool", spool })
    assert.are.equal(0, code, err)
    assert.matches("held", out)
    local e = cjson.decode(stdout_of({ "queue", "show", id, "--json", "--spool", spool }))
    assert.is_true(e.held)
    assert.are.equal(1900000000, e.recipients[1].next_attempt)
    assert.matches("HELD", stdout_of({ "queue", "list", "--spool", spool }))
    assert.are.same({}, server.ls(spool .. "/flush"))

    code, out, err = queue({ "--spool", spool, "queue", "release", id })
    assert.are.equal(0, code, err)
    assert.matches("released", out)
    e = cjson.decode(stdout_of({ "queue", "show", id, "--json", "--spool", spool }))
    assert.is_false(e.held)
    assert.are.equal(0, e.recipients[1].next_attempt) -- deferred: try now
    assert.are.equal(5, e.recipients[2].next_attempt) -- delivered: untouched
    assert.are.same({ id }, server.ls(spool .. "/flush"))
    -- No temporary file is left behind by the rewrites.
    assert.are.same(sorted({ "flush", id .. ".env", id .. ".msg" }), server.ls(spool))
  end)

  it("removes an entry, and the entries of one message one by one", function()
    local ids = make(spool, msgfile, { "--entries", "2", "--rcpt", "r@y" })
    assert.are.equal(2, #ids)
    local code, out, err = queue({ "queue", "remove", ids[1], "--spool", spool })
    assert.are.equal(0, code, err)
    assert.matches("removed", out)
    assert.is_false(exists(spool .. "/" .. ids[1] .. ".env"))
    assert.is_false(exists(spool .. "/" .. ids[1] .. ".msg"))
    -- The other entry keeps the message it shared.
    assert.is_true(exists(spool .. "/" .. ids[2] .. ".msg"))
    local list = cjson.decode(stdout_of({ "queue", "list", "--json", "--spool", spool }))
    assert.are.equal(1, #list)
    assert.are.equal(ids[2], list[1].id)
    code = queue({ "queue", "remove", ids[1], "--spool", spool })
    assert.are.equal(1, code)
  end)

  it("flush asks the server to retry: all, or one existing entry", function()
    local id = make(spool, msgfile, { "--rcpt", "r@y" })[1]
    local code, _, err = queue({ "queue", "flush", "--spool", spool })
    assert.are.equal(0, code, err)
    assert.are.same({ "all" }, server.ls(spool .. "/flush"))
    code, _, err = queue({ "queue", "flush", id, "--spool", spool })
    assert.are.equal(0, code, err)
    assert.are.same(sorted({ "all", id }), server.ls(spool .. "/flush"))
    code, _, err = queue({ "queue", "flush", "0123456789abcdef", "--spool", spool })
    assert.are.equal(1, code)
    assert.matches("no entry 0123456789abcdef", err, 1, true)
    assert.are.same(sorted({ "all", id }), server.ls(spool .. "/flush"))
  end)

  it("refuses unknown ids and things that are not ids with status 1", function()
    make(spool, msgfile, { "--rcpt", "r@y" })
    for _, cmd in ipairs({ "show", "remove", "hold", "release", "flush" }) do
      for _, id in ipairs({ "0123456789abcdef", "../../etc/passwd", "all" }) do
        if not (cmd == "flush" and id == "all") then
          local code, out, err = queue({ "queue", cmd, id, "--spool", spool })
          assert.are.equal(1, code, cmd .. " " .. id .. ": " .. out .. err)
          assert.matches("no entry", err, 1, true)
        end
      end
    end
    assert.are.equal(1, #cjson.decode(stdout_of({ "queue", "list", "--json", "--spool",
      spool })))
  end)

  it("will not change an entry another process has locked", function()
    local id = make(spool, msgfile, { "--rcpt", "r@y" })[1]
    local msg = spool .. "/" .. id .. ".msg"
    -- flock -o keeps the lock in flock itself (not in the command), so
    -- killing flock's own pid releases it; the command says when it runs.
    local st, out = server.sh("flock -o " .. q(msg) .. " sh -c " .. q("echo $$ > "
      .. q(dir .. "/child") .. "; : > " .. q(dir .. "/locked") .. "; exec sleep 60")
      .. " >/dev/null 2>&1 & echo $! > " .. q(dir .. "/flock"))
    assert.are.equal(0, st, out)
    local function kill_all()
      for _, f in ipairs({ "flock", "child" }) do
        local pid = server.read_file(dir .. "/" .. f)
        if pid and pid:match("^%d+") then os.execute("kill " .. pid:match("^%d+") .. " 2>/dev/null") end
      end
    end
    finally(kill_all)
    for _ = 1, 500 do
      if exists(dir .. "/locked") and exists(dir .. "/child") then break end
      os.execute("sleep 0.02")
    end
    assert.is_true(exists(dir .. "/locked"))
    for _, cmd in ipairs({ "remove", "hold" }) do
      local code, o, err = queue({ "queue", cmd, id, "--spool", spool })
      assert.are.equal(1, code, cmd .. ": " .. o .. err)
      assert.matches("is locked", err, 1, true)
    end
    -- Nothing changed.
    local e = cjson.decode(stdout_of({ "queue", "show", id, "--json", "--spool", spool }))
    assert.is_false(e.held)
    -- Reading does not need the lock.
    assert.are.equal(0, (queue({ "queue", "list", "--spool", spool })))
    -- Once the holder is gone, the same command works (it waits a little
    -- for a lock, so the exit of flock need not be awaited here).
    kill_all()
    local code, o, err = queue({ "queue", "hold", id, "--spool", spool })
    assert.are.equal(0, code, o .. err)
  end)

  it("lists a corrupt envelope as corrupt and lets it be removed", function()
    local good = make(spool, msgfile, { "--rcpt", "r@y" })[1]
    local bad = make(spool, msgfile, { "--rcpt", "s@y" })[1]
    -- A message with one route is one file, its envelope in front.
    local msg = spool .. "/" .. bad .. ".msg"
    local text = server.read_file(msg)
    assert.are.equal("luamta-queue 1\n", text:sub(1, 15))
    server.write_file(msg, "luamta-queue 9\n" .. text:sub(16)) -- a version we never wrote
    local code, out, err = queue({ "queue", "list", "--spool", spool })
    assert.are.equal(0, code, err)
    assert.matches(bad .. "%s+CORRUPT: [^\n]*version", out)
    assert.matches(good, out, 1, true)
    assert.matches("warning: .*" .. bad, err)
    code, out = queue({ "queue", "list", "--json", "--spool", spool })
    assert.are.equal(0, code)
    assert_valid_json(out)
    local list = cjson.decode(out)
    assert.are.equal(2, #list)
    local c = list[1].id == bad and list[1] or list[2]
    assert.are.equal(bad, c.id)
    assert.is_true(c.corrupt)
    assert.matches("version", c.error)
    code, _, err = queue({ "queue", "show", bad, "--spool", spool })
    assert.are.equal(1, code)
    assert.matches("corrupt", err)
    code = queue({ "queue", "hold", bad, "--spool", spool })
    assert.are.equal(1, code)
    code, _, err = queue({ "queue", "remove", bad, "--spool", spool })
    assert.are.equal(0, code, err)
    assert.are.same(sorted({ "flush", good .. ".msg" }), server.ls(spool))
  end)

  it("answers usage errors with status 2", function()
    for _, args in ipairs({
      { "queue" },
      { "queue", "list", "extra" },
      { "queue", "show" },
      { "queue", "hold" },
      { "queue", "frobnicate", "x" },
      { "queue", "list", "--no-such-option" },
      { "queue", "list", "--spool" },
      { "queue", "list", "--spool", "" },
    }) do
      local code, out, err = queue(args)
      assert.are.equal(2, code, table.concat(args, " ") .. ": " .. out .. err)
      assert.matches("luamta", err, 1, true)
    end
    local code, out = queue({ "queue", "--help" })
    assert.are.equal(0, code)
    assert.matches("luamta queue list", out, 1, true)
  end)
end)
