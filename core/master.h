/* master.h - the supervising process: forks the workers, restarts one that
 * dies (with back-off) or stalls (--watchdog), keeps the last policy
 * generation that loaded for the workers it starts, forwards SIGHUP after
 * loading the new script, and on SIGTERM lets the workers drain, then
 * exits. It does no SMTP. */
#ifndef LUAMTA_MASTER_H
#define LUAMTA_MASTER_H

#include "config.h"
#include "worker.h"

struct script;
struct tls_config;

/* Runs until the workers are stopped; returns the exit status. Closes the
 * listening sockets itself when it starts stopping. sc and tls are the
 * generation loaded at start (either may be NULL); their references are
 * taken over, and every worker forked serves a copy of the one kept. */
int master_run(const struct config *, struct worker_listen *, int nlisten, struct script *sc,
    struct tls_config *tls);

#endif
