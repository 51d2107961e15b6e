/* test_dsn.c - table tests for the Received: field (its exact text and
 * folding, hostile HELO names), the hop count, dates, and the bounce: its
 * header, its three parts, the delivery-status groups, the boundary that
 * must not occur in the original, line endings and line lengths. */
#include <stdlib.h>
#include <string.h>

#include "dsn.h"
#include "test.h"

#define T0 1700000000 /* Tue, 14 Nov 2023 22:13:20 +0000 */

static void
test_date(void)
{
	static const struct {
		time_t t;
		const char *want;
	} t[] = {
		{ 0, "Thu, 1 Jan 1970 00:00:00 +0000" },
		{ T0, "Tue, 14 Nov 2023 22:13:20 +0000" },
		{ 951782400, "Tue, 29 Feb 2000 00:00:00 +0000" },
		{ 1798761599, "Thu, 31 Dec 2026 23:59:59 +0000" },
	};
	char buf[32];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		dsn_date(t[i].t, buf, sizeof(buf));
		CHECK_STR(buf, t[i].want);
	}
	/* A short buffer is cut, never overrun. */
	dsn_date(T0, buf, 4);
	CHECK_STR(buf, "Tue");
}

static void
test_received(void)
{
	static const struct {
		const char *helo, *rdns, *ip, *proto, *rcpt, *want;
	} t[] = {
		{ "mail.example.org", "mail.example.org", "192.0.2.1", "ESMTPS", "bob@example.net",
		    "Received: from mail.example.org (mail.example.org [192.0.2.1])\r\n"
		    "\tby mx.example.net (luamta) with ESMTPS id 0123456789ABCDEF\r\n"
		    "\tfor <bob@example.net>; Tue, 14 Nov 2023 22:13:20 +0000\r\n" },
		/* No rDNS name known, several recipients, HELO. */
		{ "[192.0.2.9]", NULL, "192.0.2.9", "SMTP", NULL,
		    "Received: from [192.0.2.9] (unknown [192.0.2.9]) by mx.example.net "
		    "(luamta)\r\n"
		    "\twith SMTP id 0123456789ABCDEF; Tue, 14 Nov 2023 22:13:20 +0000\r\n" },
		/* RFC 5321 4.1.3: IPv6 literals are tagged. */
		{ "a", "", "2001:db8::1", "ESMTPSA", "x@y",
		    "Received: from a (unknown [IPv6:2001:db8::1]) by mx.example.net (luamta)\r\n"
		    "\twith ESMTPSA id 0123456789ABCDEF for <x@y>; Tue, 14 Nov 2023 22:13:20 "
		    "+0000\r\n" },
		/* A client forging comments, a second clause or a date, and
		 * bytes outside printable ASCII: all become '?'. */
		{ "evil (fake) [1.2.3.4]; x\001\377", NULL, "192.0.2.1", "ESMTP", NULL,
		    "Received: from evil?\?fake?\?\?1.2.3.4?\?\?x?\? (unknown [192.0.2.1])\r\n"
		    "\tby mx.example.net (luamta) with ESMTP id 0123456789ABCDEF;\r\n"
		    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n" },
		/* Brackets survive only around a whole address literal. */
		{ "[1.2.3.4]]", "a(b).example", "192.0.2.1", "ESMTPA", "a b@c\r\n",
		    "Received: from [1.2.3.4?] (a?b?.example [192.0.2.1]) by mx.example.net\r\n"
		    "\t(luamta) with ESMTPA id 0123456789ABCDEF for <a?b@c?\?>;\r\n"
		    "\tTue, 14 Nov 2023 22:13:20 +0000\r\n" },
		{ NULL, NULL, "", "LMTP", NULL,
		    "Received: from unknown (unknown) by mx.example.net (luamta) with LMTP\r\n"
		    "\tid 0123456789ABCDEF; Tue, 14 Nov 2023 22:13:20 +0000\r\n" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *r = dsn_received(t[i].helo, t[i].rdns, t[i].ip, "mx.example.net", t[i].proto,
		    "0123456789ABCDEF", t[i].rcpt, T0);
		CHECK_MSG(r != NULL, "case %zu", i);
		if (r != NULL)
			CHECK_STR(r, t[i].want);
		free(r);
	}
}

/* Every CR is followed by LF and every LF preceded by CR; a line other
 * than a continuation line starts a field; lines stay within max octets. */
static int
lines_ok(const char *s, size_t len, size_t max)
{
	size_t col = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n'))
			return 0;
		if (s[i] == '\n') {
			if (i == 0 || s[i - 1] != '\r')
				return 0;
			col = 0;
		} else if (++col > max)
			return 0;
	}
	return len >= 2 && s[len - 2] == '\r' && s[len - 1] == '\n';
}

/* Long and hostile names: the field stays one field, lines under 998. */
static void
test_received_bounds(void)
{
	char helo[1200], rcpt[300], *r;
	size_t n;

	memset(helo, 'h', sizeof(helo) - 1);
	helo[sizeof(helo) - 1] = '\0';
	memset(rcpt, 'r', sizeof(rcpt) - 1);
	rcpt[sizeof(rcpt) - 1] = '\0';
	r = dsn_received(helo, helo, "192.0.2.1", "mx", "ESMTP", "Q", rcpt, T0);
	CHECK(r != NULL);
	if (r == NULL)
		return;
	n = strlen(r);
	CHECK(lines_ok(r, n, 997));
	/* The HELO name is cut to 255 octets; a path over 256 is left out. */
	CHECK(strstr(r, "from hhhh") != NULL);
	CHECK(strstr(r, helo + 1200 - 1 - 256) == NULL);
	CHECK(strstr(r, "for <") == NULL);
	/* No line starts without a fold but the first. */
	for (const char *p = strchr(r, '\n'); p != NULL && p[1] != '\0'; p = strchr(p + 1, '\n'))
		CHECK(p[1] == '\t');
	free(r);

	/* A 256-octet path is still given. */
	rcpt[256] = '\0';
	r = dsn_received("h", NULL, "192.0.2.1", "mx", "ESMTP", "Q", rcpt, T0);
	CHECK(r != NULL && strstr(r, "for <rrrr") != NULL);
	free(r);
}

static void
test_count(void)
{
	static const struct {
		const char *msg;
		int want;
	} t[] = {
		{ "", 0 },
		{ "Received: a\r\n\r\nReceived: body\r\n", 1 },
		{ "received: a\r\nRECEIVED: b\r\nReceived : c\r\nReceived\t: d\r\n", 4 },
		/* Continuation lines, other names, a name without a colon. */
		{ "Received: a\r\n Received: folded\r\n\tReceived: x\r\n", 1 },
		{ "X-Received: a\r\nReceivedX: b\r\nReceived\r\nReceived-SPF: pass\r\n", 0 },
		/* The body does not count, bare LF lines end the header too. */
		{ "Subject: x\n\nReceived: a\n", 0 },
		{ "Received: a\nReceived: b\n", 2 },
		{ "\r\nReceived: a\r\n", 0 },
		/* No line ending at all. */
		{ "Received: a", 1 },
		{ "Received:", 1 },
		{ "Received", 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		CHECK_MSG(
		    dsn_count_received(t[i].msg, strlen(t[i].msg)) == t[i].want, "case %zu", i);
	CHECK(dsn_count_received(NULL, 0) == 0);
	/* Only the first len bytes are the message. */
	CHECK(dsn_count_received("Received: a\r\nReceived: b\r\n", 13) == 1);
}

static int
count(const char *hay, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	int c = 0;

	for (size_t i = 0; i + k <= n; i++)
		if (memcmp(hay + i, needle, k) == 0)
			c++;
	return c;
}

/* The value of the header field name in the report's own header. */
static int
has_line(const char *s, const char *line)
{
	char want[512];

	snprintf(want, sizeof(want), "\r\n%s\r\n", line);
	return strstr(s, want) != NULL || strncmp(s, line, strlen(line)) == 0;
}

static const char original[] = "Received: from a by b; Tue, 14 Nov 2023 22:00:00 +0000\r\n"
			       "From: <alice@example.org>\r\n"
			       "Subject: hello\r\n"
			       "\r\n"
			       "Hi Bob.\r\n";

static void
test_build(void)
{
	static const struct dsn_rcpt rcpts[] = {
		{ "bob@example.net", DSN_FAILED, "5.1.1", "mx.example.net",
		    "550 5.1.1 <bob@example.net>: no such user", T0 + 60, NULL, 0 },
		{ "carol@example.net", DSN_FAILED, NULL, NULL, NULL, 0, NULL, 0 },
	};
	struct dsn_report r = {
		.reporting_mta = "mx.example.org",
		.sender = "alice@example.org",
		.queue_id = "0123456789ABCDEF",
		.arrival = T0,
		.rcpts = rcpts,
		.nrcpts = 2,
		.msg = original,
		.msglen = sizeof(original) - 1,
		.now = T0 + 3600,
		.message_id_seed = "0123456789ABCDEF.1700003600",
	};
	const char *status = "Content-Description: Delivery report\r\n"
			     "Content-Type: message/delivery-status\r\n"
			     "\r\n"
			     "Reporting-MTA: dns; mx.example.org\r\n"
			     "X-Luamta-Queue-ID: 0123456789ABCDEF\r\n"
			     "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
			     "\r\n"
			     "Final-Recipient: rfc822; bob@example.net\r\n"
			     "Action: failed\r\n"
			     "Status: 5.1.1\r\n"
			     "Remote-MTA: dns; mx.example.net\r\n"
			     "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: no such user\r\n"
			     "Last-Attempt-Date: Tue, 14 Nov 2023 22:14:20 +0000\r\n"
			     "\r\n"
			     "Final-Recipient: rfc822; carol@example.net\r\n"
			     "Action: failed\r\n"
			     "Status: 5.0.0\r\n"
			     "\r\n--";
	char b[128], *m, *p;
	size_t len;

	m = dsn_build(&r, &len);
	CHECK(m != NULL);
	if (m == NULL)
		return;
	CHECK(strlen(m) == len);
	CHECK(lines_ok(m, len, 997));
	CHECK(has_line(m, "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>"));
	CHECK(has_line(m, "To: <alice@example.org>"));
	CHECK(has_line(m, "Subject: Undelivered Mail Returned to Sender"));
	CHECK(has_line(m, "Date: Tue, 14 Nov 2023 23:13:20 +0000"));
	CHECK(has_line(m, "Message-ID: <0123456789ABCDEF-1700003600.dsn@mx.example.org>"));
	CHECK(has_line(m, "Auto-Submitted: auto-replied"));
	CHECK(has_line(m, "MIME-Version: 1.0"));
	CHECK(strstr(m, "Content-Transfer-Encoding") == NULL);
	/* The boundary: declared once, three parts and the close. */
	p = strstr(m, "boundary=\"");
	CHECK(p != NULL);
	if (p == NULL) {
		free(m);
		return;
	}
	snprintf(b, sizeof(b), "%.*s", (int)strcspn(p + 10, "\""), p + 10);
	CHECK(strncmp(b, "=_luamta_", 9) == 0);
	CHECK(strstr(m,
		  "Content-Type: multipart/report; report-type=delivery-status;\r\n\t"
		  "boundary=\"") != NULL);
	CHECK(count(m, len, b) == 5);
	p = strstr(m, "\r\n\r\n");
	CHECK(p != NULL &&
	    strncmp(p, "\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n--", 46) == 0);
	/* Part 1 names each recipient with what went wrong. */
	CHECK(strstr(m,
		  "\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
		  "This is the mail system at host mx.example.org.\r\n") != NULL);
	CHECK(strstr(m,
		  "\r\n<bob@example.net>: host mx.example.net said: 550 5.1.1 "
		  "<bob@example.net>: no\r\n\tsuch user\r\n") != NULL);
	CHECK(strstr(m, "\r\n<carol@example.net>: failed (5.0.0)\r\n") != NULL);
	/* Part 2 exactly. */
	CHECK(strstr(m, status) != NULL);
	/* Part 3: the original, unchanged, then the closing delimiter. */
	p = strstr(m, "Content-Type: message/rfc822\r\n\r\n");
	CHECK(p != NULL);
	if (p != NULL) {
		p += strlen("Content-Type: message/rfc822\r\n\r\n");
		CHECK(strncmp(p, original, sizeof(original) - 1) == 0);
		p += sizeof(original) - 1;
		CHECK(strncmp(p, "\r\n--", 4) == 0 && strncmp(p + 4, b, strlen(b)) == 0);
		CHECK(strcmp(p + 4 + strlen(b), "--\r\n") == 0);
	}
	free(m);

	/* The same report again is the same bytes (nothing random). */
	m = dsn_build(&r, &len);
	CHECK(m != NULL && strstr(m, b) != NULL);
	free(m);
}

/* A message carrying the boundary we would pick gets another one. */
static void
test_boundary_collision(void)
{
	static const struct dsn_rcpt rc = { "bob@example.net", DSN_FAILED, "5.1.1", NULL, NULL, 0,
		NULL, 0 };
	struct dsn_report r = {
		.reporting_mta = "mx",
		.sender = "a@b",
		.queue_id = "Q",
		.rcpts = &rc,
		.nrcpts = 1,
		.msg = "Subject: x\r\n\r\nhi\r\n",
		.msglen = 18,
		.now = T0,
		.message_id_seed = "seed",
	};
	char b1[128], b2[128], *evil, *m, *p;
	size_t len, elen;

	m = dsn_build(&r, &len);
	CHECK(m != NULL);
	if (m == NULL)
		return;
	p = strstr(m, "boundary=\"") + 10;
	snprintf(b1, sizeof(b1), "%.*s", (int)strcspn(p, "\""), p);
	free(m);

	/* The original holds the first boundary, as a delimiter line, and
	 * the second: the report uses a third. */
	evil = malloc(1024);
	CHECK(evil != NULL);
	if (evil == NULL)
		return;
	elen = (size_t)snprintf(evil, 1024, "Subject: x\r\n\r\n--%s\r\nx %s\r\n", b1, b1);
	r.msg = evil;
	r.msglen = elen;
	m = dsn_build(&r, &len);
	CHECK(m != NULL);
	if (m == NULL) {
		free(evil);
		return;
	}
	p = strstr(m, "boundary=\"") + 10;
	snprintf(b2, sizeof(b2), "%.*s", (int)strcspn(p, "\""), p);
	CHECK(strcmp(b1, b2) != 0);
	CHECK(count(m, len, b2) == 5);
	CHECK(count(evil, elen, b2) == 0);
	free(m);

	/* A diagnostic holding it counts too. */
	free(evil);
	r.msg = "Subject: x\r\n\r\nhi\r\n";
	r.msglen = 18;
	{
		struct dsn_rcpt rc2 = rc;
		rc2.diagnostic = b1;
		r.rcpts = &rc2;
		m = dsn_build(&r, &len);
		CHECK(m != NULL && count(m, len, b1) == 2);
		free(m);
	}
}

/* Subjects and actions follow the worst recipient; statuses that do not
 * fit their action are replaced by the generic code. */
static void
test_kinds(void)
{
	static const struct {
		enum dsn_action a1, a2;
		const char *status, *subject, *want_status;
	} t[] = {
		{ DSN_DELAYED, DSN_DELAYED, "4.4.1", "Delayed Mail (still being retried)",
		    "4.4.1" },
		{ DSN_DELIVERED, DSN_RELAYED, "2.1.5", "Successful Mail Delivery Report", "2.1.5" },
		{ DSN_DELIVERED, DSN_FAILED, "2.0.0", "Undelivered Mail Returned to Sender",
		    "2.0.0" },
		{ DSN_DELAYED, DSN_DELIVERED, "5.1.1", "Delayed Mail (still being retried)",
		    "4.0.0" },
		{ DSN_FAILED, DSN_FAILED, "5.1", "Undelivered Mail Returned to Sender", "5.0.0" },
		{ DSN_FAILED, DSN_FAILED, "5.1.1234", "Undelivered Mail Returned to Sender",
		    "5.0.0" },
		{ DSN_FAILED, DSN_FAILED, "5..1", "Undelivered Mail Returned to Sender", "5.0.0" },
		{ DSN_FAILED, DSN_FAILED, "5.1.1\r\nX: y", "Undelivered Mail Returned to Sender",
		    "5.0.0" },
		{ DSN_FAILED, DSN_FAILED, "5.123.999", "Undelivered Mail Returned to Sender",
		    "5.123.999" },
		{ DSN_FAILED, DSN_FAILED, "4.4.1", "Undelivered Mail Returned to Sender", "4.4.1" },
		{ DSN_FAILED, DSN_FAILED, "2.0.0", "Undelivered Mail Returned to Sender", "5.0.0" },
	};
	static const char *const action[] = { "failed", "delayed", "delivered", "relayed" };

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct dsn_rcpt rc[2] = {
			{ "a@x", t[i].a1, t[i].status, NULL, NULL, 0, NULL, 0 },
			{ "b@x", t[i].a2, NULL, NULL, NULL, 0, NULL, 0 },
		};
		struct dsn_report r = {
			.reporting_mta = "mx",
			.sender = "s@x",
			.queue_id = "Q",
			.rcpts = rc,
			.nrcpts = 2,
			.msg = "",
			.msglen = 0,
			.now = T0,
		};
		char want[128], *m;
		size_t len;

		m = dsn_build(&r, &len);
		CHECK_MSG(m != NULL, "case %zu", i);
		if (m == NULL)
			continue;
		snprintf(want, sizeof(want), "Subject: %s", t[i].subject);
		CHECK_MSG(has_line(m, want), "case %zu", i);
		snprintf(want, sizeof(want),
		    "\r\nFinal-Recipient: rfc822; a@x\r\nAction: %s\r\nStatus: %s\r\n",
		    action[t[i].a1], t[i].want_status);
		CHECK_MSG(strstr(m, want) != NULL, "case %zu: %s", i, want);
		snprintf(want, sizeof(want), "\r\nAction: %s\r\n", action[t[i].a2]);
		CHECK_MSG(count(m, len, want) >= 1, "case %zu", i);
		CHECK_MSG(lines_ok(m, len, 997), "case %zu", i);
		/* Without a seed the Message-ID comes from the queue id. */
		CHECK(has_line(m, "Message-ID: <Q-1700000000.dsn@mx>"));
		/* No arrival date, no last attempt: no such fields. */
		CHECK(strstr(m, "Arrival-Date") == NULL && strstr(m, "Last-Attempt") == NULL);
		free(m);
	}
}

/* Remote text: multi-line replies, controls, 8-bit bytes, and a reply
 * far over 998 octets, some of it one word. */
static void
test_hostile_text(void)
{
	char diag[6000], *m, *p;
	size_t len;
	struct dsn_rcpt rc = { "bob@example.net\r\nBcc: x@y", DSN_FAILED, "5.0.0", "mx(1)\r\n",
		NULL, 0, NULL, 0 };
	struct dsn_report r = {
		.reporting_mta = "mx",
		.sender = "a@b\r\nX-Evil: 1",
		.queue_id = "Q",
		.rcpts = &rc,
		.nrcpts = 1,
		.msg = "Subject: \xc3\xa9t\xc3\xa9\r\n\r\n\xff body\r\n",
		.now = T0,
	};

	r.msglen = strlen(r.msg);
	memset(diag, 'x', sizeof(diag));
	memcpy(diag, "550-5.1.1 first\r\n550-5.1.1 \001\377second ", 36);
	memset(diag + 2000, ' ', 1000);
	diag[sizeof(diag) - 1] = '\0';
	rc.diagnostic = diag;
	m = dsn_build(&r, &len);
	CHECK(m != NULL);
	if (m == NULL)
		return;
	/* Everything outside the original: CRLF and under 998. */
	p = strstr(m, "Content-Type: message/rfc822\r\n");
	CHECK(p != NULL);
	if (p != NULL)
		CHECK(lines_ok(m, (size_t)(p - m), 997));
	/* No field was forged, and the reply is one folded field. */
	CHECK(strstr(m, "\r\nBcc:") == NULL && strstr(m, "\r\nX-Evil:") == NULL);
	CHECK(has_line(m, "To: <a@b X-Evil: 1>"));
	CHECK(strstr(m, "\r\nDiagnostic-Code: smtp; 550-5.1.1 first 550-5.1.1 ?second\r\n\t") !=
	    NULL);
	CHECK(strstr(m, "\r\nRemote-MTA: dns; mx?1?\?\?\r\n") != NULL);
	/* The original is 8-bit: the report says so, part and whole. */
	CHECK(count(m, len, "Content-Transfer-Encoding: 8bit\r\n") == 2);
	CHECK(strstr(m, "\r\n\r\nSubject: \xc3\xa9t\xc3\xa9\r\n\r\n\xff body\r\n\r\n--") != NULL);
	free(m);
}

/* RET=HDRS: only the header, as text/rfc822-headers. */
static void
test_headers_only(void)
{
	static const struct dsn_rcpt rc = { "bob@example.net", DSN_FAILED, "5.1.1", NULL, NULL, 0,
		NULL, 0 };
	struct dsn_report r = {
		.reporting_mta = "mx",
		.sender = "a@b",
		.queue_id = "Q",
		.rcpts = &rc,
		.nrcpts = 1,
		.msg = original,
		.msglen = sizeof(original) - 1,
		.headers_only = 1,
		.now = T0,
	};
	char *m, *p;
	size_t len;

	m = dsn_build(&r, &len);
	CHECK(m != NULL);
	if (m == NULL)
		return;
	p = strstr(m,
	    "Content-Description: Undelivered Message Headers\r\n"
	    "Content-Type: text/rfc822-headers\r\n\r\n");
	CHECK(p != NULL);
	CHECK(strstr(m, "Hi Bob.") == NULL);
	CHECK(strstr(m, "Subject: hello\r\n\r\n--=_luamta_") != NULL);
	CHECK(strstr(m, "message/rfc822") == NULL);
	free(m);

	/* A message that is all header, and one that has none. */
	r.msg = "Subject: x\r\n";
	r.msglen = 12;
	m = dsn_build(&r, &len);
	CHECK(m != NULL && strstr(m, "\r\n\r\nSubject: x\r\n\r\n--=_luamta_") != NULL);
	free(m);
	r.msg = "\r\nbody\r\n";
	r.msglen = 8;
	m = dsn_build(&r, &len);
	CHECK(m != NULL && strstr(m, "text/rfc822-headers\r\n\r\n\r\n--=_luamta_") != NULL);
	CHECK(m != NULL && strstr(m, "body") == NULL);
	free(m);
}

/* RFC 3461's ENVID and ORCPT in the report (RFC 3464 2.2.1, 2.3.1), and
 * a success report. */
static void
test_envid_orcpt(void)
{
	static const struct dsn_rcpt rc[] = {
		{ "bob@example.net", DSN_RELAYED, NULL, NULL, NULL, 0, "rfc822;b+x@example.net",
		    0 },
		{ "eve@example.net", DSN_DELIVERED, NULL, NULL, NULL, 0, NULL, 0 },
	};
	struct dsn_report r = {
		.reporting_mta = "mx",
		.sender = "a@b",
		.queue_id = "Q",
		.rcpts = rc,
		.nrcpts = 2,
		.msg = "Subject: x\r\n\r\nbody\r\n",
		.msglen = 20,
		.headers_only = 1,
		.now = T0,
		.message_id_seed = "seed",
		.envid = "QQ+1\r\nBcc: x",
	};
	char *m;
	size_t len;

	m = dsn_build(&r, &len);
	CHECK(m != NULL);
	if (m == NULL)
		return;
	CHECK(strstr(m, "Subject: Successful Mail Delivery Report\r\n") != NULL);
	/* A line break in it cannot make a field of its own. */
	CHECK(
	    strstr(m, "\r\n\r\nOriginal-Envelope-Id: QQ+1 Bcc: x\r\nReporting-MTA: dns; mx\r\n") !=
	    NULL);
	CHECK(strstr(m,
		  "\r\n\r\nOriginal-Recipient: rfc822;b+x@example.net\r\n"
		  "Final-Recipient: rfc822; bob@example.net\r\nAction: relayed\r\n"
		  "Status: 2.0.0\r\n") != NULL);
	CHECK(strstr(
		  m, "\r\n\r\nFinal-Recipient: rfc822; eve@example.net\r\nAction: delivered\r\n") !=
	    NULL);
	CHECK(strstr(m,
		  "Content-Description: Message Headers\r\n"
		  "Content-Type: text/rfc822-headers\r\n") != NULL);
	CHECK(strstr(m, "body") == NULL);
	free(m);
}

/* A delay warning: Will-Retry-Until after the recipient's last attempt
 * (RFC 3464 2.3.9), and never in another kind of report; the notice says
 * it is a warning only. */
static void
test_will_retry_until(void)
{
	struct dsn_rcpt rc[2] = {
		{ "a@x", DSN_DELAYED, "4.4.1", NULL, "451 4.4.1 later", T0 - 10, NULL, T0 + 86400 },
		{ "b@x", DSN_DELAYED, NULL, NULL, NULL, 0, NULL, 0 },
	};
	struct dsn_report r = {
		.reporting_mta = "mx",
		.sender = "s@x",
		.queue_id = "Q",
		.rcpts = rc,
		.nrcpts = 2,
		.msg = "Subject: x\r\n\r\nhi\r\n",
		.msglen = 18,
		.headers_only = 1,
		.now = T0,
	};
	char date[32], want[128], *m;
	size_t len;

	dsn_date(T0 + 86400, date, sizeof(date));
	snprintf(want, sizeof(want), "\r\nWill-Retry-Until: %s\r\n", date);
	m = dsn_build(&r, &len);
	CHECK(m != NULL);
	if (m == NULL)
		return;
	CHECK(has_line(m, "Subject: Delayed Mail (still being retried)"));
	CHECK(count(m, len, want) == 1);
	/* In a's group, after its Last-Attempt-Date; b has none (0). */
	CHECK(count(m, len, "Will-Retry-Until") == 1);
	CHECK(strstr(m, "Last-Attempt-Date") < strstr(m, "Will-Retry-Until"));
	CHECK(strstr(m, "This is a warning only") != NULL);
	CHECK(strstr(m, "Content-Type: text/rfc822-headers") != NULL);
	free(m);
	/* Not in a failure report, even when given. */
	rc[0].action = rc[1].action = DSN_FAILED;
	m = dsn_build(&r, &len);
	CHECK(m != NULL && strstr(m, "Will-Retry-Until") == NULL &&
	    strstr(m, "warning only") == NULL);
	free(m);
}

int
main(void)
{
	test_date();
	test_received();
	test_received_bounds();
	test_count();
	test_build();
	test_boundary_collision();
	test_kinds();
	test_hostile_text();
	test_headers_only();
	test_envid_orcpt();
	test_will_retry_until();
	return test_done("test_dsn");
}
