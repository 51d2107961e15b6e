/* smtp_reply.c - formatting SMTP replies and bounding their size. */
#include "smtp_reply.h"

#include <stdio.h>
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
	while (line != NULL) {
		const char *nl = strchr(line, '\n');
		size_t ll = nl != NULL ? (size_t)(nl - line) : strlen(line);
		int r;

		if (o >= outsz)
			return 0;
		if (enh != NULL && smtp_enhanced_len(line, ll) == 0)
			r = snprintf(out + o, outsz - o, "%d%c%s %.*s\r\n", code,
			    nl != NULL ? '-' : ' ', enh, (int)ll, line);
		else
			r = snprintf(out + o, outsz - o, "%d%c%.*s\r\n", code,
			    nl != NULL ? '-' : ' ', (int)ll, line);
		/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with
		 * its CRLF, whatever the enhanced code added to it. */
		if (r < 0 || (size_t)r >= outsz - o || r > SMTP_REPLY_LINE_MAX)
			return 0;
		o += (size_t)r;
		line = nl != NULL ? nl + 1 : NULL;
	}
	return o;
}
