/* xtext.c - RFC 3461 4's xtext, decoded and encoded (see xtext.h). */
#include "xtext.h"

#include <limits.h>

int
xtext_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
xtext_decode(const char *in, size_t n, char *out, size_t outsz)
{
	size_t o = 0;

	if (outsz == 0 || outsz > INT_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '+') {
			int h, l;

			if (n - i < 3 || (h = xtext_hexval(in[i + 1])) < 0 ||
			    (l = xtext_hexval(in[i + 2])) < 0 || (h == 0 && l == 0))
				return -1;
			c = (unsigned char)(h << 4 | l);
			i += 2;
		} else if (c == '=' || c < 33 || c > 126)
			return -1;
		if (o + 1 >= outsz)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}

int
xtext_encode(const char *in, size_t n, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	if (outsz == 0 || outsz > INT_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c >= 33 && c <= 126 && c != '+' && c != '=') {
			if (o + 1 >= outsz)
				return -1;
			out[o++] = (char)c;
			continue;
		}
		if (o + 3 >= outsz)
			return -1;
		out[o++] = '+';
		out[o++] = hex[c >> 4];
		out[o++] = hex[c & 15];
	}
	out[o] = '\0';
	return (int)o;
}
