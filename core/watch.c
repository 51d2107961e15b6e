/* watch.c - file change notification for --watch, on inotify. Each file's
 * directory is watched and events are matched by file name, because a
 * rename over the file replaces the inode a file watch would follow. */
#include "watch.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define WATCH_MAX 64 /* files; policies rarely require more modules */

#define WATCH_EVENTS (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ATTRIB | IN_DELETE)

struct watch_file {
	int wd;     /* directory watch descriptor */
	char *name; /* owned: the file's name inside the directory */
};

struct watch {
	struct ev_loop *loop;
	int fd;
	ev_io io;
	ev_timer settle;
	watch_cb *cb;
	void *arg;
	struct watch_file files[WATCH_MAX];
	int nfiles;
};

static void
watch_on_settle(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct watch *wa = w->data;

	(void)loop;
	(void)revents;
	wa->cb(wa->arg);
}

static void
watch_on_event(struct ev_loop *loop, ev_io *w, int revents)
{
	struct watch *wa = w->data;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;
	int hit = 0;

	(void)revents;
	while ((n = read(wa->fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			for (int i = 0; i < wa->nfiles && ev->len > 0; i++)
				if (wa->files[i].wd == ev->wd &&
				    strcmp(wa->files[i].name, ev->name) == 0)
					hit = 1;
			p += sizeof(*ev) + ev->len;
		}
	}
	if (!hit)
		return;
	/* Restarted on every change, so a burst of writes gives one call. */
	ev_timer_stop(loop, &wa->settle);
	ev_timer_start(loop, &wa->settle);
}

struct watch *
watch_new(struct ev_loop *loop, double settle, watch_cb *cb, void *arg)
{
	struct watch *wa;

	if ((wa = calloc(1, sizeof(*wa))) == NULL)
		return NULL;
	if ((wa->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1) {
		free(wa);
		return NULL;
	}
	wa->loop = loop;
	wa->cb = cb;
	wa->arg = arg;
	ev_io_init(&wa->io, watch_on_event, wa->fd, EV_READ);
	ev_timer_init(&wa->settle, watch_on_settle, settle, 0);
	wa->io.data = wa->settle.data = wa;
	ev_io_start(loop, &wa->io);
	return wa;
}

/* Forgets the files; with rm, also removes their watches from the inotify
 * instance. watch_free() does not: closing the descriptor is enough, and a
 * process forked from the owner shares the instance, so removing watches
 * there would remove the owner's. */
static void
watch_clear(struct watch *wa, int rm)
{
	for (int i = 0; i < wa->nfiles; i++) {
		/* Several files may share a directory's descriptor; removing it
		 * twice fails harmlessly with EINVAL. */
		if (rm)
			(void)inotify_rm_watch(wa->fd, wa->files[i].wd);
		free(wa->files[i].name);
	}
	wa->nfiles = 0;
}

void
watch_free(struct watch *wa)
{
	if (wa == NULL)
		return;
	watch_clear(wa, 0);
	ev_io_stop(wa->loop, &wa->io);
	ev_timer_stop(wa->loop, &wa->settle);
	close(wa->fd);
	free(wa);
}

int
watch_set(struct watch *wa, char *const *files)
{
	char dir[PATH_MAX];
	int rc = 0;

	watch_clear(wa, 1);
	for (; files != NULL && *files != NULL && wa->nfiles < WATCH_MAX; files++) {
		const char *slash = strrchr(*files, '/');
		struct watch_file *f = &wa->files[wa->nfiles];
		size_t dl;

		if (slash == NULL) {
			strcpy(dir, ".");
			slash = *files - 1;
		} else {
			dl = (size_t)(slash - *files);
			if (dl >= sizeof(dir)) {
				rc = -1;
				continue;
			}
			memcpy(dir, *files, dl);
			dir[dl > 0 ? dl : 1] = '\0';
			if (dl == 0)
				dir[0] = '/';
		}
		if ((f->wd = inotify_add_watch(wa->fd, dir, WATCH_EVENTS)) == -1 ||
		    (f->name = strdup(slash + 1)) == NULL) {
			rc = -1;
			continue;
		}
		wa->nfiles++;
	}
	return rc;
}
