/* conn.c - socket I/O on libev for one client. The owner reacts to events;
 * this file decides only when to read and write. */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
	struct ev_loop *loop;
	int fd;
	ev_io rio, wio;
	ev_timer timer;
	struct buf in, out;
	conn_cb *cb;
	void *arg;
	int paused; /* owner asked us not to read */
	int eof;    /* peer closed, or input shut down */
	int err;    /* errno of the failure, 0 if none */
};

static const char *const conn_event_names[] = {
	"datain",
	"drained",
	"timeout",
	"closed",
	"error",
};

const char *
conn_event_str(enum conn_event e)
{
	return (unsigned)e < 5 ? conn_event_names[e] : "?";
}

static void
conn_update_read(struct conn *c)
{
	int want = !c->paused && !c->eof && c->err == 0 && buf_avail(&c->in) < CONN_INPUT_HIGH;

	if (want && !ev_is_active(&c->rio))
		ev_io_start(c->loop, &c->rio);
	else if (!want && ev_is_active(&c->rio))
		ev_io_stop(c->loop, &c->rio);
}

static void
conn_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;
	ssize_t n;

	(void)loop;
	(void)revents;
	if (buf_reserve(&c->in, CONN_READ_CHUNK) == -1) {
		c->err = ENOMEM;
		ev_io_stop(c->loop, &c->rio);
		c->cb(c, CONN_ERROR, c->arg);
		return;
	}
	n = read(c->fd, buf_tail(&c->in), CONN_READ_CHUNK);
	if (n > 0) {
		buf_commit(&c->in, (size_t)n);
		if (ev_is_active(&c->timer))
			ev_timer_again(c->loop, &c->timer);
		conn_update_read(c);
		c->cb(c, CONN_DATAIN, c->arg);
		return;
	}
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	ev_io_stop(c->loop, &c->rio);
	buf_trim(&c->in);
	if (n == 0) {
		c->eof = 1;
		c->cb(c, CONN_CLOSED, c->arg);
	} else {
		c->err = errno;
		c->cb(c, CONN_ERROR, c->arg);
	}
}

static int
conn_write_some(struct conn *c)
{
	while (buf_avail(&c->out) > 0) {
		ssize_t n = write(c->fd, buf_head(&c->out), buf_avail(&c->out));
		if (n > 0) {
			buf_consume(&c->out, (size_t)n);
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		c->err = n == -1 ? errno : EIO;
		return -1;
	}
	buf_reset(&c->out);
	return 0;
}

static void
conn_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;

	(void)loop;
	(void)revents;
	if (conn_write_some(c) == -1) {
		ev_io_stop(c->loop, &c->wio);
		c->cb(c, CONN_ERROR, c->arg);
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
	struct conn *c;
	int one = 1, fl;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return NULL;
	}
	if ((fl = fcntl(fd, F_GETFL)) != -1)
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	/* One write per reply batch, no Nagle delay against the client's
	 * delayed ACK (STYLE 12). Fails harmlessly on a non-TCP socket. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->loop = loop;
	c->fd = fd;
	c->cb = cb;
	c->arg = arg;
	ev_io_init(&c->rio, conn_on_read, fd, EV_READ);
	ev_io_init(&c->wio, conn_on_write, fd, EV_WRITE);
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
	close(c->fd);
	buf_reset(&c->in);
	buf_reset(&c->out);
	free(c);
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
	if (c->err != 0 || ev_is_active(&c->wio))
		return;
	if (conn_write_some(c) == -1) {
		/* Reported from the loop, not from inside the caller's stack. */
		ev_feed_event(c->loop, &c->wio, EV_WRITE);
		ev_io_start(c->loop, &c->wio);
		return;
	}
	if (buf_avail(&c->out) > 0)
		ev_io_start(c->loop, &c->wio);
	/* Consuming input may have brought us back under the high mark. */
	conn_update_read(c);
}

size_t
conn_output_pending(const struct conn *c)
{
	return buf_avail(&c->out);
}

void
conn_pause(struct conn *c, int paused)
{
	c->paused = paused;
	conn_update_read(c);
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
	(void)shutdown(c->fd, SHUT_RD);
}

void
conn_trim(struct conn *c)
{
	buf_trim(&c->in);
	buf_trim(&c->out);
}

const char *
conn_strerror(const struct conn *c)
{
	return c->err != 0 ? strerror(c->err) : "no error";
}

int
conn_fd(const struct conn *c)
{
	return c->fd;
}
