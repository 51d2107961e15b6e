-- spec/integration/tls_reload_spec.lua - SIGHUP re-reads the TLS
-- certificate and key: a renewed certificate is served without a restart,
-- and a broken one keeps the certificate in force.
local server = require "server"
local tlskit = require "tlskit"

-- The SHA-256 (hex) of the certificate the server presents on port.
local function served_fp(port)
  local r = tlskit.python([==[
import hashlib, ssl, sys
pem = ssl.get_server_certificate(("127.0.0.1", int(sys.argv[1])))
print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest())
]==], { tostring(port) })
  local fp = r.stdout:match("(%x+)%s*$")
  assert(fp and #fp == 64, "no fingerprint: " .. r.output)
  return fp
end

describe("TLS certificate reload #integration", function()
  local pki, srv, dir, cert, key
  lazy_setup(function()
    pki = tlskit.pki()
    dir = server.mkdtemp()
    cert, key = dir .. "/cert.pem", dir .. "/key.pem"
    server.write_file(cert, server.read_file(pki.chain))
    server.write_file(key, server.read_file(pki.server_key))
    srv = assert(server.start({ args = { "--tls-cert", cert, "--tls-key", key,
      "--listen-tls", "127.0.0.1:0" } }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
    if dir then server.rmtree(dir) end
  end)

  it("serves the configured certificate", function()
    assert.are.equal(tlskit.fingerprint(pki.server_cert), served_fp(tlskit.tls_port(srv)))
  end)

  it("keeps the certificate in force when the new one is broken", function()
    server.write_file(cert, "-----BEGIN CERTIFICATE-----\nnot a certificate\n"
      .. "-----END CERTIFICATE-----\n")
    srv:signal("HUP")
    assert(srv:wait_log({ "tls.reload", "result=failed" }))
    assert.are.equal(tlskit.fingerprint(pki.server_cert), served_fp(tlskit.tls_port(srv)))
  end)

  it("serves a renewed certificate after SIGHUP, without a restart", function()
    local r = tlskit.run({ "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
      "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
      "-subj", "/CN=renewed.spec.test" })
    assert.are.equal(0, r.status, r.output)
    srv:signal("HUP")
    assert(srv:wait_log({ "tls.reload", "result=ok" }))
    local fp = served_fp(tlskit.tls_port(srv))
    assert.are.equal(tlskit.fingerprint(cert), fp)
    assert.are_not.equal(tlskit.fingerprint(pki.server_cert), fp)
  end)
end)
