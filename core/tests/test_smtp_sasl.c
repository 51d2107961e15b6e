/* test_smtp_sasl.c - table tests for the AUTH exchange: each row is one
 * exchange, line by line, with the reply every step must give. The module is
 * compiled into this file with malloc, free and explicit_bzero redirected, so
 * that allocations can fail on demand and every wipe can be watched. A seeded
 * loop over garbage then checks the invariants whatever a client sends. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>

#include "test.h"

/* Fault injection and bookkeeping for the module's heap and wipes. */

#define LIVE_MAX 8

static struct {
	void *p;
	size_t n;
} live[LIVE_MAX];               /* the module's allocations not yet freed */
static int nlive;               /* entries in live[] */
static long alloc_budget = -1;  /* allocations that may still succeed; -1: all */
static int unwiped_frees;       /* frees of memory that still held a nonzero byte */
static int unknown_frees;       /* frees of pointers the module never got from malloc */
static int live_overflow;       /* allocations live[] had no room for */
static const char *wipe_marker; /* a secret whose wiping is being watched, or NULL */
static int marker_wipes;        /* wipes of a region that held wipe_marker */

static void *
test_malloc(size_t n)
{
	void *p;

	if (alloc_budget == 0)
		return NULL;
	if (alloc_budget > 0)
		alloc_budget--;
	if ((p = malloc(n)) == NULL)
		return NULL;
	if (nlive == LIVE_MAX) {
		live_overflow++;
		return p;
	}
	live[nlive].p = p;
	live[nlive].n = n;
	nlive++;
	return p;
}

static void
test_free(void *p)
{
	const unsigned char *b = p;
	int i;

	if (p == NULL)
		return;
	for (i = 0; i < nlive && live[i].p != p; i++)
		;
	if (i == nlive) {
		unknown_frees++;
		free(p);
		return;
	}
	for (size_t j = 0; j < live[i].n; j++)
		if (b[j] != 0) {
			unwiped_frees++;
			break;
		}
	live[i] = live[--nlive];
	free(p);
}

/* Counts a wipe that covers the watched secret. The search stops at the first
 * match, so it never reads the undecoded tail of a stack buffer (which
 * valgrind would rightly call uninitialised). */
static void
test_bzero(void *p, size_t n)
{
	const char *b = p;
	size_t m, i, k;

	if (wipe_marker != NULL && (m = strlen(wipe_marker)) <= n)
		for (i = 0; i + m <= n; i++) {
			for (k = 0; k < m && b[i + k] == wipe_marker[k]; k++)
				;
			if (k == m) {
				marker_wipes++;
				break;
			}
		}
	explicit_bzero(p, n);
}

#define malloc         test_malloc
#define free           test_free
#define explicit_bzero test_bzero
#include "smtp_sasl.c"
#undef malloc
#undef free
#undef explicit_bzero

/* Lets a row carry a string with NULs in it: the length is the literal's. */
#define IN(s) (s), (sizeof(s) - 1)

#define PROMPT_USER "VXNlcm5hbWU6"
#define PROMPT_PASS "UGFzc3dvcmQ6"

/* The expected outcome of one turn: status, code, enhanced code, text. */
#define R_PLAIN     SMTP_SASL_CHALLENGE, 334, NULL, ""
#define R_USER      SMTP_SASL_CHALLENGE, 334, NULL, PROMPT_USER
#define R_PASS      SMTP_SASL_CHALLENGE, 334, NULL, PROMPT_PASS
#define R_DONE      SMTP_SASL_DONE, 0, NULL, NULL
#define R_SYNTAX    SMTP_SASL_FAIL, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"
#define R_UNKNOWN   SMTP_SASL_FAIL, 504, "5.5.4", "Error: unsupported authentication mechanism"
#define R_BASE64    SMTP_SASL_FAIL, 501, "5.5.2", "Error: invalid base64 data"
#define R_MALFORMED SMTP_SASL_FAIL, 501, "5.5.2", "Error: malformed PLAIN response"
#define R_AUTHZID   SMTP_SASL_FAIL, 535, "5.7.8", "Error: authorization identity not allowed"
#define R_NOUSER    SMTP_SASL_FAIL, 501, "5.5.2", "Error: empty user name"
#define R_BADUSER   SMTP_SASL_FAIL, 501, "5.5.2", "Error: bad user name"
#define R_BADPASS   SMTP_SASL_FAIL, 501, "5.5.2", "Error: bad password"
#define R_ABORT     SMTP_SASL_FAIL, 501, "5.7.0", "Authentication aborted"
#define R_NOMEM     SMTP_SASL_FAIL, 451, "4.3.0", "Error: out of memory"
#define R_IDLE      SMTP_SASL_FAIL, 503, "5.5.1", "Error: no authentication exchange"

struct turn {
	const char *in; /* NULL ends the exchange */
	size_t len;
	enum smtp_sasl_status st;
	int code;
	const char *enh;
	const char *text;
};

/* t[0] goes to smtp_sasl_start(), the others to smtp_sasl_next(). */
struct flow {
	struct turn t[4];
	const char *mech; /* sasl.mech after the last turn */
	const char *user; /* after a final DONE, else NULL */
	const char *pass;
};

static int
same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The invariants of every return: the first one broken, or NULL. */
static const char *
sasl_broken(const struct smtp_sasl *sasl, enum smtp_sasl_status st, const struct smtp_sasl_reply *r)
{
	const char *m = memchr(sasl->mech, '\0', sizeof(sasl->mech));

	if (m == NULL)
		return "mech not terminated";
	for (m = sasl->mech; *m != '\0'; m++)
		if (!((*m >= 'A' && *m <= 'Z') || (*m >= '0' && *m <= '9') || *m == '-' ||
			*m == '_'))
			return "mech has a character outside [A-Z0-9-_]";
	if (nlive != (sasl->user != NULL) + (sasl->pass != NULL))
		return "allocations other than user and pass are live";
	if (sasl->user != NULL && sasl->user[0] == '\0')
		return "empty user name kept";
	switch (st) {
	case SMTP_SASL_FAIL:
		if (sasl->step != SMTP_SASL_IDLE || sasl->user != NULL || sasl->pass != NULL)
			return "FAIL kept something";
		if (r->code != 451 && r->code != 501 && r->code != 503 && r->code != 504 &&
		    r->code != 535)
			return "FAIL with an unexpected code";
		if (r->enh == NULL || r->text == NULL || r->text[0] == '\0')
			return "FAIL without enhanced code or text";
		return NULL;
	case SMTP_SASL_DONE:
		if (sasl->step != SMTP_SASL_IDLE || sasl->user == NULL || sasl->pass == NULL)
			return "DONE without both credentials, or not idle";
		if (r->code != 0 || r->enh != NULL || r->text != NULL)
			return "DONE with a reply";
		return NULL;
	case SMTP_SASL_CHALLENGE:
		if (r->code != 334 || r->enh != NULL || r->text == NULL || sasl->pass != NULL)
			return "CHALLENGE with a bad reply, or a password kept";
		if (sasl->step == SMTP_SASL_PLAIN && strcmp(r->text, "") == 0 && sasl->user == NULL)
			return NULL;
		if (sasl->step == SMTP_SASL_LOGIN_USER && strcmp(r->text, PROMPT_USER) == 0 &&
		    sasl->user == NULL)
			return NULL;
		if (sasl->step == SMTP_SASL_LOGIN_PASS && strcmp(r->text, PROMPT_PASS) == 0 &&
		    sasl->user != NULL)
			return NULL;
		return "CHALLENGE text, step and user do not agree";
	}
	return "status out of range";
}

/* Runs one exchange; from turn nomem_turn on (-1: never), only nomem_budget
 * more allocations succeed. */
static void
run_flow(const char *table, size_t row, const struct flow *f, int nomem_turn, long nomem_budget)
{
	struct smtp_sasl sasl;
	struct smtp_sasl_reply r;
	enum smtp_sasl_status st;
	const char *why;
	int k;

	memset(&sasl, 0, sizeof(sasl));
	for (k = 0; k < 4 && f->t[k].in != NULL; k++) {
		const struct turn *t = &f->t[k];

		if (k == nomem_turn)
			alloc_budget = nomem_budget;
		/* Poisoned, so that a field left unset shows. */
		r.code = -1;
		r.enh = r.text = "unset";
		if (k == 0)
			st = smtp_sasl_start(&sasl, t->in, t->len, &r);
		else
			st = smtp_sasl_next(&sasl, t->in, t->len, &r);
		CHECK_MSG(st == t->st, "%s row %zu turn %d \"%.*s\": status %d, want %d", table,
		    row, k, (int)t->len, t->in, (int)st, (int)t->st);
		CHECK_MSG(r.code == t->code && same(r.enh, t->enh) && same(r.text, t->text),
		    "%s row %zu turn %d: reply %d %s %s", table, row, k, r.code,
		    r.enh != NULL ? r.enh : "(null)", r.text != NULL ? r.text : "(null)");
		why = sasl_broken(&sasl, st, &r);
		CHECK_MSG(why == NULL, "%s row %zu turn %d: %s", table, row, k, why);
	}
	alloc_budget = -1;
	CHECK_MSG(strcmp(sasl.mech, f->mech) == 0, "%s row %zu: mech \"%s\", want \"%s\"", table,
	    row, sasl.mech, f->mech);
	CHECK_MSG(same(sasl.user, f->user) && same(sasl.pass, f->pass),
	    "%s row %zu: user \"%s\" pass \"%s\"", table, row,
	    sasl.user != NULL ? sasl.user : "(null)", sasl.pass != NULL ? sasl.pass : "(null)");
	smtp_sasl_reset(&sasl);
	CHECK_MSG(nlive == 0, "%s row %zu: %d allocations left after reset", table, row, nlive);
}

static const struct flow plain_flows[] = {
	/* "\0user\0pass", with and without an initial response. */
	{ { { IN("PLAIN AHVzZXIAcGFzcw=="), R_DONE } }, "PLAIN", "user", "pass" },
	{ { { IN("plain AHVzZXIAcGFzcw=="), R_DONE } }, "PLAIN", "user", "pass" },
	{ { { IN("PLAIN"), R_PLAIN }, { IN("AHVzZXIAcGFzcw=="), R_DONE } }, "PLAIN", "user",
	    "pass" },
	/* authzid equal to authcid: "user\0user\0pass". */
	{ { { IN("PlAiN dXNlcgB1c2VyAHBhc3M="), R_DONE } }, "PLAIN", "user", "pass" },
	{ { { IN("PLAIN"), R_PLAIN }, { IN("dXNlcgB1c2VyAHBhc3M="), R_DONE } }, "PLAIN", "user",
	    "pass" },
	/* authzid of someone else: "other\0user\0pass". */
	{ { { IN("PLAIN b3RoZXIAdXNlcgBwYXNz"), R_AUTHZID } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN"), R_PLAIN }, { IN("b3RoZXIAdXNlcgBwYXNz"), R_AUTHZID } }, "PLAIN", NULL,
	    NULL },
	/* "x\0\0p": the authzid test comes before the empty-user test. */
	{ { { IN("PLAIN eAAAcA=="), R_AUTHZID } }, "PLAIN", NULL, NULL },
	/* "\0\0pass": no user name. */
	{ { { IN("PLAIN AABwYXNz"), R_NOUSER } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN"), R_PLAIN }, { IN("AABwYXNz"), R_NOUSER } }, "PLAIN", NULL, NULL },
	/* The two characters outside letters and digits: "\0user\0p?>~",
	 * "\0user\0x>?". */
	{ { { IN("PLAIN AHVzZXIAcD8+fg=="), R_DONE } }, "PLAIN", "user", "p?>~" },
	{ { { IN("PLAIN"), R_PLAIN }, { IN("AHVzZXIAeD4/"), R_DONE } }, "PLAIN", "user", "x>?" },
	/* "\0user\0": an empty password is the policy's to refuse. */
	{ { { IN("PLAIN AHVzZXIA"), R_DONE } }, "PLAIN", "user", "" },
	/* Not exactly two NULs: "user", "\0", "user\0pass", "\0u\0p\0",
	 * "\0user\0\0", and the empty response. */
	{ { { IN("PLAIN dXNlcg=="), R_MALFORMED } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN AA=="), R_MALFORMED } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN dXNlcgBwYXNz"), R_MALFORMED } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN AHUAcAA="), R_MALFORMED } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN AHVzZXIAAA=="), R_MALFORMED } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN"), R_PLAIN }, { IN("AHUAcAA="), R_MALFORMED } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN ="), R_MALFORMED } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN"), R_PLAIN }, { IN("="), R_MALFORMED } }, "PLAIN", NULL, NULL },
	/* Cancel, and what is not one. */
	{ { { IN("PLAIN"), R_PLAIN }, { IN("*"), R_ABORT } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN *"), R_BASE64 } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN"), R_PLAIN }, { IN("**"), R_BASE64 } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN"), R_PLAIN }, { IN("* "), R_BASE64 } }, "PLAIN", NULL, NULL },
	/* Empty or misplaced initial responses and lines. */
	{ { { IN("PLAIN "), R_BASE64 } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN  AHVzZXIAcGFzcw=="), R_BASE64 } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN AHVzZXIAcGFzcw== "), R_BASE64 } }, "PLAIN", NULL, NULL },
	{ { { IN("PLAIN"), R_PLAIN }, { IN(""), R_BASE64 } }, "PLAIN", NULL, NULL },
};

static const struct flow login_flows[] = {
	/* "user" then "pass", with and without an initial response. */
	{ { { IN("LOGIN"), R_USER }, { IN("dXNlcg=="), R_PASS }, { IN("cGFzcw=="), R_DONE } },
	    "LOGIN", "user", "pass" },
	{ { { IN("login dXNlcg=="), R_PASS }, { IN("cGFzcw=="), R_DONE } }, "LOGIN", "user",
	    "pass" },
	{ { { IN("LOGIN dQ=="), R_PASS }, { IN("cGFzcw=="), R_DONE } }, "LOGIN", "u", "pass" },
	{ { { IN("LOGIN dT8+"), R_PASS }, { IN("Pj4/"), R_DONE } }, "LOGIN", "u?>", ">>?" },
	{ { { IN("LOGIN"), R_USER }, { IN("dXNlcg=="), R_PASS }, { IN("="), R_DONE } }, "LOGIN",
	    "user", "" },
	/* Empty user names, and ones with a NUL ("u\0ser", "\0"). */
	{ { { IN("LOGIN"), R_USER }, { IN("="), R_BADUSER } }, "LOGIN", NULL, NULL },
	{ { { IN("LOGIN ="), R_BADUSER } }, "LOGIN", NULL, NULL },
	{ { { IN("LOGIN dQBzZXI="), R_BADUSER } }, "LOGIN", NULL, NULL },
	{ { { IN("LOGIN AA=="), R_BADUSER } }, "LOGIN", NULL, NULL },
	{ { { IN("LOGIN"), R_USER }, { IN("dQBzZXI="), R_BADUSER } }, "LOGIN", NULL, NULL },
	/* Passwords with a NUL ("pa\0ss", "\0"). */
	{ { { IN("LOGIN"), R_USER }, { IN("dXNlcg=="), R_PASS }, { IN("cGEAc3M="), R_BADPASS } },
	    "LOGIN", NULL, NULL },
	{ { { IN("LOGIN dXNlcg=="), R_PASS }, { IN("AA=="), R_BADPASS } }, "LOGIN", NULL, NULL },
	/* Cancel at each step; the user name already held goes too. */
	{ { { IN("LOGIN"), R_USER }, { IN("*"), R_ABORT } }, "LOGIN", NULL, NULL },
	{ { { IN("LOGIN"), R_USER }, { IN("dXNlcg=="), R_PASS }, { IN("*"), R_ABORT } }, "LOGIN",
	    NULL, NULL },
	{ { { IN("LOGIN dXNlcg=="), R_PASS }, { IN("*"), R_ABORT } }, "LOGIN", NULL, NULL },
	{ { { IN("LOGIN *"), R_BASE64 } }, "LOGIN", NULL, NULL },
	/* Bad base64 at each step. */
	{ { { IN("LOGIN dXNlcg="), R_BASE64 } }, "LOGIN", NULL, NULL },
	{ { { IN("LOGIN"), R_USER }, { IN("dXNlcg"), R_BASE64 } }, "LOGIN", NULL, NULL },
	{ { { IN("LOGIN"), R_USER }, { IN("dXNlcg=="), R_PASS }, { IN("cGFzcw="), R_BASE64 } },
	    "LOGIN", NULL, NULL },
	/* A second "*" is no cancel once the exchange is over. */
	{ { { IN("LOGIN"), R_USER }, { IN("*"), R_ABORT }, { IN("*"), R_IDLE } }, "LOGIN", NULL,
	    NULL },
};

static const struct flow mech_flows[] = {
	/* Names of 1, 16 and 20 characters are well-formed, 21 is not. */
	{ { { IN("X"), R_UNKNOWN } }, "X", NULL, NULL },
	{ { { IN("x"), R_UNKNOWN } }, "X", NULL, NULL },
	{ { { IN("ABCDEFGHIJKLMNOP"), R_UNKNOWN } }, "ABCDEFGHIJKLMNOP", NULL, NULL },
	{ { { IN("abcdefghij-KLMNOP_12"), R_UNKNOWN } }, "ABCDEFGHIJ-KLMNOP_12", NULL, NULL },
	{ { { IN("ABCDEFGHIJKLMNOPQRST AHVzZXIAcGFzcw=="), R_UNKNOWN } }, "ABCDEFGHIJKLMNOPQRST",
	    NULL, NULL },
	{ { { IN("ABCDEFGHIJKLMNOPQRSTU"), R_SYNTAX } }, "", NULL, NULL },
	{ { { IN("ABCDEFGHIJKLMNOPQRSTU AHVzZXIAcGFzcw=="), R_SYNTAX } }, "", NULL, NULL },
	{ { { IN("PLAINPLAINPLAINPLAINPLAIN"), R_SYNTAX } }, "", NULL, NULL },
	/* Empty names. */
	{ { { IN(""), R_SYNTAX } }, "", NULL, NULL },
	{ { { IN(" "), R_SYNTAX } }, "", NULL, NULL },
	{ { { IN(" PLAIN"), R_SYNTAX } }, "", NULL, NULL },
	/* Characters outside [A-Za-z0-9-_]. */
	{ { { IN("PL.AIN"), R_SYNTAX } }, "", NULL, NULL },
	{ { { IN("PL/AIN"), R_SYNTAX } }, "", NULL, NULL },
	{ { { IN("PLA+N"), R_SYNTAX } }, "", NULL, NULL },
	{ { { IN("PLAIN\t"), R_SYNTAX } }, "", NULL, NULL },
	{ { { IN("PLAIN\tAHVzZXIAcGFzcw=="), R_SYNTAX } }, "", NULL, NULL },
	{ { { IN("PLAIN\r"), R_SYNTAX } }, "", NULL, NULL },
	{ { { IN("PL\0AIN"), R_SYNTAX } }, "", NULL, NULL },
	{ { { IN("PLAIN\0"), R_SYNTAX } }, "", NULL, NULL },
	{ { { IN("PL\xc3\x89IN"), R_SYNTAX } }, "", NULL, NULL },
	{ { { IN("\xff"), R_SYNTAX } }, "", NULL, NULL },
	/* Well-formed but unknown; an initial response is not looked at. */
	{ { { IN("CRAM-MD5"), R_UNKNOWN } }, "CRAM-MD5", NULL, NULL },
	{ { { IN("scram-sha-256"), R_UNKNOWN } }, "SCRAM-SHA-256", NULL, NULL },
	{ { { IN("XOAUTH2 !!!"), R_UNKNOWN } }, "XOAUTH2", NULL, NULL },
	{ { { IN("PLAINX"), R_UNKNOWN } }, "PLAINX", NULL, NULL },
	{ { { IN("PLAI"), R_UNKNOWN } }, "PLAI", NULL, NULL },
	{ { { IN("PLAIN_ AHVzZXIAcGFzcw=="), R_UNKNOWN } }, "PLAIN_", NULL, NULL },
	{ { { IN("LOGIN-"), R_UNKNOWN } }, "LOGIN-", NULL, NULL },
	/* Only len bytes count: the rest of the buffer is not the argument. */
	{ { { "PLAINX", 5, R_PLAIN }, { IN("AHVzZXIAcGFzcw=="), R_DONE } }, "PLAIN", "user",
	    "pass" },
	{ { { "LOGIN dXNlcg==xyz", 14, R_PASS }, { IN("cGFzcw=="), R_DONE } }, "LOGIN", "user",
	    "pass" },
};

/* Allocation failures, by the turn from which they start and how many
 * allocations still succeed then. */
struct nomem_flow {
	struct flow f;
	int turn;
	long budget;
};

static const struct nomem_flow nomem_flows[] = {
	/* PLAIN: the user's copy fails, then the password's (the user's
	 * copy must not leak), then both succeed. */
	{ { { { IN("PLAIN AHVzZXIAcGFzcw=="), R_NOMEM } }, "PLAIN", NULL, NULL }, 0, 0 },
	{ { { { IN("PLAIN AHVzZXIAcGFzcw=="), R_NOMEM } }, "PLAIN", NULL, NULL }, 0, 1 },
	{ { { { IN("PLAIN AHVzZXIAcGFzcw=="), R_DONE } }, "PLAIN", "user", "pass" }, 0, 2 },
	{ { { { IN("PLAIN"), R_PLAIN }, { IN("AHVzZXIAcGFzcw=="), R_NOMEM } }, "PLAIN", NULL,
	      NULL },
	    1, 1 },
	/* LOGIN: the user name from the initial response or a line, then
	 * the password with the user name held. */
	{ { { { IN("LOGIN dXNlcg=="), R_NOMEM } }, "LOGIN", NULL, NULL }, 0, 0 },
	{ { { { IN("LOGIN"), R_USER }, { IN("dXNlcg=="), R_NOMEM } }, "LOGIN", NULL, NULL }, 1, 0 },
	{ { { { IN("LOGIN"), R_USER }, { IN("dXNlcg=="), R_PASS }, { IN("cGFzcw=="), R_NOMEM } },
	      "LOGIN", NULL, NULL },
	    2, 0 },
	/* Failures that need no memory come first. */
	{ { { { IN("PLAIN b3RoZXIAdXNlcgBwYXNz"), R_AUTHZID } }, "PLAIN", NULL, NULL }, 0, 0 },
	{ { { { IN("CRAM-MD5"), R_UNKNOWN } }, "CRAM-MD5", NULL, NULL }, 0, 0 },
};

static void
test_flows(void)
{
	size_t i;

	for (i = 0; i < sizeof(plain_flows) / sizeof(plain_flows[0]); i++)
		run_flow("plain", i, &plain_flows[i], -1, -1);
	for (i = 0; i < sizeof(login_flows) / sizeof(login_flows[0]); i++)
		run_flow("login", i, &login_flows[i], -1, -1);
	for (i = 0; i < sizeof(mech_flows) / sizeof(mech_flows[0]); i++)
		run_flow("mech", i, &mech_flows[i], -1, -1);
	for (i = 0; i < sizeof(nomem_flows) / sizeof(nomem_flows[0]); i++)
		run_flow("nomem", i, &nomem_flows[i].f, nomem_flows[i].turn, nomem_flows[i].budget);
}

/* Not strict RFC 4648 4 base64, each for its own reason. */
static const struct {
	const char *s;
	size_t len;
} bad_b64[] = {
	{ IN("AHVzZXIAcGFzcw=") },        /* not a multiple of 4 */
	{ IN("AHVzZXIAcGFzc") },          /* same */
	{ IN("AHVzZXIAcGFzcw") },         /* padding left out */
	{ IN("A") },                      /* same */
	{ IN("==") },                     /* only padding, short */
	{ IN("====") },                   /* only padding */
	{ IN("AHVzZXIAcGFzc===") },       /* three pad characters */
	{ IN("AHVzZXIAcGFz=w==") },       /* padding inside the last quantum */
	{ IN("=HVzZXIAcGFzcw==") },       /* padding first */
	{ IN("AA==AA==") },               /* padding between quanta */
	{ IN("AHVz ZXIAcGFzcw=") },       /* a space inside */
	{ IN(" AHVzZXIAcGFzcw=") },       /* a leading space */
	{ IN("AHVzZXIAcGFz\r\n==") },     /* a line break inside */
	{ IN("AHVzZXIAcGFzcw\t=") },      /* a tab */
	{ IN("AHVzZXIA-GFzcw==") },       /* base64url's "-" */
	{ IN("AHVzZXIA_GFzcw==") },       /* base64url's "_" */
	{ IN("AHVzZXIAcGFzcw\0=") },      /* a NUL */
	{ IN("\xc3\xa9VzZXIAcGFzcw==") }, /* not ASCII */
	{ IN("AHVzZXIAcGFzcw=\xbd") },    /* not ASCII in the pad position */
	{ IN("AHVzZXIAcGFzcw.=") },       /* punctuation */
};

/* Each bad string as PLAIN's initial response and as the line at every
 * step of both mechanisms. */
static void
test_bad_base64(void)
{
	static const struct {
		const char *auth;
		const char *before; /* a line that leads to the step, or NULL */
	} steps[] = {
		{ "PLAIN", NULL },
		{ "LOGIN", NULL },
		{ "LOGIN", "dXNlcg==" },
	};
	struct smtp_sasl sasl;
	struct smtp_sasl_reply r;
	enum smtp_sasl_status st;
	char arg[64];
	size_t i, j;

	for (i = 0; i < sizeof(bad_b64) / sizeof(bad_b64[0]); i++) {
		memset(&sasl, 0, sizeof(sasl));
		memcpy(arg, "PLAIN ", 6);
		memcpy(arg + 6, bad_b64[i].s, bad_b64[i].len);
		st = smtp_sasl_start(&sasl, arg, 6 + bad_b64[i].len, &r);
		CHECK_MSG(st == SMTP_SASL_FAIL && r.code == 501 && same(r.enh, "5.5.2") &&
			same(r.text, "Error: invalid base64 data"),
		    "bad base64 %zu as initial response: status %d", i, (int)st);
		CHECK_MSG(sasl_broken(&sasl, st, &r) == NULL, "bad base64 %zu: %s", i,
		    sasl_broken(&sasl, st, &r));
		for (j = 0; j < sizeof(steps) / sizeof(steps[0]); j++) {
			memset(&sasl, 0, sizeof(sasl));
			st = smtp_sasl_start(&sasl, steps[j].auth, strlen(steps[j].auth), &r);
			if (steps[j].before != NULL)
				st = smtp_sasl_next(
				    &sasl, steps[j].before, strlen(steps[j].before), &r);
			CHECK_MSG(
			    st == SMTP_SASL_CHALLENGE, "bad base64 %zu step %zu: setup", i, j);
			st = smtp_sasl_next(&sasl, bad_b64[i].s, bad_b64[i].len, &r);
			CHECK_MSG(st == SMTP_SASL_FAIL && r.code == 501 &&
				same(r.text, "Error: invalid base64 data"),
			    "bad base64 %zu at step %zu: status %d code %d", i, j, (int)st, r.code);
			CHECK_MSG(sasl_broken(&sasl, st, &r) == NULL, "bad base64 %zu step %zu: %s",
			    i, j, sasl_broken(&sasl, st, &r));
			smtp_sasl_reset(&sasl);
		}
	}
	CHECK(nlive == 0);
}

/* n bytes of base64 (n a multiple of 4) encoding the plain bytes p, into a
 * malloc'ed, NUL-terminated string. */
static char *
b64(const void *p, size_t plen)
{
	size_t n = (plen + 2) / 3 * 4, out;
	char *s = malloc(n + 1);

	if (s == NULL || mbedtls_base64_encode((unsigned char *)s, n + 1, &out, p, plen) != 0 ||
	    out != n) {
		fprintf(stderr, "b64: cannot encode %zu bytes\n", plen);
		exit(2);
	}
	return s;
}

/* The largest response that fits, and the smallest that does not; any len
 * is safe. */
static void
test_sizes(void)
{
	const size_t fit = SMTP_SASL_LINE_MAX / 4 * 3;
	struct smtp_sasl sasl;
	struct smtp_sasl_reply r;
	enum smtp_sasl_status st;
	char *msg, *line, *arg, *huge;
	size_t hugelen = 1 << 20;

	/* "\0user\0ppp...": exactly SMTP_SASL_LINE_MAX base64 characters. */
	msg = malloc(fit + 3);
	huge = malloc(hugelen);
	arg = malloc(6 + SMTP_SASL_LINE_MAX + 8);
	if (msg == NULL || huge == NULL || arg == NULL)
		exit(2);
	memcpy(msg, "\0user\0", 6);
	memset(msg + 6, 'p', fit + 3 - 6);
	line = b64(msg, fit);
	CHECK(strlen(line) == SMTP_SASL_LINE_MAX);

	memset(&sasl, 0, sizeof(sasl));
	st = smtp_sasl_start(&sasl, "PLAIN", 5, &r);
	st = smtp_sasl_next(&sasl, line, strlen(line), &r);
	CHECK_MSG(st == SMTP_SASL_DONE, "a full-size line: status %d", (int)st);
	CHECK(sasl.pass != NULL && strlen(sasl.pass) == fit - 6);
	CHECK(sasl.user != NULL && strcmp(sasl.user, "user") == 0);

	/* The same as an initial response, after "PLAIN ". */
	memcpy(arg, "PLAIN ", 6);
	memcpy(arg + 6, line, SMTP_SASL_LINE_MAX);
	st = smtp_sasl_start(&sasl, arg, 6 + SMTP_SASL_LINE_MAX, &r);
	CHECK_MSG(st == SMTP_SASL_DONE, "a full-size initial response: status %d", (int)st);
	CHECK(sasl.pass != NULL && strlen(sasl.pass) == fit - 6);
	free(line);

	/* One quantum more decodes past the buffer: refused. */
	line = b64(msg, fit + 3);
	CHECK(strlen(line) == SMTP_SASL_LINE_MAX + 4);
	st = smtp_sasl_start(&sasl, "PLAIN", 5, &r);
	CHECK(sasl.pass == NULL && nlive == 0);
	st = smtp_sasl_next(&sasl, line, strlen(line), &r);
	CHECK_MSG(
	    st == SMTP_SASL_FAIL && r.code == 501 && same(r.text, "Error: invalid base64 data"),
	    "one quantum too many: status %d", (int)st);
	memcpy(arg + 6, line, SMTP_SASL_LINE_MAX + 4);
	st = smtp_sasl_start(&sasl, arg, 6 + SMTP_SASL_LINE_MAX + 4, &r);
	CHECK_MSG(st == SMTP_SASL_FAIL && r.code == 501 && same(r.enh, "5.5.2"),
	    "one quantum too many as initial response: status %d", (int)st);
	free(line);

	/* LOGIN's password at the limit: SMTP_SASL_LINE_MAX / 4 * 3 bytes. */
	memset(msg, 'p', fit);
	line = b64(msg, fit);
	st = smtp_sasl_start(&sasl, "LOGIN dXNlcg==", 14, &r);
	st = smtp_sasl_next(&sasl, line, strlen(line), &r);
	CHECK_MSG(st == SMTP_SASL_DONE && sasl.pass != NULL && strlen(sasl.pass) == fit,
	    "LOGIN full-size password: status %d", (int)st);
	free(line);

	/* A megabyte of "A": well-formed quanta, far too many. */
	memset(huge, 'A', hugelen);
	st = smtp_sasl_start(&sasl, "LOGIN", 5, &r);
	st = smtp_sasl_next(&sasl, huge, hugelen, &r);
	CHECK_MSG(st == SMTP_SASL_FAIL && r.code == 501, "1 MiB line: status %d", (int)st);
	memcpy(huge, "PLAIN ", 6);
	st = smtp_sasl_start(&sasl, huge, hugelen, &r);
	CHECK_MSG(st == SMTP_SASL_FAIL && r.code == 501 && strcmp(sasl.mech, "PLAIN") == 0,
	    "1 MiB initial response: status %d", (int)st);
	/* And as a mechanism name. */
	memset(huge, 'A', hugelen);
	st = smtp_sasl_start(&sasl, huge, hugelen, &r);
	CHECK_MSG(st == SMTP_SASL_FAIL && r.code == 501 && same(r.enh, "5.5.4"),
	    "1 MiB mechanism: status %d", (int)st);

	smtp_sasl_reset(&sasl);
	CHECK(nlive == 0);
	free(msg);
	free(huge);
	free(arg);
}

/* The decoded response is wiped before every return, and the credentials
 * when reset: wipe_marker is the password each row sends. */
static void
test_wipes(void)
{
	static const struct {
		const char *auth;
		const char *lines[2];
		enum smtp_sasl_status st;
		long budget; /* for the last call; -1: no failure */
	} rows[] = {
		/* "\0user\0s3cret-pw" */
		{ "PLAIN AHVzZXIAczNjcmV0LXB3", { NULL }, SMTP_SASL_DONE, -1 },
		{ "PLAIN", { "AHVzZXIAczNjcmV0LXB3" }, SMTP_SASL_DONE, -1 },
		{ "PLAIN AHVzZXIAczNjcmV0LXB3", { NULL }, SMTP_SASL_FAIL, 1 },
		/* "other\0user\0s3cret-pw", "\0\0s3cret-pw", "user\0s3cret-pw" */
		{ "PLAIN b3RoZXIAdXNlcgBzM2NyZXQtcHc=", { NULL }, SMTP_SASL_FAIL, -1 },
		{ "PLAIN AABzM2NyZXQtcHc=", { NULL }, SMTP_SASL_FAIL, -1 },
		{ "PLAIN dXNlcgBzM2NyZXQtcHc=", { NULL }, SMTP_SASL_FAIL, -1 },
		/* "s3cret-pw" and "pa\0s3cret-pw" as LOGIN's password. */
		{ "LOGIN dXNlcg==", { "czNjcmV0LXB3" }, SMTP_SASL_DONE, -1 },
		{ "LOGIN", { "dXNlcg==", "czNjcmV0LXB3" }, SMTP_SASL_DONE, -1 },
		{ "LOGIN dXNlcg==", { "cGEAczNjcmV0LXB3" }, SMTP_SASL_FAIL, -1 },
		{ "LOGIN dXNlcg==", { "czNjcmV0LXB3" }, SMTP_SASL_FAIL, 0 },
	};
	struct smtp_sasl sasl;
	struct smtp_sasl_reply r;
	enum smtp_sasl_status st;
	size_t i;
	int k, before = unwiped_frees;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const char *last = rows[i].auth;

		memset(&sasl, 0, sizeof(sasl));
		for (k = 0; k < 2 && rows[i].lines[k] != NULL; k++) {
			if (k == 0)
				st = smtp_sasl_start(&sasl, last, strlen(last), &r);
			else
				st = smtp_sasl_next(&sasl, last, strlen(last), &r);
			CHECK_MSG(st == SMTP_SASL_CHALLENGE, "wipe row %zu turn %d", i, k);
			last = rows[i].lines[k];
		}
		wipe_marker = "s3cret-pw";
		marker_wipes = 0;
		alloc_budget = rows[i].budget;
		if (k == 0)
			st = smtp_sasl_start(&sasl, last, strlen(last), &r);
		else
			st = smtp_sasl_next(&sasl, last, strlen(last), &r);
		alloc_budget = -1;
		CHECK_MSG(st == rows[i].st, "wipe row %zu: status %d", i, (int)st);
		CHECK_MSG(marker_wipes >= 1, "wipe row %zu: decoded password not wiped", i);
		if (st == SMTP_SASL_DONE) {
			CHECK_MSG(sasl.pass != NULL && strcmp(sasl.pass, "s3cret-pw") == 0,
			    "wipe row %zu: password", i);
			/* The password's copy is wiped when reset frees it. */
			marker_wipes = 0;
			smtp_sasl_reset(&sasl);
			CHECK_MSG(marker_wipes == 1, "wipe row %zu: reset wiped %d copies", i,
			    marker_wipes);
		}
		wipe_marker = NULL;
		CHECK_MSG(sasl.pass == NULL && sasl.user == NULL && sasl.step == SMTP_SASL_IDLE,
		    "wipe row %zu: credentials kept", i);
		smtp_sasl_reset(&sasl);
		CHECK_MSG(nlive == 0, "wipe row %zu: %d allocations left", i, nlive);
	}
	CHECK_MSG(unwiped_frees == before, "%d frees of unwiped memory", unwiped_frees - before);
}

static void
test_idle_and_reset(void)
{
	struct smtp_sasl sasl;
	struct smtp_sasl_reply r;
	enum smtp_sasl_status st;

	/* A zeroed struct is idle; reset is idempotent on it. */
	memset(&sasl, 0, sizeof(sasl));
	smtp_sasl_reset(&sasl);
	smtp_sasl_reset(&sasl);
	CHECK(sasl.step == SMTP_SASL_IDLE && sasl.user == NULL && sasl.pass == NULL);
	CHECK_STR(sasl.mech, "");

	/* next() with no exchange, even for "*". */
	st = smtp_sasl_next(&sasl, "AHVzZXIAcGFzcw==", 16, &r);
	CHECK(st == SMTP_SASL_FAIL && r.code == 503 && same(r.enh, "5.5.1") &&
	    same(r.text, "Error: no authentication exchange"));
	st = smtp_sasl_next(&sasl, "*", 1, &r);
	CHECK(st == SMTP_SASL_FAIL && r.code == 503);

	/* After DONE: reset twice; the password is gone, mech stays. */
	st = smtp_sasl_start(&sasl, "PLAIN AHVzZXIAcGFzcw==", 22, &r);
	CHECK(st == SMTP_SASL_DONE && sasl.pass != NULL && nlive == 2);
	smtp_sasl_reset(&sasl);
	CHECK(sasl.pass == NULL && sasl.user == NULL && sasl.step == SMTP_SASL_IDLE);
	CHECK(nlive == 0);
	smtp_sasl_reset(&sasl);
	CHECK(sasl.pass == NULL && sasl.user == NULL && sasl.step == SMTP_SASL_IDLE);
	CHECK_STR(sasl.mech, "PLAIN");

	/* next() after DONE is a FAIL, and FAIL keeps nothing. */
	st = smtp_sasl_start(&sasl, "PLAIN AHVzZXIAcGFzcw==", 22, &r);
	CHECK(st == SMTP_SASL_DONE);
	st = smtp_sasl_next(&sasl, "AHVzZXIAcGFzcw==", 16, &r);
	CHECK(st == SMTP_SASL_FAIL && r.code == 503);
	CHECK(sasl.pass == NULL && sasl.user == NULL && nlive == 0);

	/* A caller may take the credentials; reset then frees nothing. */
	st = smtp_sasl_start(&sasl, "PLAIN AHVzZXIAcGFzcw==", 22, &r);
	CHECK(st == SMTP_SASL_DONE);
	{
		char *user = sasl.user;

		sasl.user = NULL;
		smtp_sasl_reset(&sasl);
		CHECK(nlive == 1 && user != NULL && strcmp(user, "user") == 0);
		if (user != NULL) {
			explicit_bzero(user, strlen(user));
			test_free(user);
		}
		CHECK(nlive == 0);
	}

	/* Reset in the middle of LOGIN drops the user name held. */
	st = smtp_sasl_start(&sasl, "LOGIN dXNlcg==", 14, &r);
	CHECK(st == SMTP_SASL_CHALLENGE && sasl.step == SMTP_SASL_LOGIN_PASS && nlive == 1);
	smtp_sasl_reset(&sasl);
	CHECK(sasl.user == NULL && sasl.step == SMTP_SASL_IDLE && nlive == 0);
	st = smtp_sasl_next(&sasl, "cGFzcw==", 8, &r);
	CHECK(st == SMTP_SASL_FAIL && r.code == 503);

	/* A new AUTH drops any exchange or credentials before it. */
	st = smtp_sasl_start(&sasl, "LOGIN dXNlcg==", 14, &r);
	CHECK(st == SMTP_SASL_CHALLENGE && nlive == 1);
	st = smtp_sasl_start(&sasl, "PLAIN", 5, &r);
	CHECK(st == SMTP_SASL_CHALLENGE && sasl.step == SMTP_SASL_PLAIN && sasl.user == NULL);
	CHECK(nlive == 0);
	st = smtp_sasl_start(&sasl, "PLAIN AHVzZXIAcGFzcw==", 22, &r);
	CHECK(st == SMTP_SASL_DONE && nlive == 2);
	st = smtp_sasl_start(&sasl, "CRAM-MD5", 8, &r);
	CHECK(st == SMTP_SASL_FAIL && sasl.user == NULL && sasl.pass == NULL && nlive == 0);
	CHECK_STR(sasl.mech, "CRAM-MD5");
	st = smtp_sasl_start(&sasl, "PL.AIN", 6, &r);
	CHECK(st == SMTP_SASL_FAIL);
	CHECK_STR(sasl.mech, "");
	smtp_sasl_reset(&sasl);
}

static void
test_step_str(void)
{
	CHECK_STR(smtp_sasl_step_str(SMTP_SASL_IDLE), "idle");
	CHECK_STR(smtp_sasl_step_str(SMTP_SASL_PLAIN), "plain");
	CHECK_STR(smtp_sasl_step_str(SMTP_SASL_LOGIN_USER), "login_user");
	CHECK_STR(smtp_sasl_step_str(SMTP_SASL_LOGIN_PASS), "login_pass");
	CHECK_STR(smtp_sasl_step_str((enum smtp_sasl_step)42), "unknown");
}

/* splitmix64: a fixed seed gives the same inputs on every run. */
static uint64_t rng_state = 0x5a51ULL;

static uint64_t
rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static size_t
rnd(size_t n)
{
	return (size_t)(rng() % n);
}

/* Mostly short, sometimes around and past the line limit. */
static size_t
rnd_len(void)
{
	size_t p = rnd(100);

	if (p < 60)
		return rnd(16);
	if (p < 90)
		return rnd(200);
	if (p < 98)
		return rnd(13000);
	return rnd(20000);
}

#define GEN_MAX 32768

/* Base64 of plain bytes, into out; one character is spoilt now and then. */
static size_t
gen_b64(char *out, const char *plain, size_t plen)
{
	size_t n = 0;

	if (mbedtls_base64_encode(
		(unsigned char *)out, GEN_MAX, &n, (const unsigned char *)plain, plen) != 0)
		return 0;
	if (n > 0 && rnd(6) == 0)
		out[rnd(n)] = "=* -_\0\xff"[rnd(7)];
	return n;
}

/* One response line: raw garbage, near-base64, or base64 of something
 * shaped like a PLAIN message or a LOGIN field. */
static size_t
gen_response(char *out)
{
	static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
				    "+/=*-_ \r\n\t";
	static char plain[GEN_MAX / 4 * 3];
	static const char *const names[] = { "", "user", "other", "u" };
	size_t n, i;

	switch (rnd(8)) {
	case 0:
		n = rnd_len();
		for (i = 0; i < n; i++)
			out[i] = (char)rnd(256);
		return n;
	case 1:
		n = rnd_len();
		for (i = 0; i < n; i++)
			out[i] = alpha[rnd(sizeof(alpha) - 1)];
		return n;
	case 2:
		out[0] = "=*"[rnd(2)];
		return rnd(3) == 0 ? 0 : 1;
	case 3:
	case 4: {
		/* authzid NUL authcid NUL passwd, sometimes with a NUL more or less. */
		const char *z = names[rnd(4)], *c = names[rnd(4)];
		int nuls = rnd(4) == 0 ? (int)rnd(4) : 2;

		n = 0;
		memcpy(plain + n, z, strlen(z));
		n += strlen(z);
		if (nuls > 0)
			plain[n++] = '\0';
		memcpy(plain + n, c, strlen(c));
		n += strlen(c);
		if (nuls > 1)
			plain[n++] = '\0';
		for (i = rnd(12); i > 0; i--)
			plain[n++] = "pw\0"[rnd(rnd(8) == 0 ? 3 : 2)];
		if (nuls > 2)
			plain[n++] = '\0';
		return gen_b64(out, plain, n);
	}
	case 5:
		/* Around the largest response that fits. */
		n = SMTP_SASL_LINE_MAX / 4 * 3 - 8 + rnd(16);
		memset(plain, 'p', n);
		return gen_b64(out, plain, n);
	default:
		n = rnd(rnd(10) == 0 ? 4000 : 24);
		for (i = 0; i < n; i++)
			plain[i] = rnd(8) == 0 ? '\0' : (char)('a' + rnd(26));
		return gen_b64(out, plain, n);
	}
}

/* AUTH's argument: a mechanism, known or not, well-formed or not, and
 * sometimes an initial response. */
static size_t
gen_arg(char *out)
{
	static const char *const mechs[] = { "PLAIN", "LOGIN", "plain", "Login", "PLAIN", "LOGIN",
		"CRAM-MD5", "X", "ABCDEFGHIJKLMNOPQRSTU", "" };
	static const char mchars[] = "PLAINlogin-_.+ \t\0\xc3";
	size_t n, i;

	if (rnd(6) == 0) {
		n = rnd(26);
		for (i = 0; i < n; i++)
			out[i] = mchars[rnd(sizeof(mchars) - 1)];
	} else {
		const char *m = mechs[rnd(sizeof(mechs) / sizeof(mechs[0]))];

		n = strlen(m);
		memcpy(out, m, n);
	}
	if (rnd(2) == 0)
		return n;
	out[n++] = ' ';
	return n + gen_response(out + n);
}

static void
test_garbage(void)
{
	static char in[GEN_MAX + 64];
	const unsigned long rounds = 20000;
	unsigned long seen[3] = { 0, 0, 0 }, it, bad = 0, next_done = 0;
	struct smtp_sasl sasl;
	struct smtp_sasl_reply r;
	enum smtp_sasl_status st;
	const char *why;
	size_t len;
	int k, turns;

	memset(&sasl, 0, sizeof(sasl));
	for (it = 0; it < rounds; it++) {
		/* Every eighth round, memory runs out after 0-2 allocations. */
		alloc_budget = rnd(8) == 0 ? (long)rnd(3) : -1;
		len = gen_arg(in);
		st = smtp_sasl_start(&sasl, in, len, &r);
		turns = (int)rnd(5);
		for (k = 0;; k++) {
			if ((unsigned)st <= SMTP_SASL_FAIL)
				seen[st]++;
			if ((why = sasl_broken(&sasl, st, &r)) != NULL && bad++ < 10)
				fprintf(stderr, "garbage round %lu turn %d: %s\n", it, k, why);
			if (k >= turns)
				break;
			if (rnd(16) == 0)
				smtp_sasl_reset(&sasl);
			len = gen_response(in);
			st = smtp_sasl_next(&sasl, in, len, &r);
			if (st == SMTP_SASL_DONE)
				next_done++;
		}
		alloc_budget = -1;
		/* Half the time the next round's AUTH must drop what is left. */
		if (rnd(2) == 0)
			smtp_sasl_reset(&sasl);
	}
	smtp_sasl_reset(&sasl);
	CHECK_MSG(bad == 0, "%lu broken invariants in %lu rounds", bad, rounds);
	/* The inputs must reach every outcome, or the loop proves little. */
	CHECK_MSG(
	    seen[SMTP_SASL_CHALLENGE] > rounds / 10, "%lu challenges", seen[SMTP_SASL_CHALLENGE]);
	CHECK_MSG(seen[SMTP_SASL_DONE] > rounds / 100, "%lu DONE", seen[SMTP_SASL_DONE]);
	CHECK_MSG(next_done > rounds / 200, "%lu DONE from smtp_sasl_next", next_done);
	CHECK_MSG(seen[SMTP_SASL_FAIL] > rounds / 2, "%lu FAIL", seen[SMTP_SASL_FAIL]);
	CHECK_MSG(nlive == 0, "%d allocations left", nlive);
	fprintf(stderr, "garbage: %lu rounds, %lu challenges, %lu done (%lu by next), %lu fail\n",
	    rounds, seen[SMTP_SASL_CHALLENGE], seen[SMTP_SASL_DONE], next_done,
	    seen[SMTP_SASL_FAIL]);
}

int
main(void)
{
	test_step_str();
	test_flows();
	test_bad_base64();
	test_sizes();
	test_wipes();
	test_idle_and_reset();
	test_garbage();
	CHECK_MSG(unwiped_frees == 0, "%d frees of unwiped memory", unwiped_frees);
	CHECK_MSG(unknown_frees == 0, "%d frees of unknown pointers", unknown_frees);
	CHECK_MSG(live_overflow == 0, "%d allocations not tracked", live_overflow);
	return test_done("test_smtp_sasl");
}
