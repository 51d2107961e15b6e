/* fuzz_proxy.c - libFuzzer target for the PROXY protocol header parser
 * (proxy_parse.h). Invariants: the result is -1, 0 or a length within the
 * input and PROXY_MAX; "incomplete" means no proper prefix was complete or
 * refused (the reader consumes an incomplete input whole); a complete header
 * parses to the same length and the same addresses with other bytes after
 * it; a header that names a client has an IPv4 or IPv6 address; every text
 * TLV stays NUL-terminated within its buffer. */
#include <string.h>

#include "fuzz.h"
#include "proxy_parse.h"

static void
check_hdr(const struct proxy_hdr *h)
{
	FUZZ_CHECK(h->version == 1 || h->version == 2);
	if (!h->local) {
		FUZZ_CHECK(h->src.ss_family == 2 /* AF_INET */ || h->src.ss_family == 10);
		FUZZ_CHECK(h->dst.ss_family == h->src.ss_family);
	}
	FUZZ_CHECK(memchr(h->ssl_version, '\0', sizeof(h->ssl_version)) != NULL);
	FUZZ_CHECK(memchr(h->ssl_cipher, '\0', sizeof(h->ssl_cipher)) != NULL);
	FUZZ_CHECK(memchr(h->ssl_cn, '\0', sizeof(h->ssl_cn)) != NULL);
	FUZZ_CHECK(memchr(h->authority, '\0', sizeof(h->authority)) != NULL);
	FUZZ_CHECK(memchr(h->alpn, '\0', sizeof(h->alpn)) != NULL);
	FUZZ_CHECK(!h->ssl_verified || h->ssl_cert);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct proxy_hdr h, again;
	static unsigned char more[PROXY_MAX + 16];
	const char *why;
	int rc, rc2;

	if (size > PROXY_MAX + 8)
		size = PROXY_MAX + 8;
	rc = proxy_parse(data, size, &h, &why);
	FUZZ_CHECK(rc >= -1 && rc <= (int)size && rc <= PROXY_MAX);
	FUZZ_CHECK(why != NULL);
	if (rc == -1) {
		FUZZ_CHECK(why[0] != '\0');
		return 0;
	}
	if (rc == 0) {
		/* Sampled: every prefix of an incomplete input is incomplete. */
		for (size_t i = 0; i < size; i += 1 + size / 16)
			FUZZ_CHECK(proxy_parse(data, i, &again, &why) == 0);
		return 0;
	}
	check_hdr(&h);
	FUZZ_CHECK(proxy_parse(data, (size_t)rc - 1, &again, &why) == 0);
	memcpy(more, data, (size_t)rc);
	memcpy(more + rc, "\x16\x03\x01\0\0EHLO", 9);
	rc2 = proxy_parse(more, (size_t)rc + 9, &again, &why);
	FUZZ_CHECK(rc2 == rc);
	FUZZ_CHECK(again.local == h.local && memcmp(&again.src, &h.src, sizeof(h.src)) == 0);
	return 0;
}
