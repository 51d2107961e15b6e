/* fuzz.h - what the libFuzzer targets in core/fuzz share: the entry point's
 * prototype and FUZZ_CHECK, an invariant check that NDEBUG cannot remove.
 * A failed check prints its condition and aborts, which libFuzzer (and
 * replay.c under the sanitizers) reports as a crash with the input saved. */
#ifndef LUAMTA_FUZZ_H
#define LUAMTA_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(                                                                   \
			    stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Reads input from the front: fuzz_take_byte() gives 0 once it is used up,
 * so every prefix of an input is a valid input too. */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t
fuzz_take_byte(struct fuzz_in *in)
{
	uint8_t c;

	if (in->n == 0)
		return 0;
	c = in->p[0];
	in->p++;
	in->n--;
	return c;
}

/* What the targets of the message readers (fuzz_data, fuzz_bdat) take
 * from the front of their input: the bare-LF policy as given (0..3) and as
 * the reader takes it (an unknown one is reject, 0), a size limit of one of
 * four magnitudes, and up to 7 piece sizes for feeding. */
struct fuzz_stream_opts {
	int bare, eff;
	size_t max;
	uint8_t cuts[7];
	size_t ncuts;
};

static inline void
fuzz_take_stream_opts(struct fuzz_in *in, struct fuzz_stream_opts *o, int fix, int allow)
{
	uint8_t b1, b2;
	size_t v;

	o->bare = fuzz_take_byte(in) & 3;
	o->eff = o->bare == fix || o->bare == allow ? o->bare : 0;
	b1 = fuzz_take_byte(in);
	b2 = fuzz_take_byte(in);
	v = ((size_t)(b1 & 0x3f) << 8) | b2;
	switch (b1 >> 6) {
	case 0:
		o->max = v % 64;
		break;
	case 1:
		o->max = v;
		break;
	case 2:
		o->max = (size_t)1 << 30;
		break;
	default:
		o->max = SIZE_MAX;
		break;
	}
	o->ncuts = fuzz_take_byte(in) % 8;
	for (size_t i = 0; i < o->ncuts; i++)
		o->cuts[i] = fuzz_take_byte(in);
}

#endif
