/* watch.h - notice when any of a set of files changes (written in place,
 * replaced by rename, touched), and call back once the burst of changes
 * has settled. Linux inotify on the files' directories, so an editor's
 * "write a temp file, rename it over" is seen as well as an in-place write,
 * at any time resolution (stat-based polling misses two writes within one
 * second). Knows nothing of what the files are. */
#ifndef LUAMTA_WATCH_H
#define LUAMTA_WATCH_H

#include <ev.h>

struct watch; /* opaque */

typedef void watch_cb(void *arg);

/* Returns NULL (with errno) when inotify is not available. */
struct watch *watch_new(struct ev_loop *, double settle, watch_cb *, void *arg);
void watch_free(struct watch *); /* NULL is a no-op */

/* Replaces the watched set by files (NULL-terminated paths, copied).
 * Returns 0, or -1 when a directory could not be watched (others are). */
int watch_set(struct watch *, char *const *files);

#endif
