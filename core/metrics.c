/* metrics.c - the counters behind --metrics, and their text exposition.
 *
 * Design: the workers share their counters rather than send them to the
 * master. Before any fork, main.c maps one anonymous MAP_SHARED region
 * (watchdog.c's way); every process the master forks inherits it, and each
 * increment is one relaxed atomic add there: no lock, no message, nothing
 * to lose when a worker dies. Counters therefore survive a worker's death
 * and restart, as Prometheus needs (a counter never goes backwards), and
 * whoever serves /metrics (the master, or the --foreground process) reads
 * the sum of every worker's work in one place. The one per-process value,
 * the number of open connections, lives in a slot per worker that the
 * master clears when that worker dies (its sessions died with it).
 *
 * Series made at run time (hook names, script counters and their label
 * sets) are claimed in fixed tables: a slot goes from free (0) to being
 * written (1) by compare-and-swap, then to ready (2) with a release store
 * once its key is in place, so a reader in any process sees a key only
 * whole. Lookups probe from the key's hash in one order, so two processes
 * adding the same new series meet on the same slot. A full table never
 * fails a hook: the increment is counted as dropped instead. */
#include "metrics.h"

#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define METRICS_KEY_MAX   (METRICS_LABELS_MAX * (METRICS_LABEL_MAX + METRICS_VALUE_MAX + 2))
#define METRICS_HOOK_NAME 32
#define METRICS_SPIN      10000 /* waits for a slot another process is writing */

/* Upper bounds of the hook duration histogram, in seconds: from a table
 * look-up to a slow DNS or HTTP call, up to the default --hook-timeout. */
static const double metrics_buckets[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25, 0.5, 1, 2.5, 5, 10 };
#define METRICS_NBUCKETS (sizeof(metrics_buckets) / sizeof(metrics_buckets[0]))

enum { SLOT_FREE = 0, SLOT_WRITING, SLOT_READY };

struct metrics_hook {
	_Atomic uint32_t state;
	char name[METRICS_HOOK_NAME];
	_Atomic uint64_t runs, errors, sum_ns;
	_Atomic uint64_t bucket[METRICS_NBUCKETS + 1]; /* per bucket, not cumulative; last: +Inf */
};

struct metrics_fam {
	_Atomic uint32_t state;
	char name[METRICS_NAME_MAX + 1];
	char help[METRICS_HELP_MAX + 1];
};

/* The part of a series slot every lookup reads, kept apart from the keys
 * so a scan touches a few pages only. */
struct metrics_sidx {
	_Atomic uint32_t state;
	uint32_t hash;
	uint32_t fam;
	uint32_t keylen;
};

/* A series' labels: name NUL value NUL ..., sorted by name. */
struct metrics_skey {
	char key[METRICS_KEY_MAX];
	_Atomic uint64_t value;
};

struct metrics_shm {
	_Atomic uint64_t c[MC__COUNT];
	_Atomic int64_t conns[METRICS_WORKERS_MAX];
	struct metrics_hook hooks[METRICS_HOOKS_MAX]; /* the last one: "other" */
	struct metrics_fam fams[METRICS_FAMILY_MAX];
	struct metrics_sidx sidx[METRICS_SERIES_MAX];
	struct metrics_skey skey[METRICS_SERIES_MAX];
};

static struct metrics_shm *M;
static int metrics_slot; /* this process's per-worker slot */

/* One family of fixed counters: the enum range [first, last]. */
struct metrics_family_desc {
	const char *name, *help;
	int first, last;
};

static const struct metrics_family_desc metrics_fixed[] = {
	{ "luamta_connections_total", "Connections accepted from the SMTP listeners.",
	    MC_CONN_ACCEPTED, MC_CONN_ACCEPTED },
	{ "luamta_connections_refused_total",
	    "Connections refused at once: answered 421 by a cap, or closed at their PROXY header.",
	    MC_REFUSED_MAX_CONNECTIONS, MC_REFUSED_PROXY },
	{ "luamta_sessions_total", "SMTP sessions ended, by how they ended.", MC_SESSION_QUIT,
	    MC_SESSION_OTHER },
	{ "luamta_transactions_total",
	    "Mail transactions ended, by the verdict on their message (abandoned: none).",
	    MC_TX_ACCEPTED, MC_TX_ABANDONED },
	{ "luamta_messages_total", "Messages by verdict and the stage that gave it.",
	    MC_MSG_ACCEPTED, MC_MSG_DEFERRED_DELIVERY },
	{ "luamta_tls_handshakes_total", "Server TLS handshakes by result and protocol version.",
	    MC_TLS_OK_12, MC_TLS_TIMEOUT },
	{ "luamta_auth_total", "AUTH attempts by result.", MC_AUTH_SUCCESS, MC_AUTH_ABORTED },
	{ "luamta_reloads_total", "Policy reloads by result.", MC_RELOAD_OK, MC_RELOAD_FAILED },
	{ "luamta_worker_restarts_total", "Workers the master restarted after they died.",
	    MC_WORKER_RESTARTS, MC_WORKER_RESTARTS },
	{ "luamta_delivery_attempts_total", "Relay delivery attempts by the recipient's result.",
	    MC_DELIVERY_DELIVERED, MC_DELIVERY_BOUNCED },
	{ "luamta_metrics_series_dropped_total",
	    "Script counter increments dropped because the series table was full.",
	    MC_SERIES_DROPPED, MC_SERIES_DROPPED },
};

/* The labels of each fixed counter, as written. */
static const char *const metrics_labels[MC__COUNT] = {
	[MC_CONN_ACCEPTED] = "",
	[MC_REFUSED_MAX_CONNECTIONS] = "reason=\"max_connections\"",
	[MC_REFUSED_MAX_PER_IP] = "reason=\"max_per_ip\"",
	[MC_REFUSED_MAX_CONN_RATE] = "reason=\"max_conn_rate\"",
	[MC_REFUSED_PROXY] = "reason=\"proxy\"",
	[MC_SESSION_QUIT] = "result=\"quit\"",
	[MC_SESSION_PEER_CLOSED] = "result=\"peer_closed\"",
	[MC_SESSION_TIMEOUT] = "result=\"timeout\"",
	[MC_SESSION_TLS_TIMEOUT] = "result=\"tls_timeout\"",
	[MC_SESSION_HOOK] = "result=\"hook\"",
	[MC_SESSION_HOOK_ERROR] = "result=\"hook_error\"",
	[MC_SESSION_REJECTED] = "result=\"rejected\"",
	[MC_SESSION_AUTH_FAILURES] = "result=\"auth_failures\"",
	[MC_SESSION_ERROR_LIMIT] = "result=\"error_limit\"",
	[MC_SESSION_BARE_LF] = "result=\"bare_lf\"",
	[MC_SESSION_ERROR] = "result=\"error\"",
	[MC_SESSION_SHUTDOWN] = "result=\"shutdown\"",
	[MC_SESSION_OTHER] = "result=\"other\"",
	[MC_TX_ACCEPTED] = "result=\"accepted\"",
	[MC_TX_REJECTED] = "result=\"rejected\"",
	[MC_TX_DEFERRED] = "result=\"deferred\"",
	[MC_TX_ABANDONED] = "result=\"abandoned\"",
	[MC_MSG_ACCEPTED] = "result=\"accepted\",stage=\"policy\"",
	[MC_MSG_REJECTED_DATA] = "result=\"rejected\",stage=\"data\"",
	[MC_MSG_DEFERRED_DATA] = "result=\"deferred\",stage=\"data\"",
	[MC_MSG_REJECTED_END] = "result=\"rejected\",stage=\"end_of_data\"",
	[MC_MSG_DEFERRED_END] = "result=\"deferred\",stage=\"end_of_data\"",
	[MC_MSG_REJECTED_POLICY] = "result=\"rejected\",stage=\"policy\"",
	[MC_MSG_DEFERRED_POLICY] = "result=\"deferred\",stage=\"policy\"",
	[MC_MSG_DEFERRED_QUEUE] = "result=\"deferred\",stage=\"queue\"",
	[MC_MSG_DEFERRED_DELIVERY] = "result=\"deferred\",stage=\"delivery\"",
	[MC_TLS_OK_12] = "result=\"ok\",version=\"TLSv1.2\"",
	[MC_TLS_OK_13] = "result=\"ok\",version=\"TLSv1.3\"",
	[MC_TLS_OK_OTHER] = "result=\"ok\",version=\"other\"",
	[MC_TLS_FAILED] = "result=\"failed\",version=\"none\"",
	[MC_TLS_TIMEOUT] = "result=\"timeout\",version=\"none\"",
	[MC_AUTH_SUCCESS] = "result=\"success\"",
	[MC_AUTH_FAILURE] = "result=\"failure\"",
	[MC_AUTH_TEMPFAIL] = "result=\"tempfail\"",
	[MC_AUTH_ABORTED] = "result=\"aborted\"",
	[MC_RELOAD_OK] = "result=\"ok\"",
	[MC_RELOAD_FAILED] = "result=\"failed\"",
	[MC_WORKER_RESTARTS] = "",
	[MC_DELIVERY_DELIVERED] = "result=\"delivered\"",
	[MC_DELIVERY_DEFERRED] = "result=\"deferred\"",
	[MC_DELIVERY_BOUNCED] = "result=\"bounced\"",
	[MC_SERIES_DROPPED] = "",
};

int
metrics_init(void)
{
	void *p;

	if (M != NULL)
		return 0;
	p = mmap(NULL, sizeof(*M), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	M = p; /* zero-filled by the kernel */
	return 0;
}

int
metrics_enabled(void)
{
	return M != NULL;
}

void
metrics_reset(void)
{
	if (M != NULL)
		munmap(M, sizeof(*M));
	M = NULL;
	metrics_slot = 0;
}

void
metrics_worker_start(int index)
{
	metrics_slot = index >= 0 && index < METRICS_WORKERS_MAX ? index : 0;
}

void
metrics_worker_gone(int index)
{
	if (M != NULL && index >= 0 && index < METRICS_WORKERS_MAX)
		atomic_store_explicit(&M->conns[index], 0, memory_order_relaxed);
}

void
metrics_inc(enum metrics_counter c)
{
	if (M != NULL && (unsigned)c < MC__COUNT)
		atomic_fetch_add_explicit(&M->c[c], 1, memory_order_relaxed);
}

void
metrics_connections(int delta)
{
	if (M != NULL)
		atomic_fetch_add_explicit(&M->conns[metrics_slot], delta, memory_order_relaxed);
}

void
metrics_session_end(const char *reason)
{
	static const struct {
		const char *reason;
		enum metrics_counter c;
	} map[] = {
		{ "quit", MC_SESSION_QUIT },
		{ "peer_closed", MC_SESSION_PEER_CLOSED },
		{ "eof", MC_SESSION_PEER_CLOSED },
		{ "timeout", MC_SESSION_TIMEOUT },
		{ "tls_timeout", MC_SESSION_TLS_TIMEOUT },
		{ "hook", MC_SESSION_HOOK },
		{ "hook_drop", MC_SESSION_HOOK },
		{ "hook error", MC_SESSION_HOOK_ERROR },
		{ "rejected", MC_SESSION_REJECTED },
		{ "auth_failures", MC_SESSION_AUTH_FAILURES },
		{ "error_limit", MC_SESSION_ERROR_LIMIT },
		{ "bare_lf", MC_SESSION_BARE_LF },
		{ "error", MC_SESSION_ERROR },
		{ "shutdown", MC_SESSION_SHUTDOWN },
	};

	if (M == NULL)
		return;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(reason, map[i].reason) == 0) {
			metrics_inc(map[i].c);
			return;
		}
	metrics_inc(MC_SESSION_OTHER);
}

void
metrics_message(int code, enum metrics_stage stage)
{
	int deferred = code >= 400 && code < 500;

	switch (stage) {
	case METRICS_STAGE_DATA:
		metrics_inc(deferred ? MC_MSG_DEFERRED_DATA : MC_MSG_REJECTED_DATA);
		break;
	case METRICS_STAGE_END:
		metrics_inc(deferred ? MC_MSG_DEFERRED_END : MC_MSG_REJECTED_END);
		break;
	case METRICS_STAGE_POLICY:
		if (code >= 200 && code < 300)
			metrics_inc(MC_MSG_ACCEPTED);
		else
			metrics_inc(deferred ? MC_MSG_DEFERRED_POLICY : MC_MSG_REJECTED_POLICY);
		break;
	case METRICS_STAGE_QUEUE:
		metrics_inc(MC_MSG_DEFERRED_QUEUE);
		break;
	case METRICS_STAGE_DELIVERY:
		metrics_inc(MC_MSG_DEFERRED_DELIVERY);
		break;
	}
}

void
metrics_transaction(int code)
{
	if (code == 0)
		metrics_inc(MC_TX_ABANDONED);
	else if (code >= 200 && code < 300)
		metrics_inc(MC_TX_ACCEPTED);
	else if (code >= 400 && code < 500)
		metrics_inc(MC_TX_DEFERRED);
	else
		metrics_inc(MC_TX_REJECTED);
}

void
metrics_tls(const char *version)
{
	if (version == NULL)
		metrics_inc(MC_TLS_FAILED);
	else if (strcmp(version, "TLSv1.2") == 0)
		metrics_inc(MC_TLS_OK_12);
	else if (strcmp(version, "TLSv1.3") == 0)
		metrics_inc(MC_TLS_OK_13);
	else
		metrics_inc(MC_TLS_OK_OTHER);
}

/* FNV-1a: the probe's starting point, the same in every process. */
static uint32_t
metrics_hash(uint32_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 16777619u;
	return h;
}

/* Waits while another process writes the slot; returns its state then.
 * A writer killed halfway leaves it WRITING for good: after the bound the
 * caller passes it by. */
static uint32_t
metrics_settled(_Atomic uint32_t *state)
{
	uint32_t st = atomic_load_explicit(state, memory_order_acquire);

	for (int i = 0; st == SLOT_WRITING && i < METRICS_SPIN; i++) {
		sched_yield();
		st = atomic_load_explicit(state, memory_order_acquire);
	}
	return st;
}

/* Takes a free slot for the caller to write: 1 when it is the caller's. */
static int
metrics_claim(_Atomic uint32_t *state)
{
	uint32_t expect = SLOT_FREE;

	return atomic_compare_exchange_strong_explicit(
	    state, &expect, SLOT_WRITING, memory_order_acquire, memory_order_relaxed);
}

int
metrics_hook_slot(const char *name)
{
	size_t len = strnlen(name, METRICS_HOOK_NAME - 1);
	uint32_t h;

	if (M == NULL)
		return -1;
	h = metrics_hash(2166136261u, name, len) % (METRICS_HOOKS_MAX - 1);
	for (int i = 0; i < METRICS_HOOKS_MAX - 1; i++) {
		struct metrics_hook *k = &M->hooks[(h + (uint32_t)i) % (METRICS_HOOKS_MAX - 1)];
		uint32_t st = atomic_load_explicit(&k->state, memory_order_acquire);

		if (st == SLOT_FREE && metrics_claim(&k->state)) {
			memcpy(k->name, name, len);
			k->name[len] = '\0';
			atomic_store_explicit(&k->state, SLOT_READY, memory_order_release);
			st = SLOT_READY;
		} else
			st = metrics_settled(&k->state);
		if (st == SLOT_READY && strncmp(k->name, name, len) == 0 && k->name[len] == '\0') {
			atomic_fetch_add_explicit(&k->runs, 1, memory_order_relaxed);
			return (int)(k - M->hooks);
		}
	}
	atomic_fetch_add_explicit(&M->hooks[METRICS_HOOKS_MAX - 1].runs, 1, memory_order_relaxed);
	return METRICS_HOOKS_MAX - 1;
}

void
metrics_hook_end(int slot, double secs, int failed)
{
	struct metrics_hook *k;
	size_t b = 0;

	if (M == NULL || slot < 0 || slot >= METRICS_HOOKS_MAX)
		return;
	k = &M->hooks[slot];
	if (secs < 0)
		secs = 0;
	while (b < METRICS_NBUCKETS && secs > metrics_buckets[b])
		b++;
	atomic_fetch_add_explicit(&k->bucket[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&k->sum_ns, (uint64_t)(secs * 1e9), memory_order_relaxed);
	if (failed)
		atomic_fetch_add_explicit(&k->errors, 1, memory_order_relaxed);
}

/* Script counters ------------------------------------------------------- */

static int
metrics_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int
metrics_digit(char c)
{
	return c >= '0' && c <= '9';
}

int
metrics_name_ok(const char *name, size_t len)
{
	if (len == 0 || len > METRICS_NAME_MAX || strlen(name) != len)
		return 0;
	if (!metrics_alpha(name[0]) && name[0] != ':')
		return 0;
	for (size_t i = 1; i < len; i++)
		if (!metrics_alpha(name[i]) && !metrics_digit(name[i]) && name[i] != ':')
			return 0;
	/* The counter convention promtool checks, and the server's prefix. */
	return len > 6 && strcmp(name + len - 6, "_total") == 0 && strncmp(name, "luamta_", 7) != 0;
}

int
metrics_label_ok(const char *name, size_t len)
{
	if (len == 0 || len > METRICS_LABEL_MAX || strlen(name) != len)
		return 0;
	if (!metrics_alpha(name[0]) || (len >= 2 && name[0] == '_' && name[1] == '_'))
		return 0;
	for (size_t i = 1; i < len; i++)
		if (!metrics_alpha(name[i]) && !metrics_digit(name[i]))
			return 0;
	return 1;
}

int
metrics_family(const char *name, const char *help)
{
	size_t len = strlen(name);
	uint32_t h;

	if (M == NULL || len > METRICS_NAME_MAX)
		return -2;
	h = metrics_hash(2166136261u, name, len) % METRICS_FAMILY_MAX;
	for (int i = 0; i < METRICS_FAMILY_MAX; i++) {
		struct metrics_fam *f = &M->fams[(h + (uint32_t)i) % METRICS_FAMILY_MAX];
		uint32_t st = atomic_load_explicit(&f->state, memory_order_acquire);

		if (st == SLOT_FREE && metrics_claim(&f->state)) {
			snprintf(f->name, sizeof(f->name), "%s", name);
			snprintf(f->help, sizeof(f->help), "%s", help);
			atomic_store_explicit(&f->state, SLOT_READY, memory_order_release);
			st = SLOT_READY;
		} else
			st = metrics_settled(&f->state);
		if (st == SLOT_READY && strcmp(f->name, name) == 0)
			return strncmp(f->help, help, METRICS_HELP_MAX) == 0 ? (int)(f - M->fams) :
									       -1;
	}
	return -2;
}

/* Copies a label value, cut to METRICS_VALUE_MAX bytes on a character
 * boundary, with every byte that does not belong to well-formed UTF-8 (and
 * NUL, the key's separator) turned into '?': the exposition must be UTF-8. */
static size_t
metrics_copy_value(char *dst, const char *src, size_t len)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t i = 0, o = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n = c < 0x80    ? 1 :
		    (c & 0xe0) == 0xc0 ? 2 :
		    (c & 0xf0) == 0xe0 ? 3 :
		    (c & 0xf8) == 0xf0 ? 4 :
					 0;
		int ok = n > 0 && i + n <= len && c != 0 && c != 0xc0 && c != 0xc1 && c <= 0xf4;

		for (size_t k = 1; ok && k < n; k++)
			ok = (s[i + k] & 0xc0) == 0x80;
		/* Overlong three- and four-byte forms, surrogates, past U+10FFFF. */
		if (ok && n == 3)
			ok = !(c == 0xe0 && s[i + 1] < 0xa0) && !(c == 0xed && s[i + 1] >= 0xa0);
		if (ok && n == 4)
			ok = !(c == 0xf0 && s[i + 1] < 0x90) && !(c == 0xf4 && s[i + 1] >= 0x90);
		if (!ok)
			n = 1;
		if (o + n > METRICS_VALUE_MAX)
			break;
		if (ok)
			memcpy(dst + o, src + i, n);
		else
			dst[o] = '?';
		o += n;
		i += n;
	}
	return o;
}

int
metrics_add(int fam, const struct metrics_label *labels, int nlabels, uint64_t n)
{
	const struct metrics_label *sorted[METRICS_LABELS_MAX];
	char key[METRICS_KEY_MAX];
	size_t klen = 0;
	uint32_t h;

	if (M == NULL || fam < 0 || fam >= METRICS_FAMILY_MAX || nlabels > METRICS_LABELS_MAX)
		return -1;
	for (int i = 0; i < nlabels; i++) {
		int j = i;

		while (j > 0 && strcmp(sorted[j - 1]->name, labels[i].name) > 0) {
			sorted[j] = sorted[j - 1];
			j--;
		}
		sorted[j] = &labels[i];
	}
	for (int i = 0; i < nlabels; i++) {
		size_t nl = strnlen(sorted[i]->name, METRICS_LABEL_MAX);

		memcpy(key + klen, sorted[i]->name, nl);
		klen += nl;
		key[klen++] = '\0';
		klen += metrics_copy_value(key + klen, sorted[i]->value, sorted[i]->vlen);
		key[klen++] = '\0';
	}
	h = metrics_hash(metrics_hash(2166136261u, &fam, sizeof(fam)), key, klen);
	for (int i = 0; i < METRICS_SERIES_MAX; i++) {
		int at = (int)((h + (uint32_t)i) % METRICS_SERIES_MAX);
		struct metrics_sidx *x = &M->sidx[at];
		uint32_t st = atomic_load_explicit(&x->state, memory_order_acquire);

		if (st == SLOT_FREE && metrics_claim(&x->state)) {
			memcpy(M->skey[at].key, key, klen);
			x->hash = h;
			x->fam = (uint32_t)fam;
			x->keylen = (uint32_t)klen;
			atomic_store_explicit(&x->state, SLOT_READY, memory_order_release);
			st = SLOT_READY;
		} else
			st = metrics_settled(&x->state);
		if (st == SLOT_READY && x->hash == h && x->fam == (uint32_t)fam &&
		    x->keylen == klen && memcmp(M->skey[at].key, key, klen) == 0) {
			atomic_fetch_add_explicit(&M->skey[at].value, n, memory_order_relaxed);
			return 0;
		}
	}
	metrics_inc(MC_SERIES_DROPPED);
	return -1;
}

/* The exposition ------------------------------------------------------- */

static int
metrics_puts(struct buf *out, const char *s)
{
	return buf_append(out, s, strlen(s));
}

static int metrics_printf(struct buf *, const char *, ...) __attribute__((format(printf, 2, 3)));

static int
metrics_printf(struct buf *out, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	return buf_append(out, line, (size_t)n);
}

/* Appends s[0..len) escaped as a label value (quoted = 1) or a help text
 * (quoted = 0, where a double quote stands for itself). */
static int
metrics_escape(struct buf *out, const char *s, size_t len, int quoted)
{
	size_t from = 0;

	for (size_t i = 0; i < len; i++) {
		const char *rep = s[i] == '\\' ? "\\\\" :
		    s[i] == '\n'               ? "\\n" :
		    s[i] == '"' && quoted      ? "\\\"" :
						 NULL;

		if (rep == NULL)
			continue;
		if (buf_append(out, s + from, i - from) == -1 || metrics_puts(out, rep) == -1)
			return -1;
		from = i + 1;
	}
	return buf_append(out, s + from, len - from);
}

static int
metrics_head(struct buf *out, const char *name, const char *type, const char *help)
{
	if (metrics_printf(out, "# HELP %s ", name) == -1 ||
	    metrics_escape(out, help, strlen(help), 0) == -1)
		return -1;
	return metrics_printf(out, "\n# TYPE %s %s\n", name, type);
}

static uint64_t
metrics_get(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* One line: name{labels} value, labels already escaped ("" for none). */
static int
metrics_sample(struct buf *out, const char *name, const char *labels, uint64_t v)
{
	if (labels[0] == '\0')
		return metrics_printf(out, "%s %" PRIu64 "\n", name, v);
	return metrics_printf(out, "%s{%s} %" PRIu64 "\n", name, labels, v);
}

static int
metrics_write_hooks(struct buf *out)
{
	static const char *const fam[] = { "luamta_hook_runs_total", "luamta_hook_errors_total" };
	static const char *const help[] = { "Hook runs started, by hook.",
		"Hook runs that failed (an error, a budget, a bad return), by hook." };

	for (int f = 0; f < 2; f++) {
		if (metrics_head(out, fam[f], "counter", help[f]) == -1)
			return -1;
		for (int i = 0; i < METRICS_HOOKS_MAX; i++) {
			struct metrics_hook *k = &M->hooks[i];
			const char *name = i == METRICS_HOOKS_MAX - 1 ? "other" : k->name;

			if (i < METRICS_HOOKS_MAX - 1 &&
			    atomic_load_explicit(&k->state, memory_order_acquire) != SLOT_READY)
				continue;
			if (i == METRICS_HOOKS_MAX - 1 && metrics_get(&k->runs) == 0)
				continue;
			if (metrics_printf(out, "%s{hook=\"", fam[f]) == -1 ||
			    metrics_escape(out, name, strlen(name), 1) == -1 ||
			    metrics_printf(out, "\"} %" PRIu64 "\n",
				metrics_get(f == 0 ? &k->runs : &k->errors)) == -1)
				return -1;
		}
	}
	if (metrics_head(out, "luamta_hook_duration_seconds", "histogram",
		"Wall-clock time of hook runs that finished, waiting included, by hook.") == -1)
		return -1;
	for (int i = 0; i < METRICS_HOOKS_MAX; i++) {
		struct metrics_hook *k = &M->hooks[i];
		const char *name = i == METRICS_HOOKS_MAX - 1 ? "other" : k->name;
		uint64_t cum = 0;

		if (i < METRICS_HOOKS_MAX - 1 &&
		    atomic_load_explicit(&k->state, memory_order_acquire) != SLOT_READY)
			continue;
		if (i == METRICS_HOOKS_MAX - 1 && metrics_get(&k->runs) == 0)
			continue;
		for (size_t b = 0; b <= METRICS_NBUCKETS; b++) {
			cum += metrics_get(&k->bucket[b]);
			if (metrics_puts(out, "luamta_hook_duration_seconds_bucket{hook=\"") ==
				-1 ||
			    metrics_escape(out, name, strlen(name), 1) == -1)
				return -1;
			if (b < METRICS_NBUCKETS ?
				metrics_printf(
				    out, "\",le=\"%g\"} %" PRIu64 "\n", metrics_buckets[b], cum) :
				metrics_printf(out, "\",le=\"+Inf\"} %" PRIu64 "\n", cum))
				return -1;
		}
		if (metrics_puts(out, "luamta_hook_duration_seconds_sum{hook=\"") == -1 ||
		    metrics_escape(out, name, strlen(name), 1) == -1 ||
		    metrics_printf(out, "\"} %.9f\n", (double)metrics_get(&k->sum_ns) / 1e9) ==
			-1 ||
		    metrics_puts(out, "luamta_hook_duration_seconds_count{hook=\"") == -1 ||
		    metrics_escape(out, name, strlen(name), 1) == -1 ||
		    metrics_printf(out, "\"} %" PRIu64 "\n", cum) == -1)
			return -1;
	}
	return 0;
}

static int
metrics_write_series(struct buf *out, int fam)
{
	for (int i = 0; i < METRICS_SERIES_MAX; i++) {
		struct metrics_sidx *x = &M->sidx[i];
		const char *k = M->skey[i].key, *end;

		if (atomic_load_explicit(&x->state, memory_order_acquire) != SLOT_READY ||
		    x->fam != (uint32_t)fam)
			continue;
		end = k + x->keylen;
		if (metrics_puts(out, M->fams[fam].name) == -1)
			return -1;
		for (int n = 0; k < end; n++) {
			size_t nl = strlen(k), vl = strlen(k + nl + 1);

			if (buf_append(out, n == 0 ? "{" : ",", 1) == -1 ||
			    buf_append(out, k, nl) == -1 || metrics_puts(out, "=\"") == -1 ||
			    metrics_escape(out, k + nl + 1, vl, 1) == -1 ||
			    buf_append(out, "\"", 1) == -1)
				return -1;
			k += nl + 1 + vl + 1;
		}
		if (metrics_printf(out, "%s %" PRIu64 "\n", x->keylen > 0 ? "}" : "",
			metrics_get(&M->skey[i].value)) == -1)
			return -1;
	}
	return 0;
}

int
metrics_write(struct buf *out, const struct metrics_queue *q)
{
	int64_t conns = 0;

	if (M == NULL)
		return 0;
	for (size_t f = 0; f < sizeof(metrics_fixed) / sizeof(metrics_fixed[0]); f++) {
		const struct metrics_family_desc *d = &metrics_fixed[f];

		if (metrics_head(out, d->name, "counter", d->help) == -1)
			return -1;
		for (int c = d->first; c <= d->last; c++)
			if (metrics_sample(
				out, d->name, metrics_labels[c], metrics_get(&M->c[c])) == -1)
				return -1;
	}
	for (int i = 0; i < METRICS_WORKERS_MAX; i++)
		conns += atomic_load_explicit(&M->conns[i], memory_order_relaxed);
	if (metrics_head(out, "luamta_connections_current", "gauge",
		"SMTP sessions open now, over all workers.") == -1 ||
	    metrics_printf(
		out, "luamta_connections_current %" PRId64 "\n", conns > 0 ? conns : 0) == -1)
		return -1;
	if (q != NULL && q->known) {
		if (metrics_head(out, "luamta_queue_entries", "gauge",
			"Relay queue entries by state, counted in the spool when scraped.") == -1 ||
		    metrics_sample(out, "luamta_queue_entries", "state=\"queued\"", q->queued) ==
			-1 ||
		    metrics_sample(
			out, "luamta_queue_entries", "state=\"deferred\"", q->deferred) == -1 ||
		    metrics_sample(out, "luamta_queue_entries", "state=\"held\"", q->held) == -1)
			return -1;
	}
	if (metrics_write_hooks(out) == -1)
		return -1;
	for (int f = 0; f < METRICS_FAMILY_MAX; f++) {
		if (atomic_load_explicit(&M->fams[f].state, memory_order_acquire) != SLOT_READY)
			continue;
		if (metrics_head(out, M->fams[f].name, "counter", M->fams[f].help) == -1 ||
		    metrics_write_series(out, f) == -1)
			return -1;
	}
	return 0;
}
