/* conn.c - socket I/O on libev for one client, plaintext or TLS. The owner
 * reacts to events; this file decides only when to read and write, and
 * drives the TLS handshake (tls.c does the cryptography). */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics.h"
#include "tls.h"

enum conn_tls_state {
	CONN_TLS_NONE = 0, /* plaintext */
	CONN_TLS_FLUSH,    /* STARTTLS: the 220 still goes out in plaintext */
	CONN_TLS_HANDSHAKE,
	CONN_TLS_ON,
};

struct conn {
	struct ev_loop *loop;
	int fd;  /* read side, and the socket */
	int wfd; /* write side: fd, or stdout for --stdio over pipes */
	ev_io rio, wio;
	ev_timer timer;
	struct buf in, out;
	conn_cb *cb;
	void *arg;
	int eof;         /* peer closed, or input shut down */
	int err;         /* errno of the failure, 0 if none */
	struct tls *tls; /* owned, or NULL */
	enum conn_tls_state tls_state;
	int tls_failed;  /* err describes a TLS failure: see tls_strerror */
	size_t tls_wlen; /* length of a TLS write to retry after WANT_WRITE */
	int tls_more;    /* mbedTLS holds more (bytes or a close) than we took */
	char tls_err[128];
};

static const char *const conn_event_names[] = {
	"datain",
	"drained",
	"timeout",
	"closed",
	"error",
	"tls_ready",
};

const char *
conn_event_str(enum conn_event e)
{
	return (unsigned)e < 6 ? conn_event_names[e] : "?";
}

static void
conn_update_read(struct conn *c)
{
	int want = !c->eof && c->err == 0 && buf_avail(&c->in) < CONN_INPUT_HIGH &&
	    c->tls_state != CONN_TLS_FLUSH;

	if (want && !ev_is_active(&c->rio)) {
		ev_io_start(c->loop, &c->rio);
		/* Bytes mbedTLS already decrypted will not make the fd
		 * readable again: go and get them. */
		if (c->tls_more)
			ev_feed_event(c->loop, &c->rio, EV_READ);
	} else if (!want && ev_is_active(&c->rio))
		ev_io_stop(c->loop, &c->rio);
}

static void
conn_fail(struct conn *c, int err)
{
	c->err = err;
	if (c->tls_failed && c->tls != NULL)
		snprintf(c->tls_err, sizeof(c->tls_err), "TLS: %s", tls_strerror(c->tls));
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	c->cb(c, CONN_ERROR, c->arg);
}

/* Moves the handshake on. Returns 0 while it is in progress or done, -1
 * when it failed (reported). */
static int
conn_handshake(struct conn *c)
{
	switch (tls_handshake(c->tls)) {
	case TLS_OK:
		c->tls_state = CONN_TLS_ON;
		metrics_tls(tls_version(c->tls));
		ev_io_stop(c->loop, &c->wio);
		conn_update_read(c);
		c->cb(c, CONN_TLS_READY, c->arg);
		return 0;
	case TLS_WANT_READ:
		ev_io_stop(c->loop, &c->wio);
		if (!ev_is_active(&c->rio))
			ev_io_start(c->loop, &c->rio);
		return 0;
	case TLS_WANT_WRITE:
		if (!ev_is_active(&c->wio))
			ev_io_start(c->loop, &c->wio);
		return 0;
	case TLS_CLOSED:
		metrics_tls(NULL);
		c->eof = 1;
		ev_io_stop(c->loop, &c->rio);
		c->cb(c, CONN_CLOSED, c->arg);
		return -1;
	case TLS_ERROR:
		break;
	}
	metrics_tls(NULL);
	c->tls_failed = 1;
	conn_fail(c, EPROTO);
	return -1;
}

/* One read: from the socket, or through TLS until it has nothing more.
 * Returns bytes added, 0 for "nothing now", -1 on EOF or error (errno). */
static ssize_t
conn_read_some(struct conn *c)
{
	size_t total = 0, n;

	if (c->tls_state != CONN_TLS_ON) {
		ssize_t r = read(c->fd, buf_tail(&c->in), CONN_READ_CHUNK);
		if (r == 0) {
			errno = 0;
			return -1;
		}
		if (r < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
		buf_commit(&c->in, (size_t)r);
		return r;
	}
	c->tls_more = 0;
	while (total < CONN_READ_CHUNK) {
		switch (tls_read(c->tls, buf_tail(&c->in), CONN_READ_CHUNK - total, &n)) {
		case TLS_OK:
			buf_commit(&c->in, n);
			total += n;
			continue;
		case TLS_WANT_READ:
		case TLS_WANT_WRITE:
			return (ssize_t)total;
		case TLS_CLOSED:
			if (total > 0) {
				c->tls_more = 1; /* the close comes on the next read */
				return (ssize_t)total;
			}
			errno = 0;
			return -1;
		case TLS_ERROR:
			c->tls_failed = 1;
			errno = EPROTO;
			return -1;
		}
	}
	c->tls_more = tls_pending(c->tls) > 0;
	return (ssize_t)total;
}

static void
conn_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;
	ssize_t n;

	(void)loop;
	(void)revents;
	if (c->tls_state == CONN_TLS_HANDSHAKE) {
		(void)conn_handshake(c);
		return;
	}
	if (buf_reserve(&c->in, CONN_READ_CHUNK) == -1) {
		conn_fail(c, ENOMEM);
		return;
	}
	n = conn_read_some(c);
	if (n > 0) {
		/* Bytes alone do not re-arm the idle timer: a client dripping a
		 * byte a second would hold its slot for ever (slowloris). The
		 * owner calls conn_touch() when it sees progress. */
		conn_update_read(c);
		/* What mbedTLS still holds will not wake the fd up. */
		if (c->tls_more && ev_is_active(&c->rio))
			ev_feed_event(c->loop, &c->rio, EV_READ);
		c->cb(c, CONN_DATAIN, c->arg);
		return;
	}
	if (n == 0)
		return;
	ev_io_stop(c->loop, &c->rio);
	buf_trim(&c->in);
	if (errno == 0) {
		c->eof = 1;
		c->cb(c, CONN_CLOSED, c->arg);
	} else
		conn_fail(c, errno);
}

/* Writes queued output. Returns 0 (all written or would block) or -1. */
static int
conn_write_some(struct conn *c)
{
	while (buf_avail(&c->out) > 0) {
		size_t n, len;

		if (c->tls_state == CONN_TLS_ON) {
			/* After WANT_WRITE mbedTLS must see the same buffer and
			 * length again; appending meanwhile does not change the
			 * bytes at the head. */
			len = c->tls_wlen != 0 ? c->tls_wlen : buf_avail(&c->out);
			switch (tls_write(c->tls, buf_head(&c->out), len, &n)) {
			case TLS_OK:
				c->tls_wlen = 0;
				buf_consume(&c->out, n);
				continue;
			case TLS_WANT_WRITE:
			case TLS_WANT_READ:
				c->tls_wlen = len;
				return 0;
			case TLS_CLOSED:
			case TLS_ERROR:
				c->tls_failed = 1;
				c->err = EPROTO;
				return -1;
			}
		}
		ssize_t r = write(c->wfd, buf_head(&c->out), buf_avail(&c->out));
		if (r > 0) {
			buf_consume(&c->out, (size_t)r);
			continue;
		}
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		c->err = r == -1 ? errno : EIO;
		return -1;
	}
	buf_reset(&c->out);
	/* STARTTLS: the plaintext 220 is out, now the handshake. */
	if (c->tls_state == CONN_TLS_FLUSH) {
		c->tls_state = CONN_TLS_HANDSHAKE;
		if (!ev_is_active(&c->rio))
			ev_io_start(c->loop, &c->rio);
		ev_feed_event(c->loop, &c->rio, EV_READ);
	}
	return 0;
}

static void
conn_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;

	(void)loop;
	(void)revents;
	if (c->err != 0) {
		conn_fail(c, c->err);
		return;
	}
	if (c->tls_state == CONN_TLS_HANDSHAKE) {
		(void)conn_handshake(c);
		return;
	}
	if (conn_write_some(c) == -1) {
		conn_fail(c, c->err);
		return;
	}
	if (buf_avail(&c->out) == 0) {
		ev_io_stop(c->loop, &c->wio);
		c->cb(c, CONN_DRAINED, c->arg);
	}
}

static void
conn_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;

	(void)loop;
	(void)revents;
	ev_timer_stop(c->loop, &c->timer);
	c->cb(c, CONN_TIMEOUT, c->arg);
}

struct conn *
conn_new(struct ev_loop *loop, int fd, conn_cb *cb, void *arg)
{
	return conn_new_pair(loop, fd, fd, cb, arg);
}

struct conn *
conn_new_pair(struct ev_loop *loop, int fd, int wfd, conn_cb *cb, void *arg)
{
	struct conn *c;
	int one = 1, fl;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		if (wfd != fd)
			close(wfd);
		return NULL;
	}
	/* Accepted sockets come non-blocking already (accept4). */
	if ((fl = fcntl(fd, F_GETFL)) != -1 && !(fl & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	if (wfd != fd && (fl = fcntl(wfd, F_GETFL)) != -1)
		(void)fcntl(wfd, F_SETFL, fl | O_NONBLOCK);
	/* One write per reply batch, no Nagle delay against the client's
	 * delayed ACK (a client waits about 40 ms per multi-line reply otherwise).
	 * Fails harmlessly on a non-TCP socket. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->loop = loop;
	c->fd = fd;
	c->wfd = wfd;
	c->cb = cb;
	c->arg = arg;
	ev_io_init(&c->rio, conn_on_read, fd, EV_READ);
	ev_io_init(&c->wio, conn_on_write, wfd, EV_WRITE);
	ev_init(&c->timer, conn_on_timer);
	c->rio.data = c->wio.data = c->timer.data = c;
	buf_init(&c->in);
	buf_init(&c->out);
	conn_update_read(c);
	return c;
}

void
conn_free(struct conn *c)
{
	if (c == NULL)
		return;
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	ev_timer_stop(c->loop, &c->timer);
	tls_free(c->tls);
	close(c->fd);
	if (c->wfd != c->fd)
		close(c->wfd);
	buf_reset(&c->in);
	buf_reset(&c->out);
	free(c);
}

int
conn_starttls(struct conn *c, struct tls_config *cfg)
{
	if (c->tls != NULL || c->wfd != c->fd || (c->tls = tls_new(cfg, c->fd)) == NULL)
		return -1;
	/* Nothing the client sent in plaintext survives the switch
	 * (CVE-2011-0411 class): the owner has already looked at it. */
	buf_reset(&c->in);
	c->tls_state = CONN_TLS_FLUSH;
	ev_io_stop(c->loop, &c->rio);
	if (buf_avail(&c->out) == 0)
		(void)conn_write_some(c); /* starts the handshake now */
	else if (!ev_is_active(&c->wio))
		ev_io_start(c->loop, &c->wio);
	return 0;
}

struct tls *
conn_tls(const struct conn *c)
{
	return c->tls_state == CONN_TLS_ON ? c->tls : NULL;
}

struct buf *
conn_input(struct conn *c)
{
	return &c->in;
}

int
conn_write(struct conn *c, const void *p, size_t n)
{
	return buf_append(&c->out, p, n);
}

void
conn_flush(struct conn *c)
{
	if (c->err != 0 || ev_is_active(&c->wio) || c->tls_state == CONN_TLS_HANDSHAKE)
		return;
	if (conn_write_some(c) == -1) {
		/* Reported from the loop, not from inside the caller's stack. */
		ev_io_start(c->loop, &c->wio);
		ev_feed_event(c->loop, &c->wio, EV_WRITE);
		return;
	}
	if (buf_avail(&c->out) > 0)
		ev_io_start(c->loop, &c->wio);
	/* Consuming input may have brought us back under the high mark. */
	if (c->tls_state != CONN_TLS_HANDSHAKE)
		conn_update_read(c);
}

size_t
conn_output_pending(const struct conn *c)
{
	return buf_avail(&c->out);
}

void
conn_touch(struct conn *c)
{
	if (ev_is_active(&c->timer))
		ev_timer_again(c->loop, &c->timer);
}

void
conn_set_timeout(struct conn *c, double secs)
{
	c->timer.repeat = secs;
	ev_timer_again(c->loop, &c->timer);
}

void
conn_shutdown_input(struct conn *c)
{
	c->eof = 1;
	buf_reset(&c->in);
	conn_update_read(c);
	/* With TLS, the rest of the input is records we no longer decrypt. */
	(void)shutdown(c->fd, SHUT_RD);
}

void
conn_trim(struct conn *c)
{
	buf_trim(&c->in);
	buf_trim(&c->out);
}

int
conn_failed(const struct conn *c)
{
	return c->err != 0;
}

const char *
conn_strerror(const struct conn *c)
{
	if (c->tls_failed && c->tls_err[0] != '\0')
		return c->tls_err;
	return c->err != 0 ? strerror(c->err) : "no error";
}
