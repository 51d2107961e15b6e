/* test_dkim.c - dkim.h: RFC 6376's canonicalization examples (3.4.6), the
 * body streamed in pieces, tag lists and their errors, signature fields
 * and key records, RFC 8463's example message with its two signatures and
 * keys (Appendix A), and signing then verifying with RSA and Ed25519 keys
 * made here (a 512-bit RSA key refused). */
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/rsa.h>
#include <sodium.h>

#include "dkim.h"
#include "test.h"

struct out {
	char b[8192];
	size_t n;
};

static void
out_sink(void *arg, const char *p, size_t n)
{
	struct out *o = arg;

	if (n > sizeof(o->b) - o->n)
		n = sizeof(o->b) - o->n;
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

static const char *
canon_header(enum dkim_canon c, const char *field)
{
	static struct out o;

	o.n = 0;
	dkim_canon_header(c, field, strlen(field), out_sink, &o);
	o.b[o.n] = '\0';
	return o.b;
}

/* The canonical body of s, fed in pieces of step bytes (0: at once). */
static const char *
canon_body(enum dkim_canon c, const char *s, size_t step, unsigned long long *total)
{
	static struct out o;
	struct dkim_body b;
	unsigned char h[32];
	size_t n = strlen(s);

	o.n = 0;
	dkim_body_init(&b, c, -1);
	b.sink = out_sink;
	b.arg = &o;
	if (step == 0)
		step = n + 1;
	for (size_t i = 0; i < n; i += step)
		dkim_body_update(&b, s + i, n - i < step ? n - i : step);
	dkim_body_finish(&b, h);
	o.b[o.n] = '\0';
	if (total != NULL)
		*total = b.total;
	return o.b;
}

static void
test_canon(void)
{
	/* RFC 6376 3.4.6. */
	static const char body[] = " C \r\nD \t E\r\n\r\n\r\n";

	CHECK_STR(canon_header(DKIM_RELAXED, "A: X"), "a:X");
	CHECK_STR(canon_header(DKIM_RELAXED, "B : Y\t\r\n\tZ  "), "b:Y Z");
	CHECK_STR(canon_header(DKIM_SIMPLE, "B : Y\t\r\n\tZ  "), "B : Y\t\r\n\tZ  ");
	CHECK_STR(canon_header(DKIM_SIMPLE, "B: Y\n Z"), "B: Y\r\n Z");
	CHECK_STR(canon_header(DKIM_RELAXED, "Subject:   "), "subject:");
	CHECK_STR(canon_header(DKIM_RELAXED, "X:\r\n a \t b"), "x:a b");
	for (size_t step = 0; step < 8; step++) {
		CHECK_STR(canon_body(DKIM_RELAXED, body, step, NULL), " C\r\nD E\r\n");
		CHECK_STR(canon_body(DKIM_SIMPLE, body, step, NULL), " C \r\nD \t E\r\n");
	}
	/* Empty bodies, a missing last CRLF, bare LF and CR. */
	CHECK_STR(canon_body(DKIM_SIMPLE, "", 0, NULL), "\r\n");
	CHECK_STR(canon_body(DKIM_RELAXED, "", 0, NULL), "");
	CHECK_STR(canon_body(DKIM_SIMPLE, "\r\n\r\n", 0, NULL), "\r\n");
	CHECK_STR(canon_body(DKIM_RELAXED, " \r\n\t\r\n", 0, NULL), "");
	CHECK_STR(canon_body(DKIM_SIMPLE, "abc", 0, NULL), "abc\r\n");
	CHECK_STR(canon_body(DKIM_RELAXED, "a  b \t", 2, NULL), "a b\r\n");
	CHECK_STR(canon_body(DKIM_SIMPLE, "a\nb\n\n", 1, NULL), "a\r\nb\r\n");
	CHECK_STR(canon_body(DKIM_SIMPLE, "a\rb\r\n\r", 1, NULL), "a\rb\r\n\r\r\n");
	CHECK_STR(canon_body(DKIM_RELAXED, "x\r\n\r\n y\r\n", 3, NULL), "x\r\n\r\n y\r\n");
}

/* l=: only the first bytes are hashed, all are counted. */
static void
test_limit(void)
{
	struct dkim_body a;
	unsigned char ha[32], want[32];

	dkim_body_init(&a, DKIM_SIMPLE, 5);
	dkim_body_update(&a, "abc\r\ndef\r\n", 10);
	dkim_body_finish(&a, ha);
	CHECK(a.total == 10);
	mbedtls_sha256_ret((const unsigned char *)"abc\r\n", 5, want, 0);
	CHECK(memcmp(ha, want, 32) == 0);
}

static void
test_tags(void)
{
	struct dkim_tag t[8];
	const char *err = NULL;
	const char *s = " a = 1 ; b=x y\r\n z;c=;";

	CHECK(dkim_tags(s, strlen(s), t, 8, &err) == 3);
	CHECK(t[0].nlen == 1 && t[0].vlen == 1 && t[0].val[0] == '1');
	CHECK(t[1].vlen == 7 && memcmp(t[1].val, "x y\r\n z", 7) == 0);
	CHECK(t[2].vlen == 0);
	CHECK(dkim_tags("a=1; a=2", 8, t, 8, &err) == -1 && strcmp(err, "duplicate tag") == 0);
	CHECK(dkim_tags("a", 1, t, 8, &err) == -1);
	CHECK(dkim_tags("1=a", 3, t, 8, &err) == -1);
	CHECK(dkim_tags("a=\x01", 3, t, 8, &err) == -1);
	CHECK(dkim_tags("", 0, t, 8, &err) == 0);
}

static int
sig_reason(const char *field, const char *want)
{
	struct dkim_sig sig;
	char reason[DKIM_REASON_MAX];
	int rc = dkim_sig_parse(field, strlen(field), 1000, &sig, reason, sizeof(reason));

	if (want == NULL)
		return rc == 0;
	if (rc == 0 || strstr(reason, want) == NULL)
		fprintf(stderr, "  %s: got \"%s\"\n", field, rc == 0 ? "(ok)" : reason);
	return rc == -1 && strstr(reason, want) != NULL;
}

#define SIGBASE                                                                                    \
	"DKIM-Signature: v=1; d=example.com; s=sel; h=From:To; bh="                                \
	"2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=; b=AAAA"

static void
test_sig(void)
{
	CHECK(sig_reason(SIGBASE "; a=rsa-sha256", NULL));
	CHECK(sig_reason(SIGBASE "; a=rsa-sha256; z=a|b; foo=bar; c=relaxed", NULL));
	CHECK(sig_reason(SIGBASE "; a=rsa-sha1", "unsupported algorithm"));
	CHECK(sig_reason(SIGBASE, "missing a="));
	CHECK(sig_reason(SIGBASE "; a=rsa-sha256; a=rsa-sha256", "duplicate"));
	CHECK(sig_reason(SIGBASE "; a=rsa-sha256; c=loose", "canonicalization"));
	CHECK(sig_reason(SIGBASE "; a=rsa-sha256; i=x@example.org", "i= is not in d="));
	CHECK(sig_reason(SIGBASE "; a=rsa-sha256; i=x@sub.example.com", NULL));
	CHECK(sig_reason(SIGBASE "; a=rsa-sha256; x=999", "expired"));
	CHECK(sig_reason(SIGBASE "; a=rsa-sha256; t=5000; x=4000", "x= is before t="));
	CHECK(sig_reason(SIGBASE "; a=rsa-sha256; l=abc", "bad l="));
	CHECK(sig_reason(SIGBASE "; a=rsa-sha256; q=http", "query method"));
	CHECK(sig_reason(SIGBASE "; a=rsa-sha256; q=foo:dns/txt", NULL));
	CHECK(sig_reason("DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; h=To; bh="
			 "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=; b=AAAA",
	    "From is not signed"));
	CHECK(sig_reason("DKIM-Signature: v=1; a=rsa-sha256; s=s; h=From; bh=AA==; b=AAAA",
	    "missing or bad d="));
	CHECK(sig_reason(
	    "DKIM-Signature: v=2; a=rsa-sha256; d=e.com; s=s; h=From; bh=AA==; b=AAAA", "v="));
	CHECK(sig_reason(SIGBASE "; a=rsa-sha256; bh=AA==", "duplicate"));
	CHECK(sig_reason(
	    "DKIM-Signature: v=1; a=rsa-sha256; d=e.com; s=s; h=From; bh=AA==; b=AAAA", "bad bh="));
	CHECK(sig_reason("DKIM-Signature: v=1; a=rsa-sha256; d=e.com; s=s; h=From:; bh="
			 "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=; b=AAAA",
	    "bad h="));
}

static int
key_reason(const char *rec, const char *want)
{
	struct dkim_key k;
	char reason[DKIM_REASON_MAX];
	int rc = dkim_key_parse(rec, strlen(rec), &k, reason, sizeof(reason));

	dkim_key_free(&k);
	if (want == NULL)
		return rc == 0;
	if (rc == 0 || strstr(reason, want) == NULL)
		fprintf(stderr, "  %s: got \"%s\"\n", rec, rc == 0 ? "(ok)" : reason);
	return rc == -1 && strstr(reason, want) != NULL;
}

#define ED_PUB "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
#define RSA_PUB                                                                                    \
	"MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi" \
	"Y/"                                                                                       \
	"J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/"                                                 \
	"8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLz"                                       \
	"BfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"

static void
test_keys(void)
{
	CHECK(key_reason("v=DKIM1; k=ed25519; p=" ED_PUB, NULL));
	CHECK(key_reason("v=DKIM1; k=rsa; p=" RSA_PUB, NULL));
	CHECK(key_reason("p=" RSA_PUB, NULL));
	CHECK(key_reason("v=DKIM1; p=", "revoked"));
	CHECK(key_reason("v=DKIM1; k=dsa; p=" RSA_PUB, "unknown key type"));
	CHECK(key_reason("k=rsa; v=DKIM1; p=" RSA_PUB, "DKIM1"));
	CHECK(key_reason("v=DKIM1; h=sha1; p=" RSA_PUB, "sha256"));
	CHECK(key_reason("v=DKIM1; s=tlsrpt; p=" RSA_PUB, "email"));
	CHECK(key_reason("v=DKIM1; h=sha1:sha256; s=*; p=" RSA_PUB, NULL));
	CHECK(key_reason("v=DKIM1; k=ed25519; p=" RSA_PUB, "32 bytes"));
	CHECK(key_reason("v=DKIM1; k=rsa; p=" ED_PUB, "bad RSA key"));
	CHECK(key_reason("v=DKIM1; k=rsa; p=!!!!", "bad p="));
	CHECK(key_reason("v=DKIM1; k=rsa", "without p="));
	/* A 512-bit key (MFwwDQ...: SubjectPublicKeyInfo of a 512-bit
	 * modulus) is refused. */
	CHECK(key_reason("v=DKIM1; p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAPNhEkRbkbRcNbUtQUtmrm0OS0zO"
			 "1vh2EDe3QxietXloO0gmSff7C7zexw3tHLiydukaWZVy38igEyiwn70NDr0CAwEAAQ==",
	    "too small"));
}

/* RFC 8463 Appendix A.3, byte for byte. */
static const char rfc8463[] = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
			      " d=football.example.com; i=@football.example.com;\r\n"
			      " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
			      " subject : date : message-id : from : subject : date;\r\n"
			      " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
			      " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
			      " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
			      "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
			      " d=football.example.com; i=@football.example.com;\r\n"
			      " q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
			      " date : message-id : from : subject : date;\r\n"
			      " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
			      " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
			      " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
			      " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
			      "From: Joe SixPack <joe@football.example.com>\r\n"
			      "To: Suzie Q <suzie@shopping.example.net>\r\n"
			      "Subject: Is dinner ready?\r\n"
			      "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
			      "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
			      "\r\n"
			      "Hi.\r\n"
			      "\r\n"
			      "We lost the game.  Are you hungry yet?\r\n"
			      "\r\n"
			      "Joe.\r\n";

/* Verifies every DKIM-Signature of msg with the key records keys[i]
 * (one per signature, in order); the results go to res. */
static int
verify_all(const char *msg, size_t n, const char *const *keys, enum dkim_result *res)
{
	static struct dkim_field f[64];
	size_t body;
	int nf = dkim_fields(msg, n, f, 64, &body), ns = 0;

	CHECK(nf > 0);
	for (int j = 0; j < nf; j++) {
		struct dkim_sig sig;
		struct dkim_key key;
		struct dkim_body b;
		unsigned char hh[32], bh[32];
		char reason[DKIM_REASON_MAX];

		if (!dkim_field_is(msg, &f[j], "dkim-signature"))
			continue;
		if (dkim_sig_parse(msg + f[j].off, f[j].len, 1528637909 + 60, &sig, reason,
			sizeof(reason)) == -1) {
			fprintf(stderr, "  signature %d: %s\n", ns, reason);
			res[ns++] = DKIM_PERMERROR;
			continue;
		}
		dkim_header_hash(&sig, msg, f, nf, msg + f[j].off, f[j].len, hh);
		dkim_body_init(&b, sig.bcanon, sig.l);
		dkim_body_update(&b, msg + body, n - body);
		dkim_body_finish(&b, bh);
		if (dkim_key_parse(keys[ns], strlen(keys[ns]), &key, reason, sizeof(reason)) == -1)
			res[ns] = DKIM_PERMERROR;
		else
			res[ns] = dkim_verify(&sig, &key, hh, bh, b.total, reason, sizeof(reason));
		if (res[ns] != DKIM_PASS)
			fprintf(stderr, "  signature %d: %s: %s\n", ns, dkim_result_str(res[ns]),
			    reason);
		dkim_key_free(&key);
		ns++;
	}
	return ns;
}

static void
test_rfc8463(void)
{
	static const char *const keys[] = { "v=DKIM1; k=ed25519; p=" ED_PUB,
		"v=DKIM1; k=rsa; p=" RSA_PUB };
	static const char *const testing[] = { "v=DKIM1; k=ed25519; t=y; p=" ED_PUB,
		"v=DKIM1; k=ed25519; p=" ED_PUB };
	enum dkim_result r[4];
	char copy[sizeof(rfc8463)];
	char *p;

	CHECK(verify_all(rfc8463, strlen(rfc8463), keys, r) == 2);
	CHECK(r[0] == DKIM_PASS && r[1] == DKIM_PASS);
	/* One byte of a signed field, then of the body. */
	memcpy(copy, rfc8463, sizeof(copy));
	p = strstr(copy, "dinner");
	*p = 'D';
	fprintf(stderr, "(two failures expected)\n");
	CHECK(verify_all(copy, strlen(copy), keys, r) == 2);
	CHECK(r[0] == DKIM_FAIL && r[1] == DKIM_FAIL);
	memcpy(copy, rfc8463, sizeof(copy));
	p = strstr(copy, "hungry");
	*p = 'H';
	fprintf(stderr, "(two failures and a neutral expected)\n");
	CHECK(verify_all(copy, strlen(copy), keys, r) == 2);
	CHECK(r[0] == DKIM_FAIL && r[1] == DKIM_FAIL);
	/* A testing key makes a failure neutral; the wrong type is a
	 * permerror. */
	CHECK(verify_all(copy, strlen(copy), testing, r) == 2);
	CHECK(r[0] == DKIM_NEUTRAL && r[1] == DKIM_PERMERROR);
	/* Whitespace the relaxed canonicalizations ignore changes nothing. */
	{
		char loose[sizeof(rfc8463) + 16];
		const char *s = strstr(rfc8463, "Subject: ");
		size_t pre = (size_t)(s - rfc8463);
		memcpy(loose, rfc8463, pre);
		strcpy(loose + pre, "Subject:   Is  dinner ready?  ");
		strcat(loose, s + strlen("Subject: Is dinner ready?"));
		CHECK(verify_all(loose, strlen(loose), keys, r) == 2);
		CHECK(r[0] == DKIM_PASS && r[1] == DKIM_PASS);
	}
}

static int
test_rng(void *ctx, unsigned char *out, size_t n)
{
	(void)ctx;
	randombytes_buf(out, n);
	return 0;
}

/* A key record for the public half of an RSA key made here. */
static void
rsa_record(mbedtls_pk_context *pk, char *rec, size_t cap)
{
	unsigned char der[1024], *start;
	size_t olen;
	int n = mbedtls_pk_write_pubkey_der(pk, der, sizeof(der));

	start = der + sizeof(der) - n;
	strcpy(rec, "v=DKIM1; k=rsa; p=");
	mbedtls_base64_encode(
	    (unsigned char *)rec + strlen(rec), cap - strlen(rec), &olen, start, (size_t)n);
}

static const char msg_plain[] = "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
				"From: a@example.com\r\n"
				"To: b@example.net\r\n"
				"Subject: test\r\n"
				"\r\n"
				"Hello  there \r\n\r\n";

/* Signs msg_plain with the PEM key, prepends the field, verifies it with
 * record; returns the result. */
static enum dkim_result
sign_verify(const char *pem, const char *record, enum dkim_canon c, const char *tamper)
{
	static struct dkim_field f[16];
	struct dkim_signer sg;
	struct dkim_body b;
	unsigned char bh[32];
	const char *names[DKIM_H_MAX];
	char field[DKIM_FIELD_MAX], err[128], msg[DKIM_FIELD_MAX + sizeof(msg_plain) + 4];
	const char *keys[1] = { record };
	enum dkim_result r = DKIM_PERMERROR;
	size_t body;
	int nf, nn, len;

	nf = dkim_fields(msg_plain, strlen(msg_plain), f, 16, &body);
	CHECK(nf == 4);
	CHECK(dkim_signer_load(&sg, pem, strlen(pem), DKIM_ALG_NONE, err, sizeof(err)) == 0);
	nn = dkim_sign_names(msg_plain, f, nf, NULL, names, DKIM_H_MAX);
	CHECK(nn == 4); /* From, From again, Subject, To */
	dkim_body_init(&b, c, -1);
	dkim_body_update(&b, msg_plain + body, strlen(msg_plain) - body);
	dkim_body_finish(&b, bh);
	len = dkim_sign(&sg, "example.com", "sel", c, c, names, nn, 1528637909, bh, msg_plain, f,
	    nf, field, err, sizeof(err));
	dkim_signer_free(&sg);
	CHECK(len > 0);
	if (len <= 0)
		return r;
	memcpy(msg, field, (size_t)len);
	memcpy(msg + len, "\r\n", 2);
	strcpy(msg + len + 2, msg_plain);
	if (tamper != NULL)
		*strstr(msg, tamper) ^= 0x20;
	CHECK(verify_all(msg, strlen(msg), keys, &r) == 1);
	return r;
}

static void
test_sign(void)
{
	mbedtls_pk_context pk;
	unsigned char pem[4096], der[48];
	char rec[1024], edpem[256];
	size_t olen;
	char err[128];
	struct dkim_signer sg;
	static const unsigned char seed_hdr[16] = { 0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
		0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20 };
	static const unsigned char seed[32] = { 0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60,
		0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32,
		0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60 };

	CHECK(sodium_init() >= 0);
	/* Ed25519: RFC 8032's first test key as openssl writes it. */
	memcpy(der, seed_hdr, 16);
	memcpy(der + 16, seed, 32);
	strcpy(edpem, "-----BEGIN PRIVATE KEY-----\n");
	mbedtls_base64_encode((unsigned char *)edpem + strlen(edpem), 100, &olen, der, 48);
	strcat(edpem, "\n-----END PRIVATE KEY-----\n");
	CHECK(sign_verify(edpem, "v=DKIM1; k=ed25519; p=" ED_PUB, DKIM_RELAXED, NULL) == DKIM_PASS);
	CHECK(sign_verify(edpem, "v=DKIM1; k=ed25519; p=" ED_PUB, DKIM_SIMPLE, NULL) == DKIM_PASS);
	fprintf(stderr, "(failures expected)\n");
	CHECK(
	    sign_verify(edpem, "v=DKIM1; k=ed25519; p=" ED_PUB, DKIM_SIMPLE, "test") == DKIM_FAIL);
	CHECK(sign_verify(edpem, "v=DKIM1; k=ed25519; p=" ED_PUB, DKIM_RELAXED, "there") ==
	    DKIM_FAIL);
	CHECK(dkim_signer_load(&sg, edpem, strlen(edpem), DKIM_RSA_SHA256, err, sizeof(err)) == -1);
	CHECK(strstr(err, "ed25519-sha256") != NULL);
	dkim_signer_free(&sg);

	/* RSA: 1024 bits signs, 512 is refused. */
	mbedtls_pk_init(&pk);
	CHECK(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) == 0);
	CHECK(mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), test_rng, NULL, 1024, 65537) == 0);
	CHECK(mbedtls_pk_write_key_pem(&pk, pem, sizeof(pem)) == 0);
	rsa_record(&pk, rec, sizeof(rec));
	CHECK(sign_verify((char *)pem, rec, DKIM_RELAXED, NULL) == DKIM_PASS);
	CHECK(sign_verify((char *)pem, rec, DKIM_SIMPLE, NULL) == DKIM_PASS);
	CHECK(sign_verify((char *)pem, rec, DKIM_SIMPLE, "a@example") == DKIM_FAIL);
	mbedtls_pk_free(&pk);
	mbedtls_pk_init(&pk);
	CHECK(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) == 0);
	CHECK(mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), test_rng, NULL, 512, 65537) == 0);
	CHECK(mbedtls_pk_write_key_pem(&pk, pem, sizeof(pem)) == 0);
	CHECK(dkim_signer_load(
		  &sg, (char *)pem, strlen((char *)pem), DKIM_ALG_NONE, err, sizeof(err)) == -1);
	CHECK(strstr(err, "512 bits") != NULL);
	dkim_signer_free(&sg);
	mbedtls_pk_free(&pk);
	CHECK(dkim_signer_load(&sg, "hello", 5, DKIM_ALG_NONE, err, sizeof(err)) == -1);
	dkim_signer_free(&sg);
}

static void
test_names(void)
{
	static const char m[] = "From: a\r\nTo: b\r\nTo: c\r\nX-Y: z\r\n\r\n";
	struct dkim_field f[8];
	const char *names[8];
	static const char *const want[] = { "to", "X-Y", "to", NULL };
	size_t body;
	int nf = dkim_fields(m, strlen(m), f, 8, &body);

	CHECK(nf == 4 && body == strlen(m));
	CHECK(dkim_sign_names(m, f, nf, want, names, 8) == 5);
	CHECK_STR(names[0], "to");
	CHECK_STR(names[2], "X-Y");
	CHECK_STR(names[3], "From");
	CHECK_STR(names[4], "From");
	CHECK(dkim_sign_names(m, f, nf, want, names, 3) == -1);
	CHECK(dkim_fields(m, 20, f, 8, &body) == 3 && body == DKIM_NO_BODY);
	CHECK(dkim_fields(m, strlen(m), f, 2, &body) == -1);
	CHECK(dkim_name_ok("example.com") && dkim_name_ok("s_1.sel") && !dkim_name_ok("a..b") &&
	    !dkim_name_ok("a;b") && !dkim_name_ok("") && !dkim_name_ok("a."));
}

int
main(void)
{
	test_canon();
	test_limit();
	test_tags();
	test_sig();
	test_keys();
	test_rfc8463();
	test_sign();
	test_names();
	return test_done("test_dkim");
}
