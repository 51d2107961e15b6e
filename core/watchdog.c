/* watchdog.c - the shared slots behind the master's watchdog: workers
 * stamp theirs from a timer on their loop, the master reads them. Nothing
 * here kills anything. */
#include "watchdog.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "hook.h"

/* One worker's slot, in memory shared between the master and its
 * children. Only the worker writes it once it runs, only the master before
 * the fork; aligned 8-byte stores cannot be read half-written. */
struct watchdog_slot {
	volatile double beat;      /* monotonic seconds at the loop's last turn */
	struct hook_beacon beacon; /* kept current by hook.c */
};

/* The master's own notes on a slot, in its private memory. */
struct watchdog_seen {
	double since; /* the beacon's since when last read */
	double at;    /* monotonic time it was first seen so */
};

struct watchdog {
	struct watchdog_slot *slots; /* the shared mapping */
	struct watchdog_seen *seen;  /* in the master: one per slot */
	size_t len;
	int nslots;
	struct watchdog_slot *mine; /* in a worker: its own slot */
	struct ev_loop *loop;       /* in a worker: where beat runs */
	ev_timer beat;
};

/* CLOCK_MONOTONIC is one clock for every process on the machine, so a
 * stamp written by a worker means the same to the master. */
static double
watchdog_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct watchdog *
watchdog_new(int nslots)
{
	struct watchdog *wd;
	void *p;

	if ((wd = calloc(1, sizeof(*wd))) == NULL)
		return NULL;
	if ((wd->seen = calloc((size_t)nslots, sizeof(*wd->seen))) == NULL) {
		free(wd);
		return NULL;
	}
	wd->nslots = nslots;
	wd->len = (size_t)nslots * sizeof(struct watchdog_slot);
	p = mmap(NULL, wd->len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		free(wd->seen);
		free(wd);
		return NULL;
	}
	wd->slots = p; /* zero-filled by the kernel */
	return wd;
}

void
watchdog_free(struct watchdog *wd)
{
	if (wd == NULL)
		return;
	if (wd->mine != NULL) {
		hook_set_beacon(NULL);
		ev_ref(wd->loop);
		ev_timer_stop(wd->loop, &wd->beat);
	}
	munmap(wd->slots, wd->len);
	free(wd->seen);
	free(wd);
}

void
watchdog_arm(struct watchdog *wd, int slot)
{
	struct watchdog_slot *s = &wd->slots[slot];

	s->beacon.since = 0;
	s->beacon.sid[0] = '\0';
	s->beacon.name[0] = '\0';
	s->beat = watchdog_clock();
	wd->seen[slot].since = 0;
	wd->seen[slot].at = s->beat;
}

/* Progress is the later of the loop's last beat and the start of the
 * latest hook run. A loop can go a while without turning and be healthy:
 * one turn runs every ready session's callback, and under load each may
 * run a hook that takes most of its budget. A new hook starting proves
 * the worker moves; a stuck hook keeps its start. The start is stamped
 * with the worker's wall clock, so the master only notes when it changed,
 * on its own monotonic clock. */
double
watchdog_stalled(struct watchdog *wd, int slot)
{
	struct watchdog_seen *seen = &wd->seen[slot];
	double now = watchdog_clock(), since = wd->slots[slot].beacon.since;
	double last = wd->slots[slot].beat;

	if (since != seen->since) {
		seen->since = since;
		seen->at = now;
	}
	if (since != 0 && seen->at > last)
		last = seen->at;
	return now > last ? now - last : 0;
}

/* Copies a field another process may be writing: only the characters a
 * session id or a hook name can hold, up to the first other one. */
static void
watchdog_copy(char *dst, size_t dstsz, const char *src, size_t srcsz)
{
	size_t n = 0;

	while (n + 1 < dstsz && n < srcsz &&
	    (isalnum((unsigned char)src[n]) || strchr("_.:-", src[n]) != NULL) && src[n] != '\0') {
		dst[n] = src[n];
		n++;
	}
	dst[n] = '\0';
	if (n == 0 && dstsz > 1)
		strcpy(dst, "-");
}

int
watchdog_hook(
    const struct watchdog *wd, int slot, char *sid, size_t sidsz, char *name, size_t namesz)
{
	const struct hook_beacon *b = &wd->slots[slot].beacon;

	if (b->since == 0) {
		watchdog_copy(sid, sidsz, "", 0);
		watchdog_copy(name, namesz, "", 0);
		return 0;
	}
	watchdog_copy(sid, sidsz, b->sid, sizeof(b->sid));
	watchdog_copy(name, namesz, b->name, sizeof(b->name));
	return 1;
}

static void
watchdog_on_beat(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct watchdog *wd = t->data;

	(void)loop;
	(void)revents;
	wd->mine->beat = watchdog_clock();
}

void
watchdog_start(struct watchdog *wd, int slot, struct ev_loop *loop, double interval)
{
	wd->mine = &wd->slots[slot];
	wd->loop = loop;
	wd->mine->beat = watchdog_clock();
	hook_set_beacon(&wd->mine->beacon);
	ev_timer_init(&wd->beat, watchdog_on_beat, 0, interval);
	wd->beat.data = wd;
	ev_timer_start(loop, &wd->beat);
	/* The beat alone must not keep a loop running that has nothing
	 * else to do. */
	ev_unref(loop);
}
