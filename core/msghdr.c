/* msghdr.c - the header section, field by field (see msghdr.h). */
#include "msghdr.h"

#include <string.h>
#include <strings.h>

/* The end of the line at p (the LF, or end), and where the next begins. */
static const char *
line_end(const char *p, const char *end, const char **next)
{
	const char *lf = memchr(p, '\n', (size_t)(end - p));

	*next = lf != NULL ? lf + 1 : end;
	if (lf == NULL)
		return end;
	return lf > p && lf[-1] == '\r' ? lf - 1 : lf;
}

int
msghdr_next(const char *buf, size_t len, size_t *pos, struct msghdr_field *f)
{
	const char *end = buf + len, *p = buf + *pos;

	while (p < end) {
		const char *start = p, *next, *eol = line_end(p, end, &next), *colon, *n;
		int ok = 1;

		if (eol == p)
			return 0; /* the empty line ends the header section */
		/* The field runs on over its continuation lines. */
		while (next < end && (*next == ' ' || *next == '\t'))
			eol = line_end(next, end, &next);
		colon = memchr(start, ':', (size_t)(eol - start));
		if (colon == NULL || colon == start || *start == ' ' || *start == '\t')
			ok = 0;
		/* The name ends at the colon, blanks before it aside (the
		 * obsolete syntax of RFC 5322 4.5 that readers still honour). */
		n = colon;
		while (ok && n > start && (n[-1] == ' ' || n[-1] == '\t'))
			n--;
		for (const char *c = start; ok && c < n; c++)
			ok = *c > 32 && *c < 127;
		p = next;
		if (!ok || n == start)
			continue;
		f->name = start;
		f->nlen = (size_t)(n - start);
		f->value = colon + 1;
		f->vlen = (size_t)(eol - colon - 1);
		f->off = (size_t)(start - buf);
		f->len = (size_t)(next - start);
		/* Only a line end seen before the buffer's end, and a byte
		 * after it that is not a continuation, close the field. */
		f->complete = next < end;
		*pos = (size_t)(next - buf);
		return 1;
	}
	*pos = len;
	return 0;
}

int
msghdr_is(const struct msghdr_field *f, const char *name)
{
	return strlen(name) == f->nlen && strncasecmp(f->name, name, f->nlen) == 0;
}

size_t
msghdr_unfold(const struct msghdr_field *f, char *out, size_t outsz)
{
	size_t o = 0, i = 0;

	while (i < f->vlen && (f->value[i] == ' ' || f->value[i] == '\t'))
		i++;
	for (; i < f->vlen; i++) {
		char c = f->value[i];
		if (c == '\r' || c == '\n')
			continue;
		if (o + 1 < outsz)
			out[o] = c;
		o++;
	}
	if (outsz > 0)
		out[o < outsz ? o : outsz - 1] = '\0';
	return o;
}
