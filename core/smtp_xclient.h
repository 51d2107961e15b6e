/* smtp_xclient.h - the arguments of XCLIENT (Postfix's extension): which
 * client attributes a trusted proxy or test tool says the session has.
 * Pure: parsing only; the session decides who may use it and applies it. */
#ifndef LUAMTA_SMTP_XCLIENT_H
#define LUAMTA_SMTP_XCLIENT_H

#include <netinet/in.h>
#include <stddef.h>

#define SMTP_XCLIENT_KEYWORD "XCLIENT NAME ADDR PORT PROTO HELO LOGIN"

/* An attribute's value, xtext-decoded (RFC 3461 4): NULL when the command
 * did not name it. "[UNAVAILABLE]" and "[TEMPUNAVAIL]" are kept as they
 * are, for the caller to read as "none" (the one that is temporary may be
 * looked up again). */
struct smtp_xclient {
	char name[256];              /* the client's host name */
	char addr[INET6_ADDRSTRLEN]; /* IPv4, or IPv6 without the IPV6: tag */
	char helo[256];
	char login[256]; /* the SASL login name */
	int has_name, has_addr, has_helo, has_login;
	int port;  /* -1: not given */
	int proto; /* -1: not given; 0: SMTP; 1: ESMTP */
};

/* Parses "NAME=x ADDR=y ...". 0, or -1 with *why (a reply text for 501
 * 5.5.4): an unknown attribute, a bad value, a repeated one, none at all. */
int smtp_xclient_parse(const char *arg, size_t len, struct smtp_xclient *out, const char **why);

#endif
