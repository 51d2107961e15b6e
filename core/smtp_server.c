/* smtp_server.c - the door of the SMTP service: connection caps, accept,
 * --stdio, the policy generation for new sessions, drain and shutdown. */
#include "smtp_server.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "script.h"
#include "smtp_session.h"
#include "smtp_session_types.h"
#include "tls.h"

/* Refuses a connection over a cap with one best-effort write; the socket
 * is fresh, so the short reply fits its buffer. */
static void
smtp_server_refuse(int fd, const char *ip, const char *why)
{
	static const char msg[] = "421 4.3.2 Too many connections, try again later\r\n";

	log_warn(NULL, "smtp.refuse peer=%s reason=%s", ip, why);
	if (write(fd, msg, sizeof(msg) - 1) < 0)
		(void)0; /* the client is told nothing more by a failed write */
	close(fd);
}

/* Applies the connection caps, then starts the session. */
static void
smtp_server_open(struct smtp_server *srv, int fd, int wfd, const struct sockaddr *sa, int tls)
{
	const struct config *cfg = srv->cfg;
	char ip[INET6_ADDRSTRLEN];
	int port;

	if (srv->stopping) {
		close(fd);
		return;
	}
	listener_addr_str(sa, ip, sizeof(ip), &port);
	if (srv->nsessions >= cfg->max_connections) {
		smtp_server_refuse(fd, ip, "max_connections");
		return;
	}
	if (cfg->max_per_ip > 0) {
		int n = 0;
		for (struct smtp_session *s = srv->sessions; s != NULL; s = s->next)
			if (!s->closing && strcmp(s->peer_ip, ip) == 0)
				n++;
		if (n >= cfg->max_per_ip) {
			smtp_server_refuse(fd, ip, "max_per_ip");
			return;
		}
	}
	smtp_session_new(srv, fd, wfd, sa, tls);
}

void
smtp_server_accept(int fd, const struct sockaddr *sa, socklen_t salen, void *arg)
{
	(void)salen;
	smtp_server_open(arg, fd, fd, sa, 0);
}

void
smtp_server_accept_tls(int fd, const struct sockaddr *sa, socklen_t salen, void *arg)
{
	(void)salen;
	smtp_server_open(arg, fd, fd, sa, 1);
}

void
smtp_server_stdio(struct smtp_server *srv, int rfd, int wfd)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);

	/* Under inetd or systemd socket activation stdin is the client's
	 * socket: its address is the peer's. Over pipes there is none. */
	memset(&peer, 0, sizeof(peer));
	if (getpeername(rfd, (struct sockaddr *)&peer, &len) == -1)
		peer.ss_family = AF_UNSPEC;
	srv->stdio = 1;
	smtp_session_new(srv, rfd, wfd, (struct sockaddr *)&peer, 0);
}

void
smtp_server_init(
    struct smtp_server *srv, struct ev_loop *loop, const struct config *cfg, struct script *script)
{
	memset(srv, 0, sizeof(*srv));
	srv->loop = loop;
	srv->cfg = cfg;
	srv->script = script;
	srv->ids = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	ev_idle_init(&srv->reaper, smtp_session_on_reap);
	srv->reaper.data = srv;
}

void
smtp_server_set_script(struct smtp_server *srv, struct script *sc)
{
	script_unref(srv->script);
	srv->script = sc;
}

void
smtp_server_drain(struct smtp_server *srv, void (*cb)(struct smtp_server *))
{
	srv->stopping = 1;
	srv->on_drained = cb;
}

void
smtp_server_shutdown(struct smtp_server *srv)
{
	srv->stopping = 1;
	ev_idle_stop(srv->loop, &srv->reaper);
	srv->reap = NULL;
	while (srv->sessions != NULL)
		smtp_session_abort(srv->sessions);
	script_unref(srv->script);
	srv->script = NULL;
	tls_config_unref(srv->tls);
	srv->tls = NULL;
}
