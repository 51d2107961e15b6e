/* spf.c - check_host() of RFC 7208 as a state machine without I/O.
 *
 * The evaluation is written as plain recursive code (check_host, then its
 * mechanisms, include recursing) that reads DNS only through lookup(),
 * which answers from the answers fed so far. When one is missing, the
 * evaluation unwinds with ERR_NEED and spf_next() hands that query to the
 * caller; once it is fed, the next spf_next() runs the evaluation again
 * from the start, replaying the answers it has. Every count (DNS terms,
 * void lookups) is recomputed by each run from the same answers, so a run
 * that completes is exactly one evaluation, in RFC order. The limits bound
 * the distinct queries (about 120 at most: 10 terms of which an mx or ptr
 * asks for 11 names, the %{p} names, the TXT records), so the runs cost
 * O(queries^2) string compares, nothing next to one DNS round trip.
 *
 * What counts as a void lookup (4.6.4 limits "terms" whose lookups come
 * back empty): the lookup of an a, mx, ptr or exists term itself; not the
 * address lookups of an mx or ptr term's names, which the RFC does not
 * count per name, and not the TXT lookup of the explanation. */
#include "spf.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ERR_NEED (-1) /* an answer is missing */
#define ERR_TEMP (-2)
#define ERR_PERM (-3)

struct spf_memo {
	char *name;
	int qtype;
	struct dns_answer *ans;
};

struct spf {
	unsigned char ip[16];
	int alen; /* 4 or 16 */
	char i[72], c[48], t[24];
	char *sender, *local, *odomain, *helo, *receiver;
	struct spf_memo *memo;
	size_t nmemo;
	char need_name[DNS_NAME_TEXT_MAX];
	int need_type;
	int done;
	enum spf_result result;
	char *exp;
	const char *why;
};

/* One evaluation run. */
struct spf_run {
	struct spf *s;
	int terms, voids;
	const char *why;
	const char *exp_spec; /* the deciding record's exp= (in a fed answer) */
	size_t exp_len;
	char exp_domain[256];
};

static const struct dns_answer spf_nxdomain = { DNS_NXDOMAIN, 0, 0, NULL };

/* The answer to (name, qtype) fed so far; NULL with *err set when it is
 * missing (ERR_NEED, the query noted for spf_next) or too many were asked
 * (ERR_PERM). raw: name is a domain as SPF made it (a target, which may
 * hold any octet), else a name from an answer, in dns.h's text form. A
 * name DNS cannot carry is NXDOMAIN without a query. */
static const struct dns_answer *
lookup(struct spf_run *r, const char *name, int qtype, int raw, int *err)
{
	struct spf *s = r->s;
	char text[DNS_NAME_TEXT_MAX];
	size_t len = strlen(name), n = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (!dns_name_ok(name, len))
		return &spf_nxdomain;
	/* dns.h reads names with the master-file escapes (RFC 1035 5.1);
	 * "\\c" is the form c-ares encodes */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (raw && (c == '\\' || c < 0x21 || c > 0x7e))
			text[n++] = '\\';
		text[n++] = (char)c;
	}
	text[n] = '\0';
	for (size_t i = 0; i < s->nmemo; i++)
		if (s->memo[i].qtype == qtype && strcasecmp(s->memo[i].name, text) == 0)
			return s->memo[i].ans;
	if (s->nmemo >= SPF_QUERIES_MAX) {
		r->why = "too many DNS queries";
		*err = ERR_PERM;
		return NULL;
	}
	memcpy(s->need_name, text, n + 1);
	s->need_type = qtype;
	*err = ERR_NEED;
	return NULL;
}

static int
empty(const struct dns_answer *a)
{
	return a->err == DNS_NXDOMAIN || a->err == DNS_NODATA || (a->err == DNS_OK && a->nrr == 0);
}

/* A void lookup: an error once past the limit. */
static int
count_void(struct spf_run *r)
{
	if (++r->voids > SPF_VOID_MAX) {
		r->why = "too many void lookups";
		return ERR_PERM;
	}
	return 0;
}

static int
count_term(struct spf_run *r)
{
	if (++r->terms > SPF_TERMS_MAX) {
		r->why = "too many DNS-querying terms";
		return ERR_PERM;
	}
	return 0;
}

static int
cidr_match(const unsigned char *a, const unsigned char *b, int bits)
{
	int bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, (size_t)bytes) != 0)
		return 0;
	return rest == 0 || ((a[bytes] ^ b[bytes]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/* Whether an address record of ans is within bits of the client's. */
static int
addr_match(const struct spf *s, const struct dns_answer *ans, int bits)
{
	unsigned char a[16];

	for (size_t i = 0; ans->err == DNS_OK && i < ans->nrr; i++)
		if (dns_addr_parse(ans->rr[i].data, a) == s->alen && cidr_match(a, s->ip, bits))
			return 1;
	return 0;
}

static int
name_under(const char *name, const char *domain)
{
	size_t n = strlen(name), d = strlen(domain);

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (d > 0 && domain[d - 1] == '.')
		d--;
	if (n == d)
		return strncasecmp(name, domain, n) == 0;
	return n > d && name[n - d - 1] == '.' && strncasecmp(name + n - d, domain, d) == 0;
}

static int
addr_qtype(const struct spf *s)
{
	return s->alen == 4 ? DNS_T_A : DNS_T_AAAA;
}

/* %{p}: the client's validated name (5.5, 7.3): among the first PTR
 * names whose addresses include the client's, domain itself, else one
 * under it, else the first; "unknown" when none (or on a DNS error). */
static int
macro_p(struct spf_run *r, const char *domain, char *out, size_t outsz)
{
	struct spf *s = r->s;
	const struct dns_answer *ptr, *a;
	char rev[DNS_NAME_TEXT_MAX];
	const char *best = NULL;
	int err, rank = 0;

	snprintf(out, outsz, "unknown");
	if (dns_reverse(s->c, NULL, rev, sizeof(rev)) == -1)
		return 0;
	if ((ptr = lookup(r, rev, DNS_T_PTR, 1, &err)) == NULL)
		return err;
	for (size_t i = 0; ptr->err == DNS_OK && i < ptr->nrr && i < SPF_PTR_MAX; i++) {
		const char *name = ptr->rr[i].data;
		int k;

		if ((a = lookup(r, name, addr_qtype(s), 0, &err)) == NULL)
			return err;
		if (!addr_match(s, a, s->alen * 8))
			continue;
		k = strcasecmp(name, domain) == 0 ? 3 : name_under(name, domain) ? 2 : 1;
		if (k > rank) {
			rank = k;
			best = name;
		}
	}
	if (best != NULL)
		snprintf(out, outsz, "%s", best);
	return 0;
}

static void
macro_vars(const struct spf *s, const char *domain, const char *p, struct spf_macro_vars *v)
{
	v->s = s->sender;
	v->l = s->local;
	v->o = s->odomain;
	v->d = domain;
	v->i = s->i;
	v->p = p;
	v->v = s->alen == 4 ? "in-addr" : "ip6";
	v->h = s->helo;
	v->c = s->c;
	v->r = s->receiver;
	v->t = s->t;
}

/* The target name of a term: its domain-spec expanded, or domain. */
static int
target(struct spf_run *r, const char *spec, size_t len, const char *domain, char *out)
{
	struct spf_macro_vars v;
	char p[DNS_NAME_TEXT_MAX];
	int err;

	if (spec == NULL) {
		snprintf(out, SPF_EXPAND_MAX, "%s", domain);
		return 0;
	}
	if (spf_macro_uses_p(spec, len) && (err = macro_p(r, domain, p, sizeof(p))) != 0)
		return err;
	macro_vars(r->s, domain, p, &v);
	if (spf_expand(&v, spec, len, 0, 1, out, SPF_EXPAND_MAX) == -1) {
		r->why = "macro expansion too long";
		return ERR_PERM;
	}
	return 0;
}

static int check_host(struct spf_run *r, const char *domain, int depth);

/* One mechanism: 1 when it matches, 0 when not, or ERR_*. */
static int
mechanism(struct spf_run *r, const struct spf_term *t, const char *domain, int depth)
{
	struct spf *s = r->s;
	const struct dns_answer *ans, *a;
	char name[SPF_EXPAND_MAX];
	int err, res, bits = s->alen == 4 ? t->cidr4 : t->cidr6;

	switch (t->mech) {
	case SPF_M_ALL:
		return 1;
	case SPF_M_IP4:
		return s->alen == 4 && cidr_match(t->net, s->ip, t->cidr4);
	case SPF_M_IP6:
		return s->alen == 16 && cidr_match(t->net, s->ip, t->cidr6);
	default:
		break;
	}
	if ((err = count_term(r)) != 0 || (err = target(r, t->spec, t->speclen, domain, name)) != 0)
		return err;
	switch (t->mech) {
	case SPF_M_INCLUDE:
		/* 5.2: pass matches; fail, softfail and neutral do not; a
		 * domain without a record is a permerror here */
		res = check_host(r, name, depth + 1);
		if (res < 0)
			return res;
		if (res == SPF_TEMPERROR)
			return ERR_TEMP;
		if (res == SPF_PERMERROR || res == SPF_NONE) {
			if (res == SPF_NONE)
				r->why = "include of a domain without an SPF record";
			return ERR_PERM;
		}
		return res == SPF_PASS;
	case SPF_M_A:
	case SPF_M_EXISTS:
		/* exists asks for A whatever the client's family (5.7) */
		if ((ans = lookup(
			 r, name, t->mech == SPF_M_A ? addr_qtype(s) : DNS_T_A, 1, &err)) == NULL)
			return err;
		if (empty(ans))
			return count_void(r);
		if (ans->err != DNS_OK) {
			r->why = "DNS error";
			return ERR_TEMP;
		}
		return t->mech == SPF_M_EXISTS ? 1 : addr_match(s, ans, bits);
	case SPF_M_MX:
		if ((ans = lookup(r, name, DNS_T_MX, 1, &err)) == NULL)
			return err;
		if (empty(ans))
			return count_void(r);
		if (ans->err != DNS_OK) {
			r->why = "DNS error";
			return ERR_TEMP;
		}
		if (ans->nrr > SPF_MX_MAX) {
			r->why = "more than 10 MX names";
			return ERR_PERM;
		}
		for (size_t i = 0; i < ans->nrr; i++) {
			const char *mx = ans->rr[i].data;

			if (mx[0] == '\0' || strcmp(mx, ".") == 0) /* a null MX */
				continue;
			if ((a = lookup(r, mx, addr_qtype(s), 0, &err)) == NULL)
				return err;
			if (!empty(a) && a->err != DNS_OK) {
				r->why = "DNS error";
				return ERR_TEMP;
			}
			if (addr_match(s, a, bits))
				return 1;
		}
		return 0;
	case SPF_M_PTR:
	default: {
		char rev[DNS_NAME_TEXT_MAX];

		/* 5.5: a DNS error on the PTR lookup is no match, and a name
		 * whose addresses cannot be had is skipped */
		if (dns_reverse(s->c, NULL, rev, sizeof(rev)) == -1)
			return 0;
		if ((ans = lookup(r, rev, DNS_T_PTR, 1, &err)) == NULL)
			return err;
		if (empty(ans))
			return count_void(r);
		for (size_t i = 0; ans->err == DNS_OK && i < ans->nrr && i < SPF_PTR_MAX; i++) {
			if (!name_under(ans->rr[i].data, name))
				continue;
			if ((a = lookup(r, ans->rr[i].data, addr_qtype(s), 0, &err)) == NULL)
				return err;
			if (addr_match(s, a, s->alen * 8))
				return 1;
		}
		return 0;
	}
	}
}

static enum spf_result
err_result(int err)
{
	return err == ERR_TEMP ? SPF_TEMPERROR : SPF_PERMERROR;
}

/* The record of domain: 1 with its text, 0 for none, or ERR_*. */
static int
select_record(struct spf_run *r, const char *domain, const char **txt, size_t *len)
{
	const struct dns_answer *ans;
	int err, n = 0;

	if ((ans = lookup(r, domain, DNS_T_TXT, 1, &err)) == NULL)
		return err;
	if (empty(ans))
		return 0;
	if (ans->err != DNS_OK) {
		r->why = "DNS error on the SPF record";
		return ERR_TEMP;
	}
	for (size_t i = 0; i < ans->nrr; i++)
		if (spf_is_record(ans->rr[i].data, ans->rr[i].len)) {
			*txt = ans->rr[i].data;
			*len = ans->rr[i].len;
			n++;
		}
	if (n > 1) {
		r->why = "more than one SPF record";
		return ERR_PERM;
	}
	return n;
}

/* check_host() (4): a result, or ERR_NEED. depth 0 is the checked
 * identity's own domain and the records it redirects to, whose exp=
 * gives the explanation; deeper ones are includes. */
static int
check_host(struct spf_run *r, const char *start, int depth)
{
	char domain[256], name[SPF_EXPAND_MAX];
	int redirected = 0;

	snprintf(name, sizeof(name), "%s", start);
	for (;;) {
		struct spf_record rec;
		const char *txt = NULL, *why;
		size_t len = 0, i;
		int rc = 0;

		/* 4.3: a malformed name has no record; after a redirect
		 * that is a permerror (6.1) */
		if (!spf_domain_ok(name) || name[0] == '[' || strlen(name) >= sizeof(domain))
			rc = 0;
		else if ((rc = select_record(r, name, &txt, &len)) < 0)
			return rc == ERR_NEED ? rc : (int)err_result(rc);
		if (rc == 0) {
			if (!redirected)
				return SPF_NONE;
			r->why = "redirect to a domain without an SPF record";
			return SPF_PERMERROR;
		}
		memcpy(domain, name, strlen(name) + 1); /* shorter: checked above */
		if (spf_record_parse(txt, len, &rec, &why) == -1) {
			r->why = why;
			return SPF_PERMERROR;
		}
		if (depth == 0) {
			r->exp_spec = rec.exp;
			r->exp_len = rec.exp_len;
			snprintf(r->exp_domain, sizeof(r->exp_domain), "%s", domain);
		}
		rc = 0;
		for (i = 0; i < rec.nterms; i++)
			if ((rc = mechanism(r, &rec.terms[i], domain, depth)) != 0)
				break;
		if (rc == 1) {
			enum spf_result q = rec.terms[i].qual;
			spf_record_free(&rec);
			return (int)q;
		}
		if (rc == 0 && rec.redirect != NULL)
			if ((rc = count_term(r)) == 0)
				rc = target(r, rec.redirect, rec.redirect_len, domain, name);
		if (rc == 0 && rec.redirect == NULL) {
			spf_record_free(&rec);
			return SPF_NEUTRAL;
		}
		spf_record_free(&rec);
		if (rc < 0)
			return rc == ERR_NEED ? rc : (int)err_result(rc);
		redirected = 1;
	}
}

/* The explanation of a fail (6.2): any failure on the way is no
 * explanation. Returns 0 or ERR_NEED. */
static int
explain(struct spf_run *r)
{
	struct spf *s = r->s;
	const struct dns_answer *ans;
	struct spf_macro_vars v;
	char name[SPF_EXPAND_MAX], p[DNS_NAME_TEXT_MAX], *text;
	int err, n;

	if (r->exp_spec == NULL)
		return 0;
	if ((err = target(r, r->exp_spec, r->exp_len, r->exp_domain, name)) != 0)
		return err == ERR_NEED ? err : 0;
	if ((ans = lookup(r, name, DNS_T_TXT, 1, &err)) == NULL)
		return err == ERR_NEED ? err : 0;
	if (ans->err != DNS_OK || ans->nrr != 1)
		return 0;
	if (spf_macro_uses_p(ans->rr[0].data, ans->rr[0].len) &&
	    (err = macro_p(r, r->exp_domain, p, sizeof(p))) != 0)
		return err == ERR_NEED ? err : 0;
	macro_vars(s, r->exp_domain, p, &v);
	if ((text = malloc(SPF_EXPAND_MAX)) == NULL)
		return 0;
	n = spf_expand(&v, ans->rr[0].data, ans->rr[0].len, 1, 0, text, SPF_EXPAND_MAX);
	if (n >= 0) {
		if (n > SPF_EXP_TEXT_MAX)
			text[SPF_EXP_TEXT_MAX] = '\0';
		s->exp = text;
	} else
		free(text);
	return 0;
}

int
spf_next(struct spf *s, struct spf_query *q)
{
	struct spf_run r;
	int res;

	if (s->done)
		return 0;
	memset(&r, 0, sizeof(r));
	r.s = s;
	r.why = "";
	res = check_host(&r, s->odomain, 0);
	if (res >= 0 && (enum spf_result)res == SPF_FAIL)
		if (explain(&r) == ERR_NEED)
			res = ERR_NEED;
	if (res == ERR_NEED) {
		q->name = s->need_name;
		q->qtype = s->need_type;
		return 1;
	}
	s->done = 1;
	s->result = (enum spf_result)res;
	s->why = res == SPF_PERMERROR || res == SPF_TEMPERROR ? r.why : "";
	return 0;
}

int
spf_feed(struct spf *s, const struct dns_answer *ans)
{
	struct spf_memo *m;

	if (s->done || s->nmemo >= SPF_QUERIES_MAX)
		return 0;
	if ((m = realloc(s->memo, (s->nmemo + 1) * sizeof(*m))) == NULL)
		goto oom;
	s->memo = m;
	m = &s->memo[s->nmemo];
	m->qtype = s->need_type;
	if ((m->name = strdup(s->need_name)) == NULL)
		goto oom;
	if ((m->ans = dns_answer_dup(ans)) == NULL) {
		free(m->name);
		goto oom;
	}
	s->nmemo++;
	return 0;
oom:
	s->done = 1;
	s->result = SPF_TEMPERROR;
	s->why = "out of memory";
	return -1;
}

enum spf_result
spf_result(const struct spf *s, const char **explanation, const char **why)
{
	if (explanation != NULL)
		*explanation = s->result == SPF_FAIL ? s->exp : NULL;
	if (why != NULL)
		*why = s->why != NULL ? s->why : "";
	return s->result;
}

size_t
spf_queries(const struct spf *s)
{
	return s->nmemo;
}

struct spf *
spf_new(const char *ip, const char *helo, const char *sender, const char *receiver, long long now)
{
	struct spf *s = calloc(1, sizeof(*s));
	const char *at = strrchr(sender, '@');
	size_t o = 0;

	if (s == NULL)
		return NULL;
	if ((s->alen = dns_addr_parse(ip, s->ip)) == 0) {
		free(s);
		return NULL;
	}
	if (s->alen == 4) {
		inet_ntop(AF_INET, s->ip, s->c, sizeof(s->c));
		snprintf(s->i, sizeof(s->i), "%s", s->c);
	} else {
		/* %{i} of IPv6 is 32 dotted nibbles (7.3); upper case, as
		 * the OpenSPF test suite expects in explanations (DNS names
		 * compare without case) */
		inet_ntop(AF_INET6, s->ip, s->c, sizeof(s->c));
		for (int k = 0; k < 16; k++)
			o += (size_t)snprintf(s->i + o, sizeof(s->i) - o, "%s%X.%X", k ? "." : "",
			    s->ip[k] >> 4, s->ip[k] & 15);
	}
	snprintf(s->t, sizeof(s->t), "%lld", now);
	s->helo = strdup(helo);
	s->receiver = strdup(receiver != NULL && receiver[0] != '\0' ? receiver : "unknown");
	/* 4.3: the null sender is postmaster@helo; an empty local-part is
	 * postmaster; a sender without "@" is taken as a domain */
	if (sender[0] == '\0') {
		s->local = strdup("postmaster");
		s->odomain = strdup(helo);
	} else if (at == NULL) {
		s->local = strdup("postmaster");
		s->odomain = strdup(sender);
	} else {
		s->local =
		    at == sender ? strdup("postmaster") : strndup(sender, (size_t)(at - sender));
		s->odomain = strdup(at + 1);
	}
	if (s->local != NULL && s->odomain != NULL &&
	    (s->sender = malloc(strlen(s->local) + strlen(s->odomain) + 2)) != NULL)
		sprintf(s->sender, "%s@%s", s->local, s->odomain);
	if (s->helo == NULL || s->receiver == NULL || s->sender == NULL) {
		spf_free(s);
		return NULL;
	}
	return s;
}

void
spf_free(struct spf *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nmemo; i++) {
		free(s->memo[i].name);
		dns_answer_free(s->memo[i].ans);
	}
	free(s->memo);
	free(s->sender);
	free(s->local);
	free(s->odomain);
	free(s->helo);
	free(s->receiver);
	free(s->exp);
	free(s);
}
