/* smtp_client_parse.c - replies, EHLO keywords, addresses and dot-stuffing
 * for the SMTP/LMTP client (smtp_client.c). Everything here works on bytes
 * a server or the queue handed over, so nothing trusts a length, a digit
 * or a terminator it has not checked. */
#include "smtp_client_parse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int
smtp_creply_parse_line(
    const char *line, size_t len, int *code, int *last, const char **text, size_t *textlen)
{
	if (len < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]))
		return -1;
	/* RFC 5321 4.2: the first digit is 2 to 5 for the replies a client
	 * acts on (1yz is not used in SMTP), the second 0 to 5. */
	if (line[0] < '2' || line[0] > '5' || line[1] > '5')
		return -1;
	*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (len == 3) {
		/* "250" alone: RFC 5321 4.2 allows a reply without text. */
		*last = 1;
		*text = line + 3;
		*textlen = 0;
		return 0;
	}
	if (line[3] != ' ' && line[3] != '-')
		return -1;
	*last = line[3] == ' ';
	*text = line + 4;
	*textlen = len - 4;
	return 0;
}

size_t
smtp_creply_enh_len(const char *text, size_t len, int cls)
{
	size_t i = 0, part, digits;

	if (len < 5 || (text[0] != '2' && text[0] != '4' && text[0] != '5'))
		return 0;
	if (cls != 0 && text[0] != '0' + cls)
		return 0;
	i = 1;
	/* Two more parts, each a dot and one to three digits. */
	for (part = 0; part < 2; part++) {
		if (i >= len || text[i] != '.')
			return 0;
		i++;
		for (digits = 0; i < len && is_digit(text[i]) && digits < 4; i++)
			digits++;
		if (digits == 0 || digits > 3)
			return 0;
	}
	if (i < len && text[i] != ' ')
		return 0;
	return i;
}

void
smtp_creply_init(struct smtp_creply *r)
{
	memset(r, 0, sizeof(*r));
}

/* Appends text to the reply's, '?' for anything a log or a DSN header
 * should not carry, cutting at the buffer's end. */
static void
creply_append(struct smtp_creply *r, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && r->len + 1 < sizeof(r->text); i++) {
		unsigned char c = (unsigned char)s[i];

		r->text[r->len++] = c < 0x20 || c > 0x7e ? '?' : (char)c;
	}
	r->text[r->len] = '\0';
}

int
smtp_creply_line(struct smtp_creply *r, const char *line, size_t len)
{
	const char *text;
	size_t tlen, elen;
	int code, last;

	if (r->done || smtp_creply_parse_line(line, len, &code, &last, &text, &tlen) == -1)
		return -1;
	if (r->nlines == 0) {
		r->code = code;
		if ((elen = smtp_creply_enh_len(text, tlen, code / 100)) > 0 &&
		    elen < sizeof(r->enh)) {
			memcpy(r->enh, text, elen);
			r->enh[elen] = '\0';
		}
	} else {
		if (code != r->code || r->nlines >= SMTP_CREPLY_LINES_MAX)
			return -1;
		/* "550-5.1.1 a" "550 5.1.1 b" reads as "5.1.1 a b". */
		elen = strlen(r->enh);
		if (elen > 0 && tlen >= elen && memcmp(text, r->enh, elen) == 0 &&
		    (tlen == elen || text[elen] == ' ')) {
			text += elen;
			tlen -= elen;
			while (tlen > 0 && *text == ' ')
				text++, tlen--;
		}
		if (tlen > 0 && r->len > 0)
			creply_append(r, " ", 1);
	}
	creply_append(r, text, tlen);
	r->nlines++;
	r->done = last;
	return last;
}

char *
smtp_creply_result_text(char *out, size_t outsz, int code, const char *text)
{
	if (outsz == 0)
		return out;
	if (smtp_creply_enh_len(text, strlen(text), code / 100) > 0)
		snprintf(out, outsz, "%s", text);
	else
		snprintf(out, outsz, "%d.0.0%s%s", code / 100, text[0] != '\0' ? " " : "", text);
	return out;
}

/* Whether text (len) starts with the keyword kw followed by the end, a
 * space or (for the old "AUTH=") an equals sign; sets *rest after it. */
static int
caps_keyword(const char *text, size_t len, const char *kw, const char **rest, size_t *restlen)
{
	size_t n = strlen(kw);

	if (len < n || strncasecmp(text, kw, n) != 0)
		return 0;
	if (len > n && text[n] != ' ' && text[n] != '=')
		return 0;
	*rest = text + n;
	*restlen = len - n;
	return 1;
}

void
smtp_caps_line(struct smtp_caps *caps, const char *text, size_t len)
{
	const char *rest, *w;
	size_t rlen, wlen;
	unsigned long long v;

	if (caps_keyword(text, len, "PIPELINING", &rest, &rlen))
		caps->pipelining = 1;
	else if (caps_keyword(text, len, "8BITMIME", &rest, &rlen))
		caps->eightbitmime = 1;
	else if (caps_keyword(text, len, "SMTPUTF8", &rest, &rlen))
		caps->smtputf8 = 1;
	else if (caps_keyword(text, len, "STARTTLS", &rest, &rlen))
		caps->starttls = 1;
	else if (caps_keyword(text, len, "DSN", &rest, &rlen))
		caps->dsn = 1;
	else if (caps_keyword(text, len, "CHUNKING", &rest, &rlen))
		caps->chunking = 1; /* known, not used: BDAT is not sent */
	else if (caps_keyword(text, len, "SIZE", &rest, &rlen)) {
		/* "SIZE" alone or "SIZE 0" states no limit (RFC 1870). */
		caps->size_offered = 1;
		while (rlen > 0 && *rest == ' ')
			rest++, rlen--;
		for (v = 0; rlen > 0 && is_digit(*rest); rest++, rlen--) {
			if (v > (~0ULL - 9) / 10)
				return; /* absurd: keep no limit */
			v = v * 10 + (unsigned long long)(*rest - '0');
		}
		if (rlen == 0)
			caps->size = v;
	} else if (caps_keyword(text, len, "AUTH", &rest, &rlen)) {
		caps->auth = 1;
		while (rlen > 0) {
			while (rlen > 0 && (*rest == ' ' || *rest == '='))
				rest++, rlen--;
			for (w = rest, wlen = 0; rlen > 0 && *rest != ' '; rest++, rlen--)
				wlen++;
			if (wlen == 5 && strncasecmp(w, "PLAIN", 5) == 0)
				caps->auth_plain = 1;
		}
	}
}

int
smtp_client_path_ok(const char *addr)
{
	const unsigned char *p;

	for (p = (const unsigned char *)addr; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
			return 0;
	return p - (const unsigned char *)addr <= 256;
}

void
smtp_stuff_init(struct smtp_stuff *st)
{
	st->bol = 1;
	st->cr = 0;
}

size_t
smtp_stuff(
    struct smtp_stuff *st, const char *in, size_t inlen, size_t *used, char *out, size_t outsz)
{
	size_t i = 0, o = 0;

	/* Each input byte makes at most two output bytes. */
	while (i < inlen && o + 2 <= outsz) {
		char c = in[i++];

		if (st->bol && c == '.')
			out[o++] = '.';
		if (c == '\n' && !st->cr)
			out[o++] = '\r';
		out[o++] = c;
		st->bol = c == '\n';
		st->cr = c == '\r';
	}
	*used = i;
	return o;
}

size_t
smtp_stuff_end(const struct smtp_stuff *st, char *out)
{
	const char *end = st->bol ? ".\r\n" : st->cr ? "\n.\r\n" : "\r\n.\r\n";
	size_t n = strlen(end);

	memcpy(out, end, n);
	return n;
}
