/* watchdog.h - notices a worker whose event loop has stopped turning: a
 * hook stuck where the Lua budget cannot reach (a C function such as a
 * catastrophic string.match, a looping __gc finalizer), or a blocking call.
 * The master maps one slot per worker, shared with the children it forks;
 * each worker stamps its slot from a timer on its loop and publishes the
 * hook it is running (hook.c's beacon). The master reads the slots; killing
 * and restarting is its business, not this module's. */
#ifndef LUAMTA_WATCHDOG_H
#define LUAMTA_WATCHDOG_H

#include <stddef.h>

#include <ev.h>

struct watchdog; /* opaque */

/* Master, before forking: nslots slots in a shared anonymous mapping.
 * Returns NULL (with errno) when it cannot be mapped. */
struct watchdog *watchdog_new(int nslots);
/* Unmaps (in this process only); NULL is a no-op. */
void watchdog_free(struct watchdog *);

/* Master, just before forking the worker for slot: counts the new worker
 * as having turned its loop now, with no hook running. */
void watchdog_arm(struct watchdog *, int slot);
/* Master, every check: seconds since the worker in slot last showed
 * progress, meaning a turn of its loop or the start of a new hook run.
 * Measured on the monotonic clock: a change of the wall clock kills
 * nobody, and neither does a suspended machine. */
double watchdog_stalled(struct watchdog *, int slot);
/* Master: when the worker in slot is inside a hook, copies its session id
 * and hook name (printable, NUL-terminated) and returns 1; else writes "-"
 * to both and returns 0. */
int watchdog_hook(
    const struct watchdog *, int slot, char *sid, size_t sidsz, char *name, size_t namesz);

/* Worker, after the fork: stamps slot every interval seconds from a timer
 * on loop (and once at the first turn), and has hook.c keep the slot's
 * beacon current. The timer fires only when the loop turns, which is the
 * point: a loop that turns, however busy, is never seen as stalled. */
void watchdog_start(struct watchdog *, int slot, struct ev_loop *, double interval);

#endif
