/* smtp_reply.c - formatting SMTP replies and bounding their size. */
#include "smtp_reply.h"

#include <string.h>

#include "smtp_parse.h"

int
smtp_reply_size_ok(size_t nlines, size_t textlen)
{
	if (nlines > SMTP_REPLY_MAX / SMTP_REPLY_LINE_EXTRA || textlen > SMTP_REPLY_MAX)
		return -1;
	/* Strictly less: formatting needs a byte for the terminating NUL. */
	return nlines * SMTP_REPLY_LINE_EXTRA + textlen < SMTP_REPLY_MAX ? 0 : -1;
}

size_t
smtp_reply_format(char *out, size_t outsz, int code, const char *enh, const char *text)
{
	char first_enh[16] = "";
	size_t o = 0;
	const char *line = text;

	if (enh != NULL) {
		size_t el = smtp_enhanced_len(text, strcspn(text, "\n"));
		if (el > 0 && el < sizeof(first_enh)) {
			memcpy(first_enh, text, el - 1);
			first_enh[el - 1] = '\0';
			enh = first_enh;
		}
	}
	if (code < 100 || code > 999)
		return 0;
	while (line != NULL) {
		const char *nl = strchr(line, '\n');
		size_t ll = nl != NULL ? (size_t)(nl - line) : strlen(line);
		size_t el = enh != NULL && smtp_enhanced_len(line, ll) == 0 ? strlen(enh) + 1 : 0;
		size_t r = 4 + el + ll + 2;
		char *p = out + o;

		/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with
		 * its CRLF, whatever the enhanced code added to it; and one
		 * byte stays free for the terminating NUL. */
		if (r > SMTP_REPLY_LINE_MAX || o + r >= outsz)
			return 0;
		*p++ = (char)('0' + code / 100);
		*p++ = (char)('0' + code / 10 % 10);
		*p++ = (char)('0' + code % 10);
		*p++ = nl != NULL ? '-' : ' ';
		if (el > 0) {
			memcpy(p, enh, el - 1);
			p += el - 1;
			*p++ = ' ';
		}
		memcpy(p, line, ll);
		p += ll;
		*p++ = '\r';
		*p++ = '\n';
		*p = '\0';
		o += r;
		line = nl != NULL ? nl + 1 : NULL;
	}
	return o;
}
