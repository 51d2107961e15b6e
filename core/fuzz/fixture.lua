-- core/fuzz/fixture.lua - the policy fuzz_session runs under. Every hook is
-- present, and what it does is chosen by a three-letter word found in its
-- argument, so the fuzzer (which sees these words in smtp.dict) can steer
-- each hook into every kind of result without any state outside the session:
--
--   rej  return false               cus  a custom 5xx with enhanced code
--   tmp  a custom 4xx without one   lst  a multi-line reply in the accept class
--   err  error()                    bad  invalid reply text (CR LF inside)
--   bye  disconnect with 421        drp  disconnect without a reply
--   zzz  luamta.sleep(0), then go on: the session parks with input pending
--   lop  loop until the instruction budget stops it
--   hog  allocate until the memory cap stops it
--   siz  s.max_size = 64            var  keep the argument in s.vars
--   hdr  (in the message) read and prepend headers
-- It delivers nothing: messages are looked at and dropped.
local luamta = require "luamta"

local ACCEPT = { on_data = 354, on_quit = 221, on_connect = 220 }

local function has(text, word)
  return type(text) == "string" and text:find(word, 1, true) ~= nil
end

-- The result of hook for the word found in text (nothing: accept).
local function act(hook, s, text)
  if has(text, "zzz") then
    luamta.sleep(0)
  end
  if has(text, "var") then
    s.vars.last = text
    s.vars.count = (s.vars.count or 0) + 1
  end
  if has(text, "siz") then
    s.max_size = 64
  end
  if has(text, "rej") then
    return false
  elseif has(text, "cus") then
    return 554, "5.7.1 " .. hook .. " refused by fixture"
  elseif has(text, "tmp") then
    return 450, "try again later"
  elseif has(text, "lst") then
    return ACCEPT[hook] or 250, { "first line", "second line", "2.0.0 third" }
  elseif has(text, "err") then
    error("fixture error in " .. hook)
  elseif has(text, "bad") then
    return 550, "5.7.1 bad\r\ntext"
  elseif has(text, "bye") then
    return luamta.disconnect(421, "4.7.0 fixture says bye")
  elseif has(text, "drp") then
    return luamta.disconnect()
  elseif has(text, "lop") then
    local n = 0
    while true do n = n + 1 end
  elseif has(text, "hog") then
    local t, chunk = {}, "x"
    while true do chunk = chunk .. chunk; t[#t + 1] = chunk end
  end
end

-- Flattens a params table into a word-searchable string.
local function flat(params)
  local parts = {}
  for k, v in pairs(params or {}) do
    parts[#parts + 1] = k .. "=" .. tostring(v)
  end
  table.sort(parts)
  return table.concat(parts, " ")
end

return {
  on_connect = function(s)
    -- Read every field once, so the session handle is exercised.
    s.vars.peer = s.peer_ip .. ":" .. s.peer_port .. " " .. tostring(s.local_ip)
  end,
  on_helo = function(s, name) return act("on_helo", s, name) end,
  on_ehlo = function(s, name, keywords)
    if has(name, "kw") then
      for i = #keywords, 1, -1 do
        if keywords[i]:find("^HELP") then table.remove(keywords, i) end
      end
      keywords[#keywords + 1] = "X-FUZZ"
    end
    return act("on_ehlo", s, name)
  end,
  on_mail = function(s, sender, params)
    return act("on_mail", s, sender .. " " .. flat(params))
  end,
  on_rcpt = function(s, rcpt, params)
    local _ = s.sender, #s.recipients, s.state
    return act("on_rcpt", s, rcpt .. " " .. flat(params))
  end,
  on_data = function(s)
    return act("on_data", s, table.concat(s.recipients, " "))
  end,
  on_message = function(s, msg)
    local text = msg:header("x-act") or ""
    if has(msg.data, "hdr") then
      local _ = msg:headers("received"), msg:header("subject"), msg.size, #msg.data
      msg:prepend_header("X-Fuzz", "seen " .. tostring(msg.size))
      local _ = msg:header("x-fuzz")
    end
    return act("on_message", s, text)
  end,
  on_rset = function(s) return act("on_rset", s, s.vars.last) end,
  on_vrfy = function(s, arg) return act("on_vrfy", s, arg) end,
  on_quit = function(s) return act("on_quit", s, s.helo) end,
  on_unknown = function(s, verb, arg) return act("on_unknown", s, arg) end,
  on_auth = function(s, mech, user, password)
    if user == "good" then return true end
    return act("on_auth", s, password)
  end,
  on_disconnect = function(s)
    s.vars.gone = true
  end,
  verbs = {
    XFUZZ = function(s, arg) return act("XFUZZ", s, arg) end,
  },
}
