-- examples/faults.lua - an SMTP server whose failures you choose with the
-- addresses you send to, for testing mail-sending code without writing Lua:
--
--   luamta --script examples/faults.lua --listen 127.0.0.1:2525
--   swaks --server 127.0.0.1:2525 --to rcpt-452@example.test   # 452 4.5.3 at RCPT
--
-- The local part selects the outcome; the domain can be anything, case does
-- not matter, <n> is seconds (decimals allowed: delay-0.5), <code> any reply
-- code that fits the command (4xx/5xx anywhere; a 2xx code is an accept).
-- "data" means the end of the data (the reply after the final dot),
-- "datacmd" the DATA command itself (the reply that is normally 354).
--
-- Recipient (RCPT TO):
--   rcpt-<code>          RCPT answered <code>: rcpt-452 -> 452 4.5.3 Too many
--                        recipients, rcpt-550 -> 550 5.1.1 Mailbox unavailable,
--                        rcpt-450 -> 450 4.2.1, rcpt-421 -> 421 and close
--   datacmd-<code>       DATA answered <code> instead of 354 (datacmd-554)
--   data-<code>          the message answered <code> after the final dot
--                        (data-451 -> 451 4.3.0, data-554 -> 554 5.7.1)
--   data-timeout         stall after the data: the server waits $FAULTS_STALL
--                        seconds (default 3600) before answering, so the
--                        client's end-of-data timeout fires first
--   delay-<n>, delay-rcpt-<n>   n seconds before the RCPT reply (250)
--   delay-datacmd-<n>    n seconds before the 354
--   delay-data-<n>       n seconds before the end-of-data reply (250)
--   disconnect-rcpt      the connection closed instead of the RCPT reply
--   disconnect-datacmd   closed instead of the 354
--   disconnect-data      closed after the final dot, no reply ("did it go?")
--   close-rcpt-<code>    RCPT answered <code>, then the connection closed
--   close-datacmd-<code> DATA answered <code>, then closed
--   close-data-<code>    the message answered <code> (close-data-250: accepted),
--                        then closed before QUIT
--   lines-rcpt-<n>       RCPT answered with a three-line 250, n seconds
--                        between the lines
--   lines-data-<n>       the same for the end-of-data reply
--   drop-rcpt-<k>        RCPT answered with a three-line 250 cut after k lines
--                        (0: before any line, 1, 2; 3: the whole reply, then
--                        the close)
--   drop-data-<k>        the same for the end-of-data reply
--   msg-<k>-<code>       the k-th message of the session (counted at each MAIL,
--                        accepted or not) answered <code> after the final dot;
--                        the other messages are accepted (msg-2-451: the 1st
--                        and 3rd accepted, the 2nd 451)
-- Sender (MAIL FROM):
--   mail-<code>          MAIL answered <code> (mail-550 -> 550 5.1.0,
--                        mail-451, mail-421 -> 421 and close)
--   delay-mail-<n>       n seconds before the MAIL reply (250)
--   disconnect-mail      closed instead of the MAIL reply
--   close-mail-<code>    MAIL answered <code>, then closed
-- Client name (the whole HELO/EHLO argument, e.g. smtplib's local_hostname):
--   ehlo-<code>          EHLO answered <code> (ehlo-502: the client should
--                        fall back to HELO, which is accepted)
--   helo-<code>          HELO answered <code>
--   delay-ehlo-<n>       n seconds before the EHLO reply
--   disconnect-ehlo      closed instead of the EHLO reply
--   lines-ehlo-<n>       the EHLO reply's lines n seconds apart
--   drop-ehlo-<k>        the EHLO reply cut after k lines
-- Every connection, from the environment:
--   FAULTS_CONNECT=<code>      the greeting is <code> (421, 554: then closed)
--   FAULTS_CONNECT=delay-<n>   n seconds before the greeting
--   FAULTS_CONNECT=disconnect  closed before the greeting
--   FAULTS_CONNECT_TIMES=<k>   only the first k connections (then normal)
--
-- Everything else is accepted, and delivered into the Maildir named by
-- $MAILDIR when it is set, else discarded. A delay or stall is bounded by
-- --timeout (--data-timeout after the data, 300 s by default): give a longer
-- one for longer stalls. Each fault logs a faults.fire line.
local faults = require "luamta.faults"

local getenv, tonumber, tostring, error = os.getenv, tonumber, tostring, error

local CODE = "(%d%d%d)"
local SECS = "(%d+%.?%d*)"
local THREE = { "scripted multi-line reply", "second line", "last line" }

local function code(ctx) return tonumber(ctx.captures[1]) end
local function secs(ctx) return tonumber(ctx.captures[1]) end
local function three(ctx) return { 250, THREE } end

local stall = tonumber(getenv("FAULTS_STALL") or "3600")
if not stall or stall < 0 then error("FAULTS_STALL must be a number of seconds") end

local rules = {
  -- RCPT
  { rcpt = "^rcpt%-" .. CODE .. "@", reply = code },
  { rcpt = { "^delay%-" .. SECS .. "@", "^delay%-rcpt%-" .. SECS .. "@" }, delay = secs },
  { rcpt = "^disconnect%-rcpt@", close = "instead" },
  { rcpt = "^close%-rcpt%-" .. CODE .. "@", reply = code, close = "after" },
  { rcpt = "^lines%-rcpt%-" .. SECS .. "@", reply = three, line_delay = secs },
  { rcpt = "^drop%-rcpt%-([0-3])@", reply = three,
    drop_after = function(ctx) return tonumber(ctx.captures[1]) end },
  -- DATA command
  { stage = "data", rcpt = "^datacmd%-" .. CODE .. "@", reply = code },
  { stage = "data", rcpt = "^delay%-datacmd%-" .. SECS .. "@", delay = secs },
  { stage = "data", rcpt = "^disconnect%-datacmd@", close = "instead" },
  { stage = "data", rcpt = "^close%-datacmd%-" .. CODE .. "@", reply = code, close = "after" },
  -- end of data
  { stage = "message", rcpt = "^data%-timeout@", stall = stall },
  { stage = "message", rcpt = "^data%-" .. CODE .. "@", reply = code },
  { stage = "message", rcpt = "^delay%-data%-" .. SECS .. "@", delay = secs },
  { stage = "message", rcpt = "^disconnect%-data@", close = "instead" },
  { stage = "message", rcpt = "^close%-data%-" .. CODE .. "@", reply = code, close = "after" },
  { stage = "message", rcpt = "^lines%-data%-" .. SECS .. "@", reply = three, line_delay = secs },
  { stage = "message", rcpt = "^drop%-data%-([0-3])@", reply = three,
    drop_after = function(ctx) return tonumber(ctx.captures[1]) end },
  { stage = "message", rcpt = "^msg%-(%d+)%-" .. CODE .. "@",
    when = function(ctx) return ctx.message == tonumber(ctx.captures[1]) end,
    reply = function(ctx) return tonumber(ctx.captures[2]) end },
  -- MAIL
  { sender = "^mail%-" .. CODE .. "@", reply = code },
  { sender = "^delay%-mail%-" .. SECS .. "@", delay = secs },
  { sender = "^disconnect%-mail@", close = "instead" },
  { sender = "^close%-mail%-" .. CODE .. "@", reply = code, close = "after" },
  -- HELO / EHLO
  { stage = "ehlo", helo = "^ehlo%-" .. CODE .. "$", reply = code },
  { stage = "helo", helo = "^helo%-" .. CODE .. "$", reply = code },
  { stage = "ehlo", helo = "^delay%-ehlo%-" .. SECS .. "$", delay = secs },
  { stage = "ehlo", helo = "^disconnect%-ehlo$", close = "instead" },
  { stage = "ehlo", helo = "^lines%-ehlo%-" .. SECS .. "$", line_delay = secs },
  { stage = "ehlo", helo = "^drop%-ehlo%-(%d+)$",
    drop_after = function(ctx) return tonumber(ctx.captures[1]) end },
}

-- FAULTS_CONNECT: one rule for the greeting.
local connect = getenv("FAULTS_CONNECT")
if connect and connect ~= "" then
  local times = getenv("FAULTS_CONNECT_TIMES")
  times = times and times ~= "" and tonumber(times) or nil
  local rule = { stage = "connect", times = times, name = "FAULTS_CONNECT" }
  if connect:match("^%d%d%d$") then
    rule.reply = tonumber(connect)
    if rule.reply >= 400 then rule.close = "after" end
  elseif connect:match("^delay%-" .. SECS .. "$") then
    rule.delay = tonumber(connect:match("^delay%-" .. SECS .. "$"))
  elseif connect == "disconnect" then
    rule.close = "instead"
  else
    error("FAULTS_CONNECT must be a reply code, delay-<seconds> or disconnect, not '"
      .. connect .. "'")
  end
  rules[#rules + 1] = rule
end

local maildir = getenv("MAILDIR")

-- Not a tail call, so that an error in a rule names this file and line.
local hooks = faults.policy(rules, {
  on_message = function(s, msg)
    if not maildir or maildir == "" then return end
    local ok, err = msg:deliver_maildir(maildir)
    if not ok then
      s:log("maildir delivery to " .. maildir .. " failed: " .. tostring(err))
      return 451, "4.3.0 Delivery failed, try again later"
    end
  end,
})
return hooks
