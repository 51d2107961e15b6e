-- spec/helpers/smtp.lua - the client half of the public test kit,
-- lua/luamta/testing.lua (`require "luamta.testing"`), which owns the code:
-- connect() and the c:send(line):expect(code, enhanced) client, parse_reply,
-- stuff, crlf, normalise. This file returns that very module, so every spec
-- that says `require "smtp"` exercises the public module.
return require "luamta.testing"
