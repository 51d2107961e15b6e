/* proxy.c - waiting for the PROXY protocol header (see proxy.h). Each
 * waiting connection peeks at what the socket holds and consumes only what
 * belongs to the header: all of it while the header is incomplete (the
 * parser's promise, proxy_parse.h), exactly the header once it is complete.
 * A peek that finds nothing new cannot happen on a readable socket, so the
 * level-triggered watcher never spins. */
#include "proxy.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "metrics.h"

struct proxy_wait {
	struct proxy_wait *next, *prev;
	struct proxy_door *door;
	ev_io io;
	ev_timer timer;
	int fd;
	int tag;
	struct sockaddr_storage peer;
	size_t have; /* header bytes consumed so far */
	unsigned char buf[PROXY_MAX];
};

struct proxy_door {
	struct ev_loop *loop;
	double timeout;
	int max, waiting;
	struct proxy_wait *head;
	proxy_door_cb *cb;
	void *arg;
};

static void
wait_unlink(struct proxy_wait *w)
{
	struct proxy_door *d = w->door;

	ev_io_stop(d->loop, &w->io);
	ev_timer_stop(d->loop, &w->timer);
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		d->head = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	d->waiting--;
}

static void
refuse(const struct sockaddr *peer, int fd, const char *reason, const char *why)
{
	char ip[INET6_ADDRSTRLEN], esc[128];
	int port;

	listener_addr_str(peer, ip, sizeof(ip), &port);
	metrics_inc(MC_REFUSED_PROXY);
	if (why != NULL)
		log_warn(NULL, "proxy.refuse peer=%s port=%d reason=%s error=\"%s\"", ip, port,
		    reason, log_escape(esc, sizeof(esc), why, strlen(why)));
	else
		log_warn(NULL, "proxy.refuse peer=%s port=%d reason=%s", ip, port, reason);
	close(fd);
}

static void
wait_fail(struct proxy_wait *w, const char *reason, const char *why)
{
	wait_unlink(w);
	refuse((struct sockaddr *)&w->peer, w->fd, reason, why);
	free(w);
}

static void
on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	wait_fail(t->data, "timeout", NULL);
}

static void
on_read(struct ev_loop *loop, ev_io *io, int revents)
{
	struct proxy_wait *w = io->data;
	struct proxy_door *d = w->door;
	struct proxy_hdr h;
	const char *why;
	ssize_t n, want;
	int rc;

	(void)loop;
	(void)revents;
	n = recv(w->fd, w->buf + w->have, sizeof(w->buf) - w->have, MSG_PEEK);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		wait_fail(w, "error", strerror(errno));
		return;
	}
	if (n == 0) {
		wait_fail(w, "closed", NULL);
		return;
	}
	rc = proxy_parse(w->buf, w->have + (size_t)n, &h, &why);
	if (rc == -1) {
		wait_fail(w, "invalid", why);
		return;
	}
	want = rc == 0 ? n : (ssize_t)((size_t)rc - w->have);
	/* The bytes are in the socket's buffer: one read takes them all. */
	if (recv(w->fd, w->buf + w->have, (size_t)want, 0) != want) {
		wait_fail(w, "error", "short read");
		return;
	}
	w->have += (size_t)want;
	if (rc == 0)
		return;
	wait_unlink(w);
	d->cb(d->arg, w->fd, (struct sockaddr *)&w->peer, &h, w->tag);
	free(w);
}

struct proxy_door *
proxy_door_new(struct ev_loop *loop, double timeout, int max, proxy_door_cb *cb, void *arg)
{
	struct proxy_door *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->loop = loop;
	d->timeout = timeout;
	d->max = max;
	d->cb = cb;
	d->arg = arg;
	return d;
}

void
proxy_door_add(struct proxy_door *d, int fd, const struct sockaddr *peer, int tag)
{
	struct proxy_wait *w;
	size_t len = peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
	    peer->sa_family == AF_INET           ? sizeof(struct sockaddr_in) :
						   sizeof(struct sockaddr);

	if (d->waiting >= d->max) {
		refuse(peer, fd, "too_many", NULL);
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		refuse(peer, fd, "error", "out of memory");
		return;
	}
	w->door = d;
	w->fd = fd;
	w->tag = tag;
	memcpy(&w->peer, peer, len);
	ev_io_init(&w->io, on_read, fd, EV_READ);
	ev_timer_init(&w->timer, on_timeout, d->timeout, 0);
	w->io.data = w->timer.data = w;
	ev_io_start(d->loop, &w->io);
	ev_timer_start(d->loop, &w->timer);
	w->next = d->head;
	if (d->head != NULL)
		d->head->prev = w;
	d->head = w;
	d->waiting++;
}

int
proxy_door_waiting(const struct proxy_door *d)
{
	return d != NULL ? d->waiting : 0;
}

void
proxy_door_free(struct proxy_door *d)
{
	if (d == NULL)
		return;
	while (d->head != NULL) {
		struct proxy_wait *w = d->head;

		wait_unlink(w);
		close(w->fd);
		free(w);
	}
	free(d);
}
