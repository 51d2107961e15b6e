/* queue_file.c - the text form of a queue entry's ID.env (pure: no I/O).
 * One "luamta-queue N" line, then "key value" lines, one "rcpt" line per
 * recipient, and "end": a file cut anywhere lacks its "end" line and is
 * refused. Version 2 adds RFC 3461's fields (the keys "ret" and "envid",
 * a recipient's "notify=" and "orcpt="); an entry without them is still
 * written as version 1, so a luamta of before them reads it, and both
 * versions are read. Version 3 adds "delay_warned" (when the delay warning
 * was queued), written only once one was: an entry without it keeps the
 * version it had, and every version is read. Values are escaped so that
 * any byte string (addresses and replies come from the network)
 * round-trips and no value holds a space or a line break. Reading and
 * writing the files is queue.c's. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dsn_param.h"
#include "queue.h"
#include "xtext.h"

#define QUEUE_FILE_MAGIC   "luamta-queue"
#define QUEUE_FILE_VERSION 3

const char *
queue_rcpt_state_str(enum queue_rcpt_state st)
{
	switch (st) {
	case QUEUE_RCPT_QUEUED:
		return "queued";
	case QUEUE_RCPT_DEFERRED:
		return "deferred";
	case QUEUE_RCPT_DELIVERED:
		return "delivered";
	case QUEUE_RCPT_BOUNCED:
		return "bounced";
	}
	return "unknown";
}

const char *
queue_tls_str(enum queue_tls tls)
{
	switch (tls) {
	case QUEUE_TLS_MAY:
		return "may";
	case QUEUE_TLS_REQUIRE:
		return "require";
	case QUEUE_TLS_NONE:
		return "none";
	}
	return "unknown";
}

int
queue_id_valid(const char *id)
{
	size_t i, n;

	for (i = 0; i < 16; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return 0;
	if (id[16] == '\0')
		return 1;
	/* The suffix of one entry among several of a message: -1 to -999999. */
	if (id[16] != '-' || id[17] < '1' || id[17] > '9')
		return 0;
	for (n = 0, i = 17; id[i] != '\0'; i++, n++)
		if (id[i] < '0' || id[i] > '9' || n >= 6)
			return 0;
	return 1;
}

static void
free_secret(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

void
queue_entry_clear(struct queue_entry *e)
{
	free(e->sender);
	free(e->envid);
	free(e->route.host);
	free(e->route.socket);
	free(e->route.auth_user);
	free_secret(e->route.auth_pass);
	for (size_t i = 0; i < e->nrcpts; i++) {
		free(e->rcpts[i].address);
		free(e->rcpts[i].last_reply);
		free(e->rcpts[i].orcpt);
	}
	free(e->rcpts);
	memset(e, 0, sizeof(*e));
}

int
queue_entry_done(const struct queue_entry *e)
{
	for (size_t i = 0; i < e->nrcpts; i++)
		if (e->rcpts[i].state != QUEUE_RCPT_DELIVERED &&
		    e->rcpts[i].state != QUEUE_RCPT_BOUNCED)
			return 0;
	return 1;
}

/* Printable ASCII but '%' stands for itself; every other byte (space,
 * controls, '%', 8-bit) is %XX, so a value is one token on its line. */
static int
put_escaped(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char esc[3];

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c > 0x20 && c < 0x7f && c != '%') {
			if (buf_append(b, s, 1) == -1)
				return -1;
			continue;
		}
		esc[0] = '%';
		esc[1] = hex[c >> 4];
		esc[2] = hex[c & 15];
		if (buf_append(b, esc, 3) == -1)
			return -1;
	}
	return 0;
}

static int
put(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

/* "key value\n", or "key\n" for an empty value. */
static int
put_str(struct buf *b, const char *key, const char *val)
{
	if (put(b, key) == -1 ||
	    (val[0] != '\0' && (put(b, " ") == -1 || put_escaped(b, val) == -1)))
		return -1;
	return put(b, "\n");
}

static int
put_num(struct buf *b, const char *key, long long v)
{
	char line[64];

	snprintf(line, sizeof(line), "%s %lld\n", key, v);
	return put(b, line);
}

char *
queue_env_format(const struct queue_entry *e, size_t *len)
{
	const struct queue_route *r = &e->route;
	struct buf b;
	char *text;
	int fail = 0;

	int dsn = e->dsn_ret != DSN_RET_UNSET || e->envid != NULL;

	for (size_t i = 0; i < e->nrcpts; i++)
		dsn |= e->rcpts[i].notify != 0 || e->rcpts[i].orcpt != NULL;
	buf_init(&b);
	fail |= put_num(&b, QUEUE_FILE_MAGIC, e->delay_warned != 0 ? 3 : dsn ? 2 : 1);
	fail |= put_str(&b, "id", e->id);
	fail |= put_str(&b, "sender", e->sender != NULL ? e->sender : "");
	fail |= put_num(&b, "created", (long long)e->created);
	fail |= put_num(&b, "size", (long long)e->size);
	fail |= put_num(&b, "held", e->held != 0);
	fail |= put_num(&b, "body_8bit", e->body_8bit != 0);
	fail |= put_num(&b, "smtputf8", e->smtputf8 != 0);
	fail |= put_num(&b, "is_bounce", e->is_bounce != 0);
	if (dsn_param_ret_str(e->dsn_ret) != NULL)
		fail |= put_str(&b, "ret", dsn_param_ret_str(e->dsn_ret));
	if (e->envid != NULL)
		fail |= put_str(&b, "envid", e->envid);
	if (e->delay_warned != 0)
		fail |= put_num(&b, "delay_warned", (long long)e->delay_warned);
	/* The optional strings: an absent line is NULL, an empty one "". */
	if (r->host != NULL)
		fail |= put_str(&b, "host", r->host);
	fail |= put_num(&b, "port", r->port);
	if (r->socket != NULL)
		fail |= put_str(&b, "socket", r->socket);
	fail |= put_num(&b, "lmtp", r->lmtp != 0);
	fail |= put(&b, "tls ") | put(&b, queue_tls_str(r->tls)) | put(&b, "\n");
	if (r->auth_user != NULL)
		fail |= put_str(&b, "auth_user", r->auth_user);
	if (r->auth_pass != NULL)
		fail |= put_str(&b, "auth_pass", r->auth_pass);
	for (size_t i = 0; i < e->nrcpts; i++) {
		const struct queue_rcpt *rc = &e->rcpts[i];
		char nums[96];

		fail |=
		    put(&b, "rcpt to=") | put_escaped(&b, rc->address != NULL ? rc->address : "");
		snprintf(nums, sizeof(nums), " state=%s attempts=%d next=%lld",
		    queue_rcpt_state_str(rc->state), rc->attempts, (long long)rc->next_attempt);
		fail |= put(&b, nums);
		if (rc->notify != 0) {
			char words[32];

			dsn_param_notify_str(rc->notify, words, sizeof(words));
			fail |= put(&b, " notify=") | put(&b, words);
		}
		if (rc->orcpt != NULL)
			fail |= put(&b, " orcpt=") | put_escaped(&b, rc->orcpt);
		if (rc->last_reply != NULL)
			fail |= put(&b, " reply=") | put_escaped(&b, rc->last_reply);
		fail |= put(&b, "\n");
	}
	fail |= put(&b, "end\n");
	if (fail) {
		buf_reset(&b);
		return NULL;
	}
	/* Hand over the buffer's own memory; a NUL after it for convenience. */
	if (buf_append(&b, "", 1) == -1) {
		buf_reset(&b);
		return NULL;
	}
	text = b.data;
	*len = b.len - 1;
	return text;
}

/* The parser's cursor over one line at a time. */
struct reader {
	const char *p, *end;
	int lineno;
	char *err;
	size_t errsz;
};

static int
bad(struct reader *rd, const char *what)
{
	snprintf(rd->err, rd->errsz, "line %d: %s", rd->lineno, what);
	return -1;
}

/* The next line without its LF, or -1 when none is left whole: every line,
 * the last one too, ends in LF. NUL bytes are never part of a valid text. */
static int
next_line(struct reader *rd, const char **line, size_t *len)
{
	const char *lf;

	if (rd->p >= rd->end)
		return -1;
	if ((lf = memchr(rd->p, '\n', (size_t)(rd->end - rd->p))) == NULL)
		return -1;
	*line = rd->p;
	*len = (size_t)(lf - rd->p);
	rd->p = lf + 1;
	rd->lineno++;
	return memchr(*line, '\0', *len) != NULL ? -2 : 0;
}

/* A hexadecimal digit of a %XX escape: upper case as written, lower
 * case accepted from a hand-edited file. */
static int
hexval(char c)
{
	return xtext_hexval(c >= 'a' && c <= 'f' ? (char)(c - 'a' + 'A') : c);
}

/* Undoes put_escaped on s[0..n): a malloc'ed string, or NULL (err set) for
 * a bad escape, a byte that should have been escaped, or an escaped NUL. */
static char *
unescape(struct reader *rd, const char *s, size_t n)
{
	char *out, *o;

	if ((out = malloc(n + 1)) == NULL) {
		bad(rd, "out of memory");
		return NULL;
	}
	for (o = out; n > 0; n--, s++) {
		unsigned char c = (unsigned char)*s;
		int hi, lo;

		if (c == '%') {
			if (n < 3 || (hi = hexval(s[1])) < 0 || (lo = hexval(s[2])) < 0 ||
			    (hi == 0 && lo == 0))
				goto fail;
			*o++ = (char)(hi << 4 | lo);
			s += 2;
			n -= 2;
		} else if (c > 0x20 && c < 0x7f)
			*o++ = (char)c;
		else
			goto fail;
	}
	*o = '\0';
	return out;
fail:
	free(out);
	bad(rd, "bad escape in a value");
	return NULL;
}

/* A decimal number in [min, max], digits only (a leading '-' when min < 0). */
static int
parse_num(struct reader *rd, const char *s, size_t n, long long min, long long max, long long *v)
{
	long long x = 0;
	int neg = 0;
	size_t i = 0;

	if (n > 0 && s[0] == '-' && min < 0) {
		neg = 1;
		i = 1;
	}
	if (i == n || n - i > 19)
		return bad(rd, "bad number");
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return bad(rd, "bad number");
		if (x > (LLONG_MAX - (s[i] - '0')) / 10)
			return bad(rd, "number out of range");
		x = x * 10 + (s[i] - '0');
	}
	if (neg)
		x = -x;
	if (x < min || x > max)
		return bad(rd, "number out of range");
	*v = x;
	return 0;
}

static int
parse_state(const char *s, size_t n, enum queue_rcpt_state *st)
{
	for (int i = QUEUE_RCPT_QUEUED; i <= QUEUE_RCPT_BOUNCED; i++) {
		const char *name = queue_rcpt_state_str((enum queue_rcpt_state)i);

		if (strlen(name) == n && memcmp(name, s, n) == 0) {
			*st = (enum queue_rcpt_state)i;
			return 0;
		}
	}
	return -1;
}

static int
parse_tls(const char *s, size_t n, enum queue_tls *tls)
{
	for (int i = QUEUE_TLS_MAY; i <= QUEUE_TLS_NONE; i++) {
		const char *name = queue_tls_str((enum queue_tls)i);

		if (strlen(name) == n && memcmp(name, s, n) == 0) {
			*tls = (enum queue_tls)i;
			return 0;
		}
	}
	return -1;
}

/* Takes "name=" off the front of the token at *s (n bytes left), leaving
 * its value in [*v, *vn). The tokens of an rcpt line come in a fixed order. */
static int
take_field(const char **s, size_t *n, const char *name, const char **v, size_t *vn)
{
	size_t nl = strlen(name);
	const char *sp;

	if (*n < nl + 1 || memcmp(*s, name, nl) != 0 || (*s)[nl] != '=')
		return -1;
	*v = *s + nl + 1;
	sp = memchr(*v, ' ', (size_t)(*s + *n - *v));
	*vn = sp != NULL ? (size_t)(sp - *v) : (size_t)(*s + *n - *v);
	*n -= (size_t)(*v + *vn - *s);
	*s = *v + *vn;
	if (*n > 0) {
		(*s)++; /* the space */
		(*n)--;
		if (*n == 0)
			return -1; /* a trailing space */
	}
	return 0;
}

/* Whether the token at s (n bytes left) is "name=...". */
static int
field_is(const char *s, size_t n, const char *name)
{
	size_t nl = strlen(name);

	return n > nl && memcmp(s, name, nl) == 0 && s[nl] == '=';
}

static int
parse_rcpt(struct reader *rd, const char *s, size_t n, struct queue_entry *out)
{
	struct queue_rcpt rc, *grown;
	const char *v;
	size_t vn;
	long long x;

	memset(&rc, 0, sizeof(rc));
	if (take_field(&s, &n, "to", &v, &vn) == -1)
		return bad(rd, "rcpt: to= expected");
	if ((rc.address = unescape(rd, v, vn)) == NULL)
		return -1;
	if (take_field(&s, &n, "state", &v, &vn) == -1 || parse_state(v, vn, &rc.state) == -1) {
		bad(rd, "rcpt: bad or missing state=");
		goto fail;
	}
	if (take_field(&s, &n, "attempts", &v, &vn) == -1) {
		bad(rd, "rcpt: attempts= expected");
		goto fail;
	}
	if (parse_num(rd, v, vn, 0, INT_MAX, &x) == -1)
		goto fail;
	rc.attempts = (int)x;
	if (take_field(&s, &n, "next", &v, &vn) == -1) {
		bad(rd, "rcpt: next= expected");
		goto fail;
	}
	if (parse_num(rd, v, vn, 0, LLONG_MAX, &x) == -1)
		goto fail;
	rc.next_attempt = (time_t)x;
	/* Version 2's optional fields, before the reply. */
	if (field_is(s, n, "notify")) {
		char words[32];

		if (take_field(&s, &n, "notify", &v, &vn) == -1 || vn >= sizeof(words)) {
			bad(rd, "rcpt: bad notify=");
			goto fail;
		}
		memcpy(words, v, vn);
		words[vn] = '\0';
		if (dsn_param_notify(words, &rc.notify) == -1) {
			bad(rd, "rcpt: bad notify=");
			goto fail;
		}
	}
	if (field_is(s, n, "orcpt")) {
		if (take_field(&s, &n, "orcpt", &v, &vn) == -1) {
			bad(rd, "rcpt: bad orcpt=");
			goto fail;
		}
		if ((rc.orcpt = unescape(rd, v, vn)) == NULL)
			goto fail;
	}
	if (n > 0) {
		if (take_field(&s, &n, "reply", &v, &vn) == -1 || n > 0) {
			bad(rd, "rcpt: unexpected field");
			goto fail;
		}
		if ((rc.last_reply = unescape(rd, v, vn)) == NULL)
			goto fail;
	}
	/* The array doubles whenever its count reaches a power of two (its
	 * capacity is not stored), so many recipients cost linear time. */
	if ((out->nrcpts & (out->nrcpts - 1)) == 0) {
		size_t cap = out->nrcpts == 0 ? 1 : out->nrcpts * 2;

		if (out->nrcpts >= SIZE_MAX / sizeof(rc) / 4 ||
		    (grown = realloc(out->rcpts, cap * sizeof(rc))) == NULL) {
			bad(rd, "out of memory");
			goto fail;
		}
		out->rcpts = grown;
	}
	out->rcpts[out->nrcpts++] = rc;
	return 0;
fail:
	free(rc.address);
	free(rc.last_reply);
	free(rc.orcpt);
	return -1;
}

/* The keys before the recipients, each at most once; the required ones
 * must all be there. */
enum env_key {
	K_ID = 0,
	K_SENDER,
	K_CREATED,
	K_SIZE,
	K_HELD,
	K_BODY_8BIT,
	K_SMTPUTF8,
	K_IS_BOUNCE,
	K_RET,
	K_ENVID,
	K_DELAY_WARNED,
	K_HOST,
	K_PORT,
	K_SOCKET,
	K_LMTP,
	K_TLS,
	K_AUTH_USER,
	K_AUTH_PASS,
	K_COUNT,
};

static const struct {
	const char *name;
	int required;
} env_keys[K_COUNT] = {
	[K_ID] = { "id", 1 },
	[K_SENDER] = { "sender", 1 },
	[K_CREATED] = { "created", 1 },
	[K_SIZE] = { "size", 1 },
	[K_HELD] = { "held", 1 },
	[K_BODY_8BIT] = { "body_8bit", 1 },
	[K_SMTPUTF8] = { "smtputf8", 1 },
	[K_IS_BOUNCE] = { "is_bounce", 1 },
	[K_RET] = { "ret", 0 },
	[K_ENVID] = { "envid", 0 },
	[K_DELAY_WARNED] = { "delay_warned", 0 },
	[K_HOST] = { "host", 0 },
	[K_PORT] = { "port", 1 },
	[K_SOCKET] = { "socket", 0 },
	[K_LMTP] = { "lmtp", 1 },
	[K_TLS] = { "tls", 1 },
	[K_AUTH_USER] = { "auth_user", 0 },
	[K_AUTH_PASS] = { "auth_pass", 0 },
};

static char **
str_slot(struct queue_entry *out, int k)
{
	switch (k) {
	case K_SENDER:
		return &out->sender;
	case K_ENVID:
		return &out->envid;
	case K_HOST:
		return &out->route.host;
	case K_SOCKET:
		return &out->route.socket;
	case K_AUTH_USER:
		return &out->route.auth_user;
	default:
		return &out->route.auth_pass;
	}
}

static int *
flag_slot(struct queue_entry *out, int k)
{
	switch (k) {
	case K_HELD:
		return &out->held;
	case K_BODY_8BIT:
		return &out->body_8bit;
	case K_SMTPUTF8:
		return &out->smtputf8;
	case K_IS_BOUNCE:
		return &out->is_bounce;
	default:
		return &out->route.lmtp;
	}
}

static int
parse_key(struct reader *rd, int k, const char *v, size_t vn, struct queue_entry *out)
{
	char *str = NULL;
	long long x;

	switch (k) {
	case K_ID:
		if (vn >= QUEUE_ID_MAX)
			return bad(rd, "bad id");
		memcpy(out->id, v, vn);
		out->id[vn] = '\0';
		if (!queue_id_valid(out->id))
			return bad(rd, "bad id");
		return 0;
	case K_SENDER:
	case K_ENVID:
	case K_HOST:
	case K_SOCKET:
	case K_AUTH_USER:
	case K_AUTH_PASS:
		if ((str = unescape(rd, v, vn)) == NULL)
			return -1;
		*str_slot(out, k) = str;
		return 0;
	case K_TLS:
		if (parse_tls(v, vn, &out->route.tls) == -1)
			return bad(rd, "bad tls");
		return 0;
	case K_RET:
		if (vn == 4 && memcmp(v, "FULL", 4) == 0)
			out->dsn_ret = DSN_RET_FULL;
		else if (vn == 4 && memcmp(v, "HDRS", 4) == 0)
			out->dsn_ret = DSN_RET_HDRS;
		else
			return bad(rd, "bad ret");
		return 0;
	case K_CREATED:
		if (parse_num(rd, v, vn, 0, LLONG_MAX, &x) == -1)
			return -1;
		out->created = (time_t)x;
		return 0;
	case K_DELAY_WARNED:
		/* A time: absent, not 0, says none was sent. */
		if (parse_num(rd, v, vn, 1, LLONG_MAX, &x) == -1)
			return -1;
		out->delay_warned = (time_t)x;
		return 0;
	case K_SIZE:
		if (parse_num(rd, v, vn, 0,
			(long long)(SIZE_MAX > LLONG_MAX ? LLONG_MAX : SIZE_MAX), &x) == -1)
			return -1;
		out->size = (size_t)x;
		return 0;
	case K_PORT:
		if (parse_num(rd, v, vn, 0, 65535, &x) == -1)
			return -1;
		out->route.port = (int)x;
		return 0;
	default:
		if (parse_num(rd, v, vn, 0, 1, &x) == -1)
			return -1;
		*flag_slot(out, k) = (int)x;
		return 0;
	}
}

static int
parse_body(struct reader *rd, struct queue_entry *out)
{
	unsigned char seen[K_COUNT];
	const char *line, *sp;
	size_t len, kn;
	char magic[32];
	int k, r;

	memset(seen, 0, sizeof(seen));
	if (next_line(rd, &line, &len) != 0)
		return bad(rd, "no header line");
	/* Version 1 is version 2 without RFC 3461's fields, version 2 is
	 * version 3 without delay_warned. */
	snprintf(magic, sizeof(magic), "%s %d", QUEUE_FILE_MAGIC, QUEUE_FILE_VERSION);
	if (len == strlen(magic) &&
	    (memcmp(line, QUEUE_FILE_MAGIC " 1", len) == 0 ||
		memcmp(line, QUEUE_FILE_MAGIC " 2", len) == 0))
		memcpy(magic, line, len);
	if (len != strlen(magic) || memcmp(line, magic, len) != 0) {
		if (len > strlen(QUEUE_FILE_MAGIC) &&
		    memcmp(line, QUEUE_FILE_MAGIC " ", strlen(QUEUE_FILE_MAGIC) + 1) == 0)
			return bad(rd, "unknown version");
		return bad(rd, "not a luamta queue file");
	}
	for (;;) {
		if ((r = next_line(rd, &line, &len)) != 0)
			return bad(rd, r == -2 ? "NUL byte" : "truncated: no end line");
		if (len == 3 && memcmp(line, "end", 3) == 0)
			break;
		sp = memchr(line, ' ', len);
		kn = sp != NULL ? (size_t)(sp - line) : len;
		if (kn == 4 && memcmp(line, "rcpt", 4) == 0) {
			if (sp == NULL || parse_rcpt(rd, sp + 1, len - kn - 1, out) == -1)
				return sp == NULL ? bad(rd, "empty rcpt line") : -1;
			continue;
		}
		for (k = 0; k < K_COUNT; k++)
			if (strlen(env_keys[k].name) == kn &&
			    memcmp(env_keys[k].name, line, kn) == 0)
				break;
		if (k == K_COUNT)
			return bad(rd, "unknown key");
		/* The envelope's keys come before the recipients. */
		if (out->nrcpts > 0)
			return bad(rd, "a key after the recipients");
		if (seen[k]++)
			return bad(rd, "duplicate key");
		if (parse_key(rd, k, sp != NULL ? sp + 1 : line + len,
			sp != NULL ? len - kn - 1 : 0, out) == -1)
			return -1;
	}
	if (rd->p != rd->end)
		return bad(rd, "data after the end line");
	for (k = 0; k < K_COUNT; k++)
		if (env_keys[k].required && !seen[k]) {
			snprintf(rd->err, rd->errsz, "missing key %s", env_keys[k].name);
			return -1;
		}
	if (out->nrcpts == 0)
		return bad(rd, "no recipient");
	return 0;
}

int
queue_env_parse(const char *text, size_t len, struct queue_entry *out, char *err, size_t errsz)
{
	/* No arithmetic on a NULL text, even + 0. */
	struct reader rd = { text, text != NULL ? text + len : NULL, 0, err, errsz };

	memset(out, 0, sizeof(*out));
	if (parse_body(&rd, out) == -1) {
		queue_entry_clear(out);
		return -1;
	}
	return 0;
}
