/* test_proxy_parse.c - the PROXY protocol header: version 1 lines and
 * version 2 headers built here byte by byte, their TLVs (SSL, authority,
 * CRC32C), every prefix of a valid header being "incomplete", and every
 * way a header is refused. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy_parse.h"
#include "test.h"

static const unsigned char sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
	0x54, 0x0a };

static int
parse(const void *p, size_t len, struct proxy_hdr *h, const char **why)
{
	return proxy_parse(p, len, h, why);
}

static int
parse_str(const char *s, struct proxy_hdr *h, const char **why)
{
	return parse(s, strlen(s), h, why);
}

static void
addr_str(const struct sockaddr_storage *ss, char *ip, size_t sz, int *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s->sin_addr, ip, (socklen_t)sz);
		*port = ntohs(s->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s->sin6_addr, ip, (socklen_t)sz);
		*port = ntohs(s->sin6_port);
	} else {
		strcpy(ip, "-");
		*port = -1;
	}
}

/* Every proper prefix is incomplete, the whole header is complete, and
 * bytes after it are not taken. */
static void
check_prefixes(const unsigned char *p, size_t len)
{
	struct proxy_hdr h;
	const char *why;
	unsigned char more[PROXY_MAX + 64];

	for (size_t i = 0; i < len; i++)
		CHECK_MSG(parse(p, i, &h, &why) == 0, "prefix %zu of %zu: %s", i, len, why);
	CHECK(parse(p, len, &h, &why) == (int)len);
	memcpy(more, p, len);
	memcpy(more + len, "EHLO x\r\n", 8);
	CHECK(parse(more, len + 8, &h, &why) == (int)len);
}

/* A version 2 header: command, family byte, addresses, then TLVs. */
struct v2 {
	unsigned char b[PROXY_MAX + 64];
	size_t len;
};

static void
v2_start(struct v2 *v, int cmd, int fam)
{
	memcpy(v->b, sig, 12);
	v->b[12] = (unsigned char)(0x20 | cmd);
	v->b[13] = (unsigned char)fam;
	v->len = 16;
}

static void
v2_add(struct v2 *v, const void *p, size_t n)
{
	memcpy(v->b + v->len, p, n);
	v->len += n;
}

static void
v2_tlv(struct v2 *v, int type, const void *p, size_t n)
{
	unsigned char t[3] = { (unsigned char)type, (unsigned char)(n >> 8), (unsigned char)n };

	v2_add(v, t, 3);
	v2_add(v, p, n);
}

static void
v2_end(struct v2 *v)
{
	size_t body = v->len - 16;

	v->b[14] = (unsigned char)(body >> 8);
	v->b[15] = (unsigned char)body;
}

static void
v2_inet(struct v2 *v)
{
	/* 192.0.2.7:4711 -> 198.51.100.1:25 */
	static const unsigned char a[12] = { 192, 0, 2, 7, 198, 51, 100, 1, 0x12, 0x67, 0, 25 };

	v2_start(v, 1, 0x11);
	v2_add(v, a, sizeof(a));
}

static void
test_v1(void)
{
	static const char *const bad[] = { "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
		"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "PROXY TCP4 ::1 ::1 1 2\r\n",
		"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY UNKNOWNX\r\n", "PROXY \r\n",
		"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "EHLO x\r\n",
		"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n" };
	struct proxy_hdr h;
	const char *why;
	char ip[INET6_ADDRSTRLEN], line[200];
	int port;
	const char *ok4 = "PROXY TCP4 192.0.2.7 198.51.100.1 4711 25\r\n";

	CHECK(parse_str(ok4, &h, &why) == (int)strlen(ok4));
	CHECK(h.version == 1 && !h.local && !h.ssl);
	addr_str(&h.src, ip, sizeof(ip), &port);
	CHECK_STR(ip, "192.0.2.7");
	CHECK(port == 4711);
	addr_str(&h.dst, ip, sizeof(ip), &port);
	CHECK_STR(ip, "198.51.100.1");
	CHECK(port == 25);
	check_prefixes((const unsigned char *)ok4, strlen(ok4));

	CHECK(parse_str("PROXY TCP6 2001:db8::7 2001:db8::1 0 65535\r\n", &h, &why) > 0);
	addr_str(&h.src, ip, sizeof(ip), &port);
	CHECK_STR(ip, "2001:db8::7");
	CHECK(port == 0);
	addr_str(&h.dst, ip, sizeof(ip), &port);
	CHECK(port == 65535);

	/* UNKNOWN: the rest of the line is ignored, the addresses stay the
	 * connection's. */
	CHECK(parse_str("PROXY UNKNOWN\r\n", &h, &why) == 15 && h.local);
	CHECK(parse_str("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", &h, &why) > 0 && h.local);

	/* A NUL inside an address must not cut it short (fuzzer's find). */
	CHECK(parse("PROXY TCP6 2001:db8::7 2001:db8::\0\0\0\0001 1 25\r\n", 41, &h, &why) == -1);
	CHECK(parse("PROXY TCP4 1.2.3.4\x80", 19, &h, &why) == -1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_MSG(
		    parse_str(bad[i], &h, &why) == -1 && why[0] != '\0', "accepted: %s", bad[i]);

	/* The longest line is 107 octets with its CRLF; one more is refused,
	 * and so is a line that never ends. */
	memset(line, 0, sizeof(line));
	strcpy(line, "PROXY UNKNOWN ");
	memset(line + 14, 'x', 107 - 14 - 2);
	strcpy(line + 105, "\r\n");
	CHECK(parse_str(line, &h, &why) == 107);
	memset(line + 14, 'x', 108 - 14 - 2);
	strcpy(line + 106, "\r\n");
	CHECK(parse_str(line, &h, &why) == -1);
	memset(line, 'x', sizeof(line) - 1);
	memcpy(line, "PROXY ", 6);
	line[sizeof(line) - 1] = '\0';
	CHECK(parse_str(line, &h, &why) == -1);
	CHECK(parse(line, 106, &h, &why) == 0);
}

static void
test_v2(void)
{
	struct v2 v;
	struct proxy_hdr h;
	const char *why;
	char ip[INET6_ADDRSTRLEN];
	int port;
	unsigned char ssl[64], crc[4] = { 0, 0, 0, 0 };
	unsigned sum;
	size_t n = 0;

	v2_inet(&v);
	v2_end(&v);
	CHECK(parse(v.b, v.len, &h, &why) == 28);
	CHECK(h.version == 2 && !h.local);
	addr_str(&h.src, ip, sizeof(ip), &port);
	CHECK_STR(ip, "192.0.2.7");
	CHECK(port == 4711);
	addr_str(&h.dst, ip, sizeof(ip), &port);
	CHECK_STR(ip, "198.51.100.1");
	CHECK(port == 25);
	check_prefixes(v.b, v.len);

	/* IPv6 */
	{
		unsigned char a[36];

		memset(a, 0, sizeof(a));
		inet_pton(AF_INET6, "2001:db8::7", a);
		inet_pton(AF_INET6, "2001:db8::1", a + 16);
		a[32] = 0x01;
		a[33] = 0x02;
		a[35] = 25;
		v2_start(&v, 1, 0x21);
		v2_add(&v, a, sizeof(a));
		v2_end(&v);
		CHECK(parse(v.b, v.len, &h, &why) == 52);
		addr_str(&h.src, ip, sizeof(ip), &port);
		CHECK_STR(ip, "2001:db8::7");
		CHECK(port == 258);
	}

	/* TLVs: SSL with version, cipher and CN sub-TLVs, authority, ALPN,
	 * an unknown type skipped, and a CRC32C over the whole header. */
	ssl[n++] = 0x01 | 0x02; /* PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN */
	memset(ssl + n, 0, 4);  /* verified */
	n += 4;
	ssl[n++] = 0x21;
	ssl[n++] = 0;
	ssl[n++] = 7;
	memcpy(ssl + n, "TLSv1.3", 7);
	n += 7;
	ssl[n++] = 0x23;
	ssl[n++] = 0;
	ssl[n++] = 22;
	memcpy(ssl + n, "TLS_AES_256_GCM_SHA384", 22);
	n += 22;
	ssl[n++] = 0x22;
	ssl[n++] = 0;
	ssl[n++] = 5;
	memcpy(ssl + n, "alice", 5);
	n += 5;
	v2_inet(&v);
	v2_tlv(&v, 0x20, ssl, n);
	v2_tlv(&v, 0x02, "mx.example.org", 14);
	v2_tlv(&v, 0x01, "smtp", 4);
	v2_tlv(&v, 0xE3, "custom", 6);
	v2_tlv(&v, 0x03, crc, 4);
	v2_end(&v);
	sum = proxy_crc32c(v.b, v.len);
	v.b[v.len - 4] = (unsigned char)(sum >> 24);
	v.b[v.len - 3] = (unsigned char)(sum >> 16);
	v.b[v.len - 2] = (unsigned char)(sum >> 8);
	v.b[v.len - 1] = (unsigned char)sum;
	CHECK(parse(v.b, v.len, &h, &why) == (int)v.len);
	CHECK(h.ssl && h.ssl_cert && h.ssl_verified);
	CHECK_STR(h.ssl_version, "TLSv1.3");
	CHECK_STR(h.ssl_cipher, "TLS_AES_256_GCM_SHA384");
	CHECK_STR(h.ssl_cn, "alice");
	CHECK_STR(h.authority, "mx.example.org");
	CHECK_STR(h.alpn, "smtp");
	check_prefixes(v.b, v.len);
	/* One changed byte anywhere fails the checksum. */
	v.b[20] ^= 1;
	CHECK(parse(v.b, v.len, &h, &why) == -1);
	CHECK_STR(why, "CRC32C mismatch");
	v.b[20] ^= 1;
	/* A certificate the proxy could not verify (the checksum TLV, last,
	 * is dropped as it no longer holds). */
	v.b[28 + 3 + 1] = 1;
	v.len -= 7;
	v2_end(&v);
	CHECK(parse(v.b, v.len, &h, &why) == (int)v.len);
	CHECK(h.ssl && h.ssl_cert && !h.ssl_verified);

	/* The CRC32C check value (RFC 3720 B.4: 32 zero bytes). */
	{
		unsigned char z[32];

		memset(z, 0, sizeof(z));
		CHECK(proxy_crc32c(z, sizeof(z)) == 0x8a9136aau);
		CHECK(proxy_crc32c((const unsigned char *)"123456789", 9) == 0xe3069283u);
	}

	/* LOCAL: addresses ignored, whatever their length. */
	v2_start(&v, 0, 0x00);
	v2_end(&v);
	CHECK(parse(v.b, v.len, &h, &why) == 16 && h.local);
	v2_start(&v, 0, 0x11);
	v2_add(&v, "\1\2\3", 3);
	v2_end(&v);
	CHECK(parse(v.b, v.len, &h, &why) == 19 && h.local);
	/* PROXY over UNSPEC or AF_UNIX: the connection's addresses stand. */
	v2_start(&v, 1, 0x00);
	v2_end(&v);
	CHECK(parse(v.b, v.len, &h, &why) == 16 && h.local);
	{
		unsigned char u[216];

		memset(u, 0, sizeof(u));
		v2_start(&v, 1, 0x31);
		v2_add(&v, u, sizeof(u));
		v2_end(&v);
		CHECK(parse(v.b, v.len, &h, &why) == (int)v.len && h.local);
	}

	/* Refused: another version, an unknown command, a datagram, an
	 * unknown family, addresses cut short, TLVs running past the end,
	 * a header longer than PROXY_MAX. */
	v2_inet(&v);
	v2_end(&v);
	v.b[12] = 0x11;
	CHECK(parse(v.b, v.len, &h, &why) == -1);
	v.b[12] = 0x22;
	CHECK(parse(v.b, v.len, &h, &why) == -1);
	v.b[12] = 0x21;
	v.b[13] = 0x12;
	CHECK(parse(v.b, v.len, &h, &why) == -1);
	v.b[13] = 0x41;
	CHECK(parse(v.b, v.len, &h, &why) == -1);
	v2_start(&v, 1, 0x11);
	v2_add(&v, "\1\2\3\4\5\6\7\x8", 8);
	v2_end(&v);
	CHECK(parse(v.b, v.len, &h, &why) == -1);
	v2_inet(&v);
	v2_add(&v, "\x02\x00\x09mx", 5);
	v2_end(&v);
	CHECK(parse(v.b, v.len, &h, &why) == -1);
	CHECK_STR(why, "truncated TLV");
	v2_inet(&v);
	v2_tlv(&v, 0x20, "\x01\0\0\0\0\x21\0\x09TLS", 11);
	v2_end(&v);
	CHECK(parse(v.b, v.len, &h, &why) == -1);
	v2_inet(&v);
	v2_tlv(&v, 0x20, "\x01\0\0", 3);
	v2_end(&v);
	CHECK(parse(v.b, v.len, &h, &why) == -1);
	v2_inet(&v);
	v2_tlv(&v, 0x03, "\0\0", 2);
	v2_end(&v);
	CHECK(parse(v.b, v.len, &h, &why) == -1);
	v2_start(&v, 1, 0x11);
	v.b[14] = (PROXY_MAX - 15) >> 8;
	v.b[15] = (PROXY_MAX - 15) & 0xff;
	CHECK(parse(v.b, 16, &h, &why) == -1);
	CHECK_STR(why, "header too long");
	/* A value too long to keep is left out; the header stands. */
	{
		static unsigned char big[PROXY_STR_MAX];

		memset(big, 'a', sizeof(big));
		v2_inet(&v);
		v2_tlv(&v, 0x02, big, sizeof(big));
		v2_end(&v);
		CHECK(parse(v.b, v.len, &h, &why) == (int)v.len);
		CHECK_STR(h.authority, "");
	}
	/* A near miss of the signature is no header at all. */
	v2_inet(&v);
	v2_end(&v);
	v.b[11] = 0x0b;
	CHECK(parse(v.b, v.len, &h, &why) == -1);
	CHECK(parse("\r\n\r\n\0\r\nQ", 8, &h, &why) == 0);
}

int
main(void)
{
	struct proxy_hdr h;
	const char *why;

	CHECK(parse("", 0, &h, &why) == 0);
	CHECK(parse("P", 1, &h, &why) == 0);
	CHECK(parse("\r", 1, &h, &why) == 0);
	CHECK(parse("X", 1, &h, &why) == -1);
	CHECK(parse("\x16\x03\x01", 3, &h, &why) == -1); /* a TLS ClientHello */
	test_v1();
	test_v2();
	return test_done("test_proxy_parse");
}
