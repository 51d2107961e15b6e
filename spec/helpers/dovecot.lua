-- spec/helpers/dovecot.lua - a private Dovecot serving LMTP on a UNIX
-- socket, for the client specs: its own configuration, runtime directory,
-- log and Maildirs in a temporary directory, and one passwd-file user,
-- alice (mail stored as nobody). Needs root (Dovecot's master runs as root
-- to switch to the mail user) and the dovecot-core and dovecot-lmtpd
-- packages; available() says whether both are there.
--
--   local dovecot = require "dovecot"
--   local d = assert(dovecot.start())
--   finally(function() d:stop() end)
--   -- d.socket: the LMTP socket; d:maildir_files("alice"): delivered files
local server = require "server"
local socket = require "socket"

local M = {}

local q, read_file, write_file = server.quote, server.read_file, server.write_file

function M.available()
  local p = io.popen("id -u; command -v dovecot; test -x /usr/lib/dovecot/lmtp && echo lmtp")
  local out = p:read("a")
  p:close()
  return out:match("^0\n") ~= nil and out:find("dovecot", 1, true) ~= nil
    and out:find("\nlmtp", 1, true) ~= nil
end

local D = {}
D.__index = D

function D:stop()
  local pid = (read_file(self.dir .. "/run/master.pid") or ""):match("%d+")
  if pid then
    os.execute("kill " .. pid .. " 2>/dev/null")
    local deadline = socket.gettime() + 10
    while os.execute("kill -0 " .. pid .. " 2>/dev/null") and socket.gettime() < deadline do
      socket.sleep(0.05)
    end
  end
  server.rmtree(self.dir)
end

function D:log()
  return read_file(self.dir .. "/dovecot.log") or ""
end

-- The files delivered to user's Maildir/new, their contents in name order.
function D:maildir_files(user)
  local out = {}
  for _, name in ipairs(server.ls(self.dir .. "/mail/" .. user .. "/Maildir/new")) do
    out[#out + 1] = read_file(self.dir .. "/mail/" .. user .. "/Maildir/new/" .. name)
  end
  return out
end

function M.start()
  local dir = server.mkdtemp()
  os.execute("chmod 755 " .. q(dir) .. " && mkdir -p " .. q(dir .. "/run") .. " "
    .. q(dir .. "/mail") .. " && chmod 777 " .. q(dir .. "/mail"))
  write_file(dir .. "/dovecot.conf", table.concat({
    "base_dir = " .. dir .. "/run",
    "state_dir = " .. dir .. "/state",
    "log_path = " .. dir .. "/dovecot.log",
    "protocols = lmtp",
    "listen = 127.0.0.1",
    "ssl = no",
    "mail_location = maildir:" .. dir .. "/mail/%n/Maildir",
    "passdb {", "  driver = passwd-file",
    "  args = scheme=PLAIN username_format=%n " .. dir .. "/passwd", "}",
    "userdb {", "  driver = passwd-file",
    "  args = username_format=%n " .. dir .. "/passwd", "}",
    "service lmtp {", "  unix_listener lmtp {", "    mode = 0666", "  }", "}",
    "" }, "\n"))
  write_file(dir .. "/passwd", "alice:{PLAIN}pw:65534:65534::" .. dir .. "/mail/alice\n")
  local d = setmetatable({ dir = dir, socket = dir .. "/run/lmtp" }, D)
  if not os.execute("dovecot -c " .. q(dir .. "/dovecot.conf") .. " >" .. q(dir .. "/start.log")
      .. " 2>&1") then
    local log = (read_file(dir .. "/start.log") or "") .. d:log()
    d:stop()
    return nil, "dovecot did not start: " .. log
  end
  local deadline = socket.gettime() + 20 * server.TIMEOUT_SCALE
  while socket.gettime() < deadline do
    if read_file(dir .. "/run/master.pid") and os.execute("test -S " .. q(d.socket)) then
      return d
    end
    socket.sleep(0.05)
  end
  local log = d:log()
  d:stop()
  return nil, "dovecot's LMTP socket did not appear: " .. log
end

return M
