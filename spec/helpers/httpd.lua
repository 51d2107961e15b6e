-- spec/helpers/httpd.lua - the HTTP(S) server of the luamta.http specs
-- (spec/fixtures/http_server.py, Debian's /usr/bin/python3), started and
-- stopped by the spec itself on a loopback port the kernel picks.
--
--   local httpd = require "httpd"
--   local web = assert(httpd.start())          -- or httpd.start{ cert =, key = }
--   finally(function() web:stop() end)
--   web.base                                   -- "http://127.0.0.1:PORT"
--   web:get("/stats")                          -- body, status (plain HTTP only)
--   web:stats()                                -- { connections =, waiting =, requests = }
local server = require "server"
local socket = require "socket"
local http = require "socket.http"
local cjson = require "cjson"

local M = {}

local q, read_file = server.quote, server.read_file
local PYTHON = "/usr/bin/python3"
local SCRIPT = server.source_dir() .. "/spec/fixtures/http_server.py"

local Httpd = {}
Httpd.__index = Httpd

-- opts.cert, opts.key: serve HTTPS with them (base is then https://localhost:PORT).
function M.start(opts)
  opts = opts or {}
  local dir = server.mkdtemp()
  local args = { q(dir .. "/ready") }
  if opts.cert then args[#args + 1] = q(opts.cert); args[#args + 1] = q(opts.key) end
  local cmd = "cd " .. q(dir) .. " && sh -c " .. q(q(PYTHON) .. " " .. q(SCRIPT) .. " "
    .. table.concat(args, " ") .. " </dev/null >log 2>&1 & echo $! >pid") .. " </dev/null"
  if not os.execute(cmd) then return nil, "cannot run " .. cmd end
  local deadline = socket.gettime() + 20
  while socket.gettime() < deadline do
    local port = tonumber((read_file(dir .. "/ready") or ""):match("%d+"))
    local pid = tonumber((read_file(dir .. "/pid") or ""):match("%d+"))
    if port and pid then
      local scheme = opts.cert and "https://localhost:" or "http://127.0.0.1:"
      return setmetatable({ dir = dir, port = port, pid = pid,
        base = scheme .. port, plain = "http://127.0.0.1:" .. port }, Httpd)
    end
    socket.sleep(0.02)
  end
  local log = read_file(dir .. "/log") or ""
  server.rmtree(dir)
  return nil, "http_server.py did not start: " .. log
end

function Httpd:get(path)
  local body, status = http.request(self.plain .. path)
  return body, status
end

function Httpd:stats()
  local body, status = self:get("/stats")
  assert(status == 200, "stats: " .. tostring(status))
  return cjson.decode(body)
end

-- Polls stats until pred(stats) holds; returns the last stats and whether it did.
function M.wait(web, pred, timeout)
  local deadline = socket.gettime() + (timeout or 20) * server.TIMEOUT_SCALE
  local st
  repeat
    st = web:stats()
    if pred(st) then return st, true end
    socket.sleep(0.05)
  until socket.gettime() > deadline
  return st, false
end

function Httpd:stop()
  if self.stopped then return end
  self.stopped = true
  os.execute("kill " .. self.pid .. " 2>/dev/null")
  server.rmtree(self.dir)
end

-- A port nothing listens on (bound, then closed).
M.free_port = server.free_port

-- Runs a case in spec/fixtures/policies/http_probe.lua's server srv over the
-- session c (after MAIL FROM): src is a Lua chunk run in on_rcpt (its
-- argument is the session handle) whose return values come back here as a
-- table packed with table.pack, with the reply. Fails when the chunk fails.
function M.probe(srv, c, name, src)
  server.write_file(srv.dir .. "/case-" .. name .. ".lua", src)
  os.remove(srv.dir .. "/result-" .. name .. ".lua")
  c:send("RCPT TO:<" .. name .. "@spec.test>")
  local reply = c:read_reply()
  local text = read_file(srv.dir .. "/result-" .. name .. ".lua")
  if not text then
    error("case " .. name .. " returned nothing (reply " .. tostring(reply and reply.raw)
      .. "); server log:\n" .. srv:log_tail(30), 2)
  end
  return assert(load(text))(), reply
end

return M
