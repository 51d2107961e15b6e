-- examples/ratelimit.lua - at most RATELIMIT_MAX messages per sender in
-- RATELIMIT_WINDOW seconds, counted in Redis, so every worker and every
-- server pointed at the same Redis shares the counts. A MAIL FROM over the
-- limit gets 451 4.7.1 (the sender's MTA retries later). The window starts
-- with a sender's first MAIL FROM and its count is gone when it ends.
--
--   RATELIMIT_REDIS=127.0.0.1:6379 RATELIMIT_MAX=30 luamta --script examples/ratelimit.lua
--
-- Environment:
--   RATELIMIT_REDIS    (required)  host:port or unix:/path of the Redis server
--   RATELIMIT_MAX      100         messages per sender in a window
--   RATELIMIT_WINDOW   60          seconds
--   MAILDIR                        deliver accepted mail there (else discard)
--
-- Every MAIL FROM counts, even of a transaction that sends nothing. Senders
-- are compared in lower case; the null sender (bounces) is one sender, "<>".
-- When Redis cannot be reached the sender is let through and a
-- ratelimit.redis_error line logged: a limit that stops all mail whenever
-- Redis is down would do more harm than the mail it holds back.
local getenv, tonumber, tostring, error = os.getenv, tonumber, tostring, error
local lower, format = string.lower, string.format

local function number(name, default)
  local v = getenv(name)
  if v == nil or v == "" then return default end
  local n = tonumber(v)
  if not n or n < 1 or n ~= n // 1 then error(name .. " must be a positive integer, not '" .. v .. "'") end
  return n
end

local MAX = number("RATELIMIT_MAX", 100)
local WINDOW = number("RATELIMIT_WINDOW", 60)
local maildir = getenv("MAILDIR")
local addr = getenv("RATELIMIT_REDIS") or ""
local opts
if addr:match("^unix:") then
  opts = { host = addr, timeout = 2 }
else
  local host, port = addr:match("^%[?([^%]]+)%]?:(%d+)$")
  if not host then error("RATELIMIT_REDIS must be host:port or unix:/path, not '" .. addr .. "'") end
  opts = { host = host, port = tonumber(port), timeout = 2 }
end

-- Counts one more message of sender: the count in this window, or nil
-- and an error. SET NX EX opens the window with its expiry in the same
-- round trip as the INCR, so a count can never be left without one.
local function count(sender)
  local c, err = luamta.redis.connect(opts)
  if not c then return nil, err end
  local key = "ratelimit:" .. lower(sender)
  local r
  r, err = c:pipeline({ { "SET", key, 0, "EX", WINDOW, "NX" }, { "INCR", key } })
  if not r then return nil, err end
  if type(r[2]) ~= "number" then return nil, r[2].err end
  return r[2]
end

return {
  on_mail = function(s, sender)
    if sender == "" then sender = "<>" end
    local n, err = count(sender)
    if not n then
      s:log("ratelimit.redis_error err=" .. tostring(err) .. " action=accept")
      return
    end
    if n > MAX then
      s:log(format("ratelimit.over sender=%s count=%d max=%d", sender, n, MAX))
      return 451, format("4.7.1 Too many messages from this sender, try again in %d seconds", WINDOW)
    end
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
