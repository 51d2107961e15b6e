-- luamta.faults - scripted, deterministic SMTP failures, for testing the
-- code that sends mail. A policy lists rules; a rule says when it fires
-- (stage, recipient, sender, HELO name, message or connection number) and
-- what the client then sees (any reply, a delay, a close after or instead of
-- the reply, a stall after the data, paced lines, a drop mid-reply):
--
--   local faults = require "luamta.faults"
--   return faults.policy({
--     { rcpt = "^full@", reply = { 452, "4.2.2 Mailbox full" } },
--     { rcpt = "^gone@", reply = 550 },                   -- 550 5.1.1 Mailbox unavailable
--     { sender = "^spammer@", close = "instead" },        -- MAIL: hang up, no reply
--     { stage = "ehlo", delay = 3 },                      -- 3 s before the EHLO reply
--     { stage = "data", reply = 554, close = "after" },   -- DATA: 554, then close
--     { rcpt = "^slow@", stall = 600 },                   -- sleep 600 s after the final dot
--     { message = 2, reply = { 451, "4.3.0 Try again" } },-- the 2nd message of a session
--     { rcpt = "^cut@", stage = "message", reply = { 250, { "a", "b", "c" } },
--       drop_after = 1 },                                 -- "250-2.0.0 a" then EOF
--   }, { on_message = function(s, msg) ... end })         -- your own hooks, optional
--
-- Rules are checked in order and the first that matches fires; when none
-- does, the hook from `base` (the second argument) runs, else the server's
-- default. Rules are validated when the policy is built, so a typo fails
-- at load (luamta --check) with the rule's number and the reason.
--
-- When a rule fires (every field is optional, but a rule must do something):
--   when:    stage  "connect" | "helo" | "ehlo" | "mail" | "rcpt" | "data" |
--                   "message" | "rset" | "quit", or a list of them. "data" is
--                   the DATA command (before 354), "message" the end of data
--                   (after the final dot, before the reply). Without it:
--                   "message" with stall, else "rcpt" with rcpt, "mail" with
--                   sender, {"helo","ehlo"} with helo, "message" with message
--                   or server_message, "connect" with connection.
--            rcpt   the recipient: a Lua pattern, a list of patterns (any
--                   matches) or a function(address, ctx). Patterns see the
--                   address in lower case, functions as given. At "rcpt" it
--                   is the RCPT argument; at "data" and "message" any
--                   recipient of the transaction; at "rset" and "quit" any
--                   RCPT argument given in the session so far.
--            sender the MAIL FROM address ("" for <>), likewise: at "mail"
--                   the argument, at "rcpt", "data", "message" the
--                   transaction's, at "rset"/"quit" any given in the session.
--            helo   the HELO/EHLO name (at "helo"/"ehlo" the argument).
--            message        the n-th transaction of the session (counted at
--                   each MAIL command, accepted or not, so "the 2nd message"
--                   stays the 2nd when the 1st was rejected): an integer, a
--                   list of integers or a function(n, ctx).
--            server_message the same counted over every session of this
--                   worker since the policy was loaded.
--            connection     the n-th connection to this worker since load.
--            times  fire at most this many times (per worker, since load).
--            when   function(ctx) -> truthy: any extra condition.
--   what:    reply  a code (the text is then a standard one, faults.text),
--                   { code }, { code, "text" } or { code, { "line", ... } },
--                   or a function(ctx) returning one of those. The code must
--                   fit the stage as the core checks it: 4xx/5xx anywhere,
--                   220 at connect, 354 at data, 221 at quit, 2xx elsewhere.
--            delay  seconds to wait before the reply (luamta.sleep; other
--                   sessions go on). Without reply/close, the base hook (or
--                   the default reply) follows the delay.
--            stall  seconds to sleep after the final dot (stage "message"),
--                   so that the client's end-of-data timeout fires first.
--            close  "after": reply, then close (the reply defaults to 421);
--                   "instead": close without any reply. A 421 reply closes
--                   after by default (RFC 5321 3.8); close = false keeps
--                   the connection open.
--            line_delay seconds between the lines of a multi-line reply
--                   (0-3600).
--            drop_after cut the connection after this many lines of the
--                   reply (0-64; 0: before the first line).
--            name   a label for the log line written when the rule fires.
--   Action values (delay, stall, line_delay, drop_after) may also be
--   functions(ctx) returning the value; they are checked when they run.
--   At "ehlo", line_delay or drop_after without a reply paces the server's
--   own EHLO reply (hostname and keywords).
--
-- ctx, given to function matchers and values: { stage, s, msg (at
-- "message"), arg (HELO name, sender or recipient of the command), message,
-- server_message, connection, rule (its index), captures (of the first
-- rcpt/sender/helo pattern that matched, a list) }.
--
-- Timeouts: a delay or stall is bounded by the server's own timers, which
-- count from the client's last input: --data-timeout at "message" (the
-- default is 300 s), --timeout at every other stage. Past it the session
-- gets 421 4.4.2 and is closed; give a longer one for longer stalls. The
-- hook budget (--hook-timeout) does not count time spent sleeping.
local M = {}

local type, pairs, ipairs, tostring, error, pcall, select, require =
  type, pairs, ipairs, tostring, error, pcall, select, require
local math_type = math.type
local lower, find, format = string.lower, string.find, string.format
local concat, sort, unpack = table.concat, table.sort, table.unpack

M.STAGES = { "connect", "helo", "ehlo", "mail", "rcpt", "data", "message", "rset", "quit" }

local HOOK = {
  connect = "on_connect", helo = "on_helo", ehlo = "on_ehlo", mail = "on_mail",
  rcpt = "on_rcpt", data = "on_data", message = "on_message", rset = "on_rset",
  quit = "on_quit",
}

-- Stages where each matcher has something to look at.
local MATCHER_STAGES = {
  rcpt = { rcpt = true, data = true, message = true, rset = true, quit = true },
  sender = { mail = true, rcpt = true, data = true, message = true, rset = true, quit = true },
  helo = { helo = true, ehlo = true, mail = true, rcpt = true, data = true, message = true,
    rset = true, quit = true },
  message = { mail = true, rcpt = true, data = true, message = true, rset = true, quit = true },
}
MATCHER_STAGES.server_message = MATCHER_STAGES.message

local FIELDS = {
  stage = true, rcpt = true, sender = true, helo = true, message = true,
  server_message = true, connection = true, times = true, when = true,
  reply = true, delay = true, stall = true, close = true, line_delay = true,
  drop_after = true, name = true,
}

local MAX_DELAY = 86400 -- a day: longer is surely a mistake (ms for s?)

---------------------------------------------------------------------------
-- Standard reply texts
---------------------------------------------------------------------------

local TEXTS = {
  [211] = "2.0.0 System status",
  [214] = "2.0.0 Help",
  [220] = "ESMTP ready",
  [221] = "2.0.0 Bye",
  [250] = "2.0.0 Ok",
  [251] = "2.1.5 User not local; will forward",
  [252] = "2.1.5 Cannot verify the user, but will accept the message",
  [354] = "End data with <CR><LF>.<CR><LF>",
  [421] = "4.3.2 Service not available, closing transmission channel",
  [450] = "4.2.1 Mailbox temporarily unavailable",
  [451] = "4.3.0 Local error in processing",
  [452] = "4.3.1 Insufficient system storage",
  [455] = "4.5.4 Server unable to accommodate parameters",
  [500] = "5.5.2 Syntax error, command unrecognized",
  [501] = "5.5.4 Syntax error in parameters or arguments",
  [502] = "5.5.1 Command not implemented",
  [503] = "5.5.1 Bad sequence of commands",
  [504] = "5.5.4 Command parameter not implemented",
  [521] = "5.3.2 Does not accept mail",
  [530] = "5.7.0 Authentication required",
  [550] = "5.7.1 Requested action not taken",
  [551] = "5.1.6 User not local",
  [552] = "5.3.4 Message size exceeds fixed maximum message size",
  [553] = "5.1.3 Mailbox name not allowed",
  [554] = "5.7.1 Transaction failed",
  [555] = "5.5.4 MAIL FROM/RCPT TO parameters not recognized or not implemented",
}
local STAGE_TEXTS = {
  mail = {
    [550] = "5.1.0 Sender address rejected",
    [553] = "5.1.7 Sender address syntax not allowed",
  },
  rcpt = {
    [452] = "4.5.3 Too many recipients",
    [550] = "5.1.1 Mailbox unavailable",
    [552] = "5.2.2 Mailbox full",
  },
  message = {
    [550] = "5.7.1 Message rejected",
  },
}

-- The standard text for a reply code at a stage (RFC 5321 4.2 and the
-- enhanced codes of RFC 3463), used when a rule gives a code alone.
function M.text(code, stage)
  if math_type(code) ~= "integer" then error("faults.text: code must be an integer", 2) end
  local t = STAGE_TEXTS[stage] and STAGE_TEXTS[stage][code] or TEXTS[code]
  if t then return t end
  local class = code // 100
  if class == 2 then return "2.0.0 Ok" end
  if class == 4 then return "4.0.0 Temporary failure (scripted)" end
  if class == 5 then return "5.0.0 Permanent failure (scripted)" end
  return "Scripted reply"
end

---------------------------------------------------------------------------
-- Validation (each returns nil or an error text)
---------------------------------------------------------------------------

-- Whether a code fits a stage, as the core checks it.
local function code_fits(stage, code)
  if code >= 400 then return true end
  if stage == "data" then return code == 354 end
  if stage == "connect" then return code == 220 end
  if stage == "quit" then return code == 221 end
  return code < 300
end

local function check_text(text)
  if type(text) == "string" then text = { text } end
  if type(text) ~= "table" or #text == 0 then
    return "the text must be a string or a non-empty list of strings"
  end
  if #text > 64 then return "a reply has at most 64 lines" end
  for i, line in ipairs(text) do
    if type(line) ~= "string" then return "line " .. i .. " of the text is not a string" end
    if find(line, "[\r\n%z]") then return "line " .. i .. " of the text has CR, LF or NUL" end
  end
  return nil, #text
end

-- Normalises a reply value to code, text (string or list), or nil, err.
local function norm_reply(v, stage)
  local code, text
  if math_type(v) == "integer" then
    code = v
  elseif type(v) == "table" then
    code, text = v[1], v[2]
    for k in pairs(v) do
      if k ~= 1 and k ~= 2 then
        return nil, "reply has an unexpected field " .. tostring(k)
          .. " (use { code, text } or { code, { lines } })"
      end
    end
    if math_type(code) ~= "integer" then return nil, "reply { code, text }: code must be an integer" end
  else
    return nil, "reply must be a code, { code, text } or a function, got " .. type(v)
  end
  if code < 200 or code > 599 then return nil, "reply code " .. code .. " is not in 200-599" end
  if stage and not code_fits(stage, code) then
    return nil, "reply code " .. code .. " does not fit stage " .. stage
      .. " (4xx/5xx anywhere; 220 at connect, 354 at data, 221 at quit, 2xx elsewhere)"
  end
  if text == nil then text = M.text(code, stage) end
  local err, n = check_text(text)
  if err then return nil, "reply: " .. err end
  return code, text, n
end

local function check_number(name, v, lo, hi, integer)
  if type(v) == "function" then return nil end
  if type(v) ~= "number" or v ~= v or (integer and math_type(v) ~= "integer") then
    return name .. " must be " .. (integer and "an integer" or "a number") .. " or a function"
  end
  if v < lo or v > hi then return name .. " must be from " .. lo .. " to " .. hi end
  return nil
end

-- Syntax errors of a Lua pattern, which string.find only reports when the
-- match gets that far: a trailing '%', an unclosed set, %b and %f without
-- their arguments, unbalanced captures. Returns nil or the reason.
local function pattern_error(p)
  local i, n, depth = 1, #p, 0
  while i <= n do
    local c = p:sub(i, i)
    if c == "%" then
      local d = p:sub(i + 1, i + 1)
      if d == "" then return "it ends with '%'" end
      if d == "b" then
        if i + 3 > n then return "'%b' needs two characters" end
        i = i + 4
      elseif d == "f" then
        if p:sub(i + 2, i + 2) ~= "[" then return "'%f' needs a set, as in %f[%w]" end
        i = i + 2
      else
        i = i + 2
      end
    elseif c == "[" then
      local j = i + 1
      if p:sub(j, j) == "^" then j = j + 1 end
      if p:sub(j, j) == "]" then j = j + 1 end
      while true do
        local e = p:sub(j, j)
        if e == "" then return "a set '[' is not closed" end
        if e == "]" then break end
        j = j + (e == "%" and 2 or 1)
      end
      i = j + 1
    else
      if c == "(" then depth = depth + 1
      elseif c == ")" then
        depth = depth - 1
        if depth < 0 then return "a ')' closes no capture" end
      end
      i = i + 1
    end
  end
  if depth > 0 then return "a capture '(' is not closed" end
  return nil
end

local function check_patterns(name, v)
  if type(v) == "function" then return nil end
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" or #v == 0 then
    return name .. " must be a Lua pattern, a list of patterns or a function"
  end
  for _, p in ipairs(v) do
    if type(p) ~= "string" then return name .. ": every pattern must be a string" end
    local ok, err = pcall(find, "", p)
    err = not ok and tostring(err) or pattern_error(p)
    if err then return name .. " pattern '" .. p .. "' is not a valid Lua pattern: " .. err end
  end
  return nil
end

local function check_numbers(name, v)
  if type(v) == "function" then return nil end
  if math_type(v) == "integer" then v = { v } end
  if type(v) ~= "table" or #v == 0 then
    return name .. " must be an integer, a list of integers or a function"
  end
  for _, n in ipairs(v) do
    if math_type(n) ~= "integer" or n < 1 then return name .. ": numbers count from 1" end
  end
  return nil
end

local function list_of(v)
  if type(v) == "table" then return v end
  return { v }
end

local function set_of(list)
  local set = {}
  for _, x in ipairs(list) do set[x] = true end
  return set
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  return keys
end

-- Validates and normalises one rule; returns the compiled rule or nil, err.
local function compile_rule(rule, i)
  local where = "faults rule " .. i .. (type(rule) == "table" and type(rule.name) == "string"
    and (" (" .. rule.name .. ")") or "")
  local function fail(msg) return nil, where .. ": " .. msg end
  if type(rule) ~= "table" then return fail("must be a table, got " .. type(rule)) end
  for k in pairs(rule) do
    if not FIELDS[k] then
      return fail("unknown field '" .. tostring(k) .. "' (known: "
        .. concat(sorted_keys(FIELDS), ", ") .. ")")
    end
  end
  local r = { index = i, name = rule.name, fired = 0 }

  -- stages
  local stages = rule.stage
  if stages == nil then
    if rule.stall ~= nil then stages = "message"
    elseif rule.rcpt ~= nil then stages = "rcpt"
    elseif rule.sender ~= nil then stages = "mail"
    elseif rule.helo ~= nil then stages = { "helo", "ehlo" }
    elseif rule.message ~= nil or rule.server_message ~= nil then stages = "message"
    elseif rule.connection ~= nil then stages = "connect"
    else return fail("no stage: give stage = \"" .. concat(M.STAGES, "\" | \"") .. "\"") end
  end
  stages = list_of(stages)
  if #stages == 0 then return fail("stage is an empty list") end
  for _, st in ipairs(stages) do
    if not HOOK[st] then
      return fail("unknown stage '" .. tostring(st) .. "' (stages: " .. concat(M.STAGES, ", ") .. ")")
    end
  end
  r.stages = stages
  r.stage_set = set_of(stages)

  -- matchers
  for _, m in ipairs({ "rcpt", "sender", "helo" }) do
    if rule[m] ~= nil then
      local err = check_patterns(m, rule[m])
      if err then return fail(err) end
      r[m] = type(rule[m]) == "function" and rule[m] or list_of(rule[m])
    end
  end
  for _, m in ipairs({ "message", "server_message", "connection" }) do
    if rule[m] ~= nil then
      local err = check_numbers(m, rule[m])
      if err then return fail(err) end
      r[m] = type(rule[m]) == "function" and rule[m] or set_of(list_of(rule[m]))
    end
  end
  for _, m in ipairs({ "rcpt", "sender", "helo", "message", "server_message" }) do
    if rule[m] ~= nil then
      for _, st in ipairs(stages) do
        if not MATCHER_STAGES[m][st] then
          return fail(m .. " cannot match at stage " .. st .. " (nothing to look at yet)")
        end
      end
    end
  end
  if rule.times ~= nil and (math_type(rule.times) ~= "integer" or rule.times < 1) then
    return fail("times must be an integer >= 1")
  end
  r.times = rule.times
  if rule.when ~= nil and type(rule.when) ~= "function" then
    return fail("when must be a function(ctx)")
  end
  r.when = rule.when
  if rule.name ~= nil and type(rule.name) ~= "string" then return fail("name must be a string") end

  -- actions
  local err = (rule.delay ~= nil and check_number("delay", rule.delay, 0, MAX_DELAY))
    or (rule.stall ~= nil and check_number("stall", rule.stall, 0, MAX_DELAY))
    or (rule.line_delay ~= nil and check_number("line_delay", rule.line_delay, 0, 3600))
    or (rule.drop_after ~= nil and check_number("drop_after", rule.drop_after, 0, 64, true))
  if err then return fail(err) end
  r.delay, r.stall, r.line_delay, r.drop_after =
    rule.delay, rule.stall, rule.line_delay, rule.drop_after
  if rule.stall ~= nil and (#stages ~= 1 or stages[1] ~= "message") then
    return fail("stall is a sleep after the final dot: it needs stage \"message\" (use delay elsewhere)")
  end
  local close = rule.close
  if close ~= nil and close ~= false and close ~= "after" and close ~= "instead" then
    return fail("close must be \"after\" (reply, then close), \"instead\" (close, no reply) or false")
  end
  if close == "instead" and (rule.reply ~= nil or rule.line_delay ~= nil or rule.drop_after ~= nil) then
    return fail("close = \"instead\" sends no reply: drop reply, line_delay and drop_after")
  end
  r.close = close

  if rule.reply ~= nil then
    if type(rule.reply) == "function" then
      r.reply = rule.reply
    else
      for _, st in ipairs(stages) do
        local code, text, n = norm_reply(rule.reply, st)
        if not code then return fail(text) end
        if rule.line_delay ~= nil and type(rule.line_delay) == "number" and n < 2 then
          return fail("line_delay paces the lines of a multi-line reply: give the text as a list of lines")
        end
      end
      r.reply = rule.reply
    end
  elseif close == "after" then
    r.reply = 421
  elseif rule.line_delay ~= nil or rule.drop_after ~= nil then
    if #stages ~= 1 or stages[1] ~= "ehlo" then
      return fail("line_delay and drop_after shape a reply: give reply (only at stage ehlo"
        .. " do they apply to the server's own reply)")
    end
  end
  if r.reply == nil and not close and rule.delay == nil and rule.stall == nil
    and rule.line_delay == nil and rule.drop_after == nil then
    return fail("does nothing: give reply, delay, stall, close, line_delay or drop_after")
  end
  return r
end

-- Validates a list of rules; returns the compiled list. Raises an error
-- naming the caller's line (level 2) for the first bad rule.
function M.compile(rules)
  if type(rules) ~= "table" then error("faults: rules must be a list of tables, got " .. type(rules), 2) end
  local out = {}
  for k in pairs(rules) do
    if math_type(k) ~= "integer" or k < 1 or k > #rules then
      error("faults: rules must be a list (found the key " .. tostring(k) .. ")", 2)
    end
  end
  for i, rule in ipairs(rules) do
    local r, err = compile_rule(rule, i)
    if not r then error(err, 2) end
    out[i] = r
  end
  return out
end

---------------------------------------------------------------------------
-- Matching (pure: reads ctx and the rules, changes nothing)
---------------------------------------------------------------------------

-- The addresses a matcher looks at in ctx.
local function candidates(kind, ctx)
  local stage, s, st = ctx.stage, ctx.s or {}, ctx.state or {}
  if kind == "helo" then
    if stage == "helo" or stage == "ehlo" then return { ctx.arg } end
    return { s.helo }
  elseif kind == "sender" then
    if stage == "mail" then return { ctx.arg } end
    if stage == "message" and ctx.msg then return { ctx.msg.sender } end
    if stage == "rset" or stage == "quit" then return st.senders or {} end
    return { s.sender }
  else -- rcpt
    if stage == "rcpt" then return { ctx.arg } end
    if stage == "message" and ctx.msg then return ctx.msg.recipients or {} end
    if stage == "rset" or stage == "quit" then return st.rcpts or {} end
    return s.recipients or {}
  end
end

-- Matches one address matcher; returns true and the captures, or false.
local function match_addr(m, kind, ctx)
  local list = candidates(kind, ctx)
  for _, a in ipairs(list) do
    if a ~= nil then
      if type(m) == "function" then
        if m(a, ctx) then return true, {} end
      else
        local la = lower(a)
        for _, p in ipairs(m) do
          local res = { find(la, p) }
          if res[1] then return true, { select(3, unpack(res)) } end
        end
      end
    end
  end
  return false
end

local function match_num(m, n, ctx)
  if n == nil then return false end
  if type(m) == "function" then return not not m(n, ctx) end
  return m[n] == true
end

-- The first rule of `compiled` that fires for ctx = { stage, s, msg, arg,
-- message, server_message, connection, state }, and the captures of its
-- first address pattern. Sets ctx.captures and ctx.rule when one fires.
function M.match(compiled, ctx)
  if type(compiled) ~= "table" or type(ctx) ~= "table" then
    error("faults.match(compiled, ctx): two tables expected", 2)
  end
  for _, r in ipairs(compiled) do
    if r.stage_set[ctx.stage] and not (r.times and r.fired >= r.times) then
      local ok, captures = true, nil
      for _, kind in ipairs({ "rcpt", "sender", "helo" }) do
        if ok and r[kind] then
          local hit, caps = match_addr(r[kind], kind, ctx)
          ok = hit
          if hit and not captures and #caps > 0 then captures = caps end
        end
      end
      ok = ok and (not r.message or match_num(r.message, ctx.message, ctx))
        and (not r.server_message or match_num(r.server_message, ctx.server_message, ctx))
        and (not r.connection or match_num(r.connection, ctx.connection, ctx))
      if ok then
        ctx.captures = captures or {}
        ctx.rule = r.index
        if not r.when or r.when(ctx) then return r, ctx.captures end
      end
    end
  end
  ctx.captures, ctx.rule = nil, nil
  return nil
end

---------------------------------------------------------------------------
-- Acting
---------------------------------------------------------------------------

local function value(v, ctx)
  if type(v) == "function" then return v(ctx) end
  return v
end

local function runtime_number(r, name, v, lo, hi, integer)
  local err = check_number(name, v, lo, hi, integer)
  if err or type(v) ~= "number" then
    error(format("faults rule %d: %s returned by a function: %s", r.index, name,
      err or "got a function"), 0)
  end
  return v
end

-- What the rule does, as a plan: { delay, close, code, text, line_delay,
-- drop_after } (numbers resolved, reply normalised). Pure but for calling
-- the rule's own functions; raises an error for a bad function result.
function M.plan(r, ctx)
  local p = {}
  local d = r.delay ~= nil and value(r.delay, ctx) or nil
  local st = r.stall ~= nil and value(r.stall, ctx) or nil
  if d ~= nil then runtime_number(r, "delay", d, 0, MAX_DELAY) end
  if st ~= nil then runtime_number(r, "stall", st, 0, MAX_DELAY) end
  p.delay = (d or 0) + (st or 0)
  if r.line_delay ~= nil then
    p.line_delay = runtime_number(r, "line_delay", value(r.line_delay, ctx), 0, 3600)
  end
  if r.drop_after ~= nil then
    p.drop_after = runtime_number(r, "drop_after", value(r.drop_after, ctx), 0, 64, true)
  end
  p.close = r.close
  if r.reply ~= nil then
    local v = r.reply
    if type(v) == "function" then
      local a, b = v(ctx)
      if b ~= nil then v = { a, b } else v = a end
    end
    local code, text = norm_reply(v, ctx.stage)
    if not code then error(format("faults rule %d: %s", r.index, text), 0) end
    p.code, p.text = code, text
    if p.close == nil and code == 421 then p.close = "after" end
  end
  return p
end

-- Carries out a plan with the luamta API; returns what the hook returns.
local function perform(api, p, ctx, base_fn, ...)
  if p.delay > 0 then api.sleep(p.delay) end
  if p.close == "instead" then return api.disconnect() end
  local code, text = p.code, p.text
  if code == nil and ctx.stage == "ehlo" and (p.line_delay or p.drop_after) then
    local kw = select(3, ...) -- (s, name, keywords)
    local lines = { api.hostname or "luamta" }
    for _, k in ipairs(type(kw) == "table" and kw or {}) do lines[#lines + 1] = k end
    code, text = 250, lines
  end
  if code == nil then
    if base_fn then return base_fn(...) end
    return
  end
  if p.line_delay or p.drop_after then
    local drop = p.drop_after
    if p.close == "after" and drop == nil then
      drop = type(text) == "table" and #text or 1
    end
    return api.reply(code, text, { line_delay = p.line_delay, drop_after = drop })
  end
  if p.close == "after" then return api.disconnect(code, text) end
  return code, text
end

---------------------------------------------------------------------------
-- The policy
---------------------------------------------------------------------------

local policies = 0

-- Builds a hook table from rules and, optionally, a base hook table (your
-- own hooks, called when no rule fires; other keys such as verbs or
-- on_auth are passed through). opts.luamta replaces the luamta API (for
-- unit tests: sleep, disconnect, reply, hostname).
function M.policy(rules, base, opts)
  if type(rules) ~= "table" then error("faults.policy: rules must be a list of tables, got " .. type(rules), 2) end
  if base ~= nil and type(base) ~= "table" then error("faults.policy: base must be a hook table", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("faults.policy: opts must be a table", 2) end
  local ok, compiled = pcall(M.compile, rules)
  if not ok then error(compiled, 2) end
  base = base or {}
  opts = opts or {}
  local api = opts.luamta
  if api == nil then
    local found, mod = pcall(require, "luamta")
    if found then api = mod end
  end
  if api == nil then error("faults.policy: no luamta API (outside luamta, pass opts.luamta)", 2) end

  policies = policies + 1
  local key = "luamta.faults." .. policies
  local counts = { connections = 0, messages = 0 } -- this worker, since load

  local used = {}
  for _, r in ipairs(compiled) do
    for _, st in ipairs(r.stages) do used[st] = true end
  end
  -- the counters and the session's addresses need these
  used.connect, used.mail, used.rcpt = true, true, true

  local hooks = {}
  for k, v in pairs(base) do hooks[k] = v end

  local function state(s)
    local vars = s.vars
    local st = vars[key]
    if not st then
      st = { messages = 0, senders = {}, rcpts = {} }
      vars[key] = st
    end
    return st
  end

  for _, stage in ipairs(M.STAGES) do
    if used[stage] then
      local name = HOOK[stage]
      local base_fn = base[name]
      hooks[name] = function(s, ...)
        local st = state(s)
        local arg = nil
        if stage == "connect" then
          counts.connections = counts.connections + 1
          st.connection = counts.connections
        elseif stage == "mail" then
          counts.messages = counts.messages + 1
          st.messages = st.messages + 1
          st.server_message = counts.messages
          arg = ...
          st.senders[#st.senders + 1] = arg
        elseif stage == "rcpt" then
          arg = ...
          st.rcpts[#st.rcpts + 1] = arg
        elseif stage == "helo" or stage == "ehlo" then
          arg = ...
        end
        local ctx = {
          stage = stage, s = s, arg = arg, state = st,
          msg = stage == "message" and (...) or nil,
          message = st.messages > 0 and st.messages or nil,
          server_message = st.server_message, connection = st.connection,
        }
        local r = M.match(compiled, ctx)
        if not r then
          if base_fn then return base_fn(s, ...) end
          return
        end
        r.fired = r.fired + 1
        local p = M.plan(r, ctx)
        if s.log then
          s:log(format("faults.fire rule=%d%s stage=%s%s%s%s", r.index,
            r.name and (" name=" .. r.name) or "", stage,
            p.code and (" code=" .. p.code) or "",
            p.delay > 0 and (" delay=" .. p.delay) or "",
            p.close and (" close=" .. tostring(p.close)) or ""))
        end
        return perform(api, p, ctx, base_fn, s, ...)
      end
    end
  end
  return hooks
end

return M
