-- spec/helpers/postfix.lua - a private Postfix instance for the specs (and
-- its recipe for the bench): its own configuration directory, queue, data
-- directory and log file in a temporary directory, smtpd on 127.0.0.1 and a
-- port of the caller's, no chroot, no syslog. Debian's postfix package must
-- be installed (scripts/test does) and the spec must run as root (the
-- master switches to the postfix user).
--
--   local postfix = require "postfix"
--   local p = assert(postfix.start({ port = 2525, main = { mydestination = "x.test" } }))
--   finally(function() p:stop() end)
--   p:log()   -- the maillog text
local server = require "server"

local M = {}
local P = {}
P.__index = P

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function M.available()
  local f = io.open("/usr/sbin/postfix", "r")
  if not f then return false end
  f:close()
  local id = io.popen("id -u"):read("*l")
  return id == "0"
end

-- opts.port: smtpd's port on 127.0.0.1; opts.main: extra main.cf lines.
function M.start(opts)
  local dir = server.mkdtemp()
  local conf = dir .. "/conf"
  -- The postfix user must be able to reach its queue and data directories.
  assert(os.execute("chmod 755 " .. q(dir) .. " && mkdir -p " .. q(conf) .. " "
    .. q(dir .. "/queue") .. " " .. q(dir .. "/data")))
  local main = {
    "compatibility_level = 3.6",
    "queue_directory = " .. dir .. "/queue",
    "data_directory = " .. dir .. "/data",
    "mail_owner = postfix",
    "inet_interfaces = 127.0.0.1",
    "inet_protocols = ipv4",
    "myhostname = postfix.spec.test",
    "mynetworks = 127.0.0.0/8",
    "alias_maps =",
    "alias_database =",
    "maillog_file = " .. dir .. "/maillog",
    "maillog_file_prefixes = " .. dir,
  }
  for k, v in pairs(opts.main or {}) do main[#main + 1] = k .. " = " .. v end
  server.write_file(conf .. "/main.cf", table.concat(main, "\n") .. "\n")
  -- Debian's master.cf with smtpd moved to our port and no chroot.
  local master = assert(server.read_file("/etc/postfix/master.cf"))
  local out = {}
  for line in master:gmatch("[^\n]*\n?") do
    line = line:gsub("\n$", "")
    if line:match("^smtp%s+inet%s") then
      line = "127.0.0.1:" .. opts.port .. " inet n - n - - smtpd"
    elseif line:match("^%S") and not line:match("^#") then
      -- type private unpriv chroot ...: chroot is the fifth column.
      line = line:gsub("^(%S+%s+%S+%s+%S+%s+%S+%s+)y(%s)", "%1n%2")
    end
    out[#out + 1] = line
  end
  server.write_file(conf .. "/master.cf", table.concat(out, "\n") .. "\n")
  local p = setmetatable({ dir = dir, conf = conf, port = opts.port }, P)
  local cmd = "/usr/sbin/postfix -c " .. q(conf)
  if not os.execute(cmd .. " set-permissions >/dev/null 2>&1 && " .. cmd .. " start >/dev/null 2>&1") then
    local log = p:log()
    server.rmtree(dir)
    return nil, "postfix did not start: " .. log
  end
  return p
end

function P:log()
  return server.read_file(self.dir .. "/maillog") or ""
end

-- Waits until the log matches pattern (a Lua pattern); returns the log.
function P:wait_log(pattern, secs)
  local deadline = os.time() + (secs or 20) * server.TIMEOUT_SCALE
  repeat
    local log = self:log()
    if log:find(pattern) then return log end
    os.execute("sleep 0.1")
  until os.time() > deadline
  return nil
end

function P:stop()
  os.execute("/usr/sbin/postfix -c " .. q(self.conf) .. " stop >/dev/null 2>&1")
  -- The master leaves within a second; its children with it.
  os.execute("sleep 1")
  server.rmtree(self.dir)
end

return M
