/* test_metrics.c - the shared counters and their text exposition: names,
 * escaping, the series table when full, hooks' histogram, and a child
 * process's increments seen by its parent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics.h"
#include "test.h"

/* The text of a scrape, NUL-terminated; the caller frees it. */
static char *
scrape(const struct metrics_queue *q)
{
	struct buf b;
	char *s;

	buf_init(&b);
	CHECK(metrics_write(&b, q) == 0);
	s = malloc(buf_avail(&b) + 1);
	memcpy(s, buf_head(&b), buf_avail(&b));
	s[buf_avail(&b)] = '\0';
	buf_reset(&b);
	return s;
}

/* Whether the scrape has this exact line. */
static int
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return 1;
	return 0;
}

#define CHECK_LINE(text, line) CHECK_MSG(has_line((text), (line)), "no line \"%s\"", (line))

static void
test_disabled(void)
{
	struct buf b;

	buf_init(&b);
	metrics_inc(MC_CONN_ACCEPTED); /* a no-op */
	CHECK(!metrics_enabled());
	CHECK(metrics_write(&b, NULL) == 0);
	CHECK(buf_avail(&b) == 0);
	CHECK(metrics_family("app_total", "x") == -2);
	CHECK(metrics_hook_slot("on_rcpt") == -1);
	buf_reset(&b);
}

static void
test_names(void)
{
	static const struct {
		const char *name;
		int ok;
	} names[] = {
		{ "app_rejects_total", 1 },
		{ "_x_total", 1 },
		{ ":a:b_total", 1 },
		{ "App9_total", 1 },
		{ "app_rejects", 0 },    /* a counter ends in _total */
		{ "_total", 0 },         /* nothing before it */
		{ "9app_total", 0 },     /* a digit first */
		{ "app-x_total", 0 },    /* a dash */
		{ "app x_total", 0 },    /* a space */
		{ "luamta_x_total", 0 }, /* the server's prefix */
		{ "", 0 },
	};
	static const struct {
		const char *name;
		int ok;
	} labels[] = {
		{ "reason", 1 },
		{ "_r", 1 },
		{ "a9", 1 },
		{ "__name__", 0 }, /* reserved */
		{ "9a", 0 },
		{ "a:b", 0 }, /* colons are for metric names only */
		{ "a-b", 0 },
		{ "", 0 },
	};
	char longname[METRICS_NAME_MAX + 8];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		CHECK_MSG(metrics_name_ok(names[i].name, strlen(names[i].name)) == names[i].ok,
		    "name %s", names[i].name);
	for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
		CHECK_MSG(metrics_label_ok(labels[i].name, strlen(labels[i].name)) == labels[i].ok,
		    "label %s", labels[i].name);
	memset(longname, 'a', sizeof(longname));
	strcpy(longname + METRICS_NAME_MAX - 6 + 1, "_total");
	CHECK(!metrics_name_ok(longname, strlen(longname)));
	longname[METRICS_NAME_MAX - 6] = '\0';
	strcat(longname, "_total");
	CHECK(strlen(longname) == METRICS_NAME_MAX);
	CHECK(metrics_name_ok(longname, strlen(longname)));
	/* A NUL inside is not the name it seems to be. */
	CHECK(!metrics_name_ok("a_total\0b", 9));
}

static void
test_fixed(void)
{
	char *t;

	metrics_inc(MC_CONN_ACCEPTED);
	metrics_inc(MC_CONN_ACCEPTED);
	metrics_inc(MC_REFUSED_MAX_PER_IP);
	metrics_session_end("quit");
	metrics_session_end("hook error");
	metrics_session_end("out of memory");
	metrics_message(250, METRICS_STAGE_POLICY);
	metrics_message(550, METRICS_STAGE_POLICY);
	metrics_message(451, METRICS_STAGE_DATA);
	metrics_message(554, METRICS_STAGE_END);
	metrics_transaction(0);
	metrics_transaction(250);
	metrics_transaction(452);
	metrics_tls("TLSv1.2");
	metrics_tls(NULL);
	metrics_worker_start(3);
	metrics_connections(1);
	metrics_connections(1);
	metrics_worker_start(0);
	metrics_connections(1);
	t = scrape(NULL);
	CHECK_LINE(t, "# TYPE luamta_connections_total counter");
	CHECK_LINE(t, "luamta_connections_total 2");
	CHECK_LINE(t, "luamta_connections_refused_total{reason=\"max_per_ip\"} 1");
	CHECK_LINE(t, "luamta_connections_refused_total{reason=\"max_connections\"} 0");
	CHECK_LINE(t, "luamta_sessions_total{result=\"quit\"} 1");
	CHECK_LINE(t, "luamta_sessions_total{result=\"hook_error\"} 1");
	CHECK_LINE(t, "luamta_sessions_total{result=\"other\"} 1");
	CHECK_LINE(t, "luamta_messages_total{result=\"accepted\",stage=\"policy\"} 1");
	CHECK_LINE(t, "luamta_messages_total{result=\"rejected\",stage=\"policy\"} 1");
	CHECK_LINE(t, "luamta_messages_total{result=\"deferred\",stage=\"data\"} 1");
	CHECK_LINE(t, "luamta_messages_total{result=\"rejected\",stage=\"end_of_data\"} 1");
	CHECK_LINE(t, "luamta_transactions_total{result=\"abandoned\"} 1");
	CHECK_LINE(t, "luamta_transactions_total{result=\"accepted\"} 1");
	CHECK_LINE(t, "luamta_transactions_total{result=\"deferred\"} 1");
	CHECK_LINE(t, "luamta_tls_handshakes_total{result=\"ok\",version=\"TLSv1.2\"} 1");
	CHECK_LINE(t, "luamta_tls_handshakes_total{result=\"failed\",version=\"none\"} 1");
	CHECK_LINE(t, "# TYPE luamta_connections_current gauge");
	CHECK_LINE(t, "luamta_connections_current 3");
	/* No spool count: no queue gauge rather than a wrong one. */
	CHECK(strstr(t, "luamta_queue_entries") == NULL);
	free(t);
	/* A dead worker's sessions are gone; its counters stay. */
	metrics_worker_gone(3);
	t = scrape(&(struct metrics_queue){ .known = 1, .queued = 4, .deferred = 2, .held = 1 });
	CHECK_LINE(t, "luamta_connections_current 1");
	CHECK_LINE(t, "luamta_connections_total 2");
	CHECK_LINE(t, "luamta_queue_entries{state=\"queued\"} 4");
	CHECK_LINE(t, "luamta_queue_entries{state=\"deferred\"} 2");
	CHECK_LINE(t, "luamta_queue_entries{state=\"held\"} 1");
	free(t);
}

static void
test_hooks(void)
{
	char name[32], *t;
	int a = metrics_hook_slot("on_rcpt"), b;

	CHECK(a >= 0);
	metrics_hook_end(a, 0.0002, 0); /* the first bucket */
	b = metrics_hook_slot("on_rcpt");
	CHECK(b == a);
	metrics_hook_end(b, 0.3, 1);        /* le=0.5 */
	(void)metrics_hook_slot("on_rcpt"); /* cancelled: runs only */
	t = scrape(NULL);
	CHECK_LINE(t, "luamta_hook_runs_total{hook=\"on_rcpt\"} 3");
	CHECK_LINE(t, "luamta_hook_errors_total{hook=\"on_rcpt\"} 1");
	CHECK_LINE(t, "# TYPE luamta_hook_duration_seconds histogram");
	CHECK_LINE(t, "luamta_hook_duration_seconds_bucket{hook=\"on_rcpt\",le=\"0.0005\"} 1");
	CHECK_LINE(t, "luamta_hook_duration_seconds_bucket{hook=\"on_rcpt\",le=\"0.25\"} 1");
	CHECK_LINE(t, "luamta_hook_duration_seconds_bucket{hook=\"on_rcpt\",le=\"0.5\"} 2");
	CHECK_LINE(t, "luamta_hook_duration_seconds_bucket{hook=\"on_rcpt\",le=\"+Inf\"} 2");
	CHECK_LINE(t, "luamta_hook_duration_seconds_sum{hook=\"on_rcpt\"} 0.300200000");
	CHECK_LINE(t, "luamta_hook_duration_seconds_count{hook=\"on_rcpt\"} 2");
	CHECK(strstr(t, "hook=\"other\"") == NULL);
	free(t);
	/* More names than slots: the rest count as "other". */
	for (int i = 0; i < METRICS_HOOKS_MAX + 5; i++) {
		snprintf(name, sizeof(name), "VERB%d", i);
		metrics_hook_end(metrics_hook_slot(name), 0.01, 0);
	}
	t = scrape(NULL);
	CHECK_LINE(t, "luamta_hook_runs_total{hook=\"other\"} 7");
	CHECK_LINE(t, "luamta_hook_duration_seconds_count{hook=\"other\"} 7");
	free(t);
}

static void
test_series(void)
{
	struct metrics_label l[3];
	char value[METRICS_VALUE_MAX + 50], *t;
	int f = metrics_family("app_rejects_total", "Rejections \\ by\nreason.");
	int g;

	CHECK(f >= 0);
	CHECK(metrics_family("app_rejects_total", "Rejections \\ by\nreason.") == f);
	CHECK(metrics_family("app_rejects_total", "another help") == -1);
	g = metrics_family("app_plain_total", "Plain.");
	CHECK(g >= 0 && g != f);
	/* Label order does not matter; values are escaped when written. */
	l[0] = (struct metrics_label){ "reason", "rbl", 3 };
	l[1] = (struct metrics_label){ "peer", "a\"b\\c\nd", 7 };
	CHECK(metrics_add(f, l, 2, 1) == 0);
	l[2] = l[0];
	l[0] = l[1];
	l[1] = l[2];
	CHECK(metrics_add(f, l, 2, 4) == 0);
	/* Bytes that are not UTF-8 become '?'; UTF-8 stays. */
	l[0] = (struct metrics_label){ "reason", "x\xff\xc3\xa9\xed\xa0\x80", 7 };
	CHECK(metrics_add(f, l, 1, 1) == 0);
	CHECK(metrics_add(g, NULL, 0, 2) == 0);
	/* A long value is cut to METRICS_VALUE_MAX bytes. */
	memset(value, 'v', sizeof(value));
	l[0] = (struct metrics_label){ "reason", value, sizeof(value) };
	CHECK(metrics_add(f, l, 1, 1) == 0);
	t = scrape(NULL);
	CHECK_LINE(t, "# HELP app_rejects_total Rejections \\\\ by\\nreason.");
	CHECK_LINE(t, "# TYPE app_rejects_total counter");
	CHECK_LINE(t, "app_rejects_total{peer=\"a\\\"b\\\\c\\nd\",reason=\"rbl\"} 5");
	CHECK_LINE(t, "app_rejects_total{reason=\"x?\xc3\xa9???\"} 1");
	CHECK_LINE(t, "app_plain_total 2");
	snprintf(value, sizeof(value), "app_rejects_total{reason=\"%.*s\"} 1", METRICS_VALUE_MAX,
	    "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"
	    "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv");
	CHECK_LINE(t, value);
	free(t);
}

/* Every slot taken: a new series is dropped and counted, the old ones
 * still count. */
static void
test_full(void)
{
	int f = metrics_family("app_many_total", "Many.");
	char v[16], *t;
	int added = 0;

	for (int i = 0; i < METRICS_SERIES_MAX + 10; i++) {
		struct metrics_label one = { "n", v, 0 };

		one.vlen = (size_t)snprintf(v, sizeof(v), "%d", i);
		if (metrics_add(f, &one, 1, 1) == 0)
			added++;
	}
	/* test_series() and test_fork() took 5 slots. */
	CHECK_MSG(added == METRICS_SERIES_MAX - 5, "added %d", added);
	t = scrape(NULL);
	CHECK_LINE(t, "luamta_metrics_series_dropped_total 15");
	CHECK_LINE(t, "app_many_total{n=\"0\"} 1");
	CHECK_LINE(t, "app_rejects_total{peer=\"a\\\"b\\\\c\\nd\",reason=\"rbl\"} 5");
	free(t);
	{
		struct metrics_label one = { "n", "0", 1 };

		CHECK(metrics_add(f, &one, 1, 2) == 0);
	}
	t = scrape(NULL);
	CHECK_LINE(t, "app_many_total{n=\"0\"} 3");
	free(t);
}

/* What a forked child adds is its parent's too. */
static void
test_fork(void)
{
	int f = metrics_family("app_fork_total", "Forked.");
	pid_t pid;
	int st;
	char *t;

	if ((pid = fork()) == 0) {
		metrics_inc(MC_WORKER_RESTARTS);
		(void)metrics_add(f, NULL, 0, 7);
		_exit(0);
	}
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st));
	t = scrape(NULL);
	CHECK_LINE(t, "luamta_worker_restarts_total 1");
	CHECK_LINE(t, "app_fork_total 7");
	free(t);
}

int
main(void)
{
	test_disabled();
	test_names();
	CHECK(metrics_init() == 0);
	CHECK(metrics_enabled());
	test_fixed();
	test_hooks();
	test_series();
	test_fork();
	test_full();
	metrics_reset();
	CHECK(!metrics_enabled());
	return test_done("test_metrics");
}
