/* dkim.c - DKIM signatures and keys (RFC 6376, RFC 8463, RFC 8301):
 * tag lists, DKIM-Signature fields, key records, the verdict on a
 * signature, and signing. The canonicalizations are in dkim_canon.c.
 *
 * Why not libopendkim, which Debian packages: its key lookups run inside
 * dkim_eom(), which starts a query and then calls the resolver's
 * "waitreply" hook and waits there for the answer; a hook can only time
 * out, never hand the wait back to the event loop, so a verification
 * would block the worker for as long as DNS takes (or we would prefetch
 * the keys ourselves, which means parsing the signatures ourselves, half
 * of the work). It is also built on OpenSSL's libcrypto, a second crypto
 * library and PEM parser beside mbedTLS, which luamta already links for
 * TLS. What DKIM needs beyond that is small and well specified: tag
 * lists, two canonicalizations, SHA-256, base64, PKCS#1 v1.5 signatures
 * (mbedTLS 2.28 has them all) and Ed25519, which mbedTLS 2.28 lacks:
 * libsodium, packaged and maintained, signs and verifies it (and gives the
 * random bytes RSA blinding wants, fork-safe through getrandom). The
 * results are checked against dkimpy and OpenDKIM in both directions
 * (spec/integration/dkim_spec.lua) and against RFC 8463's example. */
#include "dkim.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/asn1.h>
#include <mbedtls/base64.h>
#include <mbedtls/pem.h>
#include <mbedtls/rsa.h>
#include <sodium.h>

#define DKIM_TAGS_MAX 64

const char *
dkim_result_str(enum dkim_result r)
{
	static const char *const names[] = { "pass", "fail", "neutral", "temperror", "permerror" };

	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "permerror";
}

const char *
dkim_alg_str(enum dkim_alg a)
{
	return a == DKIM_RSA_SHA256  ? "rsa-sha256" :
	    a == DKIM_ED25519_SHA256 ? "ed25519-sha256" :
				       "";
}

static int
dkim_fws(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Tag lists ------------------------------------------------------------------ */

int
dkim_tags(const char *s, size_t n, struct dkim_tag *tags, int max, const char **err)
{
	size_t p = 0;
	int nt = 0;

	for (;;) {
		size_t ns, ne, vs, ve, semi;

		while (p < n && dkim_fws(s[p]))
			p++;
		if (p == n)
			return nt; /* the end, or a trailing ';' */
		ns = p;
		if (!isalpha((unsigned char)s[p])) {
			*err = "bad tag name";
			return -1;
		}
		while (p < n && (isalnum((unsigned char)s[p]) || s[p] == '_'))
			p++;
		ne = p;
		while (p < n && dkim_fws(s[p]))
			p++;
		if (p == n || s[p] != '=') {
			*err = "tag without '='";
			return -1;
		}
		p++;
		semi = p;
		while (semi < n && s[semi] != ';')
			semi++;
		vs = p;
		ve = semi;
		while (vs < ve && dkim_fws(s[vs]))
			vs++;
		while (ve > vs && dkim_fws(s[ve - 1]))
			ve--;
		for (size_t i = vs; i < ve; i++) {
			unsigned char c = (unsigned char)s[i];
			if (!dkim_fws(c) && (c < 0x21 || c > 0x7e)) {
				*err = "bad byte in a tag value";
				return -1;
			}
		}
		for (int k = 0; k < nt; k++)
			if (tags[k].nlen == ne - ns && memcmp(tags[k].name, s + ns, ne - ns) == 0) {
				*err = "duplicate tag";
				return -1;
			}
		if (nt == max) {
			*err = "too many tags";
			return -1;
		}
		tags[nt].name = s + ns;
		tags[nt].nlen = ne - ns;
		tags[nt].val = s + vs;
		tags[nt].vlen = ve - vs;
		tags[nt].raw_start = p;
		tags[nt].raw_end = semi;
		nt++;
		if (semi == n)
			return nt;
		p = semi + 1;
	}
}

static const struct dkim_tag *
dkim_tag_get(const struct dkim_tag *tags, int nt, const char *name)
{
	size_t len = strlen(name);

	for (int k = 0; k < nt; k++)
		if (tags[k].nlen == len && memcmp(tags[k].name, name, len) == 0)
			return &tags[k];
	return NULL;
}

static int
dkim_tag_is(const struct dkim_tag *t, const char *v)
{
	return t->vlen == strlen(v) && strncasecmp(t->val, v, t->vlen) == 0;
}

/* Decodes base64 with FWS anywhere in it. Returns the length, or -1. */
static int
dkim_b64(const struct dkim_tag *t, unsigned char *out, size_t cap)
{
	char clean[2 * DKIM_SIG_MAX + 8];
	size_t n = 0, olen;

	for (size_t i = 0; i < t->vlen; i++) {
		if (dkim_fws(t->val[i]))
			continue;
		if (n == sizeof(clean))
			return -1;
		clean[n++] = t->val[i];
	}
	if (n == 0 || mbedtls_base64_decode(out, cap, &olen, (const unsigned char *)clean, n) != 0)
		return -1;
	return (int)olen;
}

/* A decimal of at most 16 digits (up to about 3e8 years, or 9 PB of l=),
 * or -1. */
static long long
dkim_num(const struct dkim_tag *t)
{
	long long v = 0;

	if (t->vlen == 0 || t->vlen > 16)
		return -1;
	for (size_t i = 0; i < t->vlen; i++) {
		if (!isdigit((unsigned char)t->val[i]))
			return -1;
		v = v * 10 + (t->val[i] - '0');
	}
	return v;
}

static int
dkim_copy(char *dst, size_t cap, const struct dkim_tag *t)
{
	if (t->vlen == 0 || t->vlen >= cap || memchr(t->val, ';', t->vlen) != NULL)
		return -1;
	for (size_t i = 0; i < t->vlen; i++)
		if (dkim_fws(t->val[i]))
			return -1;
	memcpy(dst, t->val, t->vlen);
	dst[t->vlen] = '\0';
	return 0;
}

/* Whether domain is d or a subdomain of it (case-insensitive). */
static int
dkim_in_domain(const char *domain, const char *d, int strict)
{
	size_t dl = strlen(domain), l = strlen(d);

	if (dl == l)
		return strcasecmp(domain, d) == 0;
	return !strict && dl > l && domain[dl - l - 1] == '.' &&
	    strcasecmp(domain + dl - l, d) == 0;
}

#define DKIM_BAD(...)                                                                              \
	do {                                                                                       \
		snprintf(reason, rsz, __VA_ARGS__);                                                \
		return -1;                                                                         \
	} while (0)

/* Whether the colon-separated list of t holds word, or with star "*". */
static int
dkim_list_has(const struct dkim_tag *t, const char *word, int star)
{
	for (size_t i = 0; i <= t->vlen;) {
		size_t e = i;
		while (e < t->vlen && t->val[e] != ':')
			e++;
		struct dkim_tag m = { .val = t->val + i, .vlen = e - i };
		while (m.vlen > 0 && dkim_fws(m.val[0]))
			m.val++, m.vlen--;
		while (m.vlen > 0 && dkim_fws(m.val[m.vlen - 1]))
			m.vlen--;
		if (dkim_tag_is(&m, word) || (star && dkim_tag_is(&m, "*")))
			return 1;
		i = e + 1;
	}
	return 0;
}

/* The h= names, lower-cased, into sig->hlist. */
static int
dkim_sig_names(struct dkim_sig *sig, const struct dkim_tag *t)
{
	size_t o = 0, i = 0;

	sig->nh = 0;
	while (i <= t->vlen) {
		size_t s, e;

		while (i < t->vlen && dkim_fws(t->val[i]))
			i++;
		s = i;
		while (i < t->vlen && t->val[i] != ':' && !dkim_fws(t->val[i]))
			i++;
		e = i;
		while (i < t->vlen && dkim_fws(t->val[i]))
			i++;
		if (e == s || (i < t->vlen && t->val[i] != ':'))
			return -1;
		if (sig->nh == DKIM_H_MAX || o + (e - s) + 1 > sizeof(sig->hlist))
			return -2;
		sig->h[sig->nh++] = (unsigned short)o;
		for (size_t k = s; k < e; k++) {
			unsigned char c = (unsigned char)t->val[k];
			if (c <= 0x20 || c >= 0x7f)
				return -1;
			sig->hlist[o++] = (char)tolower(c);
		}
		sig->hlist[o++] = '\0';
		i++; /* the ':' */
	}
	return 0;
}

int
dkim_sig_parse(
    const char *field, size_t len, time_t now, struct dkim_sig *sig, char *reason, size_t rsz)
{
	struct dkim_tag tags[DKIM_TAGS_MAX];
	const struct dkim_tag *t;
	const char *err, *colon = memchr(field, ':', len);
	size_t off;
	int nt, from = 0, n;

	memset(sig, 0, sizeof(*sig));
	sig->l = sig->t = sig->x = -1;
	if (colon == NULL)
		DKIM_BAD("not a header field");
	if (len > DKIM_FIELD_MAX)
		DKIM_BAD("signature field longer than %d bytes", DKIM_FIELD_MAX);
	off = (size_t)(colon + 1 - field);
	if ((nt = dkim_tags(colon + 1, len - off, tags, DKIM_TAGS_MAX, &err)) < 0)
		DKIM_BAD("%s", err);
	/* d= and s= first, so a result names them whatever else is wrong. */
	if ((t = dkim_tag_get(tags, nt, "d")) == NULL || dkim_copy(sig->d, sizeof(sig->d), t) == -1)
		DKIM_BAD("missing or bad d=");
	if ((t = dkim_tag_get(tags, nt, "s")) == NULL || dkim_copy(sig->s, sizeof(sig->s), t) == -1)
		DKIM_BAD("missing or bad s=");
	if ((t = dkim_tag_get(tags, nt, "v")) == NULL || !dkim_tag_is(t, "1"))
		DKIM_BAD("missing or unsupported v=");
	if ((t = dkim_tag_get(tags, nt, "a")) == NULL)
		DKIM_BAD("missing a=");
	if (dkim_tag_is(t, "rsa-sha256"))
		sig->alg = DKIM_RSA_SHA256;
	else if (dkim_tag_is(t, "ed25519-sha256"))
		sig->alg = DKIM_ED25519_SHA256;
	else
		DKIM_BAD("unsupported algorithm %.*s", (int)(t->vlen > 32 ? 32 : t->vlen), t->val);
	if ((t = dkim_tag_get(tags, nt, "b")) == NULL)
		DKIM_BAD("missing b=");
	if ((n = dkim_b64(t, sig->b, sizeof(sig->b))) <= 0)
		DKIM_BAD("bad b=");
	sig->blen = (size_t)n;
	sig->braw_start = off + t->raw_start;
	sig->braw_end = off + t->raw_end;
	if ((t = dkim_tag_get(tags, nt, "bh")) == NULL)
		DKIM_BAD("missing bh=");
	{
		unsigned char bh[64];
		if (dkim_b64(t, bh, sizeof(bh)) != 32)
			DKIM_BAD("bad bh=");
		memcpy(sig->bh, bh, 32);
	}
	sig->hcanon = sig->bcanon = DKIM_SIMPLE;
	if ((t = dkim_tag_get(tags, nt, "c")) != NULL) {
		const char *slash = memchr(t->val, '/', t->vlen);
		size_t hl = slash != NULL ? (size_t)(slash - t->val) : t->vlen;
		struct dkim_tag h = { .val = t->val, .vlen = hl };
		struct dkim_tag b = { .val = slash != NULL ? slash + 1 : "simple",
			.vlen = slash != NULL ? t->vlen - hl - 1 : 6 };

		if (dkim_tag_is(&h, "relaxed"))
			sig->hcanon = DKIM_RELAXED;
		else if (!dkim_tag_is(&h, "simple"))
			DKIM_BAD("unknown canonicalization");
		if (dkim_tag_is(&b, "relaxed"))
			sig->bcanon = DKIM_RELAXED;
		else if (!dkim_tag_is(&b, "simple"))
			DKIM_BAD("unknown canonicalization");
	}
	if ((t = dkim_tag_get(tags, nt, "h")) == NULL)
		DKIM_BAD("missing h=");
	if ((n = dkim_sig_names(sig, t)) == -1)
		DKIM_BAD("bad h=");
	if (n == -2)
		DKIM_BAD("more than %d names in h=", DKIM_H_MAX);
	for (int k = 0; k < sig->nh; k++)
		from |= strcmp(sig->hlist + sig->h[k], "from") == 0;
	if (!from)
		DKIM_BAD("From is not signed");
	if ((t = dkim_tag_get(tags, nt, "i")) != NULL) {
		const char *at;
		if (dkim_copy(sig->i, sizeof(sig->i), t) == -1 ||
		    (at = strrchr(sig->i, '@')) == NULL)
			DKIM_BAD("bad i=");
		if (!dkim_in_domain(at + 1, sig->d, 0))
			DKIM_BAD("i= is not in d=");
	}
	if ((t = dkim_tag_get(tags, nt, "l")) != NULL && (sig->l = dkim_num(t)) < 0)
		DKIM_BAD("bad l=");
	/* A colon-separated list that must offer dns/txt. */
	if ((t = dkim_tag_get(tags, nt, "q")) != NULL && !dkim_list_has(t, "dns/txt", 0))
		DKIM_BAD("no supported query method in q=");
	if ((t = dkim_tag_get(tags, nt, "t")) != NULL && (sig->t = dkim_num(t)) < 0)
		DKIM_BAD("bad t=");
	if ((t = dkim_tag_get(tags, nt, "x")) != NULL) {
		if ((sig->x = dkim_num(t)) < 0)
			DKIM_BAD("bad x=");
		if (sig->t >= 0 && sig->x < sig->t)
			DKIM_BAD("x= is before t=");
		if (sig->x < (long long)now)
			DKIM_BAD("signature expired");
	}
	/* Other tags (z= among them) are not used; unknown ones are
	 * ignored (RFC 6376 3.2). */
	return 0;
}

/* Key records ---------------------------------------------------------------- */

int
dkim_key_parse(const char *rec, size_t len, struct dkim_key *key, char *reason, size_t rsz)
{
	struct dkim_tag tags[DKIM_TAGS_MAX];
	const struct dkim_tag *t;
	unsigned char der[DKIM_SIG_MAX + 64];
	const char *err;
	int nt, n;

	memset(key, 0, sizeof(*key));
	mbedtls_pk_init(&key->pk);
	if ((nt = dkim_tags(rec, len, tags, DKIM_TAGS_MAX, &err)) < 0)
		DKIM_BAD("key record: %s", err);
	if ((t = dkim_tag_get(tags, nt, "v")) != NULL &&
	    (t != &tags[0] || !dkim_tag_is(t, "DKIM1")))
		DKIM_BAD("not a DKIM1 key record");
	key->alg = DKIM_RSA_SHA256;
	if ((t = dkim_tag_get(tags, nt, "k")) != NULL) {
		if (dkim_tag_is(t, "ed25519"))
			key->alg = DKIM_ED25519_SHA256;
		else if (!dkim_tag_is(t, "rsa"))
			DKIM_BAD("unknown key type");
	}
	if ((t = dkim_tag_get(tags, nt, "h")) != NULL && !dkim_list_has(t, "sha256", 0))
		DKIM_BAD("key is not for sha256");
	if ((t = dkim_tag_get(tags, nt, "s")) != NULL && !dkim_list_has(t, "email", 1))
		DKIM_BAD("key is not for email");
	if ((t = dkim_tag_get(tags, nt, "t")) != NULL) {
		for (size_t i = 0; i < t->vlen;) {
			size_t e = i;
			while (e < t->vlen && t->val[e] != ':')
				e++;
			for (size_t k = i; k < e; k++) {
				key->testing |= t->val[k] == 'y';
				key->strict |= t->val[k] == 's';
			}
			i = e + 1;
		}
	}
	if ((t = dkim_tag_get(tags, nt, "p")) == NULL)
		DKIM_BAD("key record without p=");
	if (t->vlen == 0)
		DKIM_BAD("key revoked");
	if ((n = dkim_b64(t, der, sizeof(der))) <= 0)
		DKIM_BAD("bad p=");
	if (key->alg == DKIM_ED25519_SHA256) {
		if (n != 32)
			DKIM_BAD("an Ed25519 key is 32 bytes");
		memcpy(key->ed, der, 32);
		return 0;
	}
	if (mbedtls_pk_parse_public_key(&key->pk, der, (size_t)n) != 0 ||
	    mbedtls_pk_get_type(&key->pk) != MBEDTLS_PK_RSA)
		DKIM_BAD("bad RSA key");
	if (mbedtls_pk_get_bitlen(&key->pk) < DKIM_RSA_MIN_BITS)
		DKIM_BAD("RSA key too small (%u bits)", (unsigned)mbedtls_pk_get_bitlen(&key->pk));
	if (mbedtls_pk_get_bitlen(&key->pk) > DKIM_RSA_MAX_BITS)
		DKIM_BAD("RSA key too large");
	return 0;
}

void
dkim_key_free(struct dkim_key *key)
{
	mbedtls_pk_free(&key->pk);
}

/* Verifying -------------------------------------------------------------- */

enum dkim_result
dkim_verify(const struct dkim_sig *sig, const struct dkim_key *key, const unsigned char hhash[32],
    const unsigned char bh[32], unsigned long long body_total, char *reason, size_t rsz)
{
	enum dkim_result fail = key->testing ? DKIM_NEUTRAL : DKIM_FAIL;
	const char *testing = key->testing ? " (key in testing mode)" : "";
	int ok;

	if (key->alg != sig->alg) {
		snprintf(reason, rsz, "key type does not match the algorithm");
		return DKIM_PERMERROR;
	}
	if (key->strict && sig->i[0] != '\0' &&
	    !dkim_in_domain(strrchr(sig->i, '@') + 1, sig->d, 1)) {
		snprintf(reason, rsz, "i= is a subdomain of d= under a strict key");
		return DKIM_PERMERROR;
	}
	if (sig->l >= 0 && (unsigned long long)sig->l > body_total) {
		snprintf(reason, rsz, "body shorter than l=%lld%s", sig->l, testing);
		return fail;
	}
	if (sodium_memcmp(bh, sig->bh, 32) != 0) {
		snprintf(reason, rsz, "body hash did not verify%s", testing);
		return fail;
	}
	if (sig->alg == DKIM_ED25519_SHA256) {
		ok = sig->blen == crypto_sign_BYTES &&
		    crypto_sign_verify_detached(sig->b, hhash, 32, key->ed) == 0;
	} else {
		mbedtls_pk_context *pk = (mbedtls_pk_context *)&key->pk;
		ok = mbedtls_pk_verify(pk, MBEDTLS_MD_SHA256, hhash, 32, sig->b, sig->blen) == 0;
	}
	if (!ok) {
		snprintf(reason, rsz, "signature did not verify%s", testing);
		return fail;
	}
	if (sig->l >= 0 && (unsigned long long)sig->l < body_total)
		snprintf(reason, rsz, "l= covers %lld of %llu body bytes", sig->l, body_total);
	else
		reason[0] = '\0';
	return DKIM_PASS;
}

/* Signing -------------------------------------------------------------------- */

static int
dkim_rng(void *ctx, unsigned char *out, size_t n)
{
	(void)ctx;
	randombytes_buf(out, n);
	return 0;
}

/* An Ed25519 key in PKCS#8 (RFC 8410): SEQUENCE { INTEGER 0 or 1,
 * SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } ... }.
 * Returns 0 with the 32-byte seed, or -1 when der is anything else. */
static int
dkim_ed25519_pkcs8(const unsigned char *der, size_t len, unsigned char seed[32])
{
	static const unsigned char oid[] = { 0x2b, 0x65, 0x70 };
	unsigned char *p = (unsigned char *)der, *end = p + len, *inner;
	mbedtls_asn1_buf alg, params;
	size_t l;
	int ver;

	if (mbedtls_asn1_get_tag(&p, end, &l, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) !=
	    0)
		return -1;
	end = p + l;
	if (mbedtls_asn1_get_int(&p, end, &ver) != 0 || (ver != 0 && ver != 1))
		return -1;
	if (mbedtls_asn1_get_alg(&p, end, &alg, &params) != 0 || alg.len != sizeof(oid) ||
	    memcmp(alg.p, oid, sizeof(oid)) != 0 || params.len != 0)
		return -1;
	if (mbedtls_asn1_get_tag(&p, end, &l, MBEDTLS_ASN1_OCTET_STRING) != 0)
		return -1;
	inner = p;
	if (mbedtls_asn1_get_tag(&inner, p + l, &l, MBEDTLS_ASN1_OCTET_STRING) != 0 || l != 32)
		return -1;
	memcpy(seed, inner, 32);
	return 0;
}

int
dkim_signer_load(
    struct dkim_signer *sg, const char *pem, size_t len, enum dkim_alg want, char *err, size_t esz)
{
	mbedtls_pem_context ctx;
	unsigned char seed[32], pk[crypto_sign_PUBLICKEYBYTES];
	size_t used;
	int rc;

	memset(sg, 0, sizeof(*sg));
	mbedtls_pk_init(&sg->pk);
	if (sodium_init() < 0) {
		snprintf(err, esz, "libsodium did not initialise");
		return -1;
	}
	/* Ed25519 first: mbedTLS 2.28 does not know the key type. */
	mbedtls_pem_init(&ctx);
	rc = mbedtls_pem_read_buffer(&ctx, "-----BEGIN PRIVATE KEY-----",
	    "-----END PRIVATE KEY-----", (const unsigned char *)pem, NULL, 0, &used);
	if (rc == 0 && dkim_ed25519_pkcs8(ctx.buf, ctx.buflen, seed) == 0) {
		mbedtls_pem_free(&ctx);
		crypto_sign_seed_keypair(pk, sg->ed_sk, seed);
		sodium_memzero(seed, sizeof(seed));
		sg->alg = DKIM_ED25519_SHA256;
	} else {
		mbedtls_pem_free(&ctx);
		if (mbedtls_pk_parse_key(&sg->pk, (const unsigned char *)pem, len + 1, NULL, 0) !=
		    0) {
			snprintf(err, esz, "not a PEM RSA or Ed25519 (PKCS#8) private key");
			return -1;
		}
		if (mbedtls_pk_get_type(&sg->pk) != MBEDTLS_PK_RSA) {
			snprintf(err, esz, "the key is neither RSA nor Ed25519");
			return -1;
		}
		if (mbedtls_pk_get_bitlen(&sg->pk) < DKIM_RSA_MIN_BITS ||
		    mbedtls_pk_get_bitlen(&sg->pk) > DKIM_RSA_MAX_BITS) {
			snprintf(err, esz, "RSA key of %u bits (%d to %d allowed)",
			    (unsigned)mbedtls_pk_get_bitlen(&sg->pk), DKIM_RSA_MIN_BITS,
			    DKIM_RSA_MAX_BITS);
			return -1;
		}
		sg->alg = DKIM_RSA_SHA256;
	}
	if (want != DKIM_ALG_NONE && want != sg->alg) {
		snprintf(err, esz, "the key is for %s, not %s", dkim_alg_str(sg->alg),
		    dkim_alg_str(want));
		return -1;
	}
	return 0;
}

void
dkim_signer_free(struct dkim_signer *sg)
{
	mbedtls_pk_free(&sg->pk);
	sodium_memzero(sg->ed_sk, sizeof(sg->ed_sk));
}

/* What OpenDKIM and dkimpy sign by default (RFC 6376 5.4.1's list), From
 * first. */
static const char *const dkim_default_names[] = { "From", "Reply-To", "Subject", "Date", "To", "Cc",
	"Resent-Date", "Resent-From", "Resent-To", "Resent-Cc", "In-Reply-To", "References",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe", "List-Post", "List-Owner",
	"List-Archive", "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"Content-ID", "Content-Description", NULL };

int
dkim_sign_names(const char *msg, const struct dkim_field *f, int nf, const char *const *want,
    const char **out, int max)
{
	int n = 0, from = 0;

	if (want == NULL)
		want = dkim_default_names;
	for (int w = 0; want[w] != NULL; w++) {
		int dup = 0, is_from = strcasecmp(want[w], "from") == 0;

		for (int k = 0; k < w; k++)
			dup |= strcasecmp(want[k], want[w]) == 0;
		if (dup || (is_from && from))
			continue;
		for (int j = 0; j < nf; j++) {
			if (!dkim_field_is(msg, &f[j], want[w]))
				continue;
			if (n == max)
				return -1;
			out[n++] = want[w];
		}
		if (is_from) {
			if (n == max)
				return -1;
			out[n++] = want[w]; /* oversigned */
			from = 1;
		}
	}
	if (!from) {
		for (int j = 0; j < nf; j++) {
			if (!dkim_field_is(msg, &f[j], "From"))
				continue;
			if (n == max)
				return -1;
			out[n++] = "From";
		}
		if (n == max)
			return -1;
		out[n++] = "From";
	}
	return n;
}

int
dkim_name_ok(const char *s)
{
	size_t len = strlen(s), label = 0;

	if (len == 0 || len > DKIM_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return 0;
		} else
			return 0;
	}
	return label > 0;
}

/* Appends to out (DKIM_FIELD_MAX bytes) at *n; -1 when it would not fit. */
static int
dkim_put(char *out, size_t *n, const char *s, size_t len)
{
	if (len > DKIM_FIELD_MAX - *n)
		return -1;
	memcpy(out + *n, s, len);
	*n += len;
	return 0;
}

#define DKIM_FOLD 72 /* characters per line of the field we write */

int
dkim_sign(const struct dkim_signer *sg, const char *domain, const char *selector,
    enum dkim_canon hc, enum dkim_canon bc, const char *const *names, int nnames, time_t t,
    const unsigned char bh[32], const char *msg, const struct dkim_field *f, int nf, char *out,
    char *err, size_t esz)
{
	static const char *const cn[] = { "simple", "relaxed" };
	unsigned char
	    sigbytes[MBEDTLS_PK_SIGNATURE_MAX_SIZE > 64 ? MBEDTLS_PK_SIGNATURE_MAX_SIZE : 64];
	unsigned char b64[2 * sizeof(sigbytes)], hhash[32];
	char line[2 * DKIM_NAME_MAX + 160], bh64[64];
	size_t n = 0, col, slen = 0, blen;
	struct dkim_sig sig;
	int rc;

	if (!dkim_name_ok(domain) || !dkim_name_ok(selector)) {
		snprintf(err, esz, "bad domain or selector");
		return -1;
	}
	mbedtls_base64_encode((unsigned char *)bh64, sizeof(bh64), &blen, bh, 32);
	rc = snprintf(line, sizeof(line),
	    "DKIM-Signature: v=1; a=%s; c=%s/%s;\r\n\td=%s; s=%s;\r\n\tt=%lld; bh=%s;\r\n\th=",
	    dkim_alg_str(sg->alg), cn[hc], cn[bc], domain, selector, (long long)t, bh64);
	if (rc < 0 || (size_t)rc >= sizeof(line) || dkim_put(out, &n, line, (size_t)rc) == -1)
		goto toolong;
	/* h= folded between names; the names are as the caller gave them
	 * (verifiers compare them case-insensitively). */
	col = 3;
	for (int k = 0; k < nnames; k++) {
		size_t l = strlen(names[k]);
		if (k > 0 && dkim_put(out, &n, ":", 1) == -1)
			goto toolong;
		if (k > 0 && col + l > DKIM_FOLD) {
			if (dkim_put(out, &n, "\r\n\t", 3) == -1)
				goto toolong;
			col = 1;
		}
		if (dkim_put(out, &n, names[k], l) == -1)
			goto toolong;
		col += l + 1;
	}
	if (dkim_put(out, &n, ";\r\n\tb=", 6) == -1)
		goto toolong;
	/* The field as the verifier will see it with b= emptied, hashed
	 * after the fields it signs. */
	memset(&sig, 0, sizeof(sig));
	sig.hcanon = hc;
	if (nnames > DKIM_H_MAX)
		goto toolong;
	for (size_t k = 0, o = 0; k < (size_t)nnames; k++) {
		size_t l = strlen(names[k]);
		if (o + l + 1 > sizeof(sig.hlist))
			goto toolong;
		sig.h[sig.nh++] = (unsigned short)o;
		for (size_t i = 0; i <= l; i++)
			sig.hlist[o++] = (char)tolower((unsigned char)names[k][i]);
	}
	sig.braw_start = sig.braw_end = n;
	dkim_header_hash(&sig, msg, f, nf, out, n, hhash);
	if (sg->alg == DKIM_ED25519_SHA256) {
		crypto_sign_detached(sigbytes, NULL, hhash, 32, sg->ed_sk);
		slen = crypto_sign_BYTES;
	} else if (mbedtls_pk_sign((mbedtls_pk_context *)&sg->pk, MBEDTLS_MD_SHA256, hhash, 32,
		       sigbytes, &slen, dkim_rng, NULL) != 0) {
		snprintf(err, esz, "RSA signing failed");
		return -1;
	}
	mbedtls_base64_encode(b64, sizeof(b64), &blen, sigbytes, slen);
	col = 3;
	for (size_t i = 0; i < blen; i += DKIM_FOLD) {
		size_t l = blen - i < DKIM_FOLD ? blen - i : DKIM_FOLD;
		if (i > 0 && dkim_put(out, &n, "\r\n\t", 3) == -1)
			goto toolong;
		if (dkim_put(out, &n, (const char *)b64 + i, l) == -1)
			goto toolong;
	}
	return (int)n;
toolong:
	snprintf(err, esz, "the signature field would be longer than %d bytes", DKIM_FIELD_MAX);
	return -1;
}
