/* cosocket_pool.c - idle connections of luamta.tcp() kept per worker, and
 * the TLS client configs. An idle connection is watched: it is closed
 * when its idle time is up or when its fd turns readable (the peer closed
 * it, or sent something no one asked for, which would confuse its next
 * user). Workers build all of this after the fork; the master never does. */
#include "cosocket_pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COS_CAFILES_MAX 8 /* distinct CA files whose configs are kept */

struct cos_idle {
	struct cos_idle *prev, *next; /* newest first */
	char *key;                    /* owned */
	struct cosocket_conn c;
	ev_io io;
	ev_timer timer;
};

/* Per worker: made on first use, freed by cosocket_pool_shutdown(). */
static struct cos_idle *cos_pool;
static struct tls_config *cos_tls_none;
static struct {
	char *path;
	struct tls_config *cfg;
} cos_cafiles[COS_CAFILES_MAX];

void
cosocket_conn_close(struct cosocket_conn *c)
{
	tls_free(c->tls);
	if (c->fd >= 0)
		close(c->fd);
	free(c->servername);
	free(c->verify);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static void
cos_idle_unlink(struct cos_idle *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		cos_pool = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	ev_io_stop(e->c.loop, &e->io);
	ev_timer_stop(e->c.loop, &e->timer);
	free(e->key);
}

static void
cos_idle_free(struct cos_idle *e)
{
	cos_idle_unlink(e);
	cosocket_conn_close(&e->c);
	free(e);
}

static void
cos_idle_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	cos_idle_free(w->data);
}

static void
cos_idle_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	cos_idle_free(w->data);
}

int
cosocket_pool_put(const char *key, struct cosocket_conn *c, double idle, int size)
{
	struct cos_idle *e, *oldest = NULL;
	int n = 0;

	for (e = cos_pool; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0) {
			n++;
			oldest = e;
		}
	if (n >= size && oldest != NULL)
		cos_idle_free(oldest);
	if ((e = calloc(1, sizeof(*e))) == NULL || (e->key = strdup(key)) == NULL) {
		free(e);
		cosocket_conn_close(c);
		return -1;
	}
	e->c = *c;
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	ev_io_init(&e->io, cos_idle_on_io, e->c.fd, EV_READ);
	e->io.data = e;
	ev_io_start(e->c.loop, &e->io);
	ev_timer_init(&e->timer, cos_idle_on_timer, idle, 0);
	e->timer.data = e;
	if (idle > 0)
		ev_timer_start(e->c.loop, &e->timer);
	e->next = cos_pool;
	if (cos_pool != NULL)
		cos_pool->prev = e;
	cos_pool = e;
	return 0;
}

int
cosocket_pool_take(const char *key, struct cosocket_conn *c)
{
	struct cos_idle *e;

	for (e = cos_pool; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
			break;
	if (e == NULL)
		return -1;
	cos_idle_unlink(e);
	*c = e->c;
	free(e);
	return 0;
}

struct tls_config *
cosocket_tls_config(const char *ca_file, char *err, size_t errsz)
{
	struct tls_config *cfg;
	char *path;
	int i;

	if (ca_file == NULL) {
		if (cos_tls_none == NULL)
			cos_tls_none = tls_config_client_new(NULL, err, errsz);
		return cos_tls_none;
	}
	for (i = 0; i < COS_CAFILES_MAX && cos_cafiles[i].path != NULL; i++)
		if (strcmp(cos_cafiles[i].path, ca_file) == 0)
			return cos_cafiles[i].cfg;
	/* Loading blocks the worker for as long as parsing the bundle takes
	 * (milliseconds for the system's), once per file and worker. */
	if ((cfg = tls_config_client_new(ca_file, err, errsz)) == NULL)
		return NULL;
	if ((path = strdup(ca_file)) == NULL) {
		tls_config_unref(cfg);
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	/* Full: the first loaded goes. Connections using it hold their own
	 * reference, so it lives on until the last of them closes. */
	if (i == COS_CAFILES_MAX) {
		free(cos_cafiles[0].path);
		tls_config_unref(cos_cafiles[0].cfg);
		memmove(&cos_cafiles[0], &cos_cafiles[1],
		    sizeof(cos_cafiles[0]) * (COS_CAFILES_MAX - 1));
		i = COS_CAFILES_MAX - 1;
	}
	cos_cafiles[i].path = path;
	cos_cafiles[i].cfg = cfg;
	return cfg;
}

void
cosocket_pool_shutdown(void)
{
	int i;

	while (cos_pool != NULL)
		cos_idle_free(cos_pool);
	tls_config_unref(cos_tls_none);
	cos_tls_none = NULL;
	for (i = 0; i < COS_CAFILES_MAX; i++) {
		free(cos_cafiles[i].path);
		tls_config_unref(cos_cafiles[i].cfg);
		cos_cafiles[i].path = NULL;
		cos_cafiles[i].cfg = NULL;
	}
}
