/* dkim_lua.c - msg:dkim_sign{} and msg:dkim_verify(): the options read
 * raw, the key file, the message read from its store in pieces (a spilled
 * message is never held whole), the field prepended through the same path
 * as msg:prepend_header, and the keys fetched through dns.h without
 * blocking.
 *
 * Signing and the hashing of a verification are synchronous: they cost
 * what reading the message costs (a delivery reads it the same way).
 * Verifying then parks the hook while every key is looked up at once, one
 * TXT query per signature, each with the call's timeout. The state of a
 * verification (struct dkim_lua_op) is a userdata on the hook's own stack,
 * so it lives exactly as long as the call: a park that raises leaves
 * nothing behind, and a cancelled run cancels the queries (dkim_lua_cancel)
 * before its thread is closed. Between the allocations of C memory and
 * their frees, nothing is called that can raise. */
#include "dkim_lua.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "dkim.h"
#include "dns.h"
#include "dns_lua.h"
#include "hook.h"
#include "msgstore.h"

/* The message ---------------------------------------------------------------- */

/* The header fields of the store's memory part, in *fp (malloc'ed), and
 * where the body starts. Returns the count, or -1 with err. */
static int
dkim_lua_fields(const struct msgstore *ms, struct dkim_field **fp, size_t *body, const char **err)
{
	size_t hlen;
	const char *head = msgstore_head(ms, &hlen);
	int nf;

	if ((*fp = malloc(DKIM_FIELDS_MAX * sizeof(**fp))) == NULL) {
		*err = "out of memory";
		return -1;
	}
	nf = dkim_fields(head, hlen, *fp, DKIM_FIELDS_MAX, body);
	if (nf == -1)
		*err = "too many header fields";
	else if (*body == DKIM_NO_BODY && msgstore_spilled(ms)) {
		*err = "the header section is longer than the part of the message kept in memory";
		nf = -1;
	} else if (*body == DKIM_NO_BODY)
		*body = hlen; /* all header, no body */
	if (nf == -1) {
		free(*fp);
		*fp = NULL;
	}
	return nf;
}

/* Feeds the body (from off) to the n canonicalizers. Returns 0, or -1 with
 * errno. */
static int
dkim_lua_body(const struct msgstore *ms, size_t off, struct dkim_body **b, int n)
{
	char *buf = malloc(MSGSTORE_WBUF);
	const char *p;
	ssize_t got;

	if (buf == NULL)
		return -1;
	while ((got = msgstore_piece(ms, off, buf, MSGSTORE_WBUF, &p)) > 0) {
		for (int i = 0; i < n; i++)
			dkim_body_update(b[i], p, (size_t)got);
		off += (size_t)got;
	}
	free(buf);
	return got == 0 ? 0 : -1;
}

/* msg:dkim_sign{} ------------------------------------------------------------- */

/* A string option of the table at idx (read raw), or NULL when absent. */
static const char *
dkim_lua_opt(lua_State *L, int idx, const char *key, size_t *len)
{
	const char *v;

	lua_pushstring(L, key);
	if (lua_rawget(L, idx) == LUA_TNIL) {
		lua_pop(L, 1);
		return NULL;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "msg:dkim_sign: %s must be a string", key);
	v = lua_tolstring(L, -1, len);
	lua_pop(L, 1); /* still referenced by the table */
	return v;
}

/* Reads a key file of at most DKIM_KEY_FILE_MAX bytes, NUL-terminated.
 * Returns it (malloc'ed) or NULL with err. */
static char *
dkim_lua_read_key(const char *path, size_t *len, char *err, size_t esz)
{
	char *buf = malloc(DKIM_KEY_FILE_MAX + 1);
	size_t n = 0;
	ssize_t got;
	int fd;

	if (buf == NULL) {
		snprintf(err, esz, "out of memory");
		return NULL;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(err, esz, "cannot open the key %s: %s", path, strerror(errno));
		free(buf);
		return NULL;
	}
	while (
	    n <= DKIM_KEY_FILE_MAX && (got = read(fd, buf + n, DKIM_KEY_FILE_MAX + 1 - n)) != 0) {
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			snprintf(err, esz, "cannot read the key %s: %s", path, strerror(errno));
			break;
		}
		n += (size_t)got;
	}
	close(fd);
	if (n > DKIM_KEY_FILE_MAX)
		snprintf(err, esz, "the key %s is longer than %d bytes", path, DKIM_KEY_FILE_MAX);
	if (n > DKIM_KEY_FILE_MAX || got < 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* The signing itself, without Lua: 0 with the field in out (and its CRLF)
 * and *outlen, or -1 with err. */
static int
dkim_lua_do_sign(const struct msgstore *ms, const char *pem, size_t pemlen, enum dkim_alg alg,
    const char *domain, const char *selector, enum dkim_canon hc, enum dkim_canon bc,
    const char *const *want, char *out, size_t *outlen, char *err, size_t esz)
{
	struct dkim_signer sg;
	struct dkim_field *f = NULL;
	struct dkim_body body, *bp = &body;
	const char *names[DKIM_H_MAX], *e, *head;
	unsigned char bh[32];
	size_t boff, hlen;
	int nf, nn, len = -1;

	if (dkim_signer_load(&sg, pem, pemlen, alg, err, esz) == -1)
		goto out;
	if ((nf = dkim_lua_fields(ms, &f, &boff, &e)) == -1) {
		snprintf(err, esz, "%s", e);
		goto out;
	}
	head = msgstore_head(ms, &hlen);
	if ((nn = dkim_sign_names(head, f, nf, want, names, DKIM_H_MAX)) == -1) {
		snprintf(err, esz, "more than %d header fields to sign", DKIM_H_MAX);
		goto out;
	}
	dkim_body_init(&body, bc, -1);
	if (dkim_lua_body(ms, boff, &bp, 1) == -1) {
		snprintf(err, esz, "cannot read the message: %s", strerror(errno));
		dkim_body_finish(&body, bh);
		goto out;
	}
	dkim_body_finish(&body, bh);
	len = dkim_sign(
	    &sg, domain, selector, hc, bc, names, nn, time(NULL), bh, head, f, nf, out, err, esz);
	if (len >= 0) {
		memcpy(out + len, "\r\n", 2);
		*outlen = (size_t)len + 2;
	}
out:
	free(f);
	dkim_signer_free(&sg);
	return len >= 0 ? 0 : -1;
}

/* The canonicalization option: "header/body", or one word for the header
 * with a simple body (RFC 6376 3.5 c=). */
static void
dkim_lua_canon(lua_State *L, const char *c, enum dkim_canon *hc, enum dkim_canon *bc)
{
	static const struct {
		const char *name;
		enum dkim_canon h, b;
	} known[] = {
		{ "relaxed/relaxed", DKIM_RELAXED, DKIM_RELAXED },
		{ "relaxed/simple", DKIM_RELAXED, DKIM_SIMPLE },
		{ "simple/relaxed", DKIM_SIMPLE, DKIM_RELAXED },
		{ "simple/simple", DKIM_SIMPLE, DKIM_SIMPLE },
		{ "relaxed", DKIM_RELAXED, DKIM_SIMPLE },
		{ "simple", DKIM_SIMPLE, DKIM_SIMPLE },
	};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(c, known[i].name) == 0) {
			*hc = known[i].h;
			*bc = known[i].b;
			return;
		}
	luaL_error(L,
	    "msg:dkim_sign: canonicalization must be \"relaxed/relaxed\", "
	    "\"relaxed/simple\", \"simple/relaxed\" or \"simple/simple\"");
}

/* The headers option (the table at idx): names into want, NULL-ended. */
static void
dkim_lua_headers(lua_State *L, int idx, const char **want)
{
	lua_Unsigned n;

	if (lua_type(L, idx) != LUA_TTABLE)
		luaL_error(L, "msg:dkim_sign: headers must be a list of field names");
	n = lua_rawlen(L, idx);
	if (n == 0 || n > DKIM_H_MAX)
		luaL_error(L, "msg:dkim_sign: headers must list 1 to %d field names", DKIM_H_MAX);
	for (lua_Unsigned i = 0; i < n; i++) {
		size_t len;
		const char *name;

		if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TSTRING)
			luaL_error(L, "msg:dkim_sign: headers must be a list of field names");
		name = lua_tolstring(L, -1, &len);
		lua_pop(L, 1); /* still referenced by the table */
		/* RFC 5322 2.2: printable ASCII without ':'. */
		if (len == 0 || len > 76)
			luaL_error(L, "msg:dkim_sign: bad header name");
		for (size_t k = 0; k < len; k++)
			if (name[k] <= 32 || name[k] >= 127 || name[k] == ':')
				luaL_error(L, "msg:dkim_sign: bad header name");
		want[i] = name;
	}
	want[n] = NULL;
}

int
dkim_lua_sign(lua_State *L, const struct msgstore *ms, dkim_lua_prepend_fn *prepend, void *arg)
{
	static const char *const known[] = { "domain", "selector", "key", "algorithm", "headers",
		"canonicalization", NULL };
	const char *domain, *selector, *key, *a, *c, *want[DKIM_H_MAX + 1];
	enum dkim_canon hc = DKIM_RELAXED, bc = DKIM_RELAXED;
	enum dkim_alg alg = DKIM_ALG_NONE;
	char out[DKIM_FIELD_MAX + 2], err[256], *file = NULL;
	size_t keylen, outlen = 0, len;
	int rc, with_headers = 0;

	luaL_checktype(L, 2, LUA_TTABLE);
	lua_settop(L, 2);
	lua_pushnil(L);
	while (lua_next(L, 2) != 0) {
		int ok = 0;
		if (lua_type(L, -2) == LUA_TSTRING)
			for (int i = 0; known[i] != NULL; i++)
				ok |= strcmp(lua_tostring(L, -2), known[i]) == 0;
		if (!ok)
			return luaL_error(L, "msg:dkim_sign: unknown option %s",
			    lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "(not a name)");
		lua_pop(L, 1);
	}
	domain = dkim_lua_opt(L, 2, "domain", &len);
	selector = dkim_lua_opt(L, 2, "selector", &len);
	key = dkim_lua_opt(L, 2, "key", &keylen);
	if (domain == NULL || !dkim_name_ok(domain))
		return luaL_error(L, "msg:dkim_sign: domain must be a domain name");
	if (selector == NULL || !dkim_name_ok(selector))
		return luaL_error(L,
		    "msg:dkim_sign: selector must be a selector (labels of "
		    "letters, digits, '-' and '_')");
	if (key == NULL || keylen == 0 || strlen(key) != keylen)
		return luaL_error(L, "msg:dkim_sign: key must be a file name or a PEM key");
	if ((a = dkim_lua_opt(L, 2, "algorithm", &len)) != NULL) {
		if (strcmp(a, "rsa-sha256") == 0)
			alg = DKIM_RSA_SHA256;
		else if (strcmp(a, "ed25519-sha256") == 0)
			alg = DKIM_ED25519_SHA256;
		else
			return luaL_error(L,
			    "msg:dkim_sign: algorithm must be \"rsa-sha256\" or "
			    "\"ed25519-sha256\"");
	}
	if ((c = dkim_lua_opt(L, 2, "canonicalization", &len)) != NULL)
		dkim_lua_canon(L, c, &hc, &bc);
	lua_pushliteral(L, "headers");
	if (lua_rawget(L, 2) != LUA_TNIL) {
		dkim_lua_headers(L, 3, want);
		with_headers = 1;
	}
	/* The key: PEM text itself, or the name of a file holding it. */
	if (strstr(key, "-----BEGIN") == NULL) {
		if ((file = dkim_lua_read_key(key, &keylen, err, sizeof(err))) == NULL) {
			lua_pushnil(L);
			lua_pushstring(L, err);
			return 2;
		}
		key = file;
	}
	rc = dkim_lua_do_sign(ms, key, keylen, alg, domain, selector, hc, bc,
	    with_headers ? want : NULL, out, &outlen, err, sizeof(err));
	if (file != NULL) {
		explicit_bzero(file, keylen);
		free(file);
	}
	if (rc == -1) {
		lua_pushnil(L);
		lua_pushstring(L, err);
		return 2;
	}
	prepend(L, arg, out, outlen);
	lua_pushboolean(L, 1);
	return 1;
}

/* msg:dkim_verify() --------------------------------------------------------- */

struct dkim_lua_op;

/* One signature: its verdict once known. */
struct dkim_lua_sig {
	struct dkim_lua_op *op;
	struct dns_req *req; /* the key's query in flight, or NULL */
	struct dkim_sig sig;
	int parsed; /* d=, s= and a= are known (the verdict may be too) */
	enum dkim_result result;
	char reason[DKIM_REASON_MAX];
	unsigned char hh[32], bh[32];
	unsigned long long total;
};

struct dkim_lua_op {
	struct hook_run *run;
	int n, pending;
	struct dkim_lua_sig s[DKIM_SIGS_MAX + 1]; /* the last: "too many" */
};

static void
dkim_lua_cancel(void *arg)
{
	struct dkim_lua_op *op = arg;

	for (int i = 0; i < op->n; i++)
		if (op->s[i].req != NULL) {
			dns_cancel(op->s[i].req);
			op->s[i].req = NULL;
		}
}

static void
dkim_lua_set(lua_State *co, const char *key, const char *v)
{
	if (v == NULL || v[0] == '\0')
		return;
	lua_pushstring(co, v);
	lua_setfield(co, -2, key);
}

static void
dkim_lua_push(lua_State *co, const struct dkim_lua_op *op)
{
	lua_createtable(co, op->n, 0);
	for (int i = 0; i < op->n; i++) {
		const struct dkim_lua_sig *s = &op->s[i];

		lua_createtable(co, 0, 5);
		dkim_lua_set(co, "result", dkim_result_str(s->result));
		dkim_lua_set(co, "domain", s->sig.d);
		dkim_lua_set(co, "selector", s->sig.s);
		dkim_lua_set(co, "algorithm", dkim_alg_str(s->sig.alg));
		dkim_lua_set(co, "reason", s->reason[0] != '\0' ? s->reason : "good signature");
		lua_rawseti(co, -2, i + 1);
	}
}

/* The verdict from the key's TXT answer. */
static void
dkim_lua_judge(struct dkim_lua_sig *s, const struct dns_answer *ans)
{
	if (ans->err == DNS_NXDOMAIN || ans->err == DNS_NODATA) {
		s->result = DKIM_PERMERROR;
		snprintf(s->reason, sizeof(s->reason), "no key for selector %.40s of %.60s",
		    s->sig.s, s->sig.d);
		return;
	}
	if (ans->err != DNS_OK) {
		s->result = DKIM_TEMPERROR;
		snprintf(s->reason, sizeof(s->reason), "key lookup: %s", dns_err_str(ans->err));
		return;
	}
	/* Several records: the first that is a usable key (RFC 6376
	 * 3.6.2.2 lets the verifier choose). */
	for (size_t i = 0; i < ans->nrr; i++) {
		struct dkim_key key;
		char reason[DKIM_REASON_MAX];

		if (dkim_key_parse(ans->rr[i].data, ans->rr[i].len, &key, reason, sizeof(reason)) ==
		    0) {
			s->result = dkim_verify(
			    &s->sig, &key, s->hh, s->bh, s->total, s->reason, sizeof(s->reason));
			dkim_key_free(&key);
			return;
		}
		dkim_key_free(&key);
		if (i == 0) {
			s->result = DKIM_PERMERROR;
			snprintf(s->reason, sizeof(s->reason), "%s", reason);
		}
	}
}

static void
dkim_lua_on_answer(void *arg, const struct dns_answer *ans)
{
	struct dkim_lua_sig *s = arg;
	struct dkim_lua_op *op = s->op;
	lua_State *co;

	s->req = NULL;
	dkim_lua_judge(s, ans);
	if (--op->pending > 0)
		return;
	/* The results are built outside Lua's memory cap; they are bounded
	 * by DKIM_SIGS_MAX. */
	co = hook_run_thread(op->run);
	if (!lua_checkstack(co, 8)) {
		hook_wake(op->run, 0);
		return;
	}
	dkim_lua_push(co, op);
	hook_wake(op->run, 1);
}

/* Parses every DKIM-Signature field of the message and hashes what each
 * signs. A failure to read the message is every signature's temperror. */
static void
dkim_lua_prepare(struct dkim_lua_op *op, const struct msgstore *ms)
{
	struct dkim_body *bodies = NULL, *bp[DKIM_SIGS_MAX];
	struct dkim_field *f = NULL;
	const char *err = NULL, *head;
	size_t boff, hlen;
	int nf, nb = 0;
	time_t now = time(NULL);

	head = msgstore_head(ms, &hlen);
	if ((nf = dkim_lua_fields(ms, &f, &boff, &err)) == -1) {
		/* Without the fields no signature can be found: one result
		 * says why, when the top of the message shows there is one. */
		if (hlen >= 15 && strncasecmp(head, "DKIM-Signature:", 15) == 0) {
			op->n = 1;
			op->s[0].result = DKIM_TEMPERROR;
			snprintf(op->s[0].reason, sizeof(op->s[0].reason), "%s", err);
		}
		return;
	}
	for (int j = 0; j < nf && op->n <= DKIM_SIGS_MAX; j++) {
		struct dkim_lua_sig *s = &op->s[op->n];

		if (!dkim_field_is(head, &f[j], "DKIM-Signature"))
			continue;
		s->op = op;
		op->n++;
		if (op->n == DKIM_SIGS_MAX + 1) {
			s->result = DKIM_PERMERROR;
			snprintf(s->reason, sizeof(s->reason),
			    "more than %d signatures: the rest are not verified", DKIM_SIGS_MAX);
			break;
		}
		if (dkim_sig_parse(head + f[j].off, f[j].len, now, &s->sig, s->reason,
			sizeof(s->reason)) == -1) {
			s->result = DKIM_PERMERROR;
			continue;
		}
		s->parsed = 1;
		dkim_header_hash(&s->sig, head, f, nf, head + f[j].off, f[j].len, s->hh);
		nb++;
	}
	if (nb > 0 && (bodies = calloc((size_t)nb, sizeof(*bodies))) == NULL)
		err = "out of memory";
	for (int i = 0, k = 0; bodies != NULL && i < op->n; i++)
		if (op->s[i].parsed) {
			bp[k] = &bodies[k];
			dkim_body_init(bp[k++], op->s[i].sig.bcanon, op->s[i].sig.l);
		}
	if (bodies != NULL && dkim_lua_body(ms, boff, bp, nb) == -1)
		err = "cannot read the message";
	for (int i = 0, k = 0; i < op->n; i++) {
		struct dkim_lua_sig *s = &op->s[i];

		if (!s->parsed)
			continue;
		if (bodies != NULL) {
			dkim_body_finish(bp[k], s->bh);
			s->total = bp[k++]->total;
		}
		if (err != NULL) {
			s->parsed = 0;
			s->result = DKIM_TEMPERROR;
			snprintf(s->reason, sizeof(s->reason), "%s", err);
		}
	}
	free(bodies);
	free(f);
}

int
dkim_lua_verify(lua_State *L, const struct msgstore *ms)
{
	static const char what[] = "msg:dkim_verify";
	struct dkim_lua_op *op;
	struct ev_loop *loop;
	double timeout = DNS_LUA_TIMEOUT;

	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_pushliteral(L, "timeout");
		if (lua_rawget(L, 2) != LUA_TNIL) {
			timeout = lua_tonumber(L, -1);
			if (lua_type(L, -1) != LUA_TNUMBER || !(timeout > 0) ||
			    timeout > DNS_TIMEOUT_MAX)
				return luaL_error(L,
				    "%s: timeout must be above 0 and at most %d seconds", what,
				    DNS_TIMEOUT_MAX);
		}
	}
	lua_settop(L, 2);
	op = lua_newuserdatauv(L, sizeof(*op), 0);
	memset(op, 0, sizeof(*op));
	dkim_lua_prepare(op, ms);
	for (int i = 0; i < op->n; i++)
		op->pending += op->s[i].parsed;
	if (op->pending == 0) {
		dkim_lua_push(L, op);
		return 1;
	}
	op->run = hook_park(L, what, dkim_lua_cancel, op);
	loop = hook_run_loop(op->run);
	for (int i = 0; i < op->n; i++) {
		struct dkim_lua_sig *s = &op->s[i];
		char name[2 * DKIM_NAME_MAX + 16];

		if (!s->parsed)
			continue;
		snprintf(name, sizeof(name), "%s._domainkey.%s", s->sig.s, s->sig.d);
		/* A name that cannot exist is NXDOMAIN without a query (dns.h):
		 * no key, a permerror. */
		if ((s->req = dns_query(loop, name, DNS_T_TXT, timeout, dkim_lua_on_answer, s)) ==
		    NULL) {
			s->result = DKIM_TEMPERROR;
			snprintf(s->reason, sizeof(s->reason), "out of memory");
			op->pending--;
		}
	}
	if (op->pending == 0) {
		/* Nothing went out: not waiting after all. */
		hook_park_undo(op->run);
		dkim_lua_push(L, op);
		return 1;
	}
	return lua_yield(L, 0);
}
