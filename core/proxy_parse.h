/* proxy_parse.h - pure: the PROXY protocol header (HAProxy's text
 * version 1 and binary version 2) a load balancer sends before the
 * client's first byte, with the addresses of the connection it accepted
 * and, in version 2, the TLS facts of that connection as TLVs.
 *
 * The parser is incremental in one strong sense: while a header is
 * incomplete, every byte seen so far belongs to it. A reader can therefore
 * peek at what the socket holds and consume either all of it (incomplete)
 * or exactly the header (complete), and never takes a byte of what follows,
 * which may be a TLS ClientHello. */
#ifndef LUAMTA_PROXY_PARSE_H
#define LUAMTA_PROXY_PARSE_H

#include <stddef.h>
#include <sys/socket.h>

#define PROXY_V1_MAX  107  /* the longest version 1 line, CRLF included */
#define PROXY_MAX     1040 /* 16 octets of version 2 header and 1024 of addresses and TLVs */
#define PROXY_STR_MAX 256  /* a TLV's text and its NUL; longer values are left out */

struct proxy_hdr {
	int version; /* 1 or 2 */
	/* LOCAL (version 2), UNKNOWN (version 1) or an address family this
	 * server does not serve from (AF_UNIX): the connection's own
	 * addresses stand, the header said nothing about a client. */
	int local;
	struct sockaddr_storage src; /* the client (AF_INET or AF_INET6) */
	struct sockaddr_storage dst; /* the address it connected to */
	/* Version 2 TLVs, empty strings when absent. */
	int ssl;          /* PP2_CLIENT_SSL: the client spoke TLS to the proxy */
	int ssl_cert;     /* it presented a certificate (this connection or session) */
	int ssl_verified; /* the proxy verified it (verify field 0) */
	char ssl_version[PROXY_STR_MAX];
	char ssl_cipher[PROXY_STR_MAX];
	char ssl_cn[PROXY_STR_MAX];    /* the certificate's subject Common Name */
	char authority[PROXY_STR_MAX]; /* SNI (or the host name the client asked for) */
	char alpn[PROXY_STR_MAX];
};

/* Parses the header at the start of buf[0..len). Returns its length once
 * it is complete and valid (then *h is filled), 0 while it is incomplete
 * (every byte of buf belongs to it), -1 when it is invalid or longer than
 * PROXY_MAX; *why then names the problem (a static string). */
int proxy_parse(const unsigned char *buf, size_t len, struct proxy_hdr *h, const char **why);

/* CRC-32C (Castagnoli), as the PP2_TYPE_CRC32C TLV carries it. */
unsigned proxy_crc32c(const unsigned char *p, size_t len);

#endif
