/* smtp_bdat.h - BDAT (RFC 3030 CHUNKING): the command's argument and the
 * framing of its chunk. A chunk is exactly the octets its command counted,
 * read with no dot or line processing; what becomes of them (the bare
 * CR/LF policy, the size limit, the store) is the DATA reader's raw mode
 * (smtp_data_raw), so a message is the same bytes whichever way it came.
 * Input may arrive split at any byte. */
#ifndef LUAMTA_SMTP_BDAT_H
#define LUAMTA_SMTP_BDAT_H

#include <stddef.h>
#include <stdint.h>

struct smtp_data;

/* The largest chunk size accepted: 2^63 - 1 octets. */
#define SMTP_BDAT_SIZE_MAX ((uint64_t)INT64_MAX)

/* BDAT's argument as smtp_parse_verb() gives it (trimmed):
 * chunk-size [SP+ "LAST"], the size 1*DIGIT (leading zeros allowed) up to
 * SMTP_BDAT_SIZE_MAX, "LAST" in any case. 0, or -1 on anything else, in
 * which case *size and *last are untouched: the caller cannot know how
 * many octets follow. */
int smtp_bdat_parse(const char *arg, size_t len, uint64_t *size, int *last);

/* One chunk being read. */
struct smtp_bdat {
	uint64_t size; /* the chunk's octets, as its command said */
	uint64_t left; /* octets still to come */
	int last;      /* BDAT ... LAST */
};

/* Starts a chunk of size octets. */
void smtp_bdat_start(struct smtp_bdat *, uint64_t size, int last);

/* Takes the chunk's octets from the n bytes at p: they go to d (a reader
 * in raw mode), or nowhere when d is NULL (a refused chunk is read and
 * discarded). Returns how many it took (the bytes after the chunk belong
 * to the next command); *done is 1 once the chunk is complete, also when
 * it was already complete before the call (a chunk of size 0). */
size_t smtp_bdat_feed(struct smtp_bdat *, struct smtp_data *d, const char *p, size_t n, int *done);

#endif
