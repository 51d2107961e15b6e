/* dsn.c - the bounce (an RFC 3464 delivery status inside an RFC 6522
 * multipart/report), the Received: trace field (RFC 5321 4.4) and the hop
 * count. Pure: text in, text out. Every line written here stays under 998
 * octets (RFC 5322 2.1.1) whatever a remote server or client sent; the
 * original message is attached as it came. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dsn.h"

#define DSN_FOLD_AT  76   /* RFC 5322 2.1.1: lines SHOULD stay within 78 with CRLF */
#define DSN_WORD_MAX 900  /* a longer run without a space is cut: 998 is a MUST */
#define DSN_NAME_MAX 255  /* RFC 1035 2.3.4: HELO names, rDNS names, our host */
#define DSN_PATH_MAX 256  /* RFC 5321 4.5.3.1.3 */
#define DSN_ADDR_MAX 512  /* an address we report; longer is cut (not ours) */
#define DSN_TEXT_MAX 4096 /* a diagnostic; a remote reply may be many lines */
#define DSN_SEED_MAX 64

/* A growing output whose first allocation failure sticks, so the builders
 * below write straight through and check once at the end. */
struct out {
	char *p;
	size_t len, cap;
	int err;
};

static void
out_add(struct out *o, const char *s, size_t n)
{
	char *np;
	size_t cap;

	if (o->err || n == 0)
		return;
	if (n > o->cap - o->len) {
		cap = o->cap != 0 ? o->cap : 512;
		while (cap - o->len < n) {
			if (cap > SIZE_MAX / 2) {
				o->err = 1;
				return;
			}
			cap *= 2;
		}
		if ((np = realloc(o->p, cap)) == NULL) {
			o->err = 1;
			return;
		}
		o->p = np;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void
out_str(struct out *o, const char *s)
{
	out_add(o, s, strlen(s));
}

static void
out_char(struct out *o, char c)
{
	out_add(o, &c, 1);
}

/* Ends o as a C string and hands it over, or frees it after a failure. */
static char *
out_finish(struct out *o, size_t *len)
{
	out_char(o, '\0');
	if (o->err) {
		free(o->p);
		return NULL;
	}
	if (len != NULL)
		*len = o->len - 1;
	return o->p;
}

/* Free text from elsewhere (a remote reply, an address): control bytes
 * (CR and LF among them) become spaces, which out_fold() then treats as
 * folding points; 8-bit bytes become '?', since the report's fields are
 * ASCII. At most max bytes are taken. */
static void
out_text(struct out *o, const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 32 || c == 127)
			out_char(o, ' ');
		else if (c > 127)
			out_char(o, '?');
		else
			out_char(o, (char)c);
	}
}

/* A name inside the Received: field (a HELO argument, an rDNS name, an
 * address) where a space, a byte outside printable ASCII, or a character
 * that would open or close a comment (RFC 5322 3.2.2) or end the clauses
 * before the date (';') would let a client forge the field's structure:
 * each becomes '?'. Brackets are kept only around an address literal
 * ("[192.0.2.1]") when literal is set. */
static void
out_name(struct out *o, const char *s, int literal)
{
	size_t n = strnlen(s, DSN_NAME_MAX);
	int lit = literal && n >= 2 && s[0] == '[' && s[n - 1] == ']';

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 32 || c >= 127 || strchr("()\\;", c) != NULL)
			c = '?';
		else if ((c == '[' || c == ']') && !(lit && (i == 0 || i == n - 1)))
			c = '?';
		out_char(o, (char)c);
	}
}

/* In the unfolded text given to out_fold(), a space that must not become
 * a fold ("by host", the date): written as a space. Never in what the
 * sanitisers above let through. */
#define DSN_NBSP '\001'

/* Writes one header field (or a line of text) from its unfolded form,
 * "Name: words...", folded before a space (the CRLF and a tab take its
 * place) so that lines stay within 78 octets where the words allow, and
 * ending in CRLF. Runs of spaces count as one; a word longer than
 * DSN_WORD_MAX is cut, so no line reaches 998 octets. */
static void
out_fold(struct out *o, const char *s, size_t n)
{
	size_t col = 0, i = 0, words = 0;

	while (i < n) {
		size_t w, keep;

		while (i < n && s[i] == ' ')
			i++;
		if (i == n)
			break;
		for (w = i; w < n && s[w] != ' ';)
			w++;
		keep = w - i < DSN_WORD_MAX ? w - i : DSN_WORD_MAX;
		/* The field name keeps its first word beside it. */
		if (words > 1 && col + 1 + keep > DSN_FOLD_AT) {
			out_add(o, "\r\n\t", 3);
			col = 1;
		} else if (col > 0) {
			out_char(o, ' ');
			col++;
		}
		for (size_t k = i; k < i + keep; k++)
			out_char(o, s[k] == DSN_NBSP ? ' ' : s[k]);
		col += keep;
		words++;
		i = w;
	}
	out_add(o, "\r\n", 2);
}

/* Folds what the scratch buffer holds into o and empties it. */
static void
out_flush_field(struct out *o, struct out *field)
{
	if (field->err)
		o->err = 1;
	else
		out_fold(o, field->p != NULL ? field->p : "", field->len);
	field->len = 0;
}

void
dsn_date(time_t t, char *buf, size_t size)
{
	static const char *const wday[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
		"Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	if (size == 0)
		return;
	if (gmtime_r(&t, &tm) == NULL || tm.tm_year < 0 || tm.tm_year > 9999 - 1900) {
		t = 0;
		gmtime_r(&t, &tm);
	}
	snprintf(buf, size, "%s, %d %s %04d %02d:%02d:%02d +0000", wday[tm.tm_wday % 7], tm.tm_mday,
	    mon[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* The Received: field ---------------------------------------------------- */

char *
dsn_received(const char *helo, const char *rdns, const char *ip, const char *hostname,
    const char *proto, const char *qid, const char *rcpt, time_t now)
{
	struct out field = { 0 }, o = { 0 };
	char date[32];

	/* The clauses of RFC 5321 4.4 are each kept on one line. */
	out_str(&field, "Received: from\001");
	out_name(&field, helo != NULL && *helo != '\0' ? helo : "unknown", 1);
	out_str(&field, " (");
	out_name(&field, rdns != NULL && *rdns != '\0' ? rdns : "unknown", 0);
	if (ip != NULL && *ip != '\0') {
		/* RFC 5321 4.1.3: an IPv6 address literal carries its tag. */
		out_str(&field, strchr(ip, ':') != NULL ? "\001[IPv6:" : "\001[");
		out_name(&field, ip, 0);
		out_char(&field, ']');
	}
	out_str(&field, ") by\001");
	out_name(&field, hostname != NULL && *hostname != '\0' ? hostname : "localhost", 0);
	out_str(&field, " (luamta) with\001");
	out_name(&field, proto != NULL ? proto : "SMTP", 0);
	if (qid != NULL && *qid != '\0') {
		out_str(&field, " id\001");
		out_name(&field, qid, 0);
	}
	/* A path longer than RFC 5321 allows is left out rather than cut
	 * into another address. */
	if (rcpt != NULL && strnlen(rcpt, DSN_PATH_MAX + 1) <= DSN_PATH_MAX) {
		out_str(&field, " for\001<");
		for (const char *p = rcpt; *p != '\0'; p++)
			out_char(&field, (unsigned char)*p <= 32 || *p == 127 ? '?' : *p);
		out_char(&field, '>');
	}
	out_str(&field, "; ");
	dsn_date(now, date, sizeof(date));
	for (char *p = date; *p != '\0'; p++)
		out_char(&field, *p == ' ' ? DSN_NBSP : *p);
	out_flush_field(&o, &field);
	free(field.p);
	return out_finish(&o, NULL);
}

/* The header section: where it ends, what it holds -------------------------- */

/* The length of the header section of msg: up to and including the line
 * ending of its last field, without the empty line. All of msg when there
 * is no empty line. */
static size_t
header_len(const char *msg, size_t len)
{
	const char *p = msg, *end = msg + len, *eol;

	if (msg == NULL)
		return 0;
	while (p < end) {
		eol = memchr(p, '\n', (size_t)(end - p));
		if (*p == '\n' || (*p == '\r' && eol == p + 1))
			return (size_t)(p - msg);
		if (eol == NULL)
			break;
		p = eol + 1;
	}
	return len;
}

int
dsn_count_received(const char *msg, size_t len)
{
	const char *p = msg, *end, *eol, *q;
	int n = 0;

	if (msg == NULL)
		return 0;
	end = msg + header_len(msg, len);
	for (; p < end; p = eol + 1) {
		eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		/* A continuation line (starting with WSP) is not a field. */
		if (eol - p <= 8 || strncasecmp(p, "Received", 8) != 0)
			continue;
		/* RFC 5322 4.5.3: the obsolete syntax allows WSP before ':'. */
		for (q = p + 8; q < eol && (*q == ' ' || *q == '\t');)
			q++;
		if (q < eol && *q == ':' && n < INT_MAX)
			n++;
	}
	return n;
}

/* The report --------------------------------------------------------------- */

static const char *
dsn_action_str(enum dsn_action a)
{
	switch (a) {
	case DSN_FAILED:
		return "failed";
	case DSN_DELAYED:
		return "delayed";
	case DSN_DELIVERED:
		return "delivered";
	case DSN_RELAYED:
		return "relayed";
	}
	return "failed";
}

/* RFC 3463 status-code: class "." subject "." detail, the class matching
 * the action; anything else is replaced by the generic code. A failure
 * may have class 4 too: a recipient still deferred when its time in the
 * queue ran out keeps the status of its last temporary failure (as
 * Postfix reports it), which tells the sender more than 5.0.0. */
static const char *
dsn_status(const struct dsn_rcpt *rc)
{
	const char *s = rc->status, *dflt;
	char cls;
	int dots = 0, digits = 0;

	switch (rc->action) {
	case DSN_DELAYED:
		dflt = "4.0.0", cls = '4';
		break;
	case DSN_DELIVERED:
	case DSN_RELAYED:
		dflt = "2.0.0", cls = '2';
		break;
	default:
		dflt = "5.0.0", cls = '5';
		break;
	}
	if (s == NULL || (s[0] != cls && !(cls == '5' && s[0] == '4')) || s[1] != '.')
		return dflt;
	for (const char *p = s + 2; *p != '\0'; p++) {
		if (*p == '.') {
			if (digits == 0 || ++dots > 1)
				return dflt;
			digits = 0;
		} else if (*p >= '0' && *p <= '9') {
			if (++digits > 3)
				return dflt;
		} else
			return dflt;
	}
	return dots == 1 && digits > 0 ? s : dflt;
}

/* Whether needle occurs in the n bytes at hay. */
static int
occurs(const char *hay, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	const char *p = hay, *end = hay + n;

	if (hay == NULL || k == 0)
		return 0;
	while ((size_t)(end - p) >= k &&
	    (p = memchr(p, needle[0], (size_t)(end - p) - k + 1)) != NULL) {
		if (memcmp(p, needle, k) == 0)
			return 1;
		p++;
	}
	return 0;
}

static int
occurs_str(const char *s, const char *needle)
{
	return s != NULL && strstr(s, needle) != NULL;
}

/* Whether the boundary appears in anything the report quotes. The parts we
 * write ourselves cannot make it: it holds no space or '?' and its "=_"
 * cannot begin a quoted-printable or base64 sequence. */
static int
dsn_boundary_used(const struct dsn_report *r, const char *b, size_t attached)
{
	if (occurs(r->msg, attached, b) || occurs_str(r->sender, b) || occurs_str(r->envid, b) ||
	    occurs_str(r->reporting_mta, b) || occurs_str(r->queue_id, b) ||
	    occurs_str(r->message_id_seed, b))
		return 1;
	for (size_t i = 0; i < r->nrcpts; i++)
		if (occurs_str(r->rcpts[i].address, b) || occurs_str(r->rcpts[i].orcpt, b) ||
		    occurs_str(r->rcpts[i].remote_mta, b) || occurs_str(r->rcpts[i].diagnostic, b))
			return 1;
	return 0;
}

/* FNV-1a: a boundary that differs from report to report, stable for a
 * given seed (the tests can predict it). */
static uint64_t
dsn_hash(const char *s, uint64_t h)
{
	for (; s != NULL && *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* A name of ours in the report (MAILER-DAEMON@..., Reporting-MTA). */
static void
out_host(struct out *o, const char *host)
{
	out_name(o, host != NULL && *host != '\0' ? host : "localhost", 0);
}

static void
dsn_write_header(struct out *o, struct out *f, const struct dsn_report *r, const char *subject,
    const char *boundary, int eightbit)
{
	char date[32];
	const char *seed = r->message_id_seed;
	char fallback[DSN_SEED_MAX];

	out_str(o, "From: Mail Delivery System <MAILER-DAEMON@");
	out_host(o, r->reporting_mta);
	out_str(o, ">\r\n");
	out_str(f, "To: <");
	out_text(f, r->sender != NULL ? r->sender : "", DSN_ADDR_MAX);
	out_char(f, '>');
	out_flush_field(o, f);
	out_str(o, "Subject: ");
	out_str(o, subject);
	out_str(o, "\r\n");
	dsn_date(r->now, date, sizeof(date));
	out_str(o, "Date: ");
	out_str(o, date);
	out_str(o, "\r\n");
	/* RFC 5322 3.6.4: the left part is a dot-atom: the seed keeps its
	 * letters and digits, the rest become '-'. */
	if (seed == NULL || *seed == '\0') {
		snprintf(fallback, sizeof(fallback), "%s.%lld",
		    r->queue_id != NULL ? r->queue_id : "", (long long)r->now);
		seed = fallback;
	}
	out_str(o, "Message-ID: <");
	for (size_t i = 0; seed[i] != '\0' && i < DSN_SEED_MAX; i++) {
		char c = seed[i];
		int alnum =
		    (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		out_char(o, alnum ? c : '-');
	}
	out_str(o, ".dsn@");
	out_host(o, r->reporting_mta);
	out_str(o, ">\r\n");
	/* RFC 3834 5: an automatic reply, which no responder answers. */
	out_str(o, "Auto-Submitted: auto-replied\r\n");
	out_str(o, "MIME-Version: 1.0\r\n");
	out_str(o, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"");
	out_str(o, boundary);
	out_str(o, "\"\r\n");
	/* RFC 2045 6.4: a multipart holding 8-bit data says so. */
	if (eightbit)
		out_str(o, "Content-Transfer-Encoding: 8bit\r\n");
	out_str(o, "\r\nThis is a MIME-encapsulated message.\r\n");
}

static void
dsn_write_notice(struct out *o, struct out *f, const struct dsn_report *r, int failed, int delayed)
{
	out_str(o,
	    "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
	out_str(f, "This is the mail system at host ");
	out_host(f, r->reporting_mta);
	out_char(f, '.');
	out_flush_field(o, f);
	out_str(o, "\r\n");
	if (failed)
		out_str(o,
		    "Your message could not be delivered to one or more of its\r\n"
		    "recipients, listed below: the mail system has given up on them.\r\n"
		    "The delivery report attached has the details.\r\n");
	else if (delayed)
		out_str(o,
		    "This is a warning only: there is no need to send your message\r\n"
		    "again. It has not been delivered yet to the recipients listed\r\n"
		    "below; the mail system keeps trying, and you will hear from it\r\n"
		    "again if it finally gives up.\r\n");
	else
		out_str(o,
		    "Your message was delivered, or passed on to a system that does\r\n"
		    "not report delivery, for the recipients listed below, as you\r\n"
		    "asked.\r\n");
	for (size_t i = 0; i < r->nrcpts; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];

		out_str(o, "\r\n");
		out_char(f, '<');
		out_text(f, rc->address != NULL ? rc->address : "", DSN_ADDR_MAX);
		out_str(f, ">: ");
		if (rc->remote_mta != NULL && rc->diagnostic != NULL) {
			out_str(f, "host ");
			out_text(f, rc->remote_mta, DSN_NAME_MAX);
			out_str(f, " said: ");
		}
		if (rc->diagnostic != NULL)
			out_text(f, rc->diagnostic, DSN_TEXT_MAX);
		else {
			out_str(f, dsn_action_str(rc->action));
			out_str(f, " (");
			out_str(f, dsn_status(rc));
			out_char(f, ')');
		}
		out_flush_field(o, f);
	}
}

static void
dsn_write_status(struct out *o, struct out *f, const struct dsn_report *r)
{
	char date[32];

	out_str(o,
	    "Content-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n");
	/* RFC 3464 2.2.1: the ENVID of RFC 3461 4.4, first. */
	if (r->envid != NULL && *r->envid != '\0') {
		out_str(f, "Original-Envelope-Id: ");
		out_text(f, r->envid, DSN_ADDR_MAX);
		out_flush_field(o, f);
	}
	out_str(o, "Reporting-MTA: dns; ");
	out_host(o, r->reporting_mta);
	out_str(o, "\r\n");
	if (r->queue_id != NULL && *r->queue_id != '\0') {
		out_str(f, "X-Luamta-Queue-ID: ");
		out_text(f, r->queue_id, DSN_NAME_MAX);
		out_flush_field(o, f);
	}
	if (r->arrival != 0) {
		dsn_date(r->arrival, date, sizeof(date));
		out_str(o, "Arrival-Date: ");
		out_str(o, date);
		out_str(o, "\r\n");
	}
	for (size_t i = 0; i < r->nrcpts; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];

		/* RFC 3464 2.1: each recipient's fields are a group of their
		 * own, after an empty line. */
		out_str(o, "\r\n");
		/* RFC 3464 2.3.1: the ORCPT of RFC 3461 4.2, as given. */
		if (rc->orcpt != NULL && *rc->orcpt != '\0') {
			out_str(f, "Original-Recipient: ");
			out_text(f, rc->orcpt, DSN_ADDR_MAX);
			out_flush_field(o, f);
		}
		out_str(f, "Final-Recipient: rfc822; ");
		out_text(f, rc->address != NULL ? rc->address : "", DSN_ADDR_MAX);
		out_flush_field(o, f);
		out_str(o, "Action: ");
		out_str(o, dsn_action_str(rc->action));
		out_str(o, "\r\nStatus: ");
		out_str(o, dsn_status(rc));
		out_str(o, "\r\n");
		if (rc->remote_mta != NULL && *rc->remote_mta != '\0') {
			out_str(o, "Remote-MTA: dns; ");
			out_name(o, rc->remote_mta, 1);
			out_str(o, "\r\n");
		}
		if (rc->diagnostic != NULL && *rc->diagnostic != '\0') {
			out_str(f, "Diagnostic-Code: smtp; ");
			out_text(f, rc->diagnostic, DSN_TEXT_MAX);
			out_flush_field(o, f);
		}
		if (rc->last_attempt != 0) {
			dsn_date(rc->last_attempt, date, sizeof(date));
			out_str(o, "Last-Attempt-Date: ");
			out_str(o, date);
			out_str(o, "\r\n");
		}
		/* RFC 3464 2.3.9: only in a delayed report. */
		if (rc->action == DSN_DELAYED && rc->will_retry_until != 0) {
			dsn_date(rc->will_retry_until, date, sizeof(date));
			out_str(o, "Will-Retry-Until: ");
			out_str(o, date);
			out_str(o, "\r\n");
		}
	}
}

char *
dsn_build(const struct dsn_report *r, size_t *len)
{
	struct out o = { 0 }, f = { 0 };
	char boundary[48];
	const char *subject;
	size_t attached = r->msg != NULL ? r->msglen : 0;
	int failed = 0, delayed = 0, eightbit = 0;
	uint64_t h;

	for (size_t i = 0; i < r->nrcpts; i++) {
		failed |= r->rcpts[i].action == DSN_FAILED;
		delayed |= r->rcpts[i].action == DSN_DELAYED;
	}
	subject = failed ? "Undelivered Mail Returned to Sender" :
	    delayed      ? "Delayed Mail (still being retried)" :
			   "Successful Mail Delivery Report";
	if (r->headers_only)
		attached = header_len(r->msg, attached);
	for (size_t i = 0; i < attached && !eightbit; i++)
		eightbit = (unsigned char)r->msg[i] > 127;
	/* RFC 2046 5.1.1: the boundary must not occur in the parts. Each
	 * try is another boundary, and an attachment of n bytes can hold at
	 * most n of them, so this ends. */
	h = dsn_hash(r->message_id_seed, dsn_hash(r->queue_id, 0xcbf29ce484222325ULL));
	for (unsigned n = 0;; n++) {
		snprintf(boundary, sizeof(boundary), "=_luamta_%016llx_%u",
		    (unsigned long long)(h ^ (n * 0x9e3779b97f4a7c15ULL)), n);
		if (!dsn_boundary_used(r, boundary, attached))
			break;
	}

	dsn_write_header(&o, &f, r, subject, boundary, eightbit);
	out_str(&o, "\r\n--");
	out_str(&o, boundary);
	out_str(&o, "\r\n");
	dsn_write_notice(&o, &f, r, failed, delayed);
	out_str(&o, "\r\n--");
	out_str(&o, boundary);
	out_str(&o, "\r\n");
	dsn_write_status(&o, &f, r);
	out_str(&o, "\r\n--");
	out_str(&o, boundary);
	out_str(&o, "\r\n");
	out_str(&o,
	    failed || delayed ? "Content-Description: Undelivered Message" :
				"Content-Description: Message");
	if (r->headers_only)
		out_str(&o, " Headers\r\nContent-Type: text/rfc822-headers\r\n");
	else
		out_str(&o, "\r\nContent-Type: message/rfc822\r\n");
	if (eightbit)
		out_str(&o, "Content-Transfer-Encoding: 8bit\r\n");
	out_str(&o, "\r\n");
	/* The delimiter's CRLF belongs to the boundary (RFC 2046 5.1.1): the
	 * attached message keeps its own last line ending. */
	if (attached > 0)
		out_add(&o, r->msg, attached);
	out_str(&o, "\r\n--");
	out_str(&o, boundary);
	out_str(&o, "--\r\n");
	if (f.err)
		o.err = 1;
	free(f.p);
	return out_finish(&o, len);
}
