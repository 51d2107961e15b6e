/* smtp_client_io.c - the sockets of the SMTP/LMTP client: connecting to
 * each target in turn (non-blocking, under the connect timeout), reading
 * replies into lines for smtp_client.c, writing commands and the message
 * (dot-stuffed a block at a time, so a large message is never copied
 * whole), plaintext or through tls.h, one timer per wait, and the
 * object's lifetime: the result is handed over from a timer of its own,
 * never from inside smtp_client_start() or a socket callback. */
#include "smtp_client_int.h"
#include "smtp_client_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

static void cl_kick(struct smtp_client *);

void
smtpc_timer(struct smtp_client *c, double secs)
{
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_set(&c->timer, secs, 0);
	ev_timer_start(c->loop, &c->timer);
}

void
smtpc_close(struct smtp_client *c)
{
	ev_io_stop(c->loop, &c->io);
	ev_timer_stop(c->loop, &c->timer);
	c->io_events = 0;
	tls_free(c->tls);
	c->tls = NULL;
	c->tls_up = 0;
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	buf_reset(&c->in);
	buf_reset(&c->out);
	c->state = CL_IDLE;
	c->gen++;
}

/* The result is complete: it goes to the caller from a timer, so never
 * from inside smtp_client_start() or one of this client's callbacks. */
void
smtpc_finish(struct smtp_client *c)
{
	smtpc_close(c);
	c->state = CL_DONE;
	ev_timer_set(&c->done, 0, 0);
	ev_timer_start(c->loop, &c->done);
}

/* Connects to the next target; a target that fails at once is skipped.
 * With none left, every open recipient gets the last failure. */
void
smtpc_next(struct smtp_client *c)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	struct sockaddr_un *su = (struct sockaddr_un *)&ss;
	socklen_t sl;
	const char *a;
	int port = c->req.port > 0 ? c->req.port : c->req.lmtp ? 24 : 25;

	for (;;) {
		memset(&ss, 0, sizeof(ss));
		c->connected = 0;
		c->reused = c->rset_pending = c->rset_done = 0;
		c->uses = 0;
		c->tls_refused = 0;
		memset(&c->caps, 0, sizeof(c->caps));
		if (c->plain_retry) {
			/* the same target again */
		} else if (c->req.unix_path != NULL) {
			if (c->started)
				break;
		} else {
			if (c->started)
				c->addr++;
			while (c->host < c->req.nhosts && c->addr >= c->req.hosts[c->host].naddrs) {
				c->host++;
				c->addr = 0;
			}
			if (c->host >= c->req.nhosts)
				break;
		}
		c->started = 1;
		if (c->req.unix_path != NULL) {
			c->name = "localhost";
			snprintf(c->addrtxt, sizeof(c->addrtxt), "unix:%s", c->req.unix_path);
			snprintf(c->desc, sizeof(c->desc), "%s", c->addrtxt);
			su->sun_family = AF_UNIX;
			if (strlen(c->req.unix_path) >= sizeof(su->sun_path)) {
				smtpc_host_fail(
				    c, 451, "4.4.1 socket path too long: %s", c->addrtxt);
				return;
			}
			strcpy(su->sun_path, c->req.unix_path);
			sl = sizeof(*su);
		} else {
			c->name =
			    c->req.hosts[c->host].name != NULL ? c->req.hosts[c->host].name : "";
			a = c->req.hosts[c->host].addrs[c->addr];
			snprintf(c->addrtxt, sizeof(c->addrtxt), "%s", a);
			snprintf(c->desc, sizeof(c->desc), "%s [%s]", c->name, a);
			if (inet_pton(AF_INET, a, &s4->sin_addr) == 1) {
				s4->sin_family = AF_INET;
				s4->sin_port = htons((uint16_t)port);
				sl = sizeof(*s4);
			} else if (inet_pton(AF_INET6, a, &s6->sin6_addr) == 1) {
				s6->sin6_family = AF_INET6;
				s6->sin6_port = htons((uint16_t)port);
				sl = sizeof(*s6);
			} else {
				smtpc_host_fail(c, 451, "4.4.1 %s: not an IP address", c->desc);
				return;
			}
		}
		if ((c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) ==
		    -1) {
			smtpc_host_fail(c, 451, "4.4.1 socket: %s", strerror(errno));
			return;
		}
		c->state = CL_CONNECT;
		if (connect(c->fd, (struct sockaddr *)&ss, sl) == 0 || errno == EINPROGRESS) {
			/* Finished or not, the writable fd says so (SO_ERROR). */
			smtpc_timer(c, c->req.timeout_connect > 0 ? c->req.timeout_connect : 30);
			ev_io_set(&c->io, c->fd, EV_WRITE);
			ev_io_start(c->loop, &c->io);
			c->io_events = EV_WRITE;
			return;
		}
		smtpc_host_fail(c, 451, "4.4.1 connect to %s: %s", c->desc, strerror(errno));
		return;
	}
	/* Nothing left to try. */
	if (c->failcode == 0) {
		c->failcode = 451;
		snprintf(c->failtext, sizeof(c->failtext), "4.4.1 no host to connect to");
	}
	snprintf(c->res.remote, sizeof(c->res.remote), "%s", c->faildesc);
	smtpc_set_open(c, c->failcode, c->failtext, 0);
	smtpc_finish(c);
}

/* Reads what the socket has; 1 at the end of the stream, 0 otherwise, -1
 * when it failed (and the client moved on). */
static int
cl_read(struct smtp_client *c)
{
	enum tls_status st;
	size_t n;
	ssize_t r;

	for (;;) {
		if (buf_avail(&c->in) > CL_IN_MAX) {
			smtpc_host_fail(c, 451, "4.5.0 %s sent an overlong reply", c->desc);
			return -1;
		}
		if (buf_reserve(&c->in, 16384) == -1) {
			smtpc_lost(c, "out of memory");
			return -1;
		}
		if (c->tls != NULL) {
			st = tls_read(c->tls, buf_tail(&c->in), 16384, &n);
			if (st == TLS_OK) {
				buf_commit(&c->in, n);
				continue;
			}
			if (st == TLS_WANT_READ || st == TLS_WANT_WRITE)
				return 0;
			if (st == TLS_CLOSED)
				return 1;
			smtpc_lost(c, tls_strerror(c->tls));
			return -1;
		}
		if ((r = recv(c->fd, buf_tail(&c->in), 16384, 0)) > 0) {
			buf_commit(&c->in, (size_t)r);
			continue;
		}
		if (r == 0)
			return 1;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		smtpc_lost(c, strerror(errno));
		return -1;
	}
}

/* An EHLO line after the first names an extension. */
static void
cl_caps(struct smtp_client *c, const char *line, size_t len)
{
	const char *text;
	size_t tlen;
	int code, last;

	if (smtp_creply_parse_line(line, len, &code, &last, &text, &tlen) == 0 && code / 100 == 2)
		smtp_caps_line(&c->caps, text, tlen);
}

/* Reads and acts on every whole reply line buffered; stops when the
 * session changed under it. */
static void
cl_input(struct smtp_client *c)
{
	const char *line;
	size_t len;
	int crlf, rc, eof;
	unsigned gen = c->gen;
	enum buf_line bl;

	if ((eof = cl_read(c)) == -1)
		return;
	while (c->gen == gen && c->state != CL_BODY && c->state != CL_HANDSHAKE &&
	    c->state != CL_CONNECT) {
		bl = buf_getline(&c->in, SMTP_CREPLY_LINE_MAX, &line, &len, &crlf);
		if (bl == BUF_NEED_MORE)
			break;
		if (bl == BUF_LINE && c->state == CL_EHLO && c->reply.nlines > 0)
			cl_caps(c, line, len);
		if (bl == BUF_TOO_LONG || (rc = smtp_creply_line(&c->reply, line, len)) == -1) {
			if (c->state == CL_QUIT) {
				smtpc_finish(c);
				return;
			}
			smtpc_host_fail(c, 451, "4.5.0 %s sent a malformed reply %s", c->desc,
			    smtpc_stage[c->state]);
			return;
		}
		if (rc == 1) {
			smtpc_reply(c);
			smtp_creply_init(&c->reply);
		}
	}
	if (eof == 1 && c->gen == gen)
		smtpc_lost(c, "lost connection");
}

/* Tops the output up with the stuffed message, and its end once all of it
 * is queued. */
static void
cl_body(struct smtp_client *c)
{
	char block[CL_READ_CHUNK];
	const char *p;
	size_t used, n, want;
	ssize_t r;

	while (buf_avail(&c->out) < CL_OUT_CHUNK && c->msgoff < c->req.msglen) {
		if (buf_reserve(&c->out, CL_OUT_CHUNK) == -1) {
			smtpc_lost(c, "out of memory");
			return;
		}
		want = c->req.msglen - c->msgoff;
		if (c->req.msg != NULL)
			p = c->req.msg + c->msgoff;
		else {
			/* Stuffing at most doubles a block, so one block
			 * always fits the reserved output. */
			if (want > sizeof(block))
				want = sizeof(block);
			do
				r = pread(
				    c->req.msgfd, block, want, (off_t)(c->req.msgbase + c->msgoff));
			while (r == -1 && errno == EINTR);
			if (r <= 0) {
				smtpc_lost(c,
				    r == 0 ? "the queued message is shorter than its size" :
					     "cannot read the queued message");
				return;
			}
			p = block;
			want = (size_t)r;
		}
		n = smtp_stuff(&c->stuff, p, want, &used, buf_tail(&c->out), CL_OUT_CHUNK);
		buf_commit(&c->out, n);
		c->msgoff += used;
	}
	if (c->msgoff == c->req.msglen && buf_reserve(&c->out, 8) == 0) {
		buf_commit(&c->out, smtp_stuff_end(&c->stuff, buf_tail(&c->out)));
		c->state = CL_DOT;
		c->lmtp_next = 0;
		smtpc_timer(c, cl_data_timeout(c, 600));
	}
}

/* Writes what is queued; -1 when the connection failed (and the client
 * moved on). */
static int
cl_flush(struct smtp_client *c)
{
	enum tls_status st;
	size_t n;
	ssize_t w;

	c->tls_want = 0;
	while (buf_avail(&c->out) > 0) {
		if (c->tls != NULL) {
			st = tls_write(c->tls, buf_head(&c->out), buf_avail(&c->out), &n);
			if (st == TLS_OK && n > 0) {
				buf_consume(&c->out, n);
				goto progress;
			}
			if (st == TLS_OK || st == TLS_WANT_WRITE || st == TLS_WANT_READ) {
				c->tls_want = st == TLS_WANT_READ ? EV_READ : EV_WRITE;
				return 0;
			}
			smtpc_lost(
			    c, st == TLS_CLOSED ? "connection closed" : tls_strerror(c->tls));
			return -1;
		}
		if ((w = send(c->fd, buf_head(&c->out), buf_avail(&c->out), MSG_NOSIGNAL)) >= 0) {
			buf_consume(&c->out, (size_t)w);
			goto progress;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->tls_want = EV_WRITE;
			return 0;
		}
		smtpc_lost(c, strerror(errno));
		return -1;
	progress:
		/* A block of data went out: its timer starts again. */
		if (c->state == CL_BODY)
			smtpc_timer(c, cl_data_timeout(c, 180));
		if (c->state == CL_BODY && buf_avail(&c->out) < CL_OUT_CHUNK)
			cl_body(c);
	}
	return 0;
}

/* Sends what is queued and waits for what the state needs next. */
static void
cl_kick(struct smtp_client *c)
{
	int ev;
	unsigned gen;

	for (;;) {
		if (c->fd == -1 || c->state == CL_DONE || c->state == CL_CONNECT)
			return;
		gen = c->gen;
		if (c->state == CL_HANDSHAKE)
			ev = c->tls_want;
		else {
			if (c->state == CL_BODY)
				cl_body(c);
			if (c->gen != gen)
				continue;
			if (cl_flush(c) == -1 || c->gen != gen)
				continue;
			ev = c->tls_want;
			if (c->state != CL_BODY)
				ev |= EV_READ;
			else if (ev == 0)
				ev = EV_WRITE;
		}
		if (ev != c->io_events) {
			ev_io_stop(c->loop, &c->io);
			ev_io_set(&c->io, c->fd, ev);
			if (ev != 0)
				ev_io_start(c->loop, &c->io);
			c->io_events = ev;
		}
		return;
	}
}

static void
cl_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct smtp_client *c = w->data;
	int err = 0, one = 1;
	socklen_t l = sizeof(err);
	unsigned gen;

	(void)loop;
	(void)revents;
	if (c->state == CL_CONNECT) {
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) == -1)
			err = errno;
		if (err != 0) {
			smtpc_lost(c, strerror(err));
		} else {
			c->connected = 1;
			c->born = ev_now(c->loop);
			if (c->req.unix_path == NULL)
				(void)setsockopt(
				    c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			smtp_creply_init(&c->reply);
			c->state = CL_GREETING;
			smtpc_timer(c, cl_cmd_timeout(c, 300));
		}
	} else if (c->state == CL_HANDSHAKE)
		smtpc_handshake(c);
	else {
		/* Each step may end this connection (and start the next one):
		 * the generation says whether the next step still applies. */
		gen = c->gen;
		if (c->state == CL_BODY)
			cl_body(c);
		if (c->gen == gen && buf_avail(&c->out) > 0)
			(void)cl_flush(c);
		if (c->gen == gen && c->state != CL_BODY)
			cl_input(c);
	}
	cl_kick(c);
}

static void
cl_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct smtp_client *c = w->data;

	(void)loop;
	(void)revents;
	if (c->state == CL_QUIT)
		smtpc_finish(c);
	else
		smtpc_lost(c, c->state == CL_CONNECT ? "connection timed out" : "timeout");
	cl_kick(c);
}

static void
cl_free(struct smtp_client *c)
{
	smtpc_close(c);
	ev_timer_stop(c->loop, &c->done);
	for (size_t i = 0; i < c->res.nrcpts; i++)
		free(c->res.rcpt[i].text);
	free(c->res.rcpt);
	free(c->rstate);
	free(c->order);
	free(c);
}

static void
cl_on_done(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct smtp_client *c = w->data;

	(void)loop;
	(void)revents;
	c->in_cb = 1;
	c->cb(c->arg, &c->res);
	cl_free(c);
}

/* Takes a connection parked under the request's key: 1, or 0 (connect). */
static int
cl_take(struct smtp_client *c)
{
	struct smtpc_conn k;

	if (!smtp_client_cache_take(c->loop, c->req.cache_key, &k))
		return 0;
	c->fd = k.fd;
	c->tls = k.tls;
	c->tls_up = k.tls != NULL;
	c->caps = k.caps;
	snprintf(c->namebuf, sizeof(c->namebuf), "%s", k.name);
	c->name = c->namebuf;
	snprintf(c->addrtxt, sizeof(c->addrtxt), "%s", k.addrtxt);
	snprintf(c->desc, sizeof(c->desc), "%s", k.desc);
	c->uses = k.uses;
	c->born = k.born;
	c->connected = 1;
	c->reused = 1;
	/* started stays 0: should this connection fail, smtpc_next()
	 * begins with the first target. */
	ev_io_set(&c->io, c->fd, 0);
	return 1;
}

struct smtp_client *
smtp_client_start(
    struct ev_loop *loop, const struct smtp_client_req *req, smtp_client_cb *cb, void *arg)
{
	struct smtp_client *c;
	size_t i, n = req->nrcpts;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->res.rcpt = calloc(n > 0 ? n : 1, sizeof(*c->res.rcpt));
	c->rstate = calloc(n > 0 ? n : 1, 1);
	c->order = calloc(n > 0 ? n : 1, sizeof(*c->order));
	if (c->res.rcpt == NULL || c->rstate == NULL || c->order == NULL) {
		free(c->res.rcpt);
		free(c->rstate);
		free(c->order);
		free(c);
		return NULL;
	}
	c->loop = loop;
	c->req = *req;
	c->cb = cb;
	c->arg = arg;
	c->res.nrcpts = n;
	c->fd = -1;
	c->name = "";
	buf_init(&c->in);
	buf_init(&c->out);
	ev_io_init(&c->io, cl_on_io, 0, 0);
	ev_timer_init(&c->timer, cl_on_timer, 0, 0);
	ev_timer_init(&c->done, cl_on_done, 0, 0);
	c->io.data = c->timer.data = c->done.data = c;
	/* What cannot go into a command is decided here, without a server. */
	for (i = 0; i < n; i++) {
		if (!smtp_client_path_ok(req->sender))
			smtpc_set(c, i, 501, "5.1.7 bad sender address syntax", RC_LOCAL);
		else if (!smtp_client_path_ok(req->rcpts[i]))
			smtpc_set(c, i, 501, "5.1.3 bad recipient address syntax", RC_LOCAL);
	}
	for (i = 0; i < n && c->rstate[i] == RC_LOCAL; i++)
		;
	if (i == n)
		smtpc_finish(c);
	else if (req->cache_key != NULL && cl_take(c))
		smtpc_resume(c);
	else
		smtpc_next(c);
	cl_kick(c);
	return c;
}

void
smtp_client_cancel(struct smtp_client *c)
{
	if (c == NULL || c->cancelled)
		return;
	if (c->in_cb) {
		/* Its own callback: freed when that returns. */
		c->cancelled = 1;
		return;
	}
	cl_free(c);
}
