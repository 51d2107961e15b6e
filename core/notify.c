/* notify.c - systemd's service notification protocol, written out rather
 * than linked from libsystemd: the protocol is documented in sd_notify(3)
 * as a stable interface that may be reimplemented, and it is one datagram
 * of "VAR=value" lines on an AF_UNIX socket whose address is in
 * $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace). That is
 * fewer lines than the build and run-time dependency would cost. Linux
 * only, like the rest of the server. */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static struct sockaddr_un notify_addr;
static socklen_t notify_addrlen; /* 0: no socket, nothing is sent */

void
notify_init(void)
{
	const char *e = getenv("NOTIFY_SOCKET");
	size_t len;

	notify_addrlen = 0;
	if (e == NULL)
		return;
	len = strlen(e);
	memset(&notify_addr, 0, sizeof(notify_addr));
	notify_addr.sun_family = AF_UNIX;
	/* Abstract: a leading NUL and exactly the name's bytes, no NUL after
	 * (the address length says where it ends). */
	if ((e[0] == '/' || e[0] == '@') && len >= 2 && len <= sizeof(notify_addr.sun_path)) {
		memcpy(notify_addr.sun_path, e, len);
		if (e[0] == '@')
			notify_addr.sun_path[0] = '\0';
		notify_addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
		/* A path's NUL, when it fits; the kernel takes one without. */
		if (e[0] == '/' && len < sizeof(notify_addr.sun_path))
			notify_addrlen++;
	} else
		log_warn(NULL,
		    "notify.socket result=ignored error=\"neither a path nor @name, or too long\"");
	unsetenv("NOTIFY_SOCKET");
}

int
notify_enabled(void)
{
	return notify_addrlen != 0;
}

void
notify_forget(void)
{
	notify_addrlen = 0;
}

void
notify_send(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int fd, n;

	if (notify_addrlen == 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = (int)sizeof(msg) - 1;
	/* A socket per message: there are a handful in a server's life, and
	 * no descriptor is left for a fork to inherit. */
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ||
	    sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (const struct sockaddr *)&notify_addr,
		notify_addrlen) != n)
		log_debug(NULL, "notify.send result=failed error=\"%s\"", strerror(errno));
	if (fd != -1)
		close(fd);
}

void
notify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=Reloading",
	    (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
}

char *
notify_clean(char *s)
{
	for (char *p = s; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return s;
}
