/* dkim_canon.c - the parts of DKIM that turn a message into the bytes that
 * are hashed (RFC 6376 3.4, 3.7, 5.4.2): finding the header fields,
 * canonicalizing a field or the body ("simple" and "relaxed"), and the
 * header hash of a signature, fields taken bottom-up. The body is
 * canonicalized as a stream, so a message read back from its file in
 * pieces of any size hashes as it would at once.
 *
 * Line endings: a message reaches us with CRLF, but a bare LF is taken as
 * a line ending too (and canonicalized to CRLF), as dkimpy and OpenDKIM
 * do; a bare CR is an ordinary byte. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "dkim.h"

static int
dkim_wsp(int c)
{
	return c == ' ' || c == '\t';
}

/* Header fields ------------------------------------------------------------ */

int
dkim_fields(const char *msg, size_t n, struct dkim_field *f, int max, size_t *body)
{
	size_t p = 0;
	int nf = 0;

	while (p < n) {
		const char *eol = memchr(msg + p, '\n', n - p);
		size_t lend = eol != NULL ? (size_t)(eol - msg) : n, end;
		size_t next = eol != NULL ? lend + 1 : n, colon;

		if (lend > p && msg[lend - 1] == '\r')
			lend--;
		if (lend == p && eol != NULL) {
			*body = next; /* the empty line */
			return nf;
		}
		/* The field goes on over its continuation lines. */
		end = lend;
		while (next < n && dkim_wsp(msg[next])) {
			eol = memchr(msg + next, '\n', n - next);
			end = eol != NULL ? (size_t)(eol - msg) : n;
			if (end > next && msg[end - 1] == '\r')
				end--;
			next = eol != NULL ? (size_t)(eol - msg) + 1 : n;
		}
		colon = p;
		while (colon < end && msg[colon] != ':')
			colon++;
		if (colon < end && colon > p && !dkim_wsp(msg[p])) {
			size_t nlen = colon - p;

			while (nlen > 0 && dkim_wsp(msg[p + nlen - 1]))
				nlen--;
			if (nf == max) {
				*body = DKIM_NO_BODY;
				return -1;
			}
			f[nf].off = p;
			f[nf].len = end - p;
			f[nf].nlen = nlen;
			nf++;
		}
		p = next;
	}
	*body = DKIM_NO_BODY;
	return nf;
}

int
dkim_field_is(const char *msg, const struct dkim_field *f, const char *name)
{
	size_t len = strlen(name);

	return f->nlen == len && strncasecmp(msg + f->off, name, len) == 0;
}

/* Header canonicalization ---------------------------------------------------- */

void
dkim_canon_header(enum dkim_canon c, const char *field, size_t len, dkim_sink *sink, void *arg)
{
	size_t i, colon, nlen;
	int wsp = 0, any = 0;

	if (c == DKIM_SIMPLE) {
		size_t from = 0;

		for (i = 0; i < len; i++)
			if (field[i] == '\n' && (i == 0 || field[i - 1] != '\r')) {
				sink(arg, field + from, i - from);
				sink(arg, "\r\n", 2);
				from = i + 1;
			}
		sink(arg, field + from, len - from);
		return;
	}
	for (colon = 0; colon < len && field[colon] != ':'; colon++)
		;
	/* The name in lower case, without the WSP before the colon. */
	for (nlen = colon; nlen > 0 && dkim_wsp(field[nlen - 1]); nlen--)
		;
	for (i = 0; i < nlen; i++) {
		char ch = (char)tolower((unsigned char)field[i]);
		sink(arg, &ch, 1);
	}
	if (colon == len)
		return; /* not a field: nothing after the name */
	sink(arg, ":", 1);
	/* The value unfolded, WSP runs as one SP, none at either end. */
	for (i = colon + 1; i < len; i++) {
		char ch = field[i];

		if (ch == '\r' && i + 1 < len && field[i + 1] == '\n')
			continue;
		if (ch == '\n')
			continue;
		if (dkim_wsp(ch)) {
			wsp = 1;
			continue;
		}
		if (wsp && any)
			sink(arg, " ", 1);
		wsp = 0;
		any = 1;
		sink(arg, &ch, 1);
	}
}

static void
dkim_sha_sink(void *arg, const char *p, size_t n)
{
	mbedtls_sha256_update_ret(arg, (const unsigned char *)p, n);
}

void
dkim_header_hash(const struct dkim_sig *sig, const char *msg, const struct dkim_field *f, int nf,
    const char *sigfield, size_t siglen, unsigned char hash[32])
{
	unsigned char used[DKIM_FIELDS_MAX];
	mbedtls_sha256_context sha;

	memset(used, 0, sizeof(used));
	mbedtls_sha256_init(&sha);
	mbedtls_sha256_starts_ret(&sha, 0);
	for (int k = 0; k < sig->nh; k++) {
		const char *name = sig->hlist + sig->h[k];

		/* The last field of that name not taken yet; none left (an
		 * oversigned name) adds nothing. */
		for (int j = nf - 1; j >= 0; j--) {
			if (j >= DKIM_FIELDS_MAX || used[j] || !dkim_field_is(msg, &f[j], name))
				continue;
			used[j] = 1;
			dkim_canon_header(
			    sig->hcanon, msg + f[j].off, f[j].len, dkim_sha_sink, &sha);
			mbedtls_sha256_update_ret(&sha, (const unsigned char *)"\r\n", 2);
			break;
		}
	}
	/* The signature itself, its b= value (and the WSP around it) left
	 * out, and no CRLF after it (RFC 6376 3.7). */
	{
		char *copy = NULL;
		size_t cut = sig->braw_end - sig->braw_start;
		char stackbuf[DKIM_FIELD_MAX];

		if (siglen - cut <= sizeof(stackbuf))
			copy = stackbuf;
		if (copy != NULL) {
			memcpy(copy, sigfield, sig->braw_start);
			memcpy(copy + sig->braw_start, sigfield + sig->braw_end,
			    siglen - sig->braw_end);
			dkim_canon_header(sig->hcanon, copy, siglen - cut, dkim_sha_sink, &sha);
		}
		/* A field too long for the buffer hashes as nothing more, so
		 * the signature cannot verify. */
	}
	mbedtls_sha256_finish_ret(&sha, hash);
	mbedtls_sha256_free(&sha);
}

/* Body canonicalization ---------------------------------------------------- */

static void
dkim_body_out(struct dkim_body *b, const char *p, size_t n)
{
	if (b->sink != NULL)
		b->sink(b->arg, p, n);
	if (b->total < b->limit) {
		unsigned long long room = b->limit - b->total;
		size_t h = room < n ? (size_t)room : n;
		mbedtls_sha256_update_ret(&b->sha, (const unsigned char *)p, h);
	}
	b->total += n;
}

void
dkim_body_init(struct dkim_body *b, enum dkim_canon c, long long limit)
{
	memset(b, 0, sizeof(*b));
	b->canon = c;
	b->limit = limit < 0 ? ~0ULL : (unsigned long long)limit;
	mbedtls_sha256_init(&b->sha);
	mbedtls_sha256_starts_ret(&b->sha, 0);
}

/* The end of a line: an empty one is held back, since empty lines at the
 * end of the body are not hashed; trailing WSP is dropped (relaxed). */
static void
dkim_body_eol(struct dkim_body *b)
{
	b->wsp = 0;
	if (b->inl) {
		dkim_body_out(b, "\r\n", 2);
		b->inl = 0;
	} else
		b->nl++;
}

/* A run of n bytes of one line (no CR or LF among them). */
static void
dkim_body_bytes(struct dkim_body *b, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;

		if (b->canon == DKIM_RELAXED && dkim_wsp(p[i])) {
			while (i < n && dkim_wsp(p[i]))
				i++;
			b->wsp = 1;
			continue;
		}
		while (j < n && !(b->canon == DKIM_RELAXED && dkim_wsp(p[j])))
			j++;
		for (; b->nl > 0; b->nl--)
			dkim_body_out(b, "\r\n", 2);
		if (b->wsp)
			dkim_body_out(b, " ", 1);
		b->wsp = 0;
		b->inl = 1;
		dkim_body_out(b, p + i, j - i);
		i = j;
	}
}

void
dkim_body_update(struct dkim_body *b, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;

		if (b->cr) {
			b->cr = 0;
			if (p[i] == '\n') {
				dkim_body_eol(b);
				i++;
				continue;
			}
			dkim_body_bytes(b, "\r", 1);
		}
		while (j < n && p[j] != '\r' && p[j] != '\n')
			j++;
		dkim_body_bytes(b, p + i, j - i);
		if (j == n)
			break;
		if (p[j] == '\n')
			dkim_body_eol(b);
		else
			b->cr = 1;
		i = j + 1;
	}
}

void
dkim_body_finish(struct dkim_body *b, unsigned char hash[32])
{
	if (b->cr) {
		b->cr = 0;
		dkim_body_bytes(b, "\r", 1);
	}
	if (b->inl)
		dkim_body_eol(b); /* the last line had no CRLF: one is added */
	/* RFC 6376 3.4.3: an empty body is one CRLF under "simple". */
	if (b->total == 0 && b->canon == DKIM_SIMPLE)
		dkim_body_out(b, "\r\n", 2);
	mbedtls_sha256_finish_ret(&b->sha, hash);
	mbedtls_sha256_free(&b->sha);
}
