-- luamta.capture - the capture mode (`luamta --capture DIR`): every message
-- the policy accepts is stored in DIR as <qid>.eml plus one JSON line in
-- DIR/messages.jsonl, so a test in any language can read what arrived.
--
-- The core calls capture.wrap(policy, DIR) right after loading the policy
-- (the table the script returned, or {} without --script) and uses the
-- table it returns as the policy. That table has every field of the
-- original and an on_message that runs the original's on_message first:
--
--   * the original rejects (false, 4xx/5xx, luamta.disconnect() without a
--     2xx), returns something the core would refuse (and answer 451), or
--     called a deliverer that failed (the core answers 451 then too):
--     nothing is stored, and its values go back to the core unchanged;
--   * it accepts (nothing, true, a 2xx, luamta.disconnect(2xx, ...),
--     luamta.reply(2xx, ...)): the message is saved (msg:save: temp file,
--     fsync, rename) and its JSON line appended (luamta.append: O_APPEND,
--     one write, fsync) before the reply is sent, then the original's
--     values are returned unchanged. If storing fails the client gets
--     451 4.3.0 Capture failed and keeps the message.
--
-- A deliverer that failed (msg:deliver_*) sets msg.delivery_failed, and
-- the core answers 451 then: such a message is not stored either.
--
-- One JSON object per line (lua-cjson):
--   qid, time (ISO 8601 UTC), session, sender, recipients, mail_params,
--   peer_ip, peer_port, local_ip, local_port, helo, esmtp, tls (s.tls or
--   null), user (s.user or null), size, eml (file name in DIR),
--   reply = { code, text }: what the client gets (lines joined by "\n"),
--   plus line_delay and drop_after when the policy paced it with
--   luamta.reply (the client then sees only drop_after lines).
--
-- capture.read(DIR) returns those entries, oldest first, each with .data
-- (the .eml content); JSON nulls become nil, integral numbers integers.
local cjson = require "cjson"

local M = {}

local type, pairs, ipairs, tostring, error, pcall = type, pairs, ipairs,
  tostring, error, pcall
local math_type, tointeger = math.type, math.tointeger
local io_open, os_date = io.open, os.date
local concat = table.concat
local setmetatable, rawequal = setmetatable, rawequal
local pack, unpack = table.pack, table.unpack
local utf8_len = utf8.len
local require, package_loaded = require, package.loaded

local json = cjson.new() -- a private instance: settings do not leak
local NULL = cjson.null

M.FILE = "messages.jsonl"
M.TEXT_MAX = 506 -- reply text bytes per line, as the core enforces
M.FAILED = { 451, "4.3.0 Capture failed" }

-- The luamta API table: the global of the server's state, reached through
-- require so that unit specs can put a fake in package.loaded.luamta.
local function api()
  return package_loaded["luamta"] or require("luamta")
end

-- "2.0.0" from "2.0.0 text", or nil (RFC 3463 code followed by a space).
local function enhanced_of(line)
  local class, a, b = line:match("^([245])%.(%d+)%.(%d+) ")
  if class and #a <= 3 and #b <= 3 then return class .. "." .. a .. "." .. b end
  return nil
end

-- The lines of reply text t as the core would send them, or nil when the
-- core would refuse t (and answer 451 itself). code is the reply code.
local function reply_lines(code, t)
  local list
  if t == nil then return { "Ok" } end
  if type(t) == "table" then
    local n = #t
    if n == 0 or n > 64 then return nil end
    list = {}
    for i = 1, n do list[i] = t[i] end
  else
    list = { t }
  end
  for i, line in ipairs(list) do
    if type(line) == "number" then line = tostring(line)
    elseif type(line) ~= "string" then return nil end
    if #line > M.TEXT_MAX or line:find("[%z\1-\31\127]") or not utf8_len(line) then
      return nil
    end
    local enh = enhanced_of(line)
    if enh and tointeger(enh:sub(1, 1)) ~= code // 100 then return nil end
    list[i] = line
  end
  return list
end

-- Given the values the original on_message returned (packed), the reply
-- { code =, text = } the client gets when they accept the message with
-- a reply, or nil when they do not accept it.
local function accepted_reply(r, tokens, qid)
  local first = r[1]
  if r.n == 0 or first == nil or first == true then
    return { code = 250, text = "2.0.0 Ok: queued as " .. qid }
  end
  local idx, pacing = 1, nil
  if first ~= nil and first == tokens.disconnect then
    if r.n < 2 or r[2] == nil then return nil end -- closes without a reply
    idx = 2
  elseif first ~= nil and first == tokens.reply then
    -- luamta.reply(code, text, { line_delay =, drop_after = })
    idx = 2
    local o = r[4]
    if o ~= nil then
      if type(o) ~= "table" then return nil end
      local delay, drop = o.line_delay, o.drop_after
      if delay ~= nil and (type(delay) ~= "number" or not (delay >= 0) or delay > 3600) then
        return nil
      end
      if drop ~= nil then
        drop = type(drop) == "number" and tointeger(drop)
        if not drop or drop < 0 or drop > 64 then return nil end
      end
      pacing = { line_delay = delay, drop_after = drop }
    end
  end
  local code = r[idx]
  if type(code) ~= "number" then return nil end
  code = tointeger(code)
  if not code or code < 200 or code > 299 then return nil end
  local lines = reply_lines(code, r[idx + 1])
  if not lines then return nil end
  -- Every line carries an enhanced code: its own, else the first line's,
  -- else 2.0.0 (RFC 2034 3).
  local enh = enhanced_of(lines[1]) or "2.0.0"
  local out = {}
  for i, line in ipairs(lines) do
    out[i] = enhanced_of(line) and line or (enh .. " " .. line)
  end
  local reply = { code = code, text = concat(out, "\n") }
  if pacing then
    -- The server accepted the message; the client may see only the first
    -- drop_after lines before the connection drops (fault injection).
    reply.line_delay, reply.drop_after = pacing.line_delay, pacing.drop_after
  end
  return reply
end
M.accepted_reply = accepted_reply

local function or_null(v)
  if v == nil then return NULL end
  return v
end

local function iso_now()
  return os_date("!%Y-%m-%dT%H:%M:%SZ")
end

-- Stores msg; returns true or nil, err.
local function store(dir, lm, s, msg, reply)
  local qid = msg.qid
  if type(qid) ~= "string" or not qid:match("^[%w._-]+$") then
    return nil, "message has no usable qid (" .. tostring(qid) .. ")"
  end
  local name = qid .. ".eml"
  local ok, err = msg:save(dir .. "/" .. name)
  if not ok then return nil, "save " .. name .. ": " .. tostring(err) end
  local params = s.mail_params
  if type(params) ~= "table" then params = {} end -- cjson: an empty table is {}
  local entry = {
    qid = qid,
    time = iso_now(),
    session = or_null(s.id),
    sender = msg.sender or s.sender or "",
    recipients = msg.recipients or s.recipients,
    mail_params = params,
    peer_ip = or_null(s.peer_ip),
    peer_port = or_null(s.peer_port),
    local_ip = or_null(s.local_ip),
    local_port = or_null(s.local_port),
    helo = or_null(s.helo),
    esmtp = s.esmtp == true,
    tls = or_null(s.tls),
    user = or_null(s.user),
    size = or_null(msg.size),
    eml = name,
    reply = reply,
  }
  local encoded, line = pcall(json.encode, entry)
  if not encoded then return nil, "json: " .. tostring(line) end
  ok, err = lm.append(dir .. "/" .. M.FILE, line .. "\n")
  if not ok then return nil, "append " .. M.FILE .. ": " .. tostring(err) end
  return true
end

-- Wraps policy (a table of hooks) so that accepted messages are captured
-- into dir (an existing, writable directory; messages.jsonl is created
-- there at once, so a reader always finds it). Returns the new policy.
function M.wrap(policy, dir)
  if type(policy) ~= "table" then
    error("capture.wrap: policy must be a table, got " .. type(policy), 2)
  end
  if type(dir) ~= "string" or dir == "" then
    error("capture.wrap: dir must be a directory path", 2)
  end
  dir = dir:gsub("(.)/+$", "%1")
  local f, err = io_open(dir .. "/" .. M.FILE, "ab")
  if not f then error("capture: cannot write in " .. dir .. ": " .. tostring(err), 2) end
  f:close()
  local lm = api()
  -- The markers the core puts first in luamta.disconnect() and
  -- luamta.reply() returns.
  local tokens = { disconnect = (lm.disconnect()) }
  if lm.reply then tokens.reply = (lm.reply(250)) end
  local original = policy.on_message
  if original ~= nil and type(original) ~= "function" then
    error("capture.wrap: policy.on_message must be a function", 2)
  end

  local wrapped = {}
  for k, v in pairs(policy) do wrapped[k] = v end
  wrapped.on_message = function(s, msg)
    local r = original and pack(original(s, msg)) or { n = 0 }
    local reply = accepted_reply(r, tokens, tostring(msg.qid))
    if reply and msg.delivery_failed ~= true then
      local ok, why = store(dir, lm, s, msg, reply)
      if not ok then
        local log = lm.log
        if log then pcall(log, "capture.error qid=" .. tostring(msg.qid) .. " error=" .. why) end
        return M.FAILED[1], M.FAILED[2]
      end
    end
    return unpack(r, 1, r.n)
  end
  return wrapped
end

-- JSON nulls become nil, and numbers with an integer value integers
-- (lua-cjson 2.1 decodes every number as a float: 25.0 would print so).
local function normalise(t)
  for k, v in pairs(t) do
    if v == NULL then
      t[k] = nil
    elseif math_type(v) == "float" and tointeger(v) then
      t[k] = tointeger(v)
    elseif type(v) == "table" then
      normalise(v)
    end
  end
  return t
end

-- The captured entries in dir, oldest first, each decoded from its JSON
-- line with .data set to the content of its .eml file. A last line
-- without its newline (being written) is left out. Returns the list, or
-- nil and an error.
function M.read(dir)
  if type(dir) ~= "string" then error("capture.read: dir must be a path", 2) end
  local f, err = io_open(dir .. "/" .. M.FILE, "rb")
  if not f then return nil, "capture.read: " .. tostring(err) end
  local text = f:read("a")
  f:close()
  local list = {}
  local n = 0
  for line in text:gmatch("([^\n]*)\n") do
    n = n + 1
    if line ~= "" then
      local ok, entry = pcall(json.decode, line)
      if not ok or type(entry) ~= "table" then
        return nil, "capture.read: " .. M.FILE .. " line " .. n .. ": " .. tostring(entry)
      end
      normalise(entry)
      if type(entry.eml) ~= "string" or entry.eml:find("/", 1, true) then
        return nil, "capture.read: " .. M.FILE .. " line " .. n .. " has no eml file name"
      end
      local e = io_open(dir .. "/" .. entry.eml, "rb")
      if not e then return nil, "capture.read: missing " .. dir .. "/" .. entry.eml end
      entry.data = e:read("a")
      e:close()
      list[#list + 1] = entry
    end
  end
  return list
end

return M
