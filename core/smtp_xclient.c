/* smtp_xclient.c - parsing XCLIENT's attributes (see smtp_xclient.h).
 * Values are xtext: "+HH" stands for a byte, and what remains must be
 * printable ASCII other than '+' and '='. Decoded values must be
 * printable too (no control bytes, no spaces), so
 * nothing a proxy says can break a log line or a Received: field. */
#include "smtp_xclient.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xtext.h"

/* xtext-decodes v (n bytes) into out (outsz with the NUL). -1 on bad
 * xtext, a decoded byte that is not printable ASCII or is a space, or no
 * room. */
static int
xtext(const char *v, size_t n, char *out, size_t outsz)
{
	if (xtext_decode(v, n, out, outsz) < 0)
		return -1;
	for (const char *c = out; *c != '\0'; c++)
		if ((unsigned char)*c < 33 || (unsigned char)*c > 126)
			return -1;
	return 0;
}

static int
special(const char *v)
{
	return strcmp(v, "[UNAVAILABLE]") == 0 || strcmp(v, "[TEMPUNAVAIL]") == 0;
}

int
smtp_xclient_parse(const char *arg, size_t len, struct smtp_xclient *out, const char **why)
{
	const char *p = arg, *end = arg + len;
	int any = 0;

	memset(out, 0, sizeof(*out));
	out->port = -1;
	out->proto = -1;
	*why = "Syntax: XCLIENT attribute=value [attribute=value ...]";
	while (p < end) {
		const char *k, *eq, *v;
		size_t klen, vlen;
		char val[256];

		while (p < end && *p == ' ')
			p++;
		if (p == end)
			break;
		for (k = p; p < end && *p != ' '; p++)
			;
		if ((eq = memchr(k, '=', (size_t)(p - k))) == NULL)
			return -1;
		klen = (size_t)(eq - k);
		v = eq + 1;
		vlen = (size_t)(p - v);
		if (xtext(v, vlen, val, sizeof(val)) == -1) {
			*why = "Bad XCLIENT attribute value";
			return -1;
		}
		any = 1;
		*why = "Bad XCLIENT attribute value";
		if (klen == 4 && strncasecmp(k, "NAME", 4) == 0) {
			if (out->has_name++)
				goto repeated;
			snprintf(out->name, sizeof(out->name), "%s", val);
		} else if (klen == 4 && strncasecmp(k, "ADDR", 4) == 0) {
			unsigned char buf[16];
			const char *a = val;

			if (out->has_addr++)
				goto repeated;
			if (!special(val)) {
				if (strncasecmp(a, "IPV6:", 5) == 0) {
					a += 5;
					if (inet_pton(AF_INET6, a, buf) != 1)
						return -1;
				} else if (inet_pton(AF_INET, a, buf) != 1)
					return -1;
			}
			if (strlen(a) >= sizeof(out->addr))
				return -1;
			memcpy(out->addr, a, strlen(a) + 1);
		} else if (klen == 4 && strncasecmp(k, "PORT", 4) == 0) {
			char *e;
			long n;

			if (out->port != -1)
				goto repeated;
			if (special(val)) {
				out->port = 0;
				continue;
			}
			n = strtol(val, &e, 10);
			if (val[0] < '0' || val[0] > '9' || *e != '\0' || n < 0 || n > 65535)
				return -1;
			out->port = (int)n;
		} else if (klen == 5 && strncasecmp(k, "PROTO", 5) == 0) {
			if (out->proto != -1)
				goto repeated;
			if (strcasecmp(val, "SMTP") == 0)
				out->proto = 0;
			else if (strcasecmp(val, "ESMTP") == 0)
				out->proto = 1;
			else
				return -1;
		} else if (klen == 4 && strncasecmp(k, "HELO", 4) == 0) {
			if (out->has_helo++)
				goto repeated;
			snprintf(out->helo, sizeof(out->helo), "%s", val);
		} else if (klen == 5 && strncasecmp(k, "LOGIN", 5) == 0) {
			if (out->has_login++)
				goto repeated;
			snprintf(out->login, sizeof(out->login), "%s", val);
		} else {
			*why = "Bad XCLIENT attribute name";
			return -1;
		}
	}
	if (!any)
		return -1;
	return 0;
repeated:
	*why = "Repeated XCLIENT attribute";
	return -1;
}
