-- spec/helpers/exim.lua - Debian's Exim as a real SMTP client for the specs:
-- it submits a message locally and delivers it at once over its smtp
-- transport to a luamta port on 127.0.0.1. Exim's smtp transport sends
-- BDAT when the server offers CHUNKING (hosts_try_chunking, * by default).
--
--   local exim = require "exim"
--   local r = exim.send({ port = srv.port, from = "a@spec.test", to = "b@far.test",
--     message = "Subject: hi\n\nhello\n" })
--   r.status   -- exim's exit status
--   r.log      -- its main log for this one submission
--
-- Exim is not installed (its package conflicts with postfix):
-- scripts/lib/exim.sh unpacks it once into $LUAMTA_BUILD_DIR/exim (or
-- $LUAMTA_EXIM_DIR) and creates the Debian-exim user the binary is built
-- for. Anything missing is an error, never a pending spec. Must run as root.
--
-- Each send gets a private directory with its configuration (-C), spool and
-- log. Exim gives up its setuid privilege for a -C file it does not trust
-- ("exim user lost privilege for using -C option" on stderr and in its
-- panic log, each time it starts) and goes on
-- with the caller's uid; as root that is enough for everything here.
local server = require "server"

local M = {}
local q = server.quote

local function cache_dir()
  local dir = os.getenv("LUAMTA_EXIM_DIR")
  if dir then return dir end
  local build = os.getenv("LUAMTA_BUILD_DIR")
  assert(build, "set LUAMTA_BUILD_DIR or LUAMTA_EXIM_DIR (where Exim is unpacked)")
  return build .. "/exim"
end

local bin

-- The path of the exim4 binary, fetched and unpacked on first use.
function M.bin()
  if bin then return bin end
  local _, uid = server.sh("id -u")
  assert(uid == "0\n", "the Exim specs must run as root")
  local dir = cache_dir()
  local script = server.source_dir() .. "/scripts/lib/exim.sh"
  local status, out = server.sh("bash " .. q(script) .. " " .. q(dir))
  assert(status == 0, "scripts/lib/exim.sh failed:\n" .. out)
  bin = dir .. "/root/usr/sbin/exim4"
  return bin
end

-- "Exim version 4.96 ..." from exim -bV (which needs a configuration).
function M.version()
  local dir = server.mkdtemp()
  server.write_file(dir .. "/exim.conf", "keep_environment =\n")
  local _, out = server.sh(q(M.bin()) .. " -C " .. q(dir .. "/exim.conf") .. " -bV")
  server.rmtree(dir)
  return out:match("Exim version [^\n]*")
end

local function config(dir, opts)
  local lines = {
    "exim_path = " .. M.bin(), -- it re-executes itself for deliveries
    "keep_environment =",
    "exim_user = Debian-exim",
    "exim_group = Debian-exim",
    "spool_directory = " .. dir .. "/spool",
    "log_file_path = " .. dir .. "/log/%slog",
    "primary_hostname = exim.spec.test",
    "qualify_domain = spec.test",
    "begin routers",
    -- A bounce (null sender), e.g. for a message luamta refused, goes
    -- nowhere; the failure is in the main log as a "**" line.
    "bounces:",
    "  driver = redirect",
    "  senders = :",
    "  data = :blackhole:",
    -- Everything else to luamta, by address: no DNS. 127.0.0.1 is this
    -- host, which a router refuses unless told to send anyway.
    "to_luamta:",
    "  driver = manualroute",
    "  route_list = * 127.0.0.1::" .. opts.port,
    "  self = send",
    "  transport = to_luamta",
    "begin transports",
    "to_luamta:",
    "  driver = smtp",
    "  allow_localhost",
    "  hosts_try_chunking = *", -- the default, spelled out
    "  helo_data = " .. (opts.helo or "exim.spec.test"),
    "  connect_timeout = 10s",
    "  command_timeout = 30s",
    "  data_timeout = 30s",
  }
  for _, line in ipairs(opts.transport or {}) do lines[#lines + 1] = "  " .. line end
  return table.concat(lines, "\n") .. "\n"
end

-- Submits opts.message (text with LF line ends; a "." line is content)
-- from opts.from to opts.to and delivers it before returning.
-- opts.port: luamta's; opts.helo: the EHLO name (default exim.spec.test);
-- opts.transport: extra smtp transport option lines.
-- Returns { status =, log = main log, output = exim's stdout and stderr,
-- panic = its panic log but for the -C privilege notes, "" when clean }.
function M.send(opts)
  local exim = M.bin()
  local dir = server.mkdtemp()
  -- Exim's own user writes the spool and the log (the bounce process runs
  -- as Debian-exim), so they must be reachable.
  assert(os.execute("chmod 755 " .. q(dir) .. " && mkdir " .. q(dir .. "/log")
    .. " && chown Debian-exim:Debian-exim " .. q(dir .. "/log")))
  server.write_file(dir .. "/exim.conf", config(dir, opts))
  server.write_file(dir .. "/message", opts.message)
  -- -odi: deliver in the foreground; -i: a lone "." line does not end the
  -- message; -f: the envelope sender (the caller, root, is trusted).
  local status, output = server.sh(q(exim) .. " -C " .. q(dir .. "/exim.conf")
    .. " -odi -i -f " .. q(opts.from or "sender@spec.test") .. " " .. q(opts.to)
    .. " < " .. q(dir .. "/message"))
  local r = {
    status = status,
    output = output,
    log = server.read_file(dir .. "/log/mainlog") or "",
    panic = (server.read_file(dir .. "/log/paniclog") or "")
      :gsub("[^\n]*exim user lost privilege for using %-C option\n", ""),
  }
  if os.getenv("LUAMTA_TEST_KEEP") then r.dir = dir else server.rmtree(dir) end
  return r
end

return M
