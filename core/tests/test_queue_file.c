/* test_queue_file.c - the text of ID.env: the exact form of one entry,
 * round trips with every byte value in every string, NULL kept apart from
 * "", every truncation of a valid text refused, and a table of malformed
 * texts (unknown version, missing, duplicate and unknown keys, bad escapes
 * and numbers) each refused with a reason. */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsn_param.h"
#include "queue.h"
#include "test.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char golden[] = "luamta-queue 1\n"
			     "id 0123456789abcdef-2\n"
			     "sender a%20b@example.org\n"
			     "created 1700000000\n"
			     "size 1234\n"
			     "held 1\n"
			     "body_8bit 1\n"
			     "smtputf8 0\n"
			     "is_bounce 0\n"
			     "host mx.example.net\n"
			     "port 2525\n"
			     "lmtp 0\n"
			     "tls require\n"
			     "auth_user u\n"
			     "auth_pass p%25w\n"
			     "rcpt to=x@example.net state=deferred attempts=2 next=1700000300 "
			     "reply=451%204.3.0%20try%0D%0Alater\n"
			     "rcpt to=y@example.net state=queued attempts=0 next=0\n"
			     "end\n";

/* The entry golden[] describes (strings are literals: never cleared). */
static void
golden_entry(struct queue_entry *e, struct queue_rcpt *r)
{
	memset(e, 0, sizeof(*e));
	strcpy(e->id, "0123456789abcdef-2");
	e->sender = "a b@example.org";
	e->created = 1700000000;
	e->size = 1234;
	e->held = 1;
	e->body_8bit = 1;
	e->route.host = "mx.example.net";
	e->route.port = 2525;
	e->route.tls = QUEUE_TLS_REQUIRE;
	e->route.auth_user = "u";
	e->route.auth_pass = "p%w";
	memset(r, 0, 2 * sizeof(*r));
	r[0].address = "x@example.net";
	r[0].state = QUEUE_RCPT_DEFERRED;
	r[0].attempts = 2;
	r[0].next_attempt = 1700000300;
	r[0].last_reply = "451 4.3.0 try\r\nlater";
	r[1].address = "y@example.net";
	e->rcpts = r;
	e->nrcpts = 2;
}

static int
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static int
entry_eq(const struct queue_entry *a, const struct queue_entry *b)
{
	if (strcmp(a->id, b->id) != 0 || !str_eq(a->sender, b->sender) ||
	    a->created != b->created || a->size != b->size || a->held != b->held ||
	    a->body_8bit != b->body_8bit || a->smtputf8 != b->smtputf8 ||
	    a->is_bounce != b->is_bounce || !str_eq(a->route.host, b->route.host) ||
	    a->route.port != b->route.port || !str_eq(a->route.socket, b->route.socket) ||
	    a->route.lmtp != b->route.lmtp || a->route.tls != b->route.tls ||
	    !str_eq(a->route.auth_user, b->route.auth_user) ||
	    !str_eq(a->route.auth_pass, b->route.auth_pass) || a->nrcpts != b->nrcpts)
		return 0;
	for (size_t i = 0; i < a->nrcpts; i++) {
		const struct queue_rcpt *x = &a->rcpts[i], *y = &b->rcpts[i];

		if (!str_eq(x->address, y->address) || x->state != y->state ||
		    x->attempts != y->attempts || x->next_attempt != y->next_attempt ||
		    !str_eq(x->last_reply, y->last_reply) || x->notify != y->notify ||
		    !str_eq(x->orcpt, y->orcpt))
			return 0;
	}
	return a->dsn_ret == b->dsn_ret && str_eq(a->envid, b->envid) &&
	    a->delay_warned == b->delay_warned;
}

static void
test_golden(void)
{
	struct queue_entry e, back;
	struct queue_rcpt r[2];
	char err[256];
	size_t len;
	char *text;

	golden_entry(&e, r);
	text = queue_env_format(&e, &len);
	CHECK(text != NULL);
	if (text == NULL)
		return;
	CHECK(len == strlen(golden));
	CHECK_STR(text, golden);
	CHECK_MSG(queue_env_parse(text, len, &back, err, sizeof(err)) == 0, "%s", err);
	CHECK(entry_eq(&e, &back));
	queue_entry_clear(&back);
	CHECK(back.sender == NULL && back.rcpts == NULL && back.nrcpts == 0);
	free(text);
}

/* Version 2: RFC 3461's fields, written only when an entry has them. */
static void
test_dsn_fields(void)
{
	static const char v2[] =
	    "luamta-queue 2\n"
	    "id 0123456789abcdef\n"
	    "sender s@example.org\n"
	    "created 1700000000\n"
	    "size 10\n"
	    "held 0\n"
	    "body_8bit 0\n"
	    "smtputf8 0\n"
	    "is_bounce 0\n"
	    "ret HDRS\n"
	    "envid QQ%20+1\n"
	    "port 0\n"
	    "lmtp 0\n"
	    "tls may\n"
	    "rcpt to=x@example.net state=queued attempts=0 next=0 "
	    "notify=SUCCESS,FAILURE orcpt=rfc822;a+b@x reply=250%20ok\n"
	    "rcpt to=y@example.net state=queued attempts=0 next=0 notify=NEVER\n"
	    "rcpt to=z@example.net state=queued attempts=0 next=0 orcpt=x;%25\n"
	    "end\n";
	struct queue_entry e, back;
	struct queue_rcpt r[3];
	char err[256];
	size_t len;
	char *text;

	memset(&e, 0, sizeof(e));
	memset(r, 0, sizeof(r));
	strcpy(e.id, "0123456789abcdef");
	e.sender = "s@example.org";
	e.created = 1700000000;
	e.size = 10;
	e.dsn_ret = DSN_RET_HDRS;
	e.envid = "QQ +1";
	r[0].address = "x@example.net";
	r[0].notify = DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE;
	r[0].orcpt = "rfc822;a+b@x";
	r[0].last_reply = "250 ok";
	r[1].address = "y@example.net";
	r[1].notify = DSN_NOTIFY_NEVER;
	r[2].address = "z@example.net";
	r[2].orcpt = "x;%";
	e.rcpts = r;
	e.nrcpts = 3;
	text = queue_env_format(&e, &len);
	CHECK(text != NULL);
	if (text == NULL)
		return;
	CHECK_STR(text, v2);
	CHECK_MSG(queue_env_parse(text, len, &back, err, sizeof(err)) == 0, "%s", err);
	CHECK(entry_eq(&e, &back));
	queue_entry_clear(&back);
	free(text);
	/* Lower-case notify words are read (and written back upper-case). */
	text = strdup(v2);
	memcpy(strstr(text, "notify=NEVER"), "notify=never", 12);
	CHECK_MSG(queue_env_parse(text, strlen(text), &back, err, sizeof(err)) == 0, "%s", err);
	CHECK(back.nrcpts == 3 && back.rcpts[1].notify == DSN_NOTIFY_NEVER);
	queue_entry_clear(&back);
	free(text);
	/* Any one of the fields makes a version 2 file. */
	r[0].notify = 0;
	r[0].orcpt = NULL;
	r[2].orcpt = NULL;
	e.envid = NULL;
	e.dsn_ret = 0;
	e.nrcpts = 1;
	text = queue_env_format(&e, &len);
	CHECK(text != NULL && strncmp(text, "luamta-queue 1\n", 15) == 0);
	free(text);
	e.dsn_ret = DSN_RET_FULL;
	text = queue_env_format(&e, &len);
	CHECK(text != NULL && strncmp(text, "luamta-queue 2\n", 15) == 0 &&
	    strstr(text, "\nret FULL\n") != NULL);
	free(text);
}

/* Version 3: the delay warning's time, written only once one was sent;
 * without it an entry keeps version 1 or 2, and all three are read. */
static void
test_delay_warned(void)
{
	struct queue_entry e, back;
	struct queue_rcpt r[2];
	char err[256], *text, *v1;
	size_t len;

	golden_entry(&e, r);
	e.delay_warned = 1700000100;
	text = queue_env_format(&e, &len);
	CHECK(text != NULL);
	if (text == NULL)
		return;
	CHECK(strncmp(text, "luamta-queue 3\n", 15) == 0);
	CHECK(strstr(text, "\nis_bounce 0\ndelay_warned 1700000100\nhost ") != NULL);
	CHECK_MSG(queue_env_parse(text, len, &back, err, sizeof(err)) == 0, "%s", err);
	CHECK(entry_eq(&e, &back) && back.delay_warned == 1700000100);
	queue_entry_clear(&back);
	free(text);
	/* With DSN's fields too: still version 3. */
	e.envid = "E";
	text = queue_env_format(&e, &len);
	CHECK(text != NULL && strncmp(text, "luamta-queue 3\n", 15) == 0);
	free(text);
	e.delay_warned = 0;
	text = queue_env_format(&e, &len);
	CHECK(text != NULL && strncmp(text, "luamta-queue 2\n", 15) == 0 &&
	    strstr(text, "delay_warned") == NULL);
	free(text);
	/* The old versions read as before: the golden text has none. */
	CHECK_MSG(queue_env_parse(golden, strlen(golden), &back, err, sizeof(err)) == 0, "%s", err);
	CHECK(back.delay_warned == 0);
	queue_entry_clear(&back);
	/* A version 3 text without the key reads as not warned. */
	v1 = strdup(golden);
	memcpy(v1, "luamta-queue 3", 14);
	CHECK_MSG(queue_env_parse(v1, strlen(v1), &back, err, sizeof(err)) == 0, "%s", err);
	CHECK(back.delay_warned == 0 && back.nrcpts == 2);
	queue_entry_clear(&back);
	free(v1);
}

/* Every byte but NUL, in every string of the entry, and strings that look
 * like the format's own syntax. */
static void
test_hostile_round_trip(void)
{
	static const char *const tricky[] = { "", " ", "%", "%%41", "-", "end", "\nend\n",
		"a=b c=d", "to=x state=queued", "\r\n.\r\n", "\xff\xfe", "caf\xc3\xa9", "\x7f" };
	struct queue_entry e, back;
	struct queue_rcpt r[NELEM(tricky) + 1];
	char all[256], err[256];
	size_t len;
	char *text;

	for (int i = 1; i < 256; i++)
		all[i - 1] = (char)i;
	all[255] = '\0';
	for (size_t t = 0; t <= NELEM(tricky); t++) {
		const char *s = t < NELEM(tricky) ? tricky[t] : all;

		memset(&e, 0, sizeof(e));
		strcpy(e.id, "ffffffffffffffff");
		e.sender = (char *)s;
		e.created = (time_t)LLONG_MAX;
		e.size = (size_t)LLONG_MAX;
		e.route.host = (char *)s;
		e.route.socket = (char *)s;
		e.route.auth_user = (char *)s;
		e.route.auth_pass = (char *)s;
		e.route.port = 65535;
		e.route.lmtp = 1;
		e.route.tls = QUEUE_TLS_NONE;
		e.is_bounce = e.smtputf8 = 1;
		e.envid = (char *)s;
		e.dsn_ret = DSN_RET_HDRS;
		e.delay_warned = (time_t)LLONG_MAX;
		for (size_t i = 0; i < NELEM(r); i++) {
			r[i].orcpt = (i % 3) ? NULL : (char *)s;
			r[i].notify = (i % 3) == 1 ? DSN_NOTIFY_NEVER : DSN_NOTIFY_DELAY;
			r[i].address = i < NELEM(tricky) ? (char *)tricky[i] : all;
			r[i].state = (enum queue_rcpt_state)(i % 4);
			r[i].attempts = i == 0 ? INT_MAX : (int)i;
			r[i].next_attempt = (time_t)i * 1000;
			r[i].last_reply = (i % 2) ? NULL : (char *)s;
		}
		e.rcpts = r;
		e.nrcpts = NELEM(r);
		text = queue_env_format(&e, &len);
		CHECK(text != NULL);
		if (text == NULL)
			continue;
		/* No value leaks a space or a line break of its own: the
		 * line count is fixed by the shape of the entry. */
		{
			size_t lines = 0;

			for (size_t i = 0; i < len; i++)
				lines += text[i] == '\n';
			CHECK_MSG(lines == 20 + NELEM(r), "tricky %zu: %zu lines", t, lines);
		}
		CHECK_MSG(queue_env_parse(text, len, &back, err, sizeof(err)) == 0,
		    "tricky %zu: %s", t, err);
		CHECK_MSG(entry_eq(&e, &back), "tricky %zu differs after a round trip", t);
		queue_entry_clear(&back);
		free(text);
	}
}

/* NULL and "" are different things in the route: the MX versus a host. */
static void
test_null_and_empty(void)
{
	struct queue_entry e, back;
	struct queue_rcpt r[1];
	char err[256];
	size_t len;
	char *text;

	memset(&e, 0, sizeof(e));
	memset(r, 0, sizeof(r));
	strcpy(e.id, "0000000000000000");
	e.sender = "";
	e.route.host = "";
	r[0].address = "";
	r[0].last_reply = "";
	e.rcpts = r;
	e.nrcpts = 1;
	text = queue_env_format(&e, &len);
	CHECK(text != NULL);
	CHECK(strstr(text, "\nsender\n") != NULL);
	CHECK(strstr(text, "\nhost\n") != NULL);
	CHECK(strstr(text, "socket") == NULL && strstr(text, "auth_") == NULL);
	CHECK(queue_env_parse(text, len, &back, err, sizeof(err)) == 0);
	CHECK(back.sender != NULL && back.sender[0] == '\0');
	CHECK(back.route.host != NULL && back.route.host[0] == '\0');
	CHECK(back.route.socket == NULL && back.route.auth_user == NULL &&
	    back.route.auth_pass == NULL);
	CHECK(back.rcpts[0].last_reply != NULL && back.rcpts[0].last_reply[0] == '\0');
	CHECK(entry_eq(&e, &back));
	queue_entry_clear(&back);
	free(text);
}

static void
test_truncations(void)
{
	struct queue_entry back;
	char err[256], *copy;
	size_t n = strlen(golden);

	for (size_t i = 0; i < n; i++) {
		/* A copy of exactly i bytes, so ASan sees any read past it. */
		copy = malloc(i > 0 ? i : 1);
		memcpy(copy, golden, i);
		err[0] = '\0';
		CHECK_MSG(queue_env_parse(copy, i, &back, err, sizeof(err)) == -1,
		    "a prefix of %zu bytes parsed", i);
		CHECK_MSG(err[0] != '\0', "no reason for a prefix of %zu bytes", i);
		CHECK(back.sender == NULL && back.rcpts == NULL);
		free(copy);
	}
	CHECK(queue_env_parse(NULL, 0, &back, err, sizeof(err)) == -1);
	CHECK(queue_env_parse(golden, n, &back, err, sizeof(err)) == 0);
	queue_entry_clear(&back);
}

/* base with its line starting `from` replaced by `to` ("" deletes it). */
static char *
edited_in(const char *base, const char *from, const char *to)
{
	const char *at = strstr(base, from), *eol;
	char *out;

	if (at == NULL)
		return NULL;
	eol = strchr(at, '\n') + 1;
	out = malloc(strlen(base) + strlen(to) + 2);
	memcpy(out, base, (size_t)(at - base));
	strcpy(out + (at - base), to);
	strcat(out, eol);
	return out;
}

static char *
edited(const char *from, const char *to)
{
	return edited_in(golden, from, to);
}

static void
test_malformed(void)
{
	static const struct {
		const char *line, *replacement, *reason;
	} cases[] = {
		{ "luamta-queue 1", "luamta-queue 4\n", "unknown version" },
		{ "is_bounce ", "is_bounce 0\ndelay_warned 0\n", "number out of range" },
		{ "is_bounce ", "is_bounce 0\ndelay_warned -1\n", "bad number" },
		{ "is_bounce ", "is_bounce 0\ndelay_warned 1\ndelay_warned 1\n", "duplicate key" },
		{ "luamta-queue 1", "luamta-queue 0\n", "unknown version" },
		{ "is_bounce ", "is_bounce 0\nret hdrs\n", "bad ret" },
		{ "is_bounce ", "is_bounce 0\nret FULL\nret FULL\n", "duplicate key" },
		{ "rcpt to=y",
		    "rcpt to=y@example.net state=queued attempts=0 next=0 notify=NEVER,SUCCESS\n",
		    "bad notify" },
		{ "rcpt to=y", "rcpt to=y@example.net state=queued attempts=0 next=0 notify=\n",
		    "bad notify" },
		{ "rcpt to=y",
		    "rcpt to=y@example.net state=queued attempts=0 next=0 notify=NEVER \n",
		    "bad notify" },
		{ "rcpt to=y", "rcpt to=y@example.net state=queued attempts=0 next=0 orcpt=a%2\n",
		    "bad escape" },
		{ "rcpt to=y",
		    "rcpt to=y@example.net state=queued attempts=0 next=0 orcpt=x notify=NEVER\n",
		    "unexpected field" },
		{ "luamta-queue 1", "luamta-queue 10\n", "unknown version" },
		{ "luamta-queue 1", "luamta-queue\n", "not a luamta queue file" },
		{ "luamta-queue 1", "LUAMTA-QUEUE 1\n", "not a luamta queue file" },
		{ "luamta-queue 1", "", "not a luamta queue file" },
		{ "id ", "", "missing key id" },
		{ "sender ", "", "missing key sender" },
		{ "created ", "", "missing key created" },
		{ "size ", "", "missing key size" },
		{ "held ", "", "missing key held" },
		{ "body_8bit ", "", "missing key body_8bit" },
		{ "smtputf8 ", "", "missing key smtputf8" },
		{ "is_bounce ", "", "missing key is_bounce" },
		{ "port ", "", "missing key port" },
		{ "lmtp ", "", "missing key lmtp" },
		{ "tls ", "", "missing key tls" },
		{ "end\n", "", "truncated" },
		{ "end\n", "end\nend\n", "data after the end line" },
		{ "end\n", "end\n\n", "data after the end line" },
		{ "end\n", "end \n", "unknown key" },
		{ "end\n", "end\r\n", "unknown key" },
		{ "id ", "id 0123456789ABCDEF\n", "bad id" },
		{ "id ", "id ../../etc/passwd\n", "bad id" },
		{ "id ", "id 0123456789abcdef-0\n", "bad id" },
		{ "id ", "id 0123456789abcdef0123456789\n", "bad id" },
		{ "sender ", "sender a b\n", "bad escape" },
		{ "sender ", "sender a%2\n", "bad escape" },
		{ "sender ", "sender a%G0\n", "bad escape" },
		{ "sender ", "sender a%00b\n", "bad escape" },
		{ "sender ", "sender a\tb\n", "bad escape" },
		{ "sender ", "sender caf\xc3\xa9\n", "bad escape" },
		{ "held ", "held 2\n", "out of range" },
		{ "held ", "held -0\n", "bad number" },
		{ "held ", "held\n", "bad number" },
		{ "size ", "size 1x\n", "bad number" },
		{ "size ", "size 99999999999999999999\n", "bad number" },
		{ "created ", "created -5\n", "bad number" },
		{ "port ", "port 65536\n", "out of range" },
		{ "tls ", "tls maybe\n", "bad tls" },
		{ "is_bounce ", "is_bounce 0\nis_bounce 0\n", "duplicate key" },
		{ "is_bounce ", "is_bounce 0\nbounce 0\n", "unknown key" },
		{ "is_bounce ", "is_bounce 0\n\n", "unknown key" },
		{ "rcpt to=y", "rcpt to=y@example.net state=queued attempts=0 next=0\nheld 0\n",
		    "a key after the recipients" },
		{ "rcpt to=y", "rcpt\n", "empty rcpt line" },
		{ "rcpt to=y", "rcpt to=y state=sent attempts=0 next=0\n", "bad or missing state" },
		{ "rcpt to=y", "rcpt to=y attempts=0 state=queued next=0\n",
		    "bad or missing state" },
		{ "rcpt to=y", "rcpt to=y state=queued attempts=0\n", "next= expected" },
		{ "rcpt to=y", "rcpt to=y state=queued attempts=-1 next=0\n", "bad number" },
		{ "rcpt to=y", "rcpt to=y state=queued attempts=2147483648 next=0\n",
		    "out of range" },
		{ "rcpt to=y", "rcpt to=y state=queued attempts=0 next=0 \n", "next= expected" },
		{ "rcpt to=y", "rcpt to=y state=queued attempts=0 next=0 reply=a x=b\n",
		    "unexpected field" },
		{ "rcpt to=y", "rcpt to=y state=queued attempts=0 next=0 reply=a b\n",
		    "unexpected field" },
		{ "rcpt to=y", "rcpt to=y state=queued attempts=0 next=0 reply=%0\n",
		    "bad escape" },
		{ "rcpt to=y", "rcpt state=queued attempts=0 next=0\n", "to= expected" },
	};
	struct queue_entry back;
	char err[256];
	char *text;

	for (size_t i = 0; i < NELEM(cases); i++) {
		text = edited(cases[i].line, cases[i].replacement);
		CHECK_MSG(text != NULL, "case %zu: no line %s", i, cases[i].line);
		if (text == NULL)
			continue;
		err[0] = '\0';
		CHECK_MSG(queue_env_parse(text, strlen(text), &back, err, sizeof(err)) == -1,
		    "case %zu parsed", i);
		CHECK_MSG(strstr(err, cases[i].reason) != NULL, "case %zu: \"%s\", wanted \"%s\"",
		    i, err, cases[i].reason);
		free(text);
	}
	/* No recipient at all. */
	{
		char *one = edited("rcpt to=x", "");
		char *none = edited_in(one, "rcpt to=y", "");

		CHECK(queue_env_parse(none, strlen(none), &back, err, sizeof(err)) == -1);
		CHECK(strstr(err, "no recipient") != NULL);
		free(one);
		free(none);
	}
	/* A NUL byte inside a line. */
	{
		char nul[sizeof(golden)];

		memcpy(nul, golden, sizeof(golden));
		nul[20] = '\0';
		CHECK(queue_env_parse(nul, sizeof(golden) - 1, &back, err, sizeof(err)) == -1);
	}
}

/* Many recipients: every one comes back, in order. */
static void
test_many_rcpts(void)
{
	enum { N = 1000 };
	static struct queue_rcpt r[N];
	static char addrs[N][32];
	struct queue_entry e, back;
	char err[256];
	size_t len;
	char *text;

	memset(&e, 0, sizeof(e));
	strcpy(e.id, "abcdefabcdef0123");
	e.sender = "s";
	for (int i = 0; i < N; i++) {
		snprintf(addrs[i], sizeof(addrs[i]), "user%d@example.net", i);
		r[i].address = addrs[i];
		r[i].state = (enum queue_rcpt_state)(i % 4);
		r[i].attempts = i;
	}
	e.rcpts = r;
	e.nrcpts = N;
	text = queue_env_format(&e, &len);
	CHECK(text != NULL);
	CHECK(queue_env_parse(text, len, &back, err, sizeof(err)) == 0);
	CHECK(back.nrcpts == N && entry_eq(&e, &back));
	queue_entry_clear(&back);
	free(text);
}

static void
test_helpers(void)
{
	static const struct {
		const char *id;
		int ok;
	} ids[] = {
		{ "0123456789abcdef", 1 },
		{ "0123456789abcdef-1", 1 },
		{ "0123456789abcdef-999999", 1 },
		{ "0123456789abcdef-1000000", 0 },
		{ "0123456789abcdef-01", 0 },
		{ "0123456789abcdef-", 0 },
		{ "0123456789abcde", 0 },
		{ "0123456789abcdeF", 0 },
		{ "0123456789abcdef0", 0 },
		{ "0123456789abcdef.env", 0 },
		{ "..", 0 },
		{ "", 0 },
		{ "all", 0 },
	};
	struct queue_entry e;
	struct queue_rcpt r[2];

	for (size_t i = 0; i < NELEM(ids); i++)
		CHECK_MSG(queue_id_valid(ids[i].id) == ids[i].ok, "id \"%s\"", ids[i].id);
	CHECK_STR(queue_rcpt_state_str(QUEUE_RCPT_QUEUED), "queued");
	CHECK_STR(queue_rcpt_state_str(QUEUE_RCPT_DEFERRED), "deferred");
	CHECK_STR(queue_rcpt_state_str(QUEUE_RCPT_DELIVERED), "delivered");
	CHECK_STR(queue_rcpt_state_str(QUEUE_RCPT_BOUNCED), "bounced");
	CHECK_STR(queue_tls_str(QUEUE_TLS_MAY), "may");
	golden_entry(&e, r);
	CHECK(!queue_entry_done(&e));
	r[0].state = QUEUE_RCPT_DELIVERED;
	CHECK(!queue_entry_done(&e));
	r[1].state = QUEUE_RCPT_BOUNCED;
	CHECK(queue_entry_done(&e));
	r[1].state = QUEUE_RCPT_DEFERRED;
	CHECK(!queue_entry_done(&e));
	/* queue_entry_clear frees what it owns and zeroes the entry. */
	memset(&e, 0, sizeof(e));
	e.sender = strdup("s");
	e.route.auth_pass = strdup("secret");
	e.rcpts = calloc(1, sizeof(*e.rcpts));
	e.rcpts[0].address = strdup("a");
	e.nrcpts = 1;
	queue_entry_clear(&e);
	CHECK(e.sender == NULL && e.rcpts == NULL && e.nrcpts == 0 && e.route.auth_pass == NULL);
	queue_entry_clear(&e);
}

int
main(void)
{
	test_golden();
	test_dsn_fields();
	test_delay_warned();
	test_hostile_round_trip();
	test_null_and_empty();
	test_truncations();
	test_malformed();
	test_many_rcpts();
	test_helpers();
	return test_done("test_queue_file");
}
