-- spec/integration/stdio_spec.lua - `luamta --stdio`: one SMTP session over
-- standard input and output with the same policy machinery (like
-- `exim -bh`), and over an inherited socket as under inetd or systemd.
local server = require "server"

local POLICY = server.absolute("spec/fixtures/policies/stdio_echo.lua")

-- Runs luamta --stdio with input on stdin; returns exit status, stdout, stderr.
local function run_stdio(input, extra)
  local dir = server.mkdtemp()
  server.write_file(dir .. "/in", input)
  local cmd = server.quote(server.bin()) .. " --stdio --script " .. server.quote(POLICY)
    .. " " .. (extra or "") .. " <" .. server.quote(dir .. "/in") .. " >"
    .. server.quote(dir .. "/out") .. " 2>" .. server.quote(dir .. "/err")
  local ok, _, code = os.execute(cmd)
  local out, err = server.read_file(dir .. "/out"), server.read_file(dir .. "/err")
  server.rmtree(dir)
  return ok and 0 or code, out, err
end

local function replies(out)
  local codes = {}
  for line in out:gmatch("([^\r\n]*)\r\n") do
    local code, sep = line:match("^(%d%d%d)([ -])")
    assert(code, "not a reply line: " .. line)
    if sep == " " then codes[#codes + 1] = tonumber(code) end
  end
  return codes
end

describe("--stdio #integration", function()
  it("answers a whole session read from a file, in order, hooks and waits included", function()
    local status, out, err = run_stdio(table.concat({
      "HELO file.spec.test", "MAIL FROM:<a@spec.test>", "RCPT TO:<bad@spec.test>",
      "RCPT TO:<slow@spec.test>", "DATA", "Subject: stdio", "", "hello", ".", "QUIT", "" }, "\r\n"))
    assert.are.equal(0, status, err)
    assert.are.same({ 220, 250, 250, 550, 250, 354, 250, 221 }, replies(out))
    assert.truthy(out:find("250 2.0.0 hello file.spec.test from stdio", 1, true), out)
    -- msg:print() goes to stderr: stdout carries only SMTP.
    assert.truthy(err:find("Subject: stdio", 1, true), err)
    assert.falsy(out:find("Subject: stdio", 1, true))
  end)

  it("answers everything read when the input ends without QUIT, then exits 0", function()
    local status, out, err = run_stdio("HELO eof.spec.test\r\nNOOP\r\nRCPT TO:<x@spec.test>\r\n")
    assert.are.equal(0, status, err)
    assert.are.same({ 220, 250, 250, 503 }, replies(out))
    assert.truthy(err:find("smtp.close reason=eof", 1, true), err)
  end)

  it("serves an inherited socket, as under inetd or systemd socket activation", function()
    -- python3 hands one end of a socketpair to luamta as stdin and stdout.
    local script = [==[
import socket, subprocess, sys
a, b = socket.socketpair()
p = subprocess.Popen([sys.argv[1], "--stdio", "--script", sys.argv[2]],
                     stdin=b, stdout=b, stderr=subprocess.DEVNULL)
b.close()
f = a.makefile("rwb")
def reply():
    lines = []
    while True:
        line = f.readline().decode()
        lines.append(line.strip())
        if line[3:4] == " ":
            return lines
print(reply()[-1])
f.write(b"HELO sock.spec.test\r\n"); f.flush(); print(reply()[-1])
f.write(b"QUIT\r\n"); f.flush(); print(reply()[-1])
print("exit", p.wait(timeout=30))
]==]
    local dir = server.mkdtemp()
    server.write_file(dir .. "/t.py", script)
    local p = io.popen("python3 " .. server.quote(dir .. "/t.py") .. " "
      .. server.quote(server.bin()) .. " " .. server.quote(POLICY) .. " 2>&1")
    local out = p:read("a")
    p:close()
    server.rmtree(dir)
    assert.truthy(out:find("^220 "), out)
    -- A Unix socketpair has no IP address; the session says "local".
    assert.truthy(out:find("250 2.0.0 hello sock.spec.test from local", 1, true), out)
    assert.truthy(out:find("221 2.0.0 Bye", 1, true), out)
    assert.truthy(out:find("exit 0", 1, true), out)
  end)
end)
