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

#endif
