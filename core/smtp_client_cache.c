/* smtp_client_cache.c - parked SMTP client connections of one process (see
 * smtp_client_cache.h). Each one is watched while parked: its fd turning
 * readable means the peer closed it or said something unasked (a 421
 * before its own timeout), and its idle timer ends it. Neither watcher keeps a draining process up
 * (ev_unref): a worker that stops flushes the cache on its way out. */
#include "smtp_client_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/socket.h>

#include "log.h"

struct smtpc_parked {
	struct smtpc_parked *prev, *next; /* parked last first */
	char *key;                        /* owned */
	struct smtpc_conn c;
	ev_io io;
	ev_timer timer;
};

static struct smtpc_parked *parked; /* per process */
static int nparked;

/* Closes what conn holds, saying QUIT first without waiting for the reply
 * (a peer that already left gets nothing: MSG_DONTWAIT, no SIGPIPE). */
static void
smtpc_conn_close(struct smtpc_conn *c)
{
	size_t n;

	if (c->tls != NULL)
		(void)tls_write(c->tls, "QUIT\r\n", 6, &n);
	else if (c->fd >= 0)
		(void)send(c->fd, "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT);
	tls_free(c->tls);
	if (c->fd >= 0)
		close(c->fd);
	c->tls = NULL;
	c->fd = -1;
}

static void
parked_unlink(struct ev_loop *loop, struct smtpc_parked *p)
{
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		parked = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	nparked--;
	/* Started unreferenced: give the references back before stopping. */
	ev_ref(loop);
	ev_io_stop(loop, &p->io);
	ev_ref(loop);
	ev_timer_stop(loop, &p->timer);
	free(p->key);
}

static void
parked_free(struct ev_loop *loop, struct smtpc_parked *p, const char *why)
{
	char desc[400];

	if (log_enabled(LOG_DEBUG)) {
		log_escape(desc, sizeof(desc), p->c.desc, strlen(p->c.desc));
		log_debug(NULL, "smtp_client.cache_close remote=\"%s\" why=%s uses=%u", desc, why,
		    p->c.uses);
	}
	parked_unlink(loop, p);
	smtpc_conn_close(&p->c);
	free(p);
}

static void
parked_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	parked_free(loop, w->data, "peer");
}

static void
parked_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	parked_free(loop, w->data, "idle");
}

/* Appends one field to *key (length, ':', bytes; "-:" for none, unlike
 * ""); on failure *key becomes NULL. */
static void
key_field(char **key, size_t *len, const char *v)
{
	size_t n = v != NULL ? strlen(v) : 0;
	char head[32], *k;
	int h;

	if (v != NULL)
		h = snprintf(head, sizeof(head), "%zu:", n);
	else
		h = snprintf(head, sizeof(head), "-:");
	if (*key == NULL || (k = realloc(*key, *len + (size_t)h + n + 1)) == NULL) {
		free(*key);
		*key = NULL;
		return;
	}
	memcpy(k + *len, head, (size_t)h);
	memcpy(k + *len + h, v != NULL ? v : "", n);
	*len += (size_t)h + n;
	k[*len] = '\0';
	*key = k;
}

char *
smtp_client_cache_key(const struct smtpc_key *f)
{
	char num[32], *key = strdup("");
	size_t len = 0;

	snprintf(num, sizeof(num), "%d/%d", f->port, f->lmtp);
	key_field(&key, &len, f->kind);
	key_field(&key, &len, f->dest);
	key_field(&key, &len, num);
	key_field(&key, &len, f->tls);
	key_field(&key, &len, f->auth_user);
	key_field(&key, &len, f->auth_pass);
	key_field(&key, &len, f->helo);
	return key;
}

int
smtp_client_cache_reusable(struct ev_loop *loop, unsigned uses, double born)
{
	return uses < SMTPC_CACHE_REUSE_MAX && ev_now(loop) - born < SMTPC_CACHE_AGE_MAX;
}

void
smtp_client_cache_put(
    struct ev_loop *loop, const char *key, const struct smtpc_conn *conn, double idle)
{
	struct smtpc_parked *p, *oldest;

	if (nparked >= SMTPC_CACHE_MAX) {
		for (oldest = parked; oldest->next != NULL; oldest = oldest->next)
			;
		parked_free(loop, oldest, "full");
	}
	if ((p = calloc(1, sizeof(*p))) == NULL || (p->key = strdup(key)) == NULL) {
		struct smtpc_conn c = *conn;

		free(p);
		smtpc_conn_close(&c);
		return;
	}
	p->c = *conn;
	ev_io_init(&p->io, parked_on_io, p->c.fd, EV_READ);
	p->io.data = p;
	ev_io_start(loop, &p->io);
	ev_unref(loop);
	ev_timer_init(&p->timer, parked_on_timer, idle, 0);
	p->timer.data = p;
	ev_timer_start(loop, &p->timer);
	ev_unref(loop);
	p->next = parked;
	if (parked != NULL)
		parked->prev = p;
	parked = p;
	nparked++;
}

int
smtp_client_cache_take(struct ev_loop *loop, const char *key, struct smtpc_conn *out)
{
	struct smtpc_parked *p;

	for (p = parked; p != NULL; p = p->next)
		if (strcmp(p->key, key) == 0)
			break;
	if (p == NULL)
		return 0;
	parked_unlink(loop, p);
	*out = p->c;
	free(p);
	return 1;
}

void
smtp_client_cache_flush(struct ev_loop *loop)
{
	while (parked != NULL)
		parked_free(loop, parked, "flush");
}
