-- DKIM: msg:dkim_sign and msg:dkim_verify against other implementations.
-- Keys made with openssl (RSA 2048 and 1024, Ed25519; RSA 512 refused),
-- published in dnsmasq on loopback. What luamta signs is verified by dkimpy
-- (Debian's python3-dkim) and by OpenDKIM's libopendkim, and by luamta;
-- what dkimpy signs (both algorithms, both canonicalizations, l=) is
-- verified by luamta; one changed byte fails; a missing key is permerror,
-- a DNS timeout temperror; a message past the 128 KiB kept in memory signs
-- and verifies. spec/fixtures/dkim_tool.py drives dkimpy and libopendkim.
local server = require "server"
local testing = require "luamta.testing"
local dnskit = require "dns"

local q = server.quote
local TOOL = server.source_dir() .. "/spec/fixtures/dkim_tool.py"
local PY = "/usr/bin/python3"

-- The recipient picks what on_message does:
--   sign-SEL-HC-BC@   msg:dkim_sign with the key file SEL (canonicalization HC/BC)
--   pem-SEL-ALG@      the same with the key's PEM text and algorithm ALG
--   verify@, verify-T@   msg:dkim_verify (timeout T); the results in the reply
local POLICY = [[
local DIR = @DIR@
local function result_text(r)
  local out = {}
  for i, x in ipairs(r) do
    out[i] = table.concat({ x.result, x.domain or "", x.selector or "", x.algorithm or "",
      x.reason }, ":")
  end
  return table.concat(out, "|")
end
return {
  on_message = function(s, msg)
    local rcpt = msg.recipients[1]
    local sel, hc, bc = rcpt:match("^sign%-(%w+)%-(%w+)%-(%w+)@")
    if sel then
      local ok, err = msg:dkim_sign{ domain = "spec.test", selector = sel,
        key = DIR .. "/" .. sel .. ".pem", canonicalization = hc .. "/" .. bc }
      if not ok then return 550, "5.7.0 " .. err end
      return 250, "2.0.0 signed"
    end
    local psel, alg = rcpt:match("^pem%-(%w+)%-([%w-]+)@")
    if psel then
      local f = assert(io.open(DIR .. "/" .. psel .. ".pem"))
      local pem = f:read("a")
      f:close()
      local ok, err = msg:dkim_sign{ domain = "spec.test", selector = psel, key = pem,
        algorithm = alg, headers = { "Subject", "To" } }
      if not ok then return 550, "5.7.0 " .. err end
      return 250, "2.0.0 signed"
    end
    local t = rcpt:match("^verify%-(%d+)@")
    if rcpt:match("^verify") then
      local r = msg:dkim_verify(t and { timeout = tonumber(t) } or nil)
      return 250, "2.0.0 " .. result_text(r)
    end
  end,
}
]]

local function policy(dir)
  return (POLICY:gsub("@DIR@", function() return string.format("%q", dir) end))
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function sh(cmd)
  local status, out = testing.sh(cmd)
  assert(status == 0, cmd .. ": " .. out)
  return out
end

local MSG = "From: Alice <alice@spec.test>\r\nTo: bob@spec.test\r\nSubject: DKIM test\r\n"
  .. "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@spec.test>\r\n\r\n"
  .. "Hello  Bob, \r\n\r\nthis is signed.\r\n\r\n"

describe("DKIM #integration", function()
  local dir, dm, srv

  -- The p= value of a key record for the PEM key file.
  local function public(name)
    local der = "openssl pkey -in " .. q(dir .. "/" .. name .. ".pem") .. " -pubout -outform DER"
    if name == "ed" then der = der .. " | tail -c 32" end
    return (sh(der .. " | base64 -w0"):gsub("%s", ""))
  end

  -- Runs the tool on data; its output lines.
  local function tool(args, data)
    local path = dir .. "/in.eml"
    write(path, data)
    return sh(PY .. " " .. q(TOOL) .. " " .. args .. " <" .. q(path))
  end

  local function dkimpy_verify(data)
    return tool("verify " .. q(dir .. "/keys.json"), data)
  end

  local function opendkim_verify(data)
    return tool("opendkim " .. q(dir .. "/keys.txt"), data)
  end

  local function dkimpy_sign(key, selector, canon, length, data)
    return tool("sign " .. q(dir .. "/" .. key .. ".pem") .. " spec.test " .. selector .. " "
      .. canon .. (length and " length" or ""), data or MSG)
  end

  -- Sends data to rcpt; the reply, checked against code and pat.
  local function send(s, rcpt, data, code, pat)
    local c = assert(testing.connect(s))
    local ok, r = pcall(function()
      c:expect(220)
      c:send("EHLO client.spec.test"):expect(250)
      return c:message("alice@spec.test", rcpt, data):expect(code or 250, pat)
    end)
    c:send("QUIT")
    c:close()
    if not ok then error(r, 0) end
    return r
  end

  local function verify(data, s)
    return (send(s or srv, "verify@spec.test", data).text:gsub("^2%.0%.0 ", ""))
  end

  local function last_data()
    local list = srv:messages()
    return assert(list[#list], "nothing captured").data
  end

  lazy_setup(function()
    dir = testing.mkdtemp()
    local gen = {
      rsa = "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048",
      rsa1024 = "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024",
      rsa512 = "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:512",
      ed = "genpkey -algorithm ed25519",
    }
    for name, how in pairs(gen) do
      sh("openssl " .. how .. " -out " .. q(dir .. "/" .. name .. ".pem"))
    end
    local records = {
      rsa = "v=DKIM1; k=rsa; p=" .. public("rsa"),
      rsa1024 = "v=DKIM1; k=rsa; p=" .. public("rsa1024"),
      ed = "v=DKIM1; k=ed25519; p=" .. public("ed"),
      revoked = "v=DKIM1; k=rsa; p=",
    }
    local args, json, txt = {}, {}, {}
    for sel, rec in pairs(records) do
      local name = sel .. "._domainkey.spec.test"
      -- Character-strings of at most 255 octets: longer records are split.
      local parts = {}
      for i = 1, #rec, 250 do parts[#parts + 1] = rec:sub(i, i + 249) end
      args[#args + 1] = "--txt-record=" .. name .. "," .. table.concat(parts, ",")
      json[#json + 1] = string.format("%q:%q", name, rec)
      txt[#txt + 1] = name .. " " .. rec
    end
    write(dir .. "/keys.json", "{" .. table.concat(json, ",") .. "}")
    write(dir .. "/keys.txt", table.concat(txt, "\n") .. "\n")
    dm = dnskit.dnsmasq(args)
    srv = assert(testing.start({ capture = true, script_source = policy(dir),
      args = { "--resolver", dm:addr() } }))
  end)

  lazy_teardown(function()
    if srv then srv:stop() end
    if dm then dm:stop() end
    if dir then testing.rmtree(dir) end
  end)

  it("signs with RSA 2048 and 1024 and Ed25519 in both canonicalizations; dkimpy, "
    .. "libopendkim and luamta verify", function()
    for _, sel in ipairs({ "rsa", "rsa1024", "ed" }) do
      for _, canon in ipairs({ "relaxed-relaxed", "simple-simple", "relaxed-simple" }) do
        send(srv, "sign-" .. sel .. "-" .. canon .. "@spec.test", MSG, 250, "signed")
        local data = last_data()
        -- On top, above our Received: field, which it does not sign.
        assert.matches("^DKIM%-Signature: v=1; a=[%w-]+; c=" .. canon:gsub("%-", "/"), data)
        assert.matches("\r\nReceived: ", data)
        assert.matches("h=From:From:Subject:Date:To:Message%-ID;", data:gsub("\r\n\t", ""))
        assert.are.equal("pass\n", dkimpy_verify(data))
        assert.are.equal("pass\n", opendkim_verify(data))
        local alg = sel == "ed" and "ed25519-sha256" or "rsa-sha256"
        assert.are.equal("pass:spec.test:" .. sel .. ":" .. alg .. ":good signature", verify(data))
      end
    end
  end)

  it("fails on one changed byte in a signed header field or in the body", function()
    send(srv, "sign-rsa-relaxed-relaxed@spec.test", MSG)
    local data = last_data()
    for _, change in ipairs({ { "DKIM test", "DKIM tesT" }, { "this is signed", "this is sigNed" },
      { "alice@spec.test>", "alicE@spec.test>" } }) do
      local bad = data:gsub(change[1], change[2])
      assert.matches("^fail", dkimpy_verify(bad))
      assert.are.equal("Bad signature\n", opendkim_verify(bad))
      assert.matches("^fail:spec%.test:rsa:rsa%-sha256:", verify(bad))
    end
    -- The From: field is oversigned: one added on top breaks it.
    local added = data:gsub("\r\nFrom: ", "\r\nFrom: mallory@spec.test\r\nFrom: ", 1)
    assert.matches("^fail:.*signature did not verify", verify(added))
    assert.matches("^fail", dkimpy_verify(added))
  end)

  it("verifies what dkimpy signs: RSA and Ed25519, both canonicalizations, l=", function()
    for _, key in ipairs({ "rsa", "ed" }) do
      for _, canon in ipairs({ "relaxed/relaxed", "simple/simple" }) do
        local alg = key == "ed" and "ed25519-sha256" or "rsa-sha256"
        local signed = dkimpy_sign(key, key, canon, false)
        assert.are.equal("pass:spec.test:" .. key .. ":" .. alg .. ":good signature",
          verify(signed))
        local bad = signed:gsub("this is", "this iz")
        assert.matches("^fail:.*body hash did not verify", verify(bad))
        -- l=: bytes added after the signed length are not covered.
        local long = dkimpy_sign(key, key, canon, true)
        assert.matches("l=%d+", long)
        assert.are.equal("pass:spec.test:" .. key .. ":" .. alg .. ":good signature",
          verify(long))
        local r = verify(long .. "Appended by a list.\r\n")
        assert.matches("^pass:spec%.test:" .. key .. ":.*:l= covers %d+ of %d+ body bytes", r)
      end
    end
  end)

  it("answers permerror for a missing or revoked key, a bad signature field", function()
    assert.matches("^permerror:spec%.test:nokey:rsa%-sha256:no key for selector nokey",
      verify(dkimpy_sign("rsa", "nokey", "relaxed/relaxed")))
    assert.matches("^permerror:spec%.test:revoked:rsa%-sha256:key revoked",
      verify(dkimpy_sign("rsa", "revoked", "relaxed/relaxed")))
    assert.are.equal("permerror:spec.test:x::missing or unsupported v=",
      verify("DKIM-Signature: d=spec.test; s=x; a=rsa-sha256\r\n" .. MSG))
    -- Two signatures, each judged on its own, top first.
    local both = dkimpy_sign("ed", "ed", "relaxed/relaxed", false,
      dkimpy_sign("rsa", "nokey", "simple/simple"))
    local r = verify(both)
    assert.matches("^pass:spec%.test:ed:ed25519%-sha256:good signature|permerror:spec%.test:nokey:",
      r)
  end)

  it("answers temperror when the key lookup times out", function()
    local silent = dnskit.responder({ mode = "silent" })
    finally(function() silent:stop() end)
    local s2 = assert(testing.start({ script_source = policy(dir),
      args = { "--resolver", silent:addr() } }))
    finally(function() s2:stop() end)
    local signed = dkimpy_sign("rsa", "rsa", "relaxed/relaxed")
    local r = send(s2, "verify-1@spec.test", signed).text
    assert.matches("^2%.0%.0 temperror:spec%.test:rsa:rsa%-sha256:key lookup: timeout$", r)
  end)

  it("takes a PEM key as text, refuses a 512-bit key and a wrong algorithm", function()
    send(srv, "pem-ed-ed25519-sha256@spec.test", MSG, 250, "signed")
    local data = last_data()
    assert.matches("h=Subject:To:From:From;", data:gsub("\r\n\t", ""))
    assert.are.equal("pass\n", dkimpy_verify(data))
    assert.are.equal("pass\n", opendkim_verify(data))
    local before = #srv:messages()
    send(srv, "sign-rsa512-relaxed-relaxed@spec.test", MSG, 550, "RSA key of 512 bits")
    send(srv, "pem-ed-rsa-sha256@spec.test", MSG, 550, "the key is for ed25519")
    assert.are.equal(before, #srv:messages())
  end)

  it("signs and verifies a message past the 128 KiB kept in memory", function()
    local lines = {}
    for i = 1, 6000 do lines[i] = string.format("line %05d of a long body  \t", i) end
    local big = MSG .. table.concat(lines, "\r\n") .. "\r\n"
    assert.is_true(#big > 128 * 1024)
    send(srv, "sign-rsa-relaxed-simple@spec.test", big, 250, "signed")
    local data = last_data()
    assert.is_true(#data > #big)
    assert.are.equal("pass\n", dkimpy_verify(data))
    assert.are.equal("pass\n", opendkim_verify(data))
    assert.are.equal("pass:spec.test:rsa:rsa-sha256:good signature", verify(data))
    assert.are.equal("pass:spec.test:ed:ed25519-sha256:good signature",
      verify(dkimpy_sign("ed", "ed", "simple/simple", false, big)))
  end)
end)
