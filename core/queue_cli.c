/* queue_cli.c - `luamta queue list|show|flush|remove|hold|release`: reads
 * the spool through queue.h, prints entries for people (hostile bytes made
 * visible as \xHH) or as JSON (always valid: control bytes escaped, bytes
 * that are not UTF-8 replaced by U+FFFD), and changes an entry only while
 * holding its delivery lock. Telling the running server to retry is a file
 * in SPOOL/flush/; watching it is the server's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dsn_param.h"
#include "queue.h"
#include "queue_cli.h"

/* How long hold, release and remove wait for a delivery to let go of the
 * entry, in steps of 100 ms. */
#define QUEUE_CLI_LOCK_TRIES 30

static const char queue_usage[] = "usage: luamta queue list [--json] [--spool DIR]\n"
				  "       luamta queue show ID [--json] [--spool DIR]\n"
				  "       luamta queue flush [ID] [--spool DIR]\n"
				  "       luamta queue remove|hold|release ID [--spool DIR]\n";

struct queue_cli {
	const char *spool;
	int json;
	const char *words[3]; /* "queue", the command, its argument */
	int nwords;
};

/* Takes --spool DIR, --spool=DIR and --json anywhere; the other words in
 * order. Returns 0, or 2 after printing the usage. */
static int
cli_parse(struct queue_cli *c, int argc, char **argv)
{
	int i;

	memset(c, 0, sizeof(*c));
	c->spool = CONFIG_SPOOL_DEFAULT;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--json") == 0)
			c->json = 1;
		else if (strcmp(a, "--spool") == 0 || strncmp(a, "--spool=", 8) == 0) {
			if (a[7] == '=')
				c->spool = a + 8;
			else if (i + 1 < argc)
				c->spool = argv[++i];
			else {
				fprintf(stderr, "luamta: --spool needs a directory\n");
				return 2;
			}
			if (c->spool[0] == '\0') {
				fprintf(stderr, "luamta: --spool: empty path\n");
				return 2;
			}
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(queue_usage, stdout);
			exit(0);
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "luamta: queue: unknown option '%s'\n", a);
			fputs(queue_usage, stderr);
			return 2;
		} else if (c->nwords == 3) {
			fprintf(stderr, "luamta: queue: unexpected argument '%s'\n", a);
			fputs(queue_usage, stderr);
			return 2;
		} else
			c->words[c->nwords++] = a;
	}
	return 0;
}

int
queue_cli_wanted(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0 || strncmp(argv[i], "--spool=", 8) == 0)
			continue;
		if (strcmp(argv[i], "--spool") == 0) {
			i++;
			continue;
		}
		return strcmp(argv[i], "queue") == 0;
	}
	return 0;
}

/* The length of the valid UTF-8 sequence at s (n bytes left), or 0: no
 * overlong forms, no surrogates, nothing past U+10FFFF (RFC 3629). */
static size_t
utf8_len(const unsigned char *s, size_t n, unsigned *cp)
{
	size_t len;
	unsigned c, min;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		c = s[0] & 0x1f;
		min = 0x80;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		c = s[0] & 0x0f;
		min = 0x800;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		c = s[0] & 0x07;
		min = 0x10000;
	} else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* A JSON string (RFC 8259 7), or null for NULL. */
static void
json_str(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n, len;
	unsigned cp;

	if (str == NULL) {
		fputs("null", f);
		return;
	}
	n = strlen(str);
	fputc('"', f);
	while (n > 0) {
		if ((len = utf8_len(s, n, &cp)) == 0) {
			fputs("\\ufffd", f);
			s++;
			n--;
			continue;
		}
		if (cp == '"' || cp == '\\')
			fprintf(f, "\\%c", (int)cp);
		else if (cp == '\n')
			fputs("\\n", f);
		else if (cp == '\r')
			fputs("\\r", f);
		else if (cp == '\t')
			fputs("\\t", f);
		else if (cp < 0x20 || cp == 0x7f)
			fprintf(f, "\\u%04x", cp);
		else
			fwrite(s, 1, len, f);
		s += len;
		n -= len;
	}
	fputc('"', f);
}

/* Text for a terminal: printable ASCII and valid UTF-8 as they are, a
 * backslash doubled, every other byte (controls, C1 controls, what is not
 * UTF-8) as \xHH, so no value can move the cursor or fake a line. */
static void
human_str(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str), len;
	unsigned cp;

	while (n > 0) {
		len = utf8_len(s, n, &cp);
		if (len == 0 || cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) {
			fprintf(f, "\\x%02x", s[0]);
			len = 1;
		} else if (cp == '\\')
			fputs("\\\\", f);
		else
			fwrite(s, 1, len, f);
		s += len;
		n -= len;
	}
}

static void
human_time(FILE *f, time_t t)
{
	char buf[64];
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL ||
	    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm) == 0)
		fprintf(f, "@%lld", (long long)t);
	else
		fputs(buf, f);
}

static void
json_entry(FILE *f, const struct queue_entry *e)
{
	const struct queue_route *r = &e->route;

	fputs("{\"id\":", f);
	json_str(f, e->id);
	fputs(",\"sender\":", f);
	json_str(f, e->sender);
	fprintf(f, ",\"size\":%zu,\"created\":%lld,\"held\":%s", e->size, (long long)e->created,
	    e->held ? "true" : "false");
	fprintf(f, ",\"body_8bit\":%s,\"smtputf8\":%s,\"is_bounce\":%s",
	    e->body_8bit ? "true" : "false", e->smtputf8 ? "true" : "false",
	    e->is_bounce ? "true" : "false");
	/* DSN's parameters only when the client gave them. */
	if (dsn_param_ret_str(e->dsn_ret) != NULL)
		fprintf(f, ",\"ret\":\"%s\"", dsn_param_ret_str(e->dsn_ret));
	if (e->envid != NULL) {
		fputs(",\"envid\":", f);
		json_str(f, e->envid);
	}
	if (e->delay_warned != 0)
		fprintf(f, ",\"delay_warned\":%lld", (long long)e->delay_warned);
	/* Never the password: listings end up in tickets and chat. */
	fputs(",\"route\":{\"host\":", f);
	json_str(f, r->host);
	fprintf(f, ",\"port\":%d,\"socket\":", r->port);
	json_str(f, r->socket);
	fprintf(f, ",\"lmtp\":%s,\"tls\":\"%s\",\"auth_user\":", r->lmtp ? "true" : "false",
	    queue_tls_str(r->tls));
	json_str(f, r->auth_user);
	fputs("},\"recipients\":[", f);
	for (size_t i = 0; i < e->nrcpts; i++) {
		const struct queue_rcpt *rc = &e->rcpts[i];

		fputs(i > 0 ? ",{\"address\":" : "{\"address\":", f);
		json_str(f, rc->address);
		fprintf(f,
		    ",\"state\":\"%s\",\"attempts\":%d,\"next_attempt\":%lld,\"last_reply\":",
		    queue_rcpt_state_str(rc->state), rc->attempts, (long long)rc->next_attempt);
		json_str(f, rc->last_reply);
		if (rc->notify != 0) {
			char words[32];

			dsn_param_notify_str(rc->notify, words, sizeof(words));
			fprintf(f, ",\"notify\":\"%s\"", words);
		}
		if (rc->orcpt != NULL) {
			fputs(",\"orcpt\":", f);
			json_str(f, rc->orcpt);
		}
		fputc('}', f);
	}
	fputs("]}", f);
}

static void
json_corrupt(FILE *f, const char *id, const char *err)
{
	fputs("{\"id\":", f);
	json_str(f, id);
	fputs(",\"corrupt\":true,\"error\":", f);
	json_str(f, err);
	fputc('}', f);
}

static void
human_route(FILE *f, const struct queue_route *r)
{
	if (r->socket != NULL) {
		fputs("socket ", f);
		human_str(f, r->socket);
	} else if (r->host != NULL) {
		fputs("host ", f);
		human_str(f, r->host);
	} else
		fputs("MX", f);
	if (r->port != 0)
		fprintf(f, " port %d", r->port);
	fprintf(f, "%s tls=%s", r->lmtp ? " lmtp" : "", queue_tls_str(r->tls));
	if (r->auth_user != NULL) {
		fputs(" auth=", f);
		human_str(f, r->auth_user);
	}
}

/* DSN's parameters (RFC 3461) on a line of their own, as JSON names them
 * ("dsn: ret HDRS, envid x" for the entry, "dsn: notify SUCCESS, orcpt
 * rfc822;a@x" for a recipient); nothing when neither was given. */
static void
human_dsn(
    FILE *f, const char *indent, const char *k1, const char *v1, const char *k2, const char *v2)
{
	if (v1 == NULL && v2 == NULL)
		return;
	fprintf(f, "%sdsn:", indent);
	if (v1 != NULL) {
		fprintf(f, " %s ", k1);
		human_str(f, v1);
	}
	if (v2 != NULL) {
		fprintf(f, "%s %s ", v1 != NULL ? "," : "", k2);
		human_str(f, v2);
	}
	fputc('\n', f);
}

/* One entry, postqueue -p in spirit: id, size, arrival and sender, then a
 * line per recipient with its state and, under it, the last reply; with
 * detail (show) the route, the flags and DSN's parameters too. */
static void
human_entry(FILE *f, const struct queue_entry *e, int detail)
{
	char words[32];

	fprintf(f, "%-23s %9zu ", e->id, e->size);
	human_time(f, e->created);
	fputs("  <", f);
	human_str(f, e->sender);
	fputc('>', f);
	if (e->held)
		fputs("  HELD", f);
	fputc('\n', f);
	if (detail) {
		fputs("    route: ", f);
		human_route(f, &e->route);
		fputc('\n', f);
		if (e->body_8bit || e->smtputf8 || e->is_bounce)
			fprintf(f, "    flags:%s%s%s\n", e->body_8bit ? " 8bitmime" : "",
			    e->smtputf8 ? " smtputf8" : "", e->is_bounce ? " bounce" : "");
		human_dsn(f, "    ", "ret", dsn_param_ret_str(e->dsn_ret), "envid", e->envid);
	}
	for (size_t i = 0; i < e->nrcpts; i++) {
		const struct queue_rcpt *rc = &e->rcpts[i];

		fprintf(f, "    %-9s <", queue_rcpt_state_str(rc->state));
		human_str(f, rc->address);
		fprintf(f, ">  attempts %d", rc->attempts);
		if ((rc->state == QUEUE_RCPT_QUEUED || rc->state == QUEUE_RCPT_DEFERRED) &&
		    rc->next_attempt != 0) {
			fputs(", next ", f);
			human_time(f, rc->next_attempt);
		}
		fputc('\n', f);
		if (detail) {
			dsn_param_notify_str(rc->notify, words, sizeof(words));
			human_dsn(f, "              ", "notify", words[0] != '\0' ? words : NULL,
			    "orcpt", rc->orcpt);
		}
		if (rc->last_reply != NULL) {
			fputs("              (", f);
			human_str(f, rc->last_reply);
			fputs(")\n", f);
		}
	}
}

static int
cmd_list(const struct queue_cli *c)
{
	size_t n = 0, nentries = 0, nrcpts = 0, ncorrupt = 0;
	struct queue_entry e;
	char err[1024], **ids = NULL;
	struct stat st;
	int rc = 0, r;

	/* No spool yet: nothing was ever queued, an empty queue. */
	if (stat(c->spool, &st) == -1 && errno == ENOENT)
		n = 0;
	else if (queue_list_ids(c->spool, &ids, &n, err, sizeof(err)) == -1) {
		fprintf(stderr, "luamta: queue: %s\n", err);
		return 1;
	}
	if (c->json)
		fputc('[', stdout);
	for (size_t i = 0; i < n; i++) {
		if ((r = queue_load(c->spool, ids[i], &e, err, sizeof(err))) == 1)
			continue; /* delivered or removed since the listing */
		if (c->json && nentries + ncorrupt > 0)
			fputc(',', stdout);
		if (r == -1) {
			/* Shown, not skipped: someone has to move it aside. */
			ncorrupt++;
			fprintf(stderr, "luamta: queue: warning: %s\n", err);
			if (c->json)
				json_corrupt(stdout, ids[i], err);
			else {
				printf("%-23s CORRUPT: ", ids[i]);
				human_str(stdout, err);
				fputc('\n', stdout);
			}
			continue;
		}
		nentries++;
		nrcpts += e.nrcpts;
		if (c->json)
			json_entry(stdout, &e);
		else
			human_entry(stdout, &e, 0);
		queue_entry_clear(&e);
	}
	if (c->json)
		fputs("]\n", stdout);
	else if (nentries + ncorrupt == 0)
		printf("The queue is empty.\n");
	else
		printf("-- %zu %s, %zu %s%s\n", nentries, nentries == 1 ? "entry" : "entries",
		    nrcpts, nrcpts == 1 ? "recipient" : "recipients",
		    ncorrupt > 0 ? ", some corrupt" : "");
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	return rc;
}

/* Loads an entry for a command about it: 0, or 1 after saying why not. */
static int
load_or_complain(const struct queue_cli *c, const char *id, struct queue_entry *e)
{
	char err[1024];
	int r;

	if (!queue_id_valid(id)) {
		fprintf(stderr, "luamta: queue: no entry ");
		human_str(stderr, id);
		fprintf(stderr, " (not a queue id)\n");
		return 1;
	}
	if ((r = queue_load(c->spool, id, e, err, sizeof(err))) == 1) {
		fprintf(stderr, "luamta: queue: no entry %s in %s\n", id, c->spool);
		return 1;
	}
	if (r == -1) {
		fprintf(stderr, "luamta: queue: %s\n", err);
		return 1;
	}
	return 0;
}

static int
cmd_show(const struct queue_cli *c, const char *id)
{
	struct queue_entry e;

	if (load_or_complain(c, id, &e) != 0)
		return 1;
	if (c->json) {
		json_entry(stdout, &e);
		fputc('\n', stdout);
	} else
		human_entry(stdout, &e, 1);
	queue_entry_clear(&e);
	return 0;
}

static int
flush_one(const struct queue_cli *c, const char *name)
{
	char err[1024];

	if (queue_flush_request(c->spool, name, err, sizeof(err)) == -1) {
		fprintf(stderr, "luamta: queue: flush: %s\n", err);
		return 1;
	}
	return 0;
}

static int
cmd_flush(const struct queue_cli *c, const char *id)
{
	struct queue_entry e;

	if (id == NULL) {
		if (flush_one(c, "all") != 0)
			return 1;
		printf("flush requested for every entry\n");
		return 0;
	}
	if (load_or_complain(c, id, &e) != 0)
		return 1;
	queue_entry_clear(&e);
	if (flush_one(c, id) != 0)
		return 1;
	printf("%s: flush requested\n", id);
	return 0;
}

/* The delivery lock, waiting a little for a delivery in progress to end.
 * A descriptor, or -1 after saying why. */
static int
lock_entry(const struct queue_cli *c, const char *id)
{
	struct timespec step = { 0, 100 * 1000 * 1000 };
	int fd;

	if (!queue_id_valid(id)) {
		fprintf(stderr, "luamta: queue: no entry ");
		human_str(stderr, id);
		fprintf(stderr, " (not a queue id)\n");
		return -1;
	}
	for (int i = 0; i < QUEUE_CLI_LOCK_TRIES; i++) {
		if ((fd = queue_lock(c->spool, id)) >= 0)
			return fd;
		if (errno == ENOENT) {
			fprintf(stderr, "luamta: queue: no entry %s in %s\n", id, c->spool);
			return -1;
		}
		if (errno != EWOULDBLOCK) {
			fprintf(stderr, "luamta: queue: %s: %s\n", id, strerror(errno));
			return -1;
		}
		nanosleep(&step, NULL);
	}
	fprintf(stderr,
	    "luamta: queue: %s is locked (being delivered, or an entry sharing its message "
	    "file is); try again later\n",
	    id);
	return -1;
}

static int
cmd_remove(const struct queue_cli *c, const char *id)
{
	struct queue_entry e;
	char err[1024];
	int fd, r, rc = 1;

	if ((fd = lock_entry(c, id)) == -1)
		return 1;
	/* A corrupt entry can be removed too: that is one way out for it. */
	if ((r = queue_load(c->spool, id, &e, err, sizeof(err))) == 1)
		fprintf(stderr, "luamta: queue: no entry %s in %s\n", id, c->spool);
	else {
		if (r == -1)
			fprintf(stderr, "luamta: queue: warning: %s\n", err);
		queue_entry_clear(&e);
		if (queue_remove(c->spool, id, err, sizeof(err)) == -1)
			fprintf(stderr, "luamta: queue: remove: %s\n", err);
		else {
			printf("%s: removed\n", id);
			rc = 0;
		}
	}
	queue_unlock(fd);
	return rc;
}

/* hold and release: the change is saved while the lock is held, so a
 * delivery that starts afterwards reads it. */
static int
cmd_hold(const struct queue_cli *c, const char *id, int hold)
{
	struct queue_entry e;
	char err[1024];
	int fd, rc = 1;

	if ((fd = lock_entry(c, id)) == -1)
		return 1;
	if (load_or_complain(c, id, &e) != 0) {
		queue_unlock(fd);
		return 1;
	}
	e.held = hold;
	if (!hold)
		for (size_t i = 0; i < e.nrcpts; i++)
			if (e.rcpts[i].state == QUEUE_RCPT_QUEUED ||
			    e.rcpts[i].state == QUEUE_RCPT_DEFERRED)
				e.rcpts[i].next_attempt = 0;
	if (queue_save(c->spool, &e, err, sizeof(err)) == -1)
		fprintf(stderr, "luamta: queue: %s: %s\n", hold ? "hold" : "release", err);
	else
		rc = 0;
	queue_entry_clear(&e);
	queue_unlock(fd);
	if (rc == 0 && !hold)
		rc = flush_one(c, id);
	if (rc == 0)
		printf("%s: %s\n", id, hold ? "held" : "released");
	return rc;
}

int
queue_cli_main(int argc, char **argv)
{
	struct queue_cli c;
	const char *cmd, *arg;
	int rc;

	if ((rc = cli_parse(&c, argc, argv)) != 0)
		return rc;
	if (c.nwords < 2 || strcmp(c.words[0], "queue") != 0) {
		fputs(queue_usage, stderr);
		return 2;
	}
	cmd = c.words[1];
	arg = c.nwords > 2 ? c.words[2] : NULL;
	if (strcmp(cmd, "list") == 0 && arg != NULL) {
		fprintf(stderr, "luamta: queue list: unexpected argument '%s'\n", arg);
		return 2;
	} else if (strcmp(cmd, "list") == 0)
		rc = cmd_list(&c);
	else if (strcmp(cmd, "flush") == 0)
		rc = cmd_flush(&c, arg);
	else if (arg == NULL) {
		fprintf(stderr, "luamta: queue %s: %s\n", cmd,
		    strcmp(cmd, "show") == 0 || strcmp(cmd, "remove") == 0 ||
			    strcmp(cmd, "hold") == 0 || strcmp(cmd, "release") == 0 ?
			"needs a queue id" :
			"unknown command");
		fputs(queue_usage, stderr);
		return 2;
	} else if (strcmp(cmd, "show") == 0)
		rc = cmd_show(&c, arg);
	else if (strcmp(cmd, "remove") == 0)
		rc = cmd_remove(&c, arg);
	else if (strcmp(cmd, "hold") == 0)
		rc = cmd_hold(&c, arg, 1);
	else if (strcmp(cmd, "release") == 0)
		rc = cmd_hold(&c, arg, 0);
	else {
		fprintf(stderr, "luamta: queue: unknown command '%s'\n", cmd);
		fputs(queue_usage, stderr);
		return 2;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "luamta: queue: writing the output: %s\n", strerror(errno));
		return 1;
	}
	return rc;
}
