/* metrics_http.c - the scrape endpoint of --metrics: one request per
 * connection, GET (or HEAD) /metrics answered with the text exposition,
 * 404 for another path, 405 for another method, 400 for what is not an
 * HTTP/1.x request or a head over METRICS_HTTP_HEAD_MAX; then the
 * connection closes. Each scraper has METRICS_HTTP_TIMEOUT seconds in all.
 *
 * Written here rather than taken from libmicrohttpd (Debian's libmicrohttpd
 * is the packaged library for this): MHD runs its own thread, or asks to be
 * polled from a select loop, and its process here is the master, which
 * forks its workers: a fork while an MHD thread holds a lock of its own or
 * of the allocator leaves the child with that lock held, and polling MHD
 * from libev means re-reading its whole descriptor set after every call.
 * One route with no body to read, keep-alive or chunking is the size of
 * this file, on the loop the master already runs. */
#include "metrics_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "http_parse.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"

struct metrics_client {
	struct metrics_client *next, *prev;
	int fd;
	ev_io io;
	ev_timer timer;
	size_t len; /* bytes of head read */
	struct buf out;
	char head[METRICS_HTTP_HEAD_MAX];
};

static struct {
	int fd; /* bound, not yet listening on the loop */
	struct ev_loop *loop;
	struct listener *listener;
	struct metrics_client *clients;
	int nclients;
	const char *spool;
} H = { .fd = -1 };

int
metrics_http_bind(const char *host, int port, char *err, size_t errsz)
{
	if ((H.fd = listener_bind(host, port, err, errsz)) == -1)
		return -1;
	return 0;
}

int
metrics_http_fd(void)
{
	return H.listener != NULL || H.fd != -1 ? H.fd : -1;
}

static void
metrics_client_free(struct metrics_client *c)
{
	ev_io_stop(H.loop, &c->io);
	ev_timer_stop(H.loop, &c->timer);
	close(c->fd);
	buf_reset(&c->out);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		H.clients = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	H.nclients--;
	free(c);
}

/* The queue's entries by state, read from the spool as `luamta queue list`
 * reads it: the disk is the one place every worker's entries meet (each
 * worker's relay knows only the entries it has loaded). A spool that does
 * not exist yet holds nothing; one that cannot be read, or holds more than
 * METRICS_QUEUE_SCAN_MAX entries, gives no gauge rather than a wrong one. */
static void
metrics_http_queue(struct metrics_queue *q)
{
	char **ids = NULL, err[256];
	size_t n = 0;

	memset(q, 0, sizeof(*q));
	if (H.spool == NULL)
		return;
	if (queue_list_ids(H.spool, &ids, &n, err, sizeof(err)) == -1) {
		q->known = access(H.spool, F_OK) == -1 && errno == ENOENT;
		return;
	}
	q->known = n <= METRICS_QUEUE_SCAN_MAX;
	for (size_t i = 0; i < n; i++) {
		struct queue_entry e;
		int deferred = 0;

		if (q->known && queue_load(H.spool, ids[i], &e, err, sizeof(err)) == 0) {
			for (size_t r = 0; r < e.nrcpts; r++)
				deferred |= e.rcpts[r].state == QUEUE_RCPT_DEFERRED;
			if (e.held)
				q->held++;
			else if (deferred)
				q->deferred++;
			else
				q->queued++;
			queue_entry_clear(&e);
		}
		free(ids[i]);
	}
	free(ids);
}

/* Queues the whole response: status line, fields and (unless HEAD) body. */
static int
metrics_respond(struct metrics_client *c, int status, const char *reason, int head_only)
{
	struct buf body;
	struct metrics_queue q;
	char fields[512];
	int n, rc = -1;

	buf_init(&body);
	if (status == 200) {
		metrics_http_queue(&q);
		if (metrics_write(&body, &q) == -1)
			goto out;
	} else {
		n = snprintf(fields, sizeof(fields), "%d %s\n", status, reason);
		if (buf_append(&body, fields, (size_t)n) == -1)
			goto out;
	}
	n = snprintf(fields, sizeof(fields),
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: %s\r\n"
	    "Content-Length: %zu\r\n"
	    "%s"
	    "Connection: close\r\n\r\n",
	    status, reason,
	    status == 200 ? "text/plain; version=0.0.4; charset=utf-8" :
			    "text/plain; charset=utf-8",
	    buf_avail(&body), status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (buf_append(&c->out, fields, (size_t)n) == -1 ||
	    (!head_only && buf_avail(&body) > 0 &&
		buf_append(&c->out, buf_head(&body), buf_avail(&body)) == -1))
		goto out;
	rc = 0;
out:
	buf_reset(&body);
	return rc;
}

/* Judges a complete head: "METHOD SP TARGET SP HTTP/1.x" and fields. */
static void
metrics_request(struct metrics_client *c)
{
	const char *line = c->head, *sp1, *sp2, *end;
	size_t llen = strcspn(line, "\r\n"), tlen;
	int head_only = 0;

	end = line + llen;
	sp1 = memchr(line, ' ', llen);
	sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
	if (sp1 == NULL || sp2 == NULL || !http_token_ok(line, (size_t)(sp1 - line)) ||
	    sp2 == sp1 + 1 || end - sp2 - 1 != 8 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (sp2[8] != '0' && sp2[8] != '1')) {
		(void)metrics_respond(c, 400, "Bad Request", 0);
		return;
	}
	if (sp1 - line == 4 && memcmp(line, "HEAD", 4) == 0)
		head_only = 1;
	else if (!(sp1 - line == 3 && memcmp(line, "GET", 3) == 0)) {
		(void)metrics_respond(c, 405, "Method Not Allowed", 0);
		return;
	}
	/* The query string is ignored, as Prometheus's own servers do. */
	tlen = strcspn(sp1 + 1, "? ");
	if (tlen == 8 && memcmp(sp1 + 1, "/metrics", 8) == 0)
		(void)metrics_respond(c, 200, "OK", head_only);
	else
		(void)metrics_respond(c, 404, "Not Found", head_only);
}

/* Where the head ends (past its blank line), or 0 before it has. Bare LF
 * lines are taken too, as most servers take them. What follows the head
 * (a body) is never read. */
static size_t
metrics_head_end(const char *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (p[i] != '\n')
			continue;
		if (p[i + 1] == '\n')
			return i + 2;
		if (p[i + 1] == '\r' && i + 2 < len && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

static void
metrics_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct metrics_client *c = w->data;
	ssize_t n;
	(void)revents;
	if (buf_avail(&c->out) == 0) {
		n = read(c->fd, c->head + c->len, sizeof(c->head) - 1 - c->len);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			metrics_client_free(c);
			return;
		}
		c->len += (size_t)n;
		c->head[c->len] = '\0';
		if (metrics_head_end(c->head, c->len) == 0) {
			if (c->len < sizeof(c->head) - 1)
				return;
			(void)metrics_respond(c, 400, "Bad Request", 0);
		} else
			metrics_request(c);
		if (buf_avail(&c->out) == 0) {
			metrics_client_free(c); /* out of memory: no answer */
			return;
		}
		/* Whatever else the client sends is not read. */
		ev_io_stop(loop, &c->io);
		ev_io_set(&c->io, c->fd, EV_WRITE);
		ev_io_start(loop, &c->io);
	}
	n = write(c->fd, buf_head(&c->out), buf_avail(&c->out));
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		metrics_client_free(c);
		return;
	}
	buf_consume(&c->out, (size_t)n);
	if (buf_avail(&c->out) == 0) {
		/* Everything is out: the half-close tells the client so
		 * before the close, so unread bytes it sent cannot turn our
		 * close into a reset that eats the answer. */
		(void)shutdown(c->fd, SHUT_WR);
		metrics_client_free(c);
	}
}

static void
metrics_on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	metrics_client_free(t->data);
}

static void
metrics_on_accept(int fd, const struct sockaddr *sa, socklen_t salen, void *arg)
{
	struct metrics_client *c;

	(void)sa;
	(void)salen;
	(void)arg;
	/* At the cap, the oldest connection goes (the list is newest first):
	 * scrapes take a moment, so it is one that sends nothing, and idle
	 * connections cannot lock the scrapers out for their timeout. */
	if (H.nclients >= METRICS_HTTP_CLIENTS) {
		struct metrics_client *old = H.clients;

		while (old->next != NULL)
			old = old->next;
		metrics_client_free(old);
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	c->fd = fd;
	buf_init(&c->out);
	ev_io_init(&c->io, metrics_on_io, fd, EV_READ);
	ev_timer_init(&c->timer, metrics_on_timeout, METRICS_HTTP_TIMEOUT, 0);
	c->io.data = c->timer.data = c;
	ev_io_start(H.loop, &c->io);
	ev_timer_start(H.loop, &c->timer);
	c->next = H.clients;
	if (H.clients != NULL)
		H.clients->prev = c;
	H.clients = c;
	H.nclients++;
}

void
metrics_http_start(struct ev_loop *loop, const char *spool)
{
	char host[64];
	int port;

	if (H.fd == -1 || H.listener != NULL)
		return;
	H.loop = loop;
	H.spool = spool;
	if ((H.listener = listener_new(loop, H.fd, metrics_on_accept, NULL)) == NULL)
		log_error(NULL, "metrics.listen error=\"out of memory\"");
	else if (listener_sockname(H.fd, host, sizeof(host), &port) == 0)
		log_info(NULL, "metrics.ready addr=%s port=%d", host, port);
}

void
metrics_http_stop(void)
{
	while (H.clients != NULL)
		metrics_client_free(H.clients);
	if (H.listener != NULL)
		listener_free(H.listener); /* closes H.fd */
	else if (H.fd != -1)
		close(H.fd);
	H.listener = NULL;
	H.fd = -1;
}
