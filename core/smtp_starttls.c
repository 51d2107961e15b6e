/* smtp_starttls.c - STARTTLS (RFC 3207): its checks, the 220 (after a
 * paced one has gone out whole), the switch that drops what the client
 * pipelined in plaintext and forgets what the session learnt before it,
 * and the end of every handshake, implicit TLS's included. */

#include <stdlib.h>

#include "buf.h"
#include "conn.h"
#include "hook_api.h"
#include "log.h"
#include "smtp_session_int.h"
#include "tls.h"

int
smtp_check_starttls(struct smtp_session *s, const char *arg, size_t len)
{
	(void)arg;
	if (s->srv->tls == NULL) {
		smtp_reply(s, 502, "5.5.1", "Error: command not implemented");
		return -1;
	}
	if (s->tls_active) {
		smtp_reply(s, 503, "5.5.1", "Error: TLS already active");
		return -1;
	}
	if (len != 0) {
		smtp_reply(s, 501, "5.5.4", "Syntax: STARTTLS");
		return -1;
	}
	return 0;
}

/* After the 220 is out (all of it, when it was paced): the switch. */
void
smtp_starttls_begin(struct smtp_session *s)
{
	size_t injected = buf_avail(conn_input(s->conn));

	s->starttls_pending = 0;
	/* Whatever the client pipelined after STARTTLS was sent in plaintext
	 * and must not be executed (CVE-2011-0411); conn_starttls drops it. */
	if (injected > 0)
		log_warn(s->sid, "smtp.starttls_injection discarded=%zu", injected);
	if (conn_starttls(s->conn, s->srv->tls) == -1) {
		smtp_session_close(s, "out of memory");
		return;
	}
	/* RFC 3207 4.2: forget everything learnt from the client before the
	 * handshake, including what hooks set on the session since the
	 * greeting (what on_connect set came from no client input and
	 * stays). Failed AUTH attempts still count: a new handshake must not
	 * reset that limit. */
	smtp_tx_end(s);
	free(s->helo);
	free(s->user);
	s->helo = s->user = NULL;
	s->esmtp = 0;
	s->ext = 0;
	s->max_size = s->greeted_max_size;
	s->require_tls = s->greeted_require_tls;
	if (s->script != NULL)
		hook_api_forget(s->script->L, s);
	smtp_enter_state(s, ST_GREETED);
	s->tls_wait = 1;
	conn_set_timeout(s->conn, s->srv->cfg->tls_timeout);
}

void
smtp_do_starttls(struct smtp_session *s, const struct hook_result *res)
{
	smtp_reply_hook(s, res, 220, "2.0.0", "Ready to start TLS");
	/* A paced 220 must reach the client whole before the handshake:
	 * the switch waits for the end of the pace (smtp_on_pace). */
	if (s->pace != NULL)
		s->starttls_pending = 1;
	else
		smtp_starttls_begin(s);
}

/* The handshake finished: STARTTLS goes on with the greeted session, an
 * implicit-TLS session starts with its greeting. */
void
smtp_tls_ready(struct smtp_session *s)
{
	struct tls *t = conn_tls(s->conn);

	s->tls_wait = 0;
	s->tls_active = 1;
	log_info(s->sid, "smtp.tls version=%s cipher=%s client_cert=%s", tls_version(t),
	    tls_cipher(t),
	    !tls_peer_cert_present(t)     ? "none" :
		tls_peer_cert_verified(t) ? "verified" :
					    "unverified");
	conn_set_timeout(s->conn, s->srv->cfg->timeout);
	if (s->state == ST_CONNECTED) {
		s->pend.cmd = &smtp_cmd_connect;
		smtp_hook_run(s);
	}
	smtp_session_process(s);
}
