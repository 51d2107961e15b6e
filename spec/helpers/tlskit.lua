-- spec/helpers/tlskit.lua - TLS and AUTH tooling for specs: certificates
-- made at run time with the openssl CLI, and real TLS clients (swaks,
-- Python's smtplib and ssl, openssl s_client) run to completion with their
-- output captured.
--
--   local tlskit = require "tlskit"
--   local pki = tlskit.pki()            -- fresh CA, server, client, stranger
--   finally(function() pki:cleanup() end)
--   local srv = assert(server.start({ args = tlskit.server_args(pki) }))
--   local r = tlskit.swaks({ "--server", "127.0.0.1:" .. srv.port, "--tls" })
--   assert.are.equal(0, r.status, r.output)
--
-- Every run has a hard timeout (`timeout -s KILL`, default 60 s; status 137
-- when it fired) so a hung client fails the spec instead of hanging it.
local server = require "server"
local cjson = require "cjson"

local M = {}

local q, read_file, write_file = server.quote, server.read_file, server.write_file
local os_execute, tostring, ipairs, type, error = os.execute, tostring, ipairs, type, error
local concat = table.concat

M.TIMEOUT = 60

local function shell_join(argv)
  local out = {}
  for i, a in ipairs(argv) do out[i] = q(a) end
  return concat(out, " ")
end
M.shell_join = shell_join

-- Runs argv (a list, quoted here) or a shell command string in a private
-- temporary directory. opts: input (bytes for stdin), timeout (seconds),
-- env (map), cwd. Returns { status =, stdout =, stderr =, output = } where
-- output is stdout followed by stderr.
function M.run(cmd, opts)
  opts = opts or {}
  if type(cmd) == "table" then cmd = shell_join(cmd) end
  local dir = server.mkdtemp()
  local stdin = "/dev/null"
  if opts.input then
    stdin = dir .. "/stdin"
    write_file(stdin, opts.input)
  end
  local env = ""
  if opts.env then
    local keys = {}
    for k in pairs(opts.env) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. q(opts.env[k]) end
    env = "env " .. concat(parts, " ") .. " "
  end
  local line = "cd " .. q(opts.cwd or dir) .. " && " .. env .. "timeout -s KILL "
    .. tostring(opts.timeout or M.TIMEOUT) .. " sh -c " .. q(cmd)
    .. " <" .. q(stdin) .. " >" .. q(dir .. "/stdout") .. " 2>" .. q(dir .. "/stderr")
  local _, _, code = os_execute(line)
  local r = { status = code, stdout = read_file(dir .. "/stdout") or "",
    stderr = read_file(dir .. "/stderr") or "", command = cmd }
  r.output = r.stdout .. r.stderr
  server.rmtree(dir)
  return r
end

-- openssl as a plain command; errors out (with its output) when it fails.
local function openssl(dir, args)
  local r = M.run("openssl " .. args, { cwd = dir, timeout = 60 })
  if r.status ~= 0 then
    error("openssl " .. args .. " failed (" .. tostring(r.status) .. "):\n" .. r.output, 3)
  end
  return r.stdout
end

local Pki = {}
Pki.__index = Pki

function Pki:cleanup()
  if os.getenv("LUAMTA_TEST_KEEP") == "1" then
    io.stderr:write("tlskit certificates kept in " .. self.dir .. "\n")
  else
    server.rmtree(self.dir)
  end
end

-- SHA-256 fingerprint of a PEM certificate: lower-case hex, no colons.
function M.fingerprint(pem_file)
  local r = M.run({ "openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", pem_file })
  local hex = r.stdout:match("=%s*([%x:]+)")
  if r.status ~= 0 or not hex then error("fingerprint of " .. pem_file .. ": " .. r.output, 2) end
  return (hex:gsub(":", ""):lower())
end

-- A fresh set of P-256 keys and certificates in a private directory:
--   ca_cert            the test CA (CN=luamta spec CA)
--   server_cert/key    CN=localhost, SAN DNS:localhost and IP:127.0.0.1, signed by the CA
--   client_cert/key    CN=luamta spec client, signed by the CA (clientAuth)
--   stranger_cert/key  CN=luamta spec stranger, self-signed (not trusted)
--   chain              server certificate followed by the CA (a PEM chain)
--   client_fp, stranger_fp   SHA-256 fingerprints (lower hex)
function M.pki()
  local dir = server.mkdtemp()
  local p = setmetatable({ dir = dir }, Pki)
  local days = "-days 2"
  local function key(name)
    openssl(dir, "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " .. name .. ".key")
  end
  write_file(dir .. "/server.ext", "basicConstraints=CA:FALSE\n"
    .. "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    .. "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
  write_file(dir .. "/client.ext", "basicConstraints=CA:FALSE\n"
    .. "keyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
  key("ca")
  openssl(dir, "req -x509 -new -key ca.key -sha256 " .. days
    .. " -subj '/O=luamta spec/CN=luamta spec CA'"
    .. " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
    .. " -out ca.pem")
  for _, who in ipairs({ { "server", "/O=luamta spec/CN=localhost", "server.ext" },
    { "client", "/O=luamta spec/CN=luamta spec client", "client.ext" } }) do
    key(who[1])
    openssl(dir, "req -new -key " .. who[1] .. ".key -subj '" .. who[2] .. "' -out " .. who[1] .. ".csr")
    openssl(dir, "x509 -req -in " .. who[1] .. ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 "
      .. days .. " -extfile " .. who[3] .. " -out " .. who[1] .. ".pem")
  end
  key("stranger")
  openssl(dir, "req -x509 -new -key stranger.key -sha256 " .. days
    .. " -subj '/O=elsewhere/CN=luamta spec stranger' -addext extendedKeyUsage=clientAuth"
    .. " -out stranger.pem")
  write_file(dir .. "/chain.pem", read_file(dir .. "/server.pem") .. read_file(dir .. "/ca.pem"))
  p.ca_cert = dir .. "/ca.pem"
  p.server_cert, p.server_key = dir .. "/server.pem", dir .. "/server.key"
  p.client_cert, p.client_key = dir .. "/client.pem", dir .. "/client.key"
  p.stranger_cert, p.stranger_key = dir .. "/stranger.pem", dir .. "/stranger.key"
  p.chain = dir .. "/chain.pem"
  p.client_fp = M.fingerprint(p.client_cert)
  p.stranger_fp = M.fingerprint(p.stranger_cert)
  return p
end

-- Server arguments for a STARTTLS-capable server; extra args appended.
-- opts.implicit adds an implicit-TLS listener (srv.listeners[2]);
-- opts.client_ca asks clients for certificates signed by the test CA.
function M.server_args(pki, opts, extra)
  opts = opts or {}
  local args = { "--tls-cert", pki.chain, "--tls-key", pki.server_key }
  if opts.implicit then
    args[#args + 1] = "--listen-tls"; args[#args + 1] = "127.0.0.1:0"
  end
  if opts.client_ca then
    args[#args + 1] = "--tls-client-ca"; args[#args + 1] = pki.ca_cert
  end
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return args
end

-- The port of srv's implicit-TLS listener (the second in the ready file,
-- since server.start puts its --listen first).
function M.tls_port(srv)
  local l = srv.listeners[2]
  if not l then error("the server has no second (implicit TLS) listener", 2) end
  return l.port
end

-- swaks with argv appended to "swaks"; status and combined output.
function M.swaks(argv, opts)
  local cmd = { "swaks" }
  for _, a in ipairs(argv) do cmd[#cmd + 1] = a end
  return M.run(cmd, opts)
end

-- openssl s_client against 127.0.0.1:port with input piped in. CRLF line
-- ends, -ign_eof (so it reads the server to its close, and a line starting
-- with Q or R is data, not a command). Extra arguments in argv.
function M.s_client(port, argv, input, opts)
  local cmd = { "openssl", "s_client", "-connect", "127.0.0.1:" .. port, "-crlf", "-ign_eof" }
  for _, a in ipairs(argv or {}) do cmd[#cmd + 1] = a end
  opts = opts or {}
  opts.input = input or ""
  return M.run(cmd, opts)
end

-- Runs Python code (a string) with python3, argv after it; status and output.
function M.python(code, argv, opts)
  local dir = server.mkdtemp()
  local file = dir .. "/script.py"
  write_file(file, code)
  local cmd = { "python3", file }
  for _, a in ipairs(argv or {}) do cmd[#cmd + 1] = a end
  local r = M.run(cmd, opts)
  server.rmtree(dir)
  return r
end

-- Runs Python code that prints one JSON object on its last stdout line;
-- returns the decoded object (or nil) and the run.
function M.python_json(code, args, opts)
  local r = M.python(code, { cjson.encode(args) }, opts)
  local last
  for line in r.stdout:gmatch("[^\n]+") do last = line end
  local ok, obj = pcall(cjson.decode, last or "")
  if not ok or type(obj) ~= "table" then return nil, r end
  return obj, r
end

-- A Python smtplib session. args (JSON to the script):
--   port, mode ("starttls" | "implicit" | "plain"), ca, cert, key,
--   user, password, mech (optional: "PLAIN" or "LOGIN" for smtplib.auth),
--   from, to (list), message (bytes as a string; sent as is with sendmail)
-- Result: { greeting_features, starttls = {code, text}, features (after
-- TLS), tls = { version, cipher }, login = {code, text}, refused, sendmail_error,
-- quit = {code, text}, error }.
M.SMTPLIB = [==[
import json, smtplib, ssl, sys
a = json.loads(sys.argv[1])
out = {}
def txt(b):
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)
try:
    ctx = ssl.create_default_context(cafile=a["ca"]) if a.get("ca") else None
    if ctx is not None and a.get("cert"):
        ctx.load_cert_chain(a["cert"], a["key"])
    if a["mode"] == "implicit":
        c = smtplib.SMTP_SSL("127.0.0.1", a["port"], context=ctx, timeout=20)
    else:
        c = smtplib.SMTP("127.0.0.1", a["port"], timeout=20)
    code, msg = c.ehlo("python.spec.test")
    out["ehlo"] = [code, txt(msg)]
    out["greeting_features"] = sorted(c.esmtp_features.keys())
    if a["mode"] == "starttls":
        code, msg = c.starttls(context=ctx)
        out["starttls"] = [code, txt(msg)]
        code, msg = c.ehlo("python.spec.test")
        out["features"] = sorted(c.esmtp_features.keys())
        out["auth_feature"] = c.esmtp_features.get("auth", "")
    elif a["mode"] == "implicit":
        out["features"] = sorted(c.esmtp_features.keys())
        out["auth_feature"] = c.esmtp_features.get("auth", "")
    if hasattr(c.sock, "version"):
        out["tls"] = {"version": c.sock.version(), "cipher": c.sock.cipher()[0]}
    if a.get("user"):
        if a.get("mech"):
            c.user, c.password = a["user"], a["password"]
            fn = {"PLAIN": c.auth_plain, "LOGIN": c.auth_login}[a["mech"]]
            code, msg = c.auth(a["mech"], fn, initial_response_ok=a.get("initial", True))
        else:
            code, msg = c.login(a["user"], a["password"])
        out["login"] = [code, txt(msg)]
    if a.get("to"):
        try:
            out["refused"] = c.sendmail(a["from"], a["to"], a["message"].encode("utf-8", "surrogateescape"))
        except smtplib.SMTPException as e:
            out["sendmail_error"] = repr(e)
    code, msg = c.quit()
    out["quit"] = [code, txt(msg)]
except Exception as e:
    out["error"] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))
]==]

function M.smtplib(args, opts)
  return M.python_json(M.SMTPLIB, args, opts)
end

-- Takes over an open lua-socket connection (client c from smtp.lua) with
-- Python: the file descriptor is inherited by python3, which makes the TLS
-- handshake on it (as the client of a STARTTLS, or of an implicit
-- listener) and then, for each line in args.lines, sends it and records the
-- one reply it reads. It also records whether the server sent anything
-- before the first command (args.expect_greeting reads a greeting first).
-- Result: { tls = {version, cipher}, greeting, replies = { raw... }, error }.
M.TAKEOVER = [==[
import json, socket, ssl, sys
a = json.loads(sys.argv[1])
out = {"replies": []}
def read_reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            break
        lines.append(line.decode("utf-8", "replace"))
        if len(line) < 4 or line[3:4] != b"-":
            break
    return "".join(lines)
try:
    raw = socket.socket(fileno=a["fd"])
    ctx = ssl.create_default_context(cafile=a["ca"])
    t = ctx.wrap_socket(raw, server_hostname="localhost")
    out["tls"] = {"version": t.version(), "cipher": t.cipher()[0]}
    f = t.makefile("rb")
    if a.get("expect_greeting"):
        out["greeting"] = read_reply(f)
    for line in a["lines"]:
        t.sendall(line.encode() + b"\r\n")
        out["replies"].append(read_reply(f))
    # Anything more the server sends (nothing is expected unless it closes):
    # read through the same buffered reader, until a short quiet spell.
    t.settimeout(0.5)
    extra = []
    try:
        while True:
            line = f.readline()
            if not line:
                break
            extra.append(line.decode("utf-8", "replace"))
    except (socket.timeout, ssl.SSLError, OSError):
        pass
    out["extra"] = "".join(extra)
except Exception as e:
    out["error"] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))
]==]

function M.takeover(c, args)
  local fd = math.tointeger(c.sock:getfd())
  if not fd or fd < 0 then error("the client has no file descriptor", 2) end
  args.fd = fd
  -- The socket stays open in this process too: the connection ends when
  -- the caller closes c.
  return M.python_json(M.TAKEOVER, args, { timeout = 30 })
end

-- base64 (RFC 4648) of a string, for hand-made AUTH exchanges.
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function M.b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = (n >> 18) & 63
    local c2 = (n >> 12) & 63
    local c3 = (n >> 6) & 63
    local c4 = n & 63
    out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1)
      .. (b and B64:sub(c3 + 1, c3 + 1) or "=") .. (c and B64:sub(c4 + 1, c4 + 1) or "=")
  end
  return concat(out)
end

-- The AUTH PLAIN response for user and password (empty authorization id).
function M.plain(user, password)
  return M.b64("\0" .. user .. "\0" .. password)
end

return M
