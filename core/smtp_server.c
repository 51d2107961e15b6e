/* smtp_server.c - the door of the SMTP service: connection caps, accept,
 * --stdio, the policy generation for new sessions, drain and shutdown. */
#include "smtp_server.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "anvil.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "queue.h"
#include "script.h"
#include "smtp_session.h"
#include "smtp_session_types.h"
#include "tls.h"

/* Refuses a connection over a cap with one best-effort write; the socket
 * is fresh, so the short reply fits its buffer. */
static void
smtp_server_refuse(int fd, const char *ip, const char *why, const char *reply)
{
	log_warn(NULL, "smtp.refuse peer=%s reason=%s", ip, why);
	if (write(fd, reply, strlen(reply)) < 0)
		(void)0; /* the client is told nothing more by a failed write */
	close(fd);
}

/* Applies the connection caps, then starts the session. sa is the
 * client's address: the peer's, or the one a PROXY header (px) named. */
static void
smtp_server_open(struct smtp_server *srv, int fd, int wfd, const struct sockaddr *sa, int mode,
    const struct smtp_via *px)
{
	const struct config *cfg = srv->cfg;
	struct anvil_key key;
	int counted = 0;
	char ip[INET6_ADDRSTRLEN], reply[sizeof(cfg->hostname) + ANVIL_KEY_STR_MAX + 64];
	int port;

	if (srv->stopping) {
		close(fd);
		return;
	}
	listener_addr_str(sa, ip, sizeof(ip), &port);
	if (px == NULL) /* a proxied one was counted when it connected */
		metrics_inc(MC_CONN_ACCEPTED);
	if (srv->nsessions >= cfg->max_connections) {
		metrics_inc(MC_REFUSED_MAX_CONNECTIONS);
		smtp_server_refuse(fd, ip, "max_connections",
		    "421 4.3.2 Too many connections, try again later\r\n");
		return;
	}
	/* Per client: Postfix's smtpd_client_connection_count_limit and
	 * _rate_limit, with the networks of --limit-exempt spared (Postfix
	 * spares $mynetworks). Without a table (out of memory) nobody is
	 * limited rather than everybody refused. */
	if (srv->anvil != NULL && (cfg->max_per_ip > 0 || cfg->max_conn_rate > 0) &&
	    anvil_key(sa, &key) == 0 && !config_exempt(cfg, sa)) {
		enum anvil_verdict v = anvil_connect(
		    srv->anvil, &key, ev_now(srv->loop), cfg->max_per_ip, cfg->max_conn_rate);

		if (v != ANVIL_OK) {
			char who[ANVIL_KEY_STR_MAX];

			snprintf(reply, sizeof(reply),
			    "421 4.7.0 %s Error: too many connections from %s\r\n", cfg->hostname,
			    anvil_key_str(&key, who, sizeof(who)));
			metrics_inc(
			    v == ANVIL_TOO_MANY ? MC_REFUSED_MAX_PER_IP : MC_REFUSED_MAX_CONN_RATE);
			smtp_server_refuse(fd, ip, anvil_verdict_str(v), reply);
			return;
		}
		counted = 1;
	}
	if (smtp_session_new(srv, fd, wfd, sa, mode, counted ? &key : NULL, px) == NULL && counted)
		anvil_disconnect(srv->anvil, &key);
}

void
smtp_server_accept(int fd, const struct sockaddr *sa, socklen_t salen, void *arg)
{
	(void)salen;
	smtp_server_open(arg, fd, fd, sa, 0, NULL);
}

void
smtp_server_accept_tls(int fd, const struct sockaddr *sa, socklen_t salen, void *arg)
{
	(void)salen;
	smtp_server_open(arg, fd, fd, sa, SMTP_SESSION_TLS, NULL);
}

void
smtp_server_accept_lmtp(int fd, const struct sockaddr *sa, socklen_t salen, void *arg)
{
	(void)salen;
	smtp_server_open(arg, fd, fd, sa, SMTP_SESSION_LMTP, NULL);
}

/* The header is in: a LOCAL one (the proxy's own health check) leaves
 * the connection's addresses, any other names the client. */
static void
smtp_server_proxied(
    void *arg, int fd, const struct sockaddr *via, const struct proxy_hdr *h, int tls)
{
	struct smtp_server *srv = arg;
	struct smtp_via px = { h, via };

	if (srv->stopping) {
		close(fd);
		return;
	}
	smtp_server_open(srv, fd, fd, h->local ? via : (const struct sockaddr *)&h->src,
	    tls ? SMTP_SESSION_TLS : 0, &px);
}

static void
smtp_server_accept_via(struct smtp_server *srv, int fd, const struct sockaddr *sa, int tls)
{
	const struct config *cfg = srv->cfg;

	if (srv->stopping) {
		close(fd);
		return;
	}
	metrics_inc(MC_CONN_ACCEPTED);
	/* Not a word to an address that may not send a header: it is not
	 * ours to talk to. */
	if (!config_proxy_trusted(cfg, sa)) {
		metrics_inc(MC_REFUSED_PROXY);
		char ip[INET6_ADDRSTRLEN];
		int port;

		listener_addr_str(sa, ip, sizeof(ip), &port);
		log_warn(NULL, "proxy.refuse peer=%s port=%d reason=untrusted", ip, port);
		close(fd);
		return;
	}
	if (srv->proxy == NULL &&
	    (srv->proxy = proxy_door_new(srv->loop, cfg->proxy_timeout, cfg->max_connections,
		 smtp_server_proxied, srv)) == NULL) {
		log_error(NULL, "proxy.refuse reason=error error=\"out of memory\"");
		close(fd);
		return;
	}
	proxy_door_add(srv->proxy, fd, sa, tls);
}

void
smtp_server_accept_proxy(int fd, const struct sockaddr *sa, socklen_t salen, void *arg)
{
	(void)salen;
	smtp_server_accept_via(arg, fd, sa, 0);
}

void
smtp_server_accept_tls_proxy(int fd, const struct sockaddr *sa, socklen_t salen, void *arg)
{
	(void)salen;
	smtp_server_accept_via(arg, fd, sa, 1);
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
	(void)smtp_session_new(srv, rfd, wfd, (struct sockaddr *)&peer, 0, NULL, NULL);
}

void
smtp_server_init(
    struct smtp_server *srv, struct ev_loop *loop, const struct config *cfg, struct script *script)
{
	const char *tmp;

	memset(srv, 0, sizeof(*srv));
	srv->loop = loop;
	srv->cfg = cfg;
	srv->script = script;
	srv->ids = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	/* The spool first: a relayed message is then copied within one file
	 * system. The temporary directory keeps large messages working where
	 * the spool is not writable (a test server run by a user). */
	(void)snprintf(
	    srv->spill_path, sizeof(srv->spill_path), "%s/%s", cfg->spool, QUEUE_INCOMING_DIR);
	tmp = getenv("TMPDIR");
	srv->spill_dirs[0] = srv->spill_path;
	srv->spill_dirs[1] = tmp != NULL && tmp[0] == '/' ? tmp : "/tmp";
	srv->spill_dirs[2] = NULL;
	ev_idle_init(&srv->reaper, smtp_session_on_reap);
	srv->reaper.data = srv;
	/* Made here, in the serving process: each has a hash seed of its own. */
	srv->anvil = anvil_new();
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
	/* A connection still waiting for its header has no session to finish. */
	proxy_door_free(srv->proxy);
	srv->proxy = NULL;
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
	anvil_free(srv->anvil);
	srv->anvil = NULL;
	proxy_door_free(srv->proxy);
	srv->proxy = NULL;
}
