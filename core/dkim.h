/* dkim.h - DKIM (RFC 6376) with rsa-sha256 and ed25519-sha256 (RFC 8463),
 * pure: tag lists, signature fields and key records, header and body
 * canonicalization (the body streamed in pieces), header selection with
 * oversigning, signing and verifying. No DNS, no I/O, no Lua: dkim_lua.c
 * finds the fields, reads the message and fetches the keys. Why it is
 * written here on mbedTLS and libsodium rather than on libopendkim is at
 * the top of dkim.c. */
#ifndef LUAMTA_DKIM_H
#define LUAMTA_DKIM_H

#include <stddef.h>
#include <time.h>

#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#define DKIM_SIGS_MAX     8    /* signatures a message gets verified */
#define DKIM_H_MAX        64   /* names in h= (those signed and verified) */
#define DKIM_HLIST_MAX    1024 /* bytes of the h= names, NUL-separated */
#define DKIM_NAME_MAX     253  /* d=, s=, a domain or selector */
#define DKIM_SIG_MAX      1024 /* bytes of b= decoded: RSA up to 8192 bits */
#define DKIM_RSA_MIN_BITS 1024 /* RFC 8301 3.2 */
#define DKIM_RSA_MAX_BITS 8192
#define DKIM_FIELD_MAX    8192 /* a DKIM-Signature field dkim_sign writes */
#define DKIM_FIELDS_MAX   4096 /* header fields of a message looked at */
#define DKIM_REASON_MAX   128
#define DKIM_KEY_FILE_MAX 65536

enum dkim_alg { DKIM_ALG_NONE = 0, DKIM_RSA_SHA256, DKIM_ED25519_SHA256 };
enum dkim_canon { DKIM_SIMPLE = 0, DKIM_RELAXED };
enum dkim_result { DKIM_PASS = 0, DKIM_FAIL, DKIM_NEUTRAL, DKIM_TEMPERROR, DKIM_PERMERROR };

/* "pass", "fail"...; "rsa-sha256", "ed25519-sha256" (or "" for none). */
const char *dkim_result_str(enum dkim_result);
const char *dkim_alg_str(enum dkim_alg);

/* Where canonicalized bytes go. */
typedef void dkim_sink(void *arg, const char *p, size_t n);

/* Tag lists (RFC 6376 3.2) ------------------------------------------------ */

struct dkim_tag {
	const char *name, *val; /* val: the value without surrounding FWS */
	size_t nlen, vlen;
	size_t raw_start, raw_end; /* offsets in s: after '=' to the ';' or the end */
};
/* Splits s into at most max tags. Returns how many, or -1 with *err set
 * (a syntax error, a duplicate tag, too many tags). */
int dkim_tags(const char *s, size_t n, struct dkim_tag *tags, int max, const char **err);

/* The header section ------------------------------------------------------ */

/* One header field of a message: the bytes from its name to the end of its
 * last line, the line ending excluded. */
struct dkim_field {
	size_t off, len;
	size_t nlen; /* the name's length (before any WSP and the ':') */
};
/* Finds the fields of the header section at the start of msg (n bytes, the
 * memory part of a message). Lines that are not fields are skipped.
 * Returns how many (at most max), or -1 with more fields than max; sets
 * *body to where the body starts, just after the empty line, or to
 * DKIM_NO_BODY when these n bytes hold no empty line (or after -1). */
#define DKIM_NO_BODY ((size_t)-1)
int dkim_fields(const char *msg, size_t n, struct dkim_field *f, int max, size_t *body);
/* Whether field f of msg is named name (case-insensitive). */
int dkim_field_is(const char *msg, const struct dkim_field *f, const char *name);

/* Canonicalization (RFC 6376 3.4) ----------------------------------------- */

/* A header field (raw, without its final line ending) into sink, without
 * a final CRLF. Bare LF line endings count as CRLF. */
void dkim_canon_header(enum dkim_canon, const char *field, size_t len, dkim_sink *sink, void *arg);

/* The body, streamed: update with pieces as they come, then finish. CRLF
 * and a bare LF end lines; a bare CR is an ordinary byte. */
struct dkim_body {
	enum dkim_canon canon;
	int cr;                   /* the last byte was a CR not yet known to end a line */
	int wsp;                  /* relaxed: whitespace pending in the line */
	int inl;                  /* the line has bytes out */
	unsigned long long nl;    /* empty lines held back (dropped at the end) */
	unsigned long long total; /* canonical bytes so far */
	unsigned long long limit; /* bytes hashed at most (l=) */
	mbedtls_sha256_context sha;
	dkim_sink *sink; /* also gets every canonical byte, when set */
	void *arg;
};
/* limit < 0: the whole body. */
void dkim_body_init(struct dkim_body *, enum dkim_canon, long long limit);
void dkim_body_update(struct dkim_body *, const char *p, size_t n);
/* The SHA-256 of the first limit canonical bytes; b->total is how many
 * there were in all. Frees nothing: the struct holds no memory. */
void dkim_body_finish(struct dkim_body *, unsigned char hash[32]);

/* Signatures --------------------------------------------------------------- */

struct dkim_sig {
	enum dkim_alg alg;
	enum dkim_canon hcanon, bcanon;
	char d[DKIM_NAME_MAX + 1];
	char s[DKIM_NAME_MAX + 1];
	char i[DKIM_NAME_MAX + 66];   /* empty when absent */
	char hlist[DKIM_HLIST_MAX];   /* the h= names, each NUL-terminated */
	unsigned short h[DKIM_H_MAX]; /* offsets of the names in hlist */
	int nh;
	unsigned char b[DKIM_SIG_MAX];
	size_t blen;
	unsigned char bh[32];
	long long l, t, x;           /* -1: absent */
	size_t braw_start, braw_end; /* the b= value in the field, for hashing without it */
};
/* Parses a raw DKIM-Signature field (name, ':' and value, folded as it
 * came). Returns 0, or -1 with a reason (a permerror). What could be read
 * of d= and s= is kept even then. now: for x=. */
int dkim_sig_parse(
    const char *field, size_t len, time_t now, struct dkim_sig *, char *reason, size_t rsz);

/* The hash of the header fields a signature names (h=, bottom-up, a name
 * with no field left counts as nothing: oversigning), then the signature's
 * own field without its b= value and without a final CRLF. */
void dkim_header_hash(const struct dkim_sig *, const char *msg, const struct dkim_field *f, int nf,
    const char *sigfield, size_t siglen, unsigned char hash[32]);

/* Key records (RFC 6376 3.6.1, RFC 8463 4.2) --------------------------------- */

struct dkim_key {
	enum dkim_alg alg; /* the key's type, as the algorithm it serves */
	int testing;       /* t=y */
	int strict;        /* t=s: i= must be in d= itself */
	mbedtls_pk_context pk;
	unsigned char ed[32];
};
/* Parses a TXT record into key. Returns 0, or -1 with a reason (a
 * permerror: syntax, revoked, unusable key). dkim_key_free afterwards
 * either way. */
int dkim_key_parse(const char *rec, size_t len, struct dkim_key *, char *reason, size_t rsz);
void dkim_key_free(struct dkim_key *);

/* The verdict on a parsed signature whose key was found: the body hash
 * (bh, with body_total canonical bytes in all) and the header hash against
 * the signature. A failure under a testing key (t=y) is neutral. */
enum dkim_result dkim_verify(const struct dkim_sig *, const struct dkim_key *,
    const unsigned char hhash[32], const unsigned char bh[32], unsigned long long body_total,
    char *reason, size_t rsz);

/* Signing ------------------------------------------------------------------ */

struct dkim_signer {
	enum dkim_alg alg;
	mbedtls_pk_context pk;
	unsigned char ed_sk[64];
};
/* Loads a PEM private key (len bytes at pem, NUL-terminated at pem[len]):
 * RSA (PKCS#1 or PKCS#8) of at least DKIM_RSA_MIN_BITS, or Ed25519 in
 * PKCS#8. want: the algorithm asked for, or DKIM_ALG_NONE for the key's.
 * Returns 0, or -1 with err. dkim_signer_free afterwards either way. */
int dkim_signer_load(
    struct dkim_signer *, const char *pem, size_t len, enum dkim_alg want, char *err, size_t esz);
void dkim_signer_free(struct dkim_signer *);

/* The h= names for signing: every field of msg named in want (NULL-ended;
 * NULL: the default set), once per field, and From once more (always
 * signed, and oversigned so none can be added). Returns how many are in
 * out, or -1 when more than max. */
int dkim_sign_names(const char *msg, const struct dkim_field *f, int nf, const char *const *want,
    const char **out, int max);

/* Whether s is a domain or selector dkim_sign accepts: dot-separated
 * labels of letters, digits, '-' and '_', at most DKIM_NAME_MAX. */
int dkim_name_ok(const char *s);

/* Writes the DKIM-Signature field (folded, no final CRLF) signing the
 * fields names (from dkim_sign_names) of msg and a body whose hash is bh.
 * out: DKIM_FIELD_MAX bytes. Returns its length, or -1 with err. */
int dkim_sign(const struct dkim_signer *, const char *domain, const char *selector,
    enum dkim_canon hc, enum dkim_canon bc, const char *const *names, int nnames, time_t t,
    const unsigned char bh[32], const char *msg, const struct dkim_field *f, int nf, char *out,
    char *err, size_t esz);

#endif
