/* listener.c - bind and accept. On EMFILE/ENFILE the listener stops
 * accepting for a moment instead of spinning on a readable socket it cannot
 * serve (libev's "accept()" note; OpenSMTPD's smtp_pause). */
/* accept4() (atomic SOCK_NONBLOCK|SOCK_CLOEXEC) is a GNU/Linux call. */
#define _GNU_SOURCE
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#define LISTENER_BACKLOG    511
#define LISTENER_PAUSE_SECS 0.1
#define LISTENER_ACCEPT_MAX 64 /* per wakeup, so one listener cannot starve the loop */

struct listener {
	struct ev_loop *loop;
	int fd;
	ev_io io;
	ev_timer pause;
	listener_cb *cb;
	void *arg;
	char host[INET6_ADDRSTRLEN];
	int port;
};

static void
listener_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = w->data;
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	(void)revents;
	for (int i = 0; i < LISTENER_ACCEPT_MAX; i++) {
		len = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				log_warn(NULL, "listener.pause addr=%s port=%d error=\"%s\"",
				    l->host, l->port, strerror(errno));
				ev_io_stop(loop, &l->io);
				ev_timer_set(&l->pause, LISTENER_PAUSE_SECS, 0);
				ev_timer_start(loop, &l->pause);
			}
			/* EAGAIN, ECONNABORTED, EINTR: nothing to do now. */
			return;
		}
		l->cb(fd, (struct sockaddr *)&ss, len, l->arg);
	}
}

static void
listener_on_pause(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct listener *l = w->data;

	(void)revents;
	ev_io_start(loop, &l->io);
}

int
listener_bind(const char *host, int port, char *err, size_t errsz)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	int fd = -1, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		len = sizeof(*sin6);
	} else {
		snprintf(
		    err, errsz, "listen %s:%d: not a numeric IPv4 or IPv6 address", host, port);
		return -1;
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		goto fail;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) == -1 || listen(fd, LISTENER_BACKLOG) == -1)
		goto fail;
	return fd;
fail:
	snprintf(err, errsz, "listen %s:%d: %s", host, port, strerror(errno));
	if (fd != -1)
		close(fd);
	return -1;
}

/* Whether something accepts connections on the socket file at path. */
static int
listener_unix_in_use(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;

	if (fd == -1)
		return 1; /* cannot tell: leave the file alone */
	rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0 || errno != ECONNREFUSED;
	close(fd);
	return rc;
}

int
listener_bind_unix(const char *path, char *err, size_t errsz)
{
	struct sockaddr_un sun;
	struct stat st;
	mode_t old;
	int fd, rc;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errsz, "listen unix:%s: path too long", path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errsz, "listen unix:%s: exists and is not a socket", path);
			return -1;
		}
		if (listener_unix_in_use(&sun)) {
			snprintf(err, errsz, "listen unix:%s: in use", path);
			return -1;
		}
		(void)unlink(path);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		goto fail;
	/* Created 0660 from the start: no moment where others may connect. */
	old = umask(0117);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc == -1 || chmod(path, 0660) == -1 || listen(fd, LISTENER_BACKLOG) == -1)
		goto fail;
	return fd;
fail:
	snprintf(err, errsz, "listen unix:%s: %s", path, strerror(errno));
	if (fd != -1)
		close(fd);
	return -1;
}

void
listener_unlink_unix(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && unlink(path) == -1)
		log_warn(NULL, "listener.unlink path=%s error=\"%s\"", path, strerror(errno));
}

int
listener_sockname(int fd, char *host, size_t hostsz, int *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return -1;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &sin->sin_addr, host, (socklen_t)hostsz);
		*port = ntohs(sin->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, (socklen_t)hostsz);
		*port = ntohs(sin6->sin6_port);
	} else if (ss.ss_family == AF_UNIX) {
		snprintf(host, hostsz, "unix");
		*port = 0;
	} else
		return -1;
	return 0;
}

struct listener *
listener_new(struct ev_loop *loop, int fd, listener_cb *cb, void *arg)
{
	struct listener *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->loop = loop;
	l->fd = fd;
	l->cb = cb;
	l->arg = arg;
	if (listener_sockname(fd, l->host, sizeof(l->host), &l->port) == -1)
		snprintf(l->host, sizeof(l->host), "?");
	ev_io_init(&l->io, listener_on_accept, fd, EV_READ);
	ev_init(&l->pause, listener_on_pause);
	l->io.data = l->pause.data = l;
	ev_io_start(loop, &l->io);
	return l;
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	ev_io_stop(l->loop, &l->io);
	ev_timer_stop(l->loop, &l->pause);
	close(l->fd);
	free(l);
}

void
listener_addr_str(const struct sockaddr *sa, char *ip, size_t ipsz, int *port)
{
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, (socklen_t)ipsz);
		*port = ntohs(s6->sin6_port);
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, ip, (socklen_t)ipsz);
		*port = ntohs(s4->sin_port);
	} else {
		snprintf(ip, ipsz, sa->sa_family == AF_UNSPEC ? "stdio" : "local");
		*port = 0;
	}
}
