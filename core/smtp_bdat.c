/* smtp_bdat.c - BDAT's argument and the framing of its chunk (RFC 3030).
 * Counting octets is all there is to it: the reader in raw mode applies
 * the message rules, so this file stays small and pure. */

#include "smtp_bdat.h"
#include "smtp_data.h"

int
smtp_bdat_parse(const char *arg, size_t len, uint64_t *size, int *last)
{
	uint64_t v = 0;
	size_t i = 0;
	int d;

	while (i < len && arg[i] >= '0' && arg[i] <= '9') {
		d = arg[i] - '0';
		if (v > (SMTP_BDAT_SIZE_MAX - (uint64_t)d) / 10)
			return -1;
		v = v * 10 + (uint64_t)d;
		i++;
	}
	if (i == 0)
		return -1;
	if (i == len) {
		*size = v;
		*last = 0;
		return 0;
	}
	if (arg[i] != ' ')
		return -1;
	while (i < len && arg[i] == ' ')
		i++;
	if (len - i != 4)
		return -1;
	/* ASCII case folding: only 'L' and 'l' fold to 'l', and so on. */
	for (size_t k = 0; k < 4; k++)
		if ((arg[i + k] | 0x20) != "last"[k])
			return -1;
	*size = v;
	*last = 1;
	return 0;
}

void
smtp_bdat_start(struct smtp_bdat *b, uint64_t size, int last)
{
	b->size = size;
	b->left = size;
	b->last = last;
}

size_t
smtp_bdat_feed(struct smtp_bdat *b, struct smtp_data *d, const char *p, size_t n, int *done)
{
	size_t take = (uint64_t)n < b->left ? n : (size_t)b->left;
	int unused;

	if (take > 0 && d != NULL)
		smtp_data_feed(d, p, take, &unused);
	b->left -= take;
	*done = b->left == 0;
	return take;
}
