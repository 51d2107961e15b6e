/* fuzz_msg.h - what the targets of the message readers (fuzz_data,
 * fuzz_bdat) share: the message a reader stored (bytes, size, sticky
 * error), a reference sink that stores one byte at a time under the same
 * limit and bare CR/LF policy as smtp_data.h states them, and reading a
 * smtp_data's result out (taking its store leaves nothing behind). */
#ifndef LUAMTA_FUZZ_MSG_H
#define LUAMTA_FUZZ_MSG_H

#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "msgstore.h"
#include "smtp_data.h"

struct fuzz_msg {
	char *bytes; /* owned */
	size_t len;
	size_t size;
	enum smtp_data_err err;
};

struct fuzz_ref {
	struct fuzz_msg m;
	size_t max;
	enum smtp_bare bare;
};

/* A sink for at most n input bytes (FIX at most doubles them). */
static inline void
fuzz_ref_init(struct fuzz_ref *f, size_t n, size_t max, enum smtp_bare bare)
{
	memset(f, 0, sizeof(*f));
	f->max = max;
	f->bare = bare;
	f->m.bytes = malloc(2 * n + 1);
	FUZZ_CHECK(f->m.bytes != NULL);
}

static inline void
fuzz_ref_store(struct fuzz_ref *f, char c)
{
	if (f->m.err == SMTP_DATA_OK) {
		if (f->m.size < f->max)
			f->m.bytes[f->m.len++] = c;
		else
			f->m.err = SMTP_DATA_ERR_SIZE;
	}
	f->m.size++;
}

/* A bare LF or bare CR (c), per the policy. */
static inline void
fuzz_ref_bare(struct fuzz_ref *f, char c)
{
	switch (f->bare) {
	case SMTP_BARE_FIX:
		fuzz_ref_store(f, '\r');
		fuzz_ref_store(f, '\n');
		break;
	case SMTP_BARE_ALLOW:
		fuzz_ref_store(f, c);
		break;
	default:
		/* Counted as received, never stored. */
		if (f->m.err == SMTP_DATA_OK)
			f->m.err = SMTP_DATA_ERR_BARE;
		f->m.size++;
		break;
	}
}

/* d's result into m (a copy), then d taken and freed. */
static inline void
fuzz_msg_read(struct smtp_data *d, size_t max, struct fuzz_msg *m)
{
	const char *bytes;
	struct msgstore *ms;
	size_t len;

	m->err = smtp_data_error(d);
	m->size = smtp_data_size(d);
	bytes = smtp_data_bytes(d, &len);
	FUZZ_CHECK(bytes != NULL);
	FUZZ_CHECK(len <= max && len <= m->size);
	/* Without an error, size is exactly what was stored. */
	if (m->err == SMTP_DATA_OK)
		FUZZ_CHECK(len == m->size);
	m->len = len;
	m->bytes = malloc(len > 0 ? len : 1);
	FUZZ_CHECK(m->bytes != NULL);
	memcpy(m->bytes, bytes, len);
	/* Taking the store leaves nothing behind. */
	ms = smtp_data_take(d);
	FUZZ_CHECK(ms != NULL && msgstore_len(ms) == len);
	FUZZ_CHECK(smtp_data_take(d) == NULL && smtp_data_held(d) == 0);
	msgstore_free(ms);
	smtp_data_free(d);
}

static inline void
fuzz_msg_same(const struct fuzz_msg *a, const struct fuzz_msg *b)
{
	FUZZ_CHECK(a->err == b->err);
	FUZZ_CHECK(a->size == b->size);
	FUZZ_CHECK(a->len == b->len);
	FUZZ_CHECK(a->len == 0 || memcmp(a->bytes, b->bytes, a->len) == 0);
}

#endif
