/* config_net.c - the networks options name (--limit-exempt,
 * --xclient-trusted, --proxy-trusted): parsing "ADDR[/PREFIX],..." lists
 * and matching a client's address against them, as a socket address or as
 * text. Split from config.c, which owns the rest of the command line. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "config_int.h"

/* ::ffff:a.b.c.d, an IPv4 client on an IPv6 socket. */
static int
net_v4mapped(const unsigned char *a6)
{
	static const unsigned char prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(a6, prefix, sizeof(prefix)) == 0;
}

/* Zeroes the bits of addr (len bytes) past prefix. */
static void
net_mask(unsigned char *addr, size_t len, int prefix)
{
	for (size_t i = 0; i < len; i++) {
		int keep = prefix - (int)i * 8;

		if (keep <= 0)
			addr[i] = 0;
		else if (keep < 8)
			addr[i] &= (unsigned char)(0xff << (8 - keep));
	}
}

/* "192.0.2.0/24", "2001:db8::/32", or an address alone (one host).
 * Host bits past the prefix are refused rather than masked away:
 * "10.1.2.3/8" is likelier a typo than a wish to spare all of 10/8.
 * An IPv4-mapped IPv6 network is stored as the IPv4 one it names, since
 * that is how such clients are matched. */
static int
parse_net(const char *s, size_t len, struct config_net *n)
{
	char text[INET6_ADDRSTRLEN + 8];
	unsigned char masked[16];
	char *slash;
	int max;

	while (len > 0 && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= sizeof(text))
		return -1;
	memcpy(text, s, len);
	text[len] = '\0';
	if ((slash = strchr(text, '/')) != NULL)
		*slash++ = '\0';
	memset(n, 0, sizeof(*n));
	if (inet_pton(AF_INET, text, n->addr) == 1) {
		n->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, text, n->addr) == 1) {
		n->family = AF_INET6;
		max = 128;
	} else
		return -1;
	n->prefix = max;
	if (slash != NULL) {
		size_t digits = strspn(slash, "0123456789");

		if (digits == 0 || digits > 3 || slash[digits] != '\0' || atoi(slash) > max)
			return -1;
		n->prefix = atoi(slash);
	}
	memcpy(masked, n->addr, sizeof(masked));
	net_mask(masked, (size_t)max / 8, n->prefix);
	if (memcmp(masked, n->addr, (size_t)max / 8) != 0)
		return -1;
	if (n->family == AF_INET6 && n->prefix >= 96 && net_v4mapped(n->addr)) {
		memmove(n->addr, n->addr + 12, 4);
		memset(n->addr + 4, 0, 12);
		n->family = AF_INET;
		n->prefix -= 96;
	}
	return 0;
}

int
config_parse_nets(const char *opt, struct config_net *nets, int *n, const char *arg)
{
	const char *p = arg;

	if (strcmp(arg, "none") == 0) {
		*n = 0;
		return 0;
	}
	for (;;) {
		size_t len = strcspn(p, ",");

		if (*n == CONFIG_EXEMPT_MAX) {
			fprintf(stderr, "luamta: --%s: more than %d networks\n", opt,
			    CONFIG_EXEMPT_MAX);
			return -1;
		}
		if (parse_net(p, len, &nets[*n]) == -1) {
			fprintf(stderr,
			    "luamta: --%s: expected ADDR[/PREFIX] with no host bits "
			    "past the prefix, got '%.*s'\n",
			    opt, (int)len, p);
			return -1;
		}
		(*n)++;
		if (p[len] == '\0')
			return 0;
		p += len + 1;
	}
}

static int
nets_match(const struct config_net *nets, int count, int family, const unsigned char *addr)
{
	for (int i = 0; i < count; i++) {
		const struct config_net *n = &nets[i];
		unsigned char masked[16];
		size_t len = family == AF_INET ? 4 : 16;

		if (n->family != family)
			continue;
		memcpy(masked, addr, len);
		net_mask(masked, len, n->prefix);
		if (memcmp(masked, n->addr, len) == 0)
			return 1;
	}
	return 0;
}

/* Whether a socket address is in one of the lists; 0 for anything but
 * IPv4 and IPv6 (a pipe). */
static int
nets_match_sa(const struct config_net *nets, int count, const struct sockaddr *sa)
{
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;

	if (sa == NULL)
		return 0;
	/* Copied out: the caller's sockaddr may be a plain struct sockaddr
	 * buffer with no promise about its alignment. */
	if (sa->sa_family == AF_INET) {
		memcpy(&s4, sa, sizeof(s4));
		return nets_match(nets, count, AF_INET, (const unsigned char *)&s4.sin_addr);
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(&s6, sa, sizeof(s6));
		if (net_v4mapped(s6.sin6_addr.s6_addr))
			return nets_match(nets, count, AF_INET, s6.sin6_addr.s6_addr + 12);
		return nets_match(nets, count, AF_INET6, s6.sin6_addr.s6_addr);
	}
	return 0;
}

int
config_exempt(const struct config *cfg, const struct sockaddr *sa)
{
	return nets_match_sa(cfg->exempt, cfg->nexempt, sa);
}

int
config_proxy_trusted(const struct config *cfg, const struct sockaddr *sa)
{
	return nets_match_sa(cfg->proxy, cfg->nproxy, sa);
}

/* Whether a numeric address is in one of the lists; 0 when it does not
 * parse. */
static int
nets_match_ip(const struct config_net *nets, int count, const char *ip)
{
	struct in6_addr a6;
	unsigned char a4[4];

	if (ip == NULL)
		return 0;
	if (inet_pton(AF_INET, ip, a4) == 1)
		return nets_match(nets, count, AF_INET, a4);
	if (inet_pton(AF_INET6, ip, &a6) != 1)
		return 0;
	if (net_v4mapped(a6.s6_addr))
		return nets_match(nets, count, AF_INET, a6.s6_addr + 12);
	return nets_match(nets, count, AF_INET6, a6.s6_addr);
}

int
config_exempt_ip(const struct config *cfg, const char *ip)
{
	return nets_match_ip(cfg->exempt, cfg->nexempt, ip);
}

int
config_xclient_ip(const struct config *cfg, const char *ip)
{
	return nets_match_ip(cfg->xclient, cfg->nxclient, ip);
}
