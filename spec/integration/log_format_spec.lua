-- --log-format json: every line the server writes is one JSON object with
-- ts, level, session and event and the text form's fields, read back with
-- cjson; bytes a client sent stay escaped. And --version names the
-- libraries in use.
local server = require "server"
local smtp = require "smtp"
local cjson = require "cjson"

describe("--log-format json #integration", function()
  it("writes one JSON object a line, with the text form's fields", function()
    local srv = assert(server.start({ args = { "--log-format", "json", "--log-level", "debug" } }))
    finally(function() srv:stop() end)
    local c = smtp.session(srv)
    c:send("\1\255\"q\""):expect(500)
    c:message("a@spec.test", { "b@spec.test" }, "Subject: json\r\n\r\nx\r\n"):expect(250)
    c:send("QUIT"):expect(221)
    c:close()
    assert(srv:wait_log({ "smtp.close" }))
    local events, sessions = {}, {}
    for line in srv:log():gmatch("[^\n]+") do
      local ok, o = pcall(cjson.decode, line)
      assert.is_true(ok, "not JSON: " .. line)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", o.ts)
      assert.is_string(o.level)
      assert.is_string(o.event)
      events[#events + 1] = o
      if o.session ~= cjson.null then sessions[o.session] = true end
    end
    local accepted
    for _, o in ipairs(events) do
      if o.event == "smtp.message" and o.result == "accept" then accepted = o end
    end
    assert.truthy(accepted)
    assert.matches("^%x+$", accepted.qid)
    assert.are.equal("1", accepted.rcpts)
    assert.is_true(sessions[accepted.session])
    -- The bytes the client sent, escaped as in the text form: the
    -- quotes are JSON's, \x01 and \xff stay visible as text.
    local bad
    for _, o in ipairs(events) do
      if o.event == "smtp.bad_command" then bad = o end
    end
    assert.truthy(bad, "no smtp.bad_command event")
    assert.are.equal('\\x01\\xff"q"', bad.line)
  end)

  it("is refused for an unknown format", function()
    local code, _, err = server.run({ "--log-format", "xml" })
    assert.are_not.equal(0, code)
    assert.matches("--log-format: expected text or json", err, 1, true)
  end)
end)

describe("--version #integration", function()
  it("names luamta, Lua, libev and mbed TLS with their versions", function()
    local code, out = server.run({ "--version" })
    assert.are.equal(0, code)
    for _, lib in ipairs({ "luamta", "Lua", "libev", "mbed TLS", "c-ares", "libcurl", "hiredis" }) do
      assert.matches("\n?" .. lib:gsub("%-", "%%-") .. " %d+%.%d+", out)
    end
  end)
end)
