-- examples/greylist.lua - greylisting (as postgrey does it): the first
-- attempt from a (client IP, sender, recipient) triplet gets
-- 451 4.7.1 at RCPT; a retry of the same triplet at least GREYLIST_DELAY
-- seconds later is accepted, and the triplet is then remembered as passed
-- so its later mail goes through at once. Real MTAs retry; many spam bots
-- do not. For a test server: point your sending code at it and check that
-- it retries a 451 later instead of giving up.
--
--   GREYLIST_DELAY=60 luamta --script examples/greylist.lua
--
-- Environment (seconds):
--   GREYLIST_DELAY         300      how long a retry must wait (a retry is
--                                   accepted once more than this has passed)
--   GREYLIST_RETRY_WINDOW  172800   a triplet not retried within this (2 days)
--                                   is forgotten: its next attempt is a first
--   GREYLIST_MAX_AGE       3024000  a passed triplet unused for this (35 days)
--                                   is forgotten
--   GREYLIST_SWEEP         60       how often expired entries are removed
--   MAILDIR                         deliver accepted mail there (else discard)
--   GREYLIST_REDIS                  host:port (or unix:/path) of a Redis
--                                   server that keeps the triplets instead
--
-- Without GREYLIST_REDIS, the table lives in luamta.shared, so it survives
-- a reload (SIGHUP, --watch); it does not survive a restart, and with
-- --workers each worker has its own (a client may be greylisted once per
-- worker: run a greylisting test server with --workers 1 or --foreground).
-- With GREYLIST_REDIS, every worker and every server pointed at the same
-- Redis shares one greylist, which survives restarts; Redis expires the
-- entries (no sweep). When Redis cannot be reached the recipient is
-- accepted and a greylist.redis_error line logged: greylisting is a spam
-- heuristic, and deferring all mail while Redis is down would hurt more
-- than letting some spam through (postgrey setups usually fail open too).
-- Addresses are compared in lower case; the client IP exactly (no /24
-- grouping).
local getenv, tonumber, tostring, error, pairs, type = os.getenv, tonumber, tostring, error, pairs, type
local time, lower, format = os.time, string.lower, string.format

local function seconds(name, default)
  local v = getenv(name)
  if v == nil or v == "" then return default end
  local n = tonumber(v)
  if not n or n < 0 then error(name .. " must be a number of seconds, not '" .. v .. "'") end
  return n
end

local DELAY = seconds("GREYLIST_DELAY", 300)
local RETRY_WINDOW = seconds("GREYLIST_RETRY_WINDOW", 2 * 24 * 3600)
local MAX_AGE = seconds("GREYLIST_MAX_AGE", 35 * 24 * 3600)
local SWEEP = seconds("GREYLIST_SWEEP", 60)
local maildir = getenv("MAILDIR")
local redis_addr = getenv("GREYLIST_REDIS")
if redis_addr == "" then redis_addr = nil end

-- GREYLIST_REDIS as connect{} options.
local function redis_options(addr)
  if addr:match("^unix:") then return { host = addr, timeout = 2 } end
  local host, port = addr:match("^%[?([^%]]+)%]?:(%d+)$")
  if not host then error("GREYLIST_REDIS must be host:port or unix:/path, not '" .. addr .. "'") end
  return { host = host, port = tonumber(port), timeout = 2 }
end
local redis_opts = redis_addr and redis_options(redis_addr)

-- key -> { first = time, last = time, passed = bool }; kept across reloads
local seen = luamta.shared.greylist or {}
luamta.shared.greylist = seen
local next_sweep = 0

local function expired(e, now)
  if e.passed then return now - e.last > MAX_AGE end
  return now - e.first > RETRY_WINDOW
end

-- Removes expired entries, at most every SWEEP seconds.
local function sweep(s, now)
  if now < next_sweep then return end
  next_sweep = now + SWEEP
  local removed, kept = 0, 0
  for k, e in pairs(seen) do
    if expired(e, now) then
      seen[k] = nil
      removed = removed + 1
    else
      kept = kept + 1
    end
  end
  if removed > 0 then s:log(format("greylist.sweep removed=%d kept=%d", removed, kept)) end
end

local function deferred(wait)
  return 451, format("4.7.1 Greylisted, please try again in %d seconds", wait)
end

-- The Redis backend: one hash per triplet, { first = time, passed = 1 },
-- whose TTL is the retry window until it passes, then the maximum age.
-- HSETNX makes the first attempt count once even when two servers see it
-- at the same moment.
local function redis_rcpt(s, rcpt)
  local c, err = luamta.redis.connect(redis_opts)
  if not c then return nil, err end
  local now = time()
  local key = "greylist:" .. tostring(s.peer_ip) .. "/" .. lower(s.sender or "") .. "/" .. lower(rcpt)
  local r
  r, err = c:pipeline({
    { "HSETNX", key, "first", now },
    { "HMGET", key, "first", "passed" },
  })
  if not r then return nil, err end
  if type(r[1]) ~= "number" then return nil, r[1].err end
  if r[1] == 1 then
    r, err = c:call("EXPIRE", key, RETRY_WINDOW)
    if not r then return nil, err end
    s:log("greylist.new rcpt=" .. rcpt)
    return deferred(DELAY)
  end
  if r[2].err then return nil, r[2].err end
  local first, passed = tonumber(r[2][1] or "") or now, r[2][2]
  if not passed and now - first <= DELAY then return deferred(DELAY - (now - first) + 1) end
  if not passed then s:log("greylist.pass rcpt=" .. rcpt) end
  r, err = c:pipeline({ { "HSET", key, "passed", 1 }, { "EXPIRE", key, MAX_AGE } })
  if not r then return nil, err end
  return true
end

return {
  on_rcpt = function(s, rcpt, params)
    if redis_opts then
      local code, text = redis_rcpt(s, rcpt)
      if code == nil then
        s:log("greylist.redis_error err=" .. tostring(text) .. " rcpt=" .. rcpt .. " action=accept")
        return
      end
      if code == true then return end
      return code, text
    end
    local now = time()
    sweep(s, now)
    local key = tostring(s.peer_ip) .. "\0" .. lower(s.sender or "") .. "\0" .. lower(rcpt)
    local e = seen[key]
    if e and expired(e, now) then e = nil end
    if e == nil then
      seen[key] = { first = now, last = now, passed = false }
      s:log("greylist.new rcpt=" .. rcpt)
      return deferred(DELAY)
    end
    -- os.time() counts whole seconds: "more than DELAY" guarantees that at
    -- least DELAY seconds really passed.
    if not e.passed and now - e.first <= DELAY then return deferred(DELAY - (now - e.first) + 1) end
    if not e.passed then s:log("greylist.pass rcpt=" .. rcpt) end
    e.passed, e.last = true, now
  end,

  on_message = function(s, msg)
    if not maildir or maildir == "" then return end
    local ok, err = msg:deliver_maildir(maildir)
    if not ok then
      s:log("maildir delivery to " .. maildir .. " failed: " .. tostring(err))
      return 451, "4.3.0 Delivery failed, try again later"
    end
  end,
}
