/* proxy_parse.c - the PROXY protocol header, versions 1 and 2 (see
 * proxy_parse.h). Strict: a header either is exactly what the protocol
 * allows or the connection is refused, because everything after it is
 * believed (the client's address decides limits and policy). */
#include "proxy_parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const unsigned char v2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55,
	0x49, 0x54, 0x0a };
static const char v1_sig[] = "PROXY ";

enum {
	PP2_CMD_LOCAL = 0x0,
	PP2_CMD_PROXY = 0x1,
	PP2_FAM_UNSPEC = 0x0,
	PP2_FAM_INET = 0x1,
	PP2_FAM_INET6 = 0x2,
	PP2_FAM_UNIX = 0x3,
	PP2_TRANS_UNSPEC = 0x0,
	PP2_TRANS_STREAM = 0x1,
	PP2_TYPE_ALPN = 0x01,
	PP2_TYPE_AUTHORITY = 0x02,
	PP2_TYPE_CRC32C = 0x03,
	PP2_TYPE_SSL = 0x20,
	PP2_SUBTYPE_SSL_VERSION = 0x21,
	PP2_SUBTYPE_SSL_CN = 0x22,
	PP2_SUBTYPE_SSL_CIPHER = 0x23,
	PP2_CLIENT_SSL = 0x01,
	PP2_CLIENT_CERT_CONN = 0x02,
	PP2_CLIENT_CERT_SESS = 0x04,
};

/* Bitwise and table-free: a header is checked once per connection, and
 * only when the proxy sends the TLV. */
unsigned
proxy_crc32c(const unsigned char *p, size_t len)
{
	unsigned crc = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return crc ^ 0xffffffffu;
}

static void
set_str(char *dst, const unsigned char *v, size_t len)
{
	if (len >= PROXY_STR_MAX) {
		dst[0] = '\0';
		return;
	}
	memcpy(dst, v, len);
	dst[len] = '\0';
}

static void
set_in(struct sockaddr_storage *ss, const unsigned char *addr, const unsigned char *port)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	memcpy(&sin.sin_addr, addr, 4);
	memcpy(&sin.sin_port, port, 2);
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, &sin, sizeof(sin));
}

static void
set_in6(struct sockaddr_storage *ss, const unsigned char *addr, const unsigned char *port)
{
	struct sockaddr_in6 sin6;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	memcpy(&sin6.sin6_addr, addr, 16);
	memcpy(&sin6.sin6_port, port, 2);
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, &sin6, sizeof(sin6));
}

/* PP2_TYPE_SSL's value: client flags, verify result, then sub-TLVs. */
static int
parse_ssl(const unsigned char *v, size_t len, struct proxy_hdr *h, const char **why)
{
	size_t i = 5;

	if (len < 5) {
		*why = "short SSL TLV";
		return -1;
	}
	h->ssl = (v[0] & PP2_CLIENT_SSL) != 0;
	h->ssl_cert = (v[0] & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS)) != 0;
	h->ssl_verified = h->ssl_cert && v[1] == 0 && v[2] == 0 && v[3] == 0 && v[4] == 0;
	while (i < len) {
		size_t vlen;

		if (len - i < 3) {
			*why = "truncated SSL sub-TLV";
			return -1;
		}
		vlen = (size_t)v[i + 1] << 8 | v[i + 2];
		if (len - i - 3 < vlen) {
			*why = "truncated SSL sub-TLV";
			return -1;
		}
		if (v[i] == PP2_SUBTYPE_SSL_VERSION)
			set_str(h->ssl_version, v + i + 3, vlen);
		else if (v[i] == PP2_SUBTYPE_SSL_CN)
			set_str(h->ssl_cn, v + i + 3, vlen);
		else if (v[i] == PP2_SUBTYPE_SSL_CIPHER)
			set_str(h->ssl_cipher, v + i + 3, vlen);
		i += 3 + vlen;
	}
	return 0;
}

/* The TLVs after the addresses. Types this server has no use for (NOOP,
 * UNIQUE_ID, NETNS, the custom and experimental ranges) are skipped. */
static int
parse_tlvs(const unsigned char *hdr, size_t hlen, size_t at, struct proxy_hdr *h, const char **why)
{
	while (at < hlen) {
		size_t vlen;
		const unsigned char *v;

		if (hlen - at < 3) {
			*why = "truncated TLV";
			return -1;
		}
		vlen = (size_t)hdr[at + 1] << 8 | hdr[at + 2];
		if (hlen - at - 3 < vlen) {
			*why = "truncated TLV";
			return -1;
		}
		v = hdr + at + 3;
		switch (hdr[at]) {
		case PP2_TYPE_ALPN:
			set_str(h->alpn, v, vlen);
			break;
		case PP2_TYPE_AUTHORITY:
			set_str(h->authority, v, vlen);
			break;
		case PP2_TYPE_CRC32C: {
			unsigned char copy[PROXY_MAX];
			unsigned want;

			if (vlen != 4) {
				*why = "bad CRC32C TLV";
				return -1;
			}
			want = (unsigned)v[0] << 24 | (unsigned)v[1] << 16 | (unsigned)v[2] << 8 |
			    v[3];
			memcpy(copy, hdr, hlen);
			memset(copy + (v - hdr), 0, 4);
			if (proxy_crc32c(copy, hlen) != want) {
				*why = "CRC32C mismatch";
				return -1;
			}
			break;
		}
		case PP2_TYPE_SSL:
			if (parse_ssl(v, vlen, h, why) == -1)
				return -1;
			break;
		default:
			break;
		}
		at += 3 + vlen;
	}
	return 0;
}

static int
parse_v2(const unsigned char *buf, size_t len, struct proxy_hdr *h, const char **why)
{
	size_t body, hlen, alen;
	int cmd, fam, trans;

	if (len < 16)
		return 0;
	if ((buf[12] >> 4) != 2) {
		*why = "unsupported version";
		return -1;
	}
	cmd = buf[12] & 0xf;
	fam = buf[13] >> 4;
	trans = buf[13] & 0xf;
	body = (size_t)buf[14] << 8 | buf[15];
	hlen = 16 + body;
	if (hlen > PROXY_MAX) {
		*why = "header too long";
		return -1;
	}
	if (cmd != PP2_CMD_LOCAL && cmd != PP2_CMD_PROXY) {
		*why = "unknown command";
		return -1;
	}
	if (len < hlen)
		return 0;
	h->version = 2;
	h->local = 1;
	alen = 0;
	if (cmd == PP2_CMD_PROXY) {
		if (trans != PP2_TRANS_STREAM &&
		    !(fam == PP2_FAM_UNSPEC && trans == PP2_TRANS_UNSPEC)) {
			*why = "not a stream";
			return -1;
		}
		switch (fam) {
		case PP2_FAM_UNSPEC:
			break;
		case PP2_FAM_INET:
			alen = 12;
			break;
		case PP2_FAM_INET6:
			alen = 36;
			break;
		case PP2_FAM_UNIX:
			alen = 216;
			break;
		default:
			*why = "unknown address family";
			return -1;
		}
		if (body < alen) {
			*why = "addresses truncated";
			return -1;
		}
		if (fam == PP2_FAM_INET) {
			set_in(&h->src, buf + 16, buf + 24);
			set_in(&h->dst, buf + 20, buf + 26);
			h->local = 0;
		} else if (fam == PP2_FAM_INET6) {
			set_in6(&h->src, buf + 16, buf + 48);
			set_in6(&h->dst, buf + 32, buf + 50);
			h->local = 0;
		}
	} else {
		/* LOCAL (a health check of the proxy's own): the addresses,
		 * if any, are to be ignored, and their length is not ours to
		 * check; TLVs after them cannot be found, so none are read. */
		return (int)hlen;
	}
	if (parse_tlvs(buf, hlen, 16 + alen, h, why) == -1)
		return -1;
	return (int)hlen;
}

/* One decimal port: 0 or no leading zero, at most 65535. */
static int
v1_port(const char *p, size_t len, unsigned char out[2])
{
	unsigned long v = 0;

	if (len == 0 || len > 5 || (len > 1 && p[0] == '0'))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v > 65535)
		return -1;
	out[0] = (unsigned char)(v >> 8);
	out[1] = (unsigned char)v;
	return 0;
}

/* "PROXY TCP4 SRC DST SPORT DPORT\r\n", single spaces, numeric addresses
 * of the family named, or "PROXY UNKNOWN" and anything up to CRLF. */
static int
parse_v1(const unsigned char *buf, size_t len, struct proxy_hdr *h, const char **why)
{
	const char *line = (const char *)buf;
	const char *f[5];
	size_t flen[5], end, at;
	int af, nf = 0, found = 0;
	char tmp[INET6_ADDRSTRLEN];
	unsigned char a[2][16], port[2][2];

	for (end = 0; end + 1 < len && end + 2 <= PROXY_V1_MAX; end++)
		if (buf[end] == '\r' && buf[end + 1] == '\n') {
			found = 1;
			break;
		}
	if (!found) {
		/* No CRLF yet: too long past the bound, else incomplete unless
		 * it holds what can never be part of the line (anything but
		 * printable US-ASCII, save a CR at the very end). */
		if (len >= PROXY_V1_MAX) {
			*why = "header too long";
			return -1;
		}
		for (size_t i = 0; i < len; i++)
			if ((buf[i] < 0x20 || buf[i] > 0x7e) && !(buf[i] == '\r' && i + 1 == len)) {
				*why = "bad version 1 line";
				return -1;
			}
		return 0;
	}
	/* Printable US-ASCII only: a NUL would end an address early for
	 * inet_pton, and the rest cannot occur in a valid line. */
	for (size_t i = 0; i < end; i++)
		if (buf[i] < 0x20 || buf[i] > 0x7e) {
			*why = "bad version 1 line";
			return -1;
		}
	h->version = 1;
	at = sizeof(v1_sig) - 1;
	if (end - at >= 7 && memcmp(line + at, "UNKNOWN", 7) == 0 &&
	    (end - at == 7 || line[at + 7] == ' ')) {
		h->local = 1;
		return (int)(end + 2);
	}
	if (end - at < 4 ||
	    (memcmp(line + at, "TCP4 ", 5) != 0 && memcmp(line + at, "TCP6 ", 5) != 0)) {
		*why = "unknown version 1 protocol";
		return -1;
	}
	af = line[at + 3] == '4' ? AF_INET : AF_INET6;
	at += 5;
	while (at < end && nf < 5) {
		size_t n = 0;

		while (at + n < end && line[at + n] != ' ')
			n++;
		f[nf] = line + at;
		flen[nf++] = n;
		at += n;
		if (at < end)
			at++; /* the one space */
		if (n == 0)
			break;
	}
	if (nf != 4 || at != end || line[end - 1] == ' ') {
		*why = "bad version 1 fields";
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		if (flen[i] >= sizeof(tmp)) {
			*why = "bad version 1 address";
			return -1;
		}
		memcpy(tmp, f[i], flen[i]);
		tmp[flen[i]] = '\0';
		if (inet_pton(af, tmp, a[i]) != 1) {
			*why = "bad version 1 address";
			return -1;
		}
		if (v1_port(f[i + 2], flen[i + 2], port[i]) == -1) {
			*why = "bad version 1 port";
			return -1;
		}
	}
	if (af == AF_INET) {
		set_in(&h->src, a[0], port[0]);
		set_in(&h->dst, a[1], port[1]);
	} else {
		set_in6(&h->src, a[0], port[0]);
		set_in6(&h->dst, a[1], port[1]);
	}
	h->local = 0;
	return (int)(end + 2);
}

int
proxy_parse(const unsigned char *buf, size_t len, struct proxy_hdr *h, const char **why)
{
	size_t n;

	*why = "";
	memset(h, 0, sizeof(*h));
	n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
	if (memcmp(buf, v2_sig, n) == 0)
		return len < sizeof(v2_sig) ? 0 : parse_v2(buf, len, h, why);
	n = len < sizeof(v1_sig) - 1 ? len : sizeof(v1_sig) - 1;
	if (memcmp(buf, v1_sig, n) == 0)
		return len < sizeof(v1_sig) - 1 ? 0 : parse_v1(buf, len, h, why);
	*why = "no PROXY header";
	return -1;
}
