-- --metrics: GET /metrics from a master with two workers, after real SMTP
-- sessions (an accepted message, a refused recipient, a hook error, AUTH,
-- TLS); the exact counts, Prometheus's own promtool on the text, a script's
-- counter, a worker killed (nothing goes backwards, the restart counted), a
-- reload, and requests that are not a scrape. Every count is a difference
-- between two scrapes, so the tests do not depend on their order.
local server = require "server"
local smtp = require "smtp"
local socket = require "socket"
local tlskit = require "tlskit"

local POLICY = [[
local rejects = luamta.metrics.counter("app_rejects_total", "Recipients refused, by reason.")
local bytes = luamta.metrics.counter("app_bytes_total", "Bytes of \\ accepted\nmessages.")
return {
  on_rcpt = function(s, rcpt)
    if rcpt:match("^nobody@") then
      rejects:inc({ reason = "x" })
      return 550, "5.1.1 No such user"
    end
    if rcpt:match("^boom@") then error("boom") end
    if rcpt:match("^odd@") then
      rejects:inc({ reason = 'q"uote\\back\nline', peer = s.peer_ip }, 2)
    end
  end,
  on_message = function(s, msg) bytes:inc(nil, msg.size) end,
  on_auth = function(s, mech, user, pass) return user == "alice" and pass == "pw" end,
}
]]

-- One HTTP exchange on a fresh connection: the whole answer, read to the
-- server's close.
local function http(port, request)
  local c = assert(socket.tcp())
  c:settimeout(10 * server.TIMEOUT_SCALE)
  assert(c:connect("127.0.0.1", port))
  assert(c:send(request))
  local data, err, partial = c:receive("*a")
  c:close()
  return data or partial, err
end

local function status_of(answer)
  return tonumber((answer or ""):match("^HTTP/1%.1 (%d%d%d) "))
end

local function scrape(srv)
  local answer = http(srv.metrics.port, "GET /metrics HTTP/1.1\r\nHost: spec\r\n\r\n")
  assert.are.equal(200, status_of(answer), answer)
  local head, body = answer:match("^(.-)\r\n\r\n(.*)$")
  assert.matches("Content%-Type: text/plain; version=0%.0%.4", head)
  assert.are.equal(tonumber(head:match("Content%-Length: (%d+)")), #body)
  return body
end

-- The samples of a scrape: series text (name and labels as written) -> value.
local function samples(body)
  local t = {}
  for line in body:gmatch("[^\n]+") do
    if line:sub(1, 1) ~= "#" then
      local series, value = line:match("^(.-) (%S+)$")
      t[series] = tonumber(value)
    end
  end
  return t
end

local function get(body, series)
  return samples(body)[series] or 0
end

local function promtool(body)
  local dir = server.mkdtemp()
  server.write_file(dir .. "/metrics.txt", body)
  local status, out = server.sh("promtool check metrics < " .. server.quote(dir .. "/metrics.txt"))
  server.rmtree(dir)
  return status, out
end

describe("--metrics with two workers #integration", function()
  local pki, srv, spool
  lazy_setup(function()
    pki = tlskit.pki()
    spool = server.mkdtemp()
    srv = assert(server.start({ script_source = POLICY, workers = 2,
      args = tlskit.server_args(pki, { implicit = true }, { "--metrics", "127.0.0.1:0",
        "--auth-plaintext", "--spool", spool .. "/spool" }) }))
    assert.is_table(srv.metrics)
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
    server.rmtree(spool)
  end)

  it("counts a session's message, refusals and hook error exactly", function()
    local before = scrape(srv)
    local c = smtp.session(srv)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<nobody@spec.test>"):expect(550, "5.1.1")
    c:send("RCPT TO:<boom@spec.test>"):expect(451, "4.3.0")
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: m\r\n\r\nhello\r\n.\r\n"):expect(250)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RSET"):expect(250)
    c:send("QUIT"):expect(221)
    c:close()
    local after = server.wait_for("the session's end", function()
      local body = scrape(srv)
      return get(body, "luamta_connections_current") == 0 and body
    end)
    local function delta(series) return get(after, series) - get(before, series) end
    assert.are.equal(1, delta("luamta_connections_total"))
    assert.are.equal(1, delta('luamta_sessions_total{result="quit"}'))
    assert.are.equal(1, delta('luamta_messages_total{result="accepted",stage="policy"}'))
    assert.are.equal(1, delta('luamta_transactions_total{result="accepted"}'))
    assert.are.equal(1, delta('luamta_transactions_total{result="abandoned"}'))
    assert.are.equal(3, delta('luamta_hook_runs_total{hook="on_rcpt"}'))
    assert.are.equal(1, delta('luamta_hook_errors_total{hook="on_rcpt"}'))
    assert.are.equal(3, delta('luamta_hook_duration_seconds_count{hook="on_rcpt"}'))
    assert.are.equal(3, delta('luamta_hook_duration_seconds_bucket{hook="on_rcpt",le="+Inf"}'))
    assert.are.equal(1, delta('luamta_hook_runs_total{hook="on_message"}'))
    assert.are.equal(0, delta('luamta_hook_errors_total{hook="on_message"}'))
    assert.are.equal(1, delta('app_rejects_total{reason="x"}'))
    -- msg.size counts our Received: field too: just more than the body.
    assert.is_true(delta("app_bytes_total") > #"Subject: m\r\n\r\nhello\r\n")
    assert.matches('# HELP app_bytes_total Bytes of \\\\ accepted\\nmessages.\n', after, 1, true)
  end)

  it("writes labels a script gives escaped, with an amount", function()
    local before = scrape(srv)
    local c = smtp.session(srv)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<odd@spec.test>"):expect(250)
    c:send("QUIT"):expect(221)
    c:close()
    local series = 'app_rejects_total{peer="127.0.0.1",reason="q\\"uote\\\\back\\nline"}'
    assert.are.equal(2, get(scrape(srv), series) - get(before, series))
  end)

  it("passes promtool check metrics without a complaint", function()
    local body = scrape(srv)
    local status, out = promtool(body)
    assert.are.equal(0, status, out .. "\n--- scrape ---\n" .. body)
    assert.are.equal("", out, body)
  end)

  it("counts AUTH results and TLS handshakes", function()
    local before = scrape(srv)
    local c = smtp.session(srv)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", "wrong")):expect(535)
    c:send("AUTH PLAIN " .. tlskit.plain("alice", "pw")):expect(235)
    c:send("QUIT"):expect(221)
    c:close()
    local r = tlskit.s_client(tlskit.tls_port(srv), { "-quiet" }, "QUIT\n")
    assert.matches("221", r.output)
    local after = scrape(srv)
    local function delta(series) return get(after, series) - get(before, series) end
    assert.are.equal(1, delta('luamta_auth_total{result="failure"}'))
    assert.are.equal(1, delta('luamta_auth_total{result="success"}'))
    assert.are.equal(1, delta('luamta_tls_handshakes_total{result="ok",version="TLSv1.2"}'))
    assert.are.equal(0, delta('luamta_tls_handshakes_total{result="failed",version="none"}'))
  end)

  it("counts a reload and keeps the script's series", function()
    local before = scrape(srv)
    local reloads = srv:count_log("master.reload result=ok")
    srv:signal("HUP")
    assert(srv:wait_log("master.reload result=ok", nil, reloads + 1))
    local after = scrape(srv)
    assert.are.equal(1, get(after, 'luamta_reloads_total{result="ok"}')
      - get(before, 'luamta_reloads_total{result="ok"}'))
    assert.are.equal(get(before, 'app_rejects_total{reason="x"}'),
      get(after, 'app_rejects_total{reason="x"}'))
    assert.is_true(get(after, 'app_rejects_total{reason="x"}') >= 1)
  end)

  it("keeps every counter when a worker is killed, and counts its restart", function()
    local c = smtp.session(srv)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<nobody@spec.test>"):expect(550)
    local before = scrape(srv)
    assert.are.equal(1, get(before, "luamta_connections_current"))
    local _, pids = server.sh("pgrep -P " .. srv.pid)
    local victim = assert(pids:match("%d+"), "no worker of " .. srv.pid)
    local ready = srv:count_log("worker.ready")
    assert(os.execute("kill -KILL " .. victim))
    local after = server.wait_for("the restart", function()
      local body = scrape(srv)
      return get(body, "luamta_worker_restarts_total") > get(before, "luamta_worker_restarts_total")
        and body
    end)
    assert(srv:wait_log("worker.ready", nil, ready + 1))
    c:close()
    assert.are.equal(1, get(after, "luamta_worker_restarts_total")
      - get(before, "luamta_worker_restarts_total"))
    local was = samples(before)
    for series, v in pairs(samples(after)) do
      if not series:match("^luamta_connections_current") and not series:match("^luamta_queue_entries") then
        assert.is_true(v >= (was[series] or 0), series .. " went from " .. tostring(was[series])
          .. " to " .. v)
      end
    end
    for series in pairs(was) do
      assert.is_not_nil(samples(after)[series], series .. " is gone")
    end
    -- The session either died with the worker (its gauge went with it) or
    -- lives on in the other one: never more than one.
    assert.is_true(get(after, "luamta_connections_current") <= 1)
    local d = smtp.session(srv)
    d:message("a@spec.test", { "b@spec.test" }, "Subject: after\r\n\r\nx\r\n"):expect(250)
    d:send("QUIT"):expect(221)
    d:close()
    local final = scrape(srv)
    assert.is_true(get(final, 'luamta_messages_total{result="accepted",stage="policy"}')
      > get(after, 'luamta_messages_total{result="accepted",stage="policy"}'))
  end)

  it("answers 404, 405 and 400 to what is not a scrape, and a slow client stalls nobody", function()
    local port = srv.metrics.port
    assert.are.equal(404, status_of(http(port, "GET /nope HTTP/1.1\r\n\r\n")))
    assert.are.equal(404, status_of(http(port, "GET /metricsx HTTP/1.0\r\n\r\n")))
    local a = http(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert.are.equal(405, status_of(a))
    assert.matches("Allow: GET, HEAD", a)
    assert.are.equal(400, status_of(http(port, "garbage\r\n\r\n")))
    assert.are.equal(400, status_of(http(port, "GET /metrics SMTP/1.0\r\n\r\n")))
    -- A head that fills the buffer without ending: exactly that long,
    -- so that no byte of it is left unread (which would reset the
    -- connection under the answer).
    local long = "GET /metrics HTTP/1.1\r\nX: "
    assert.are.equal(400, status_of(http(port, long .. ("y"):rep(8191 - #long))))
    local h = http(port, "HEAD /metrics HTTP/1.1\r\n\r\n")
    assert.are.equal(200, status_of(h))
    assert.matches("\r\n\r\n$", h)
    -- The query string does not matter.
    assert.are.equal(200, status_of(http(port, "GET /metrics?x=1 HTTP/1.1\r\n\r\n")))
    -- A scraper that sends half a request, and one that sends nothing,
    -- hold nobody up; each keeps only its own connection.
    local slow = assert(socket.tcp())
    slow:settimeout(5)
    assert(slow:connect("127.0.0.1", port))
    assert(slow:send("GET /metr"))
    local mute = assert(socket.tcp())
    assert(mute:connect("127.0.0.1", port))
    finally(function() slow:close(); mute:close() end)
    assert.matches("luamta_connections_total", scrape(srv))
    local c = smtp.session(srv)
    c:send("QUIT"):expect(221)
    c:close()
    -- The slow one gets its answer once its head is whole.
    assert(slow:send("ics HTTP/1.1\r\n\r\n"))
    local answer = slow:receive("*a")
    assert.are.equal(200, status_of(answer))
    -- More idle connections than it serves at once: the oldest go, and a
    -- scrape still gets its answer.
    local idle = {}
    finally(function() for _, s in ipairs(idle) do s:close() end end)
    for i = 1, 70 do
      idle[i] = assert(socket.tcp())
      assert(idle[i]:connect("127.0.0.1", port))
    end
    assert.matches("luamta_connections_total", scrape(srv))
  end)
end)

describe("luamta.metrics.counter #integration", function()
  it("counts nothing and fails nothing without --metrics", function()
    local srv = assert(server.start({ script_source = POLICY }))
    finally(function() srv:stop() end)
    assert.is_nil(srv.metrics)
    local c = smtp.session(srv)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<nobody@spec.test>"):expect(550, "5.1.1")
    c:send("RCPT TO:<odd@spec.test>"):expect(250)
    c:send("QUIT"):expect(221)
    c:close()
  end)

  it("refuses a bad name or label at once", function()
    local dir = server.mkdtemp()
    finally(function() server.rmtree(dir) end)
    for _, case in ipairs({
      { 'luamta.metrics.counter("app-x_total", "h")', "invalid name 'app%-x_total'" },
      { 'luamta.metrics.counter("app_x", "h")', "ending in _total" },
      { 'luamta.metrics.counter("luamta_x_total", "h")', "invalid name" },
      { 'luamta.metrics.counter("app_x_total", "h"):inc({ ["__x"] = "v" })', "invalid label name '__x'" },
      { 'luamta.metrics.counter("app_x_total", "h"):inc({ a = true })', "must be a string or a number" },
      { 'luamta.metrics.counter("app_x_total", "h"):inc(nil, -1)', "must not be negative" },
    }) do
      server.write_file(dir .. "/p.lua", case[1] .. "\nreturn {}\n")
      local code, out = server.run({ "--check", "--script", dir .. "/p.lua" })
      assert.are.equal(1, code, out)
      assert.matches(case[2], out)
    end
  end)

  it("refuses a counter defined again with another help", function()
    local srv, err = server.start({ args = { "--metrics", "127.0.0.1:0" }, script_source = [[
      luamta.metrics.counter("app_twice_total", "One help.")
      luamta.metrics.counter("app_twice_total", "One help.")
      luamta.metrics.counter("app_twice_total", "Another help.")
      return {}
    ]] })
    if srv then srv:stop() end
    assert.is_nil(srv)
    assert.matches("'app_twice_total' already exists with another help", err)
  end)
end)

describe("--metrics and the relay #integration", function()
  -- The destination defers "later@" and refuses "nobody@"; the relaying
  -- server routes everything to it, from the null sender so that no
  -- bounce adds attempts of its own.
  local DEST = [[
return {
  on_rcpt = function(s, rcpt)
    if rcpt:find("^later@") then return 451, "4.7.1 Try again later" end
    if rcpt:find("^nobody@") then return 550, "5.1.1 No such user here" end
  end,
}
]]
  local RELAY = [[
local port = tonumber(os.getenv("DEST_PORT"))
return {
  on_message = function(s, msg) msg:relay{ host = "127.0.0.1", port = port, tls = "none" } end,
}
]]

  it("counts delivery attempts by result and the queue by state", function()
    local dest = assert(server.start({ script_source = DEST, capture = true }))
    finally(function() dest:stop() end)
    local spool = server.mkdtemp()
    finally(function() server.rmtree(spool) end)
    local srv = assert(server.start({ script_source = RELAY,
      env = { DEST_PORT = tostring(dest.port) },
      args = { "--metrics", "127.0.0.1:0", "--spool", spool .. "/spool", "--retry-min", "3600" } }))
    finally(function() srv:stop() end)
    local c = smtp.session(srv)
    c:message("", { "ok@dest.spec.test", "later@dest.spec.test", "nobody@dest.spec.test" },
      "Subject: relayed\r\n\r\nx\r\n"):expect(250)
    c:send("QUIT"):expect(221)
    c:close()
    -- The attempts are counted before the entry is saved: wait for both.
    local body = server.wait_for("the attempts and the saved entry", function()
      local b = scrape(srv)
      return get(b, 'luamta_delivery_attempts_total{result="deferred"}') == 1
        and get(b, 'luamta_queue_entries{state="deferred"}') == 1 and b
    end)
    assert.are.equal(1, get(body, 'luamta_delivery_attempts_total{result="delivered"}'))
    assert.are.equal(1, get(body, 'luamta_delivery_attempts_total{result="bounced"}'))
    assert.are.equal(1, get(body, 'luamta_queue_entries{state="deferred"}'))
    assert.are.equal(0, get(body, 'luamta_queue_entries{state="queued"}'))
    assert.are.equal(0, get(body, 'luamta_queue_entries{state="held"}'))
    local status, out = promtool(body)
    assert.are.equal(0, status, out)
    assert.are.equal("", out)
  end)
end)
