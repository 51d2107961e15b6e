/* worker.h - one serving process: the policy and TLS files, the accepting
 * listeners, SMTP sessions, reload on SIGHUP (or --watch) and a graceful
 * stop on SIGTERM. The same code serves in the foreground (no master) and
 * in every worker a master forks. */
#ifndef LUAMTA_WORKER_H
#define LUAMTA_WORKER_H

#include <ev.h>

#include "config.h"

#define WORKER_WATCH_SETTLE 0.2 /* editors write in steps: reload once it is quiet */

struct script;
struct tls_config;
struct watch;

struct worker_listen {
	int fd;    /* from listener_bind(); this process's copy becomes the worker's */
	int tls;   /* implicit TLS */
	int proxy; /* a PROXY protocol header first */
	int lmtp;  /* LMTP (RFC 2033) */
};

struct script_opts;
/* The script loading options cfg asks for. */
void worker_script_opts(const struct config *, struct script_opts *);

/* --watch: watches the policy files sc required (or cfg's script alone
 * when sc is NULL or knows none). Returns watch_set()'s result. */
int worker_watch_set(struct watch *, const struct config *, const struct script *sc);

/* In a worker just forked from the master, before worker_run() with the
 * master's generation (sc may be NULL; *tls is the master's config, or
 * NULL). A fork copies every random generator's state, so math.random gets
 * a fresh seed of the worker's own and the TLS generator is reseeded; a
 * worker whose TLS generator cannot be reseeded exits (the master restarts
 * it). The worker serves the master's last good certificate, as it serves
 * its last good policy. */
void worker_forked(int index, struct script *sc, struct tls_config **tls);

/* In a worker just forked from the master: fd is the write end of a pipe
 * on which worker_run() writes one byte once it serves, then closes it. */
void worker_set_ready_fd(int fd);

/* Blocks (1) or unblocks (0) the signals a serving process handles. They
 * stay blocked from before the ready file is written (or a fork) until the
 * process's own watchers are in place, so an early TERM waits instead of
 * killing it or being lost. */
void worker_block_signals(int block);
/* After the loop: stops the signal watchers and ignores TERM, INT and HUP
 * from then on, so another TERM during clean-up cannot kill the process
 * instead of letting it exit 0. */
void worker_stop_signals(struct ev_loop *, ev_signal *term, ev_signal *intr, ev_signal *hup);

/* Serves until stopped. sc and tls are a generation already loaded (their
 * references are taken over), or NULL to load them here. index numbers the
 * worker in logs (0 in the foreground). Returns the exit status: 0 after a
 * clean stop, 1 when the script or TLS files do not load. */
int worker_run(const struct config *, const struct worker_listen *, int nlisten, int index,
    struct script *sc, struct tls_config *tls);

#endif
