/* dmarc_lua.h - luamta.dmarc.check (DMARC, RFC 7489: looks the policy up
 * in DNS, parking the hook) and luamta.auth_results (the value of an
 * Authentication-Results field, RFC 8601). The rules themselves are
 * dmarc.c's and authres.c's. */
#ifndef LUAMTA_DMARC_LUA_H
#define LUAMTA_DMARC_LUA_H

#include <stddef.h>

#include <lua.h>

#define DMARC_LUA_TIMEOUT  5.0 /* seconds a check waits for DNS by default */
#define DMARC_LUA_DKIM_MAX 64  /* dkim results read from the array */

/* What luamta.dmarc.check reads of the message: the envelope sender (""
 * for <>), the session's HELO name (NULL before one), and the message's
 * first bytes as its store keeps them in memory. Borrowed for the call. */
struct dmarc_lua_msg {
	const char *sender, *helo;
	const char *head;
	size_t hlen;
};

/* luamta.dmarc.check(msg, spf, dkim [, opts]) once the message handle at
 * index 1 was read into m: checks the other arguments, parks the hook and
 * yields (or returns at once when the message has no usable From). */
int dmarc_lua_check(lua_State *L, const struct dmarc_lua_msg *m);

/* Sets the fields dmarc (with check: the function that reads the message
 * handle into a struct dmarc_lua_msg and calls dmarc_lua_check, which is
 * the handle's owner's to write) and auth_results of the table on top of
 * L's stack; hostname is the authserv-id auth_results uses by default. */
void dmarc_lua_open(lua_State *L, const char *hostname, lua_CFunction check);
/* Frees what the module keeps between calls. */
void dmarc_lua_shutdown(void);

#endif
