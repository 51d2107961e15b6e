/* cosocket_pool.h - the per-worker state behind luamta.tcp(): idle
 * connections kept for reuse, keyed by their destination, and the TLS
 * client configs (one per CA file, one that verifies nothing), built on
 * first use. Knows nothing of Lua or of the calls that use them. */
#ifndef LUAMTA_COSOCKET_POOL_H
#define LUAMTA_COSOCKET_POOL_H

#include <stddef.h>

#include <ev.h>

#include "tls.h"

/* What a pooled connection carries from one user to the next. */
struct cosocket_conn {
	int fd;               /* owned */
	struct tls *tls;      /* owned, or NULL for plaintext */
	char *servername;     /* owned: the TLS server name, or NULL */
	char *verify;         /* owned: the CA file TLS verified with, or NULL */
	int reused;           /* times taken from the pool so far */
	struct ev_loop *loop; /* the loop its idle watchers run on */
};

/* Keeps c (taking ownership of what it holds) under key until a take, an
 * idle timeout (idle seconds; 0: none), the peer closing or sending
 * anything, or cosocket_pool_shutdown(). When key already holds size idle
 * connections, the oldest of them is closed. 0, or -1 when out of memory
 * (c is closed then). */
int cosocket_pool_put(const char *key, struct cosocket_conn *c, double idle, int size);
/* The most recently pooled connection under key, moved into *c (its
 * reused count unchanged): 0, or -1 when there is none. */
int cosocket_pool_take(const char *key, struct cosocket_conn *c);
/* Closes what c holds (tls_free() sends close_notify when it can) and
 * clears it. */
void cosocket_conn_close(struct cosocket_conn *c);

/* A TLS client config verifying against the PEM bundle at ca_file (loaded
 * once, then kept), or verifying nothing for NULL. Borrowed: tls_new()
 * takes its own reference. NULL with a message in err when the file cannot
 * be loaded. */
struct tls_config *cosocket_tls_config(const char *ca_file, char *err, size_t errsz);

/* Closes every pooled connection and drops the configs. */
void cosocket_pool_shutdown(void);

#endif
