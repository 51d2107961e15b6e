/* hook_session.c - the session handle's computed fields and waiting
 * methods: s.tls and s.proxy built on each read, s:rdns() and s:spf(),
 * which wait for DNS and keep their answer for the session (or the
 * transaction). Split from hook_api.c, which owns the handle itself and
 * its plain fields; the two share hook_api_int.h. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "conn.h"
#include "dns_lua.h"
#include "dns_msg.h"
#include "hook_api.h"
#include "hook_api_int.h"
#include "smtp_session_types.h"
#include "spf_lua.h"
#include "tls.h"

/* s.tls: nil in plaintext, else { version, cipher, client_cert = nil or
 * { subject, fingerprint, verified, error } }. */
void
hook_api_push_tls(lua_State *L, struct smtp_session *s)
{
	struct tls *t = s->tls_active ? conn_tls(s->conn) : NULL;
	char buf[1024];

	if (t == NULL) {
		lua_pushnil(L);
		return;
	}
	lua_createtable(L, 0, 3);
	lua_pushstring(L, tls_version(t));
	lua_setfield(L, -2, "version");
	lua_pushstring(L, tls_cipher(t));
	lua_setfield(L, -2, "cipher");
	if (!tls_peer_cert_present(t))
		return;
	lua_createtable(L, 0, 4);
	if (tls_peer_subject(t, buf, sizeof(buf)) == 0) {
		lua_pushstring(L, buf);
		lua_setfield(L, -2, "subject");
	}
	if (tls_peer_fingerprint(t, buf, sizeof(buf)) == 0) {
		lua_pushstring(L, buf);
		lua_setfield(L, -2, "fingerprint");
	}
	lua_pushboolean(L, tls_peer_cert_verified(t));
	lua_setfield(L, -2, "verified");
	if (!tls_peer_cert_verified(t)) {
		lua_pushstring(L, tls_peer_verify_str(t, buf, sizeof(buf)));
		lua_setfield(L, -2, "error");
	}
	lua_setfield(L, -2, "client_cert");
}

static void
set_text(lua_State *L, const char *key, const char *v)
{
	if (v[0] == '\0')
		return;
	lua_pushstring(L, v);
	lua_setfield(L, -2, key);
}

/* s.proxy: nil, or what the load balancer said (s.peer_ip and s.local_ip
 * already are its client's addresses): the proxy's own address, the
 * header's version, whether it was LOCAL, and the client's TLS with the
 * proxy as version 2 TLVs gave it. */
void
hook_api_push_proxy(lua_State *L, const struct smtp_proxy *px)
{
	const struct proxy_hdr *h;

	if (px == NULL) {
		lua_pushnil(L);
		return;
	}
	h = &px->hdr;
	lua_createtable(L, 0, 6);
	lua_pushstring(L, px->ip);
	lua_setfield(L, -2, "ip");
	lua_pushinteger(L, px->port);
	lua_setfield(L, -2, "port");
	lua_pushinteger(L, h->version);
	lua_setfield(L, -2, "version");
	lua_pushboolean(L, h->local);
	lua_setfield(L, -2, "local");
	set_text(L, "authority", h->authority);
	set_text(L, "alpn", h->alpn);
	if (!h->ssl)
		return;
	lua_createtable(L, 0, 3);
	set_text(L, "version", h->ssl_version);
	set_text(L, "cipher", h->ssl_cipher);
	if (h->ssl_cert) {
		lua_createtable(L, 0, 2);
		set_text(L, "cn", h->ssl_cn);
		lua_pushboolean(L, h->ssl_verified);
		lua_setfield(L, -2, "verified");
		lua_setfield(L, -2, "client_cert");
	}
	lua_setfield(L, -2, "tls");
}

/* s:rdns([opts]): the client's forward-confirmed reverse name
 * (luamta.dns.fcrdns on s.peer_ip), asked once per session: a name and a
 * permanent failure are kept, a temporary one is asked again next time. */
static int
session_rdns_k(lua_State *L, int status, lua_KContext ctx)
{
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_SESSION);
	const char *err = lua_tostring(L, -1);

	(void)status;
	(void)ctx;
	if (lua_type(L, -2) == LUA_TSTRING) {
		free(s->rdns);
		s->rdns = strdup(lua_tostring(L, -2));
	} else if (err != NULL &&
	    (strcmp(err, "nxdomain") == 0 || strcmp(err, "nodata") == 0 ||
		strcmp(err, "mismatch") == 0))
		snprintf(s->rdns_err, sizeof(s->rdns_err), "%s", err);
	return 2;
}

int
hook_session_rdns(lua_State *L)
{
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_SESSION);
	unsigned char addr[16];

	if (s->rdns != NULL) {
		lua_pushstring(L, s->rdns);
		return 1;
	}
	if (s->rdns_err[0] != '\0' || dns_addr_parse(s->peer_ip, addr) == 0) {
		lua_pushnil(L);
		lua_pushstring(L, s->rdns_err[0] != '\0' ? s->rdns_err : "nodata");
		return 2;
	}
	lua_settop(L, 2); /* s, opts */
	lua_pushcfunction(L, dns_lua_fcrdns);
	lua_pushstring(L, s->peer_ip);
	lua_pushvalue(L, 2);
	lua_callk(L, 2, 2, 0, session_rdns_k);
	return session_rdns_k(L, LUA_OK, 0);
}

/* s:spf([opts]): luamta.spf.check for the client's address, its HELO
 * name and the transaction's sender (in on_mail, the MAIL command's). The
 * result is kept in the session until the transaction ends (a new MAIL,
 * RSET, HELO, the end of the message: smtp_session.c forgets it), except a
 * temperror, which is asked again next time. */
static int
session_spf_k(lua_State *L, int status, lua_KContext ctx)
{
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_SESSION);

	(void)status;
	(void)ctx;
	spf_lua_keep(L, &s->spf, lua_tostring(L, 3));
	return 2;
}

int
hook_session_spf(lua_State *L)
{
	struct smtp_session *s = hook_api_check(L, 1, HOOK_API_SESSION);
	const char *helo = s->helo != NULL ? s->helo : "";
	const char *sender = s->tx != NULL ? s->tx->sender : s->pend.mail_hook ? s->pend.arg : NULL;

	if (sender == NULL)
		return luaL_error(L, "s:spf(): no transaction (call it from on_mail on)");
	lua_settop(L, 2);                                           /* s, opts */
	lua_pushfstring(L, "%s\n%s\n%s", s->peer_ip, helo, sender); /* 3: the key */
	if (spf_lua_cached(L, s->spf, lua_tostring(L, 3)) == 2)
		return 2;
	spf_lua_push_call(L, s->peer_ip, helo, sender, 2);
	lua_callk(L, 1, 2, 0, session_spf_k);
	return session_spf_k(L, LUA_OK, 0);
}
