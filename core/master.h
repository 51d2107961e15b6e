/* master.h - the supervising process: forks the workers, restarts one that
 * dies (with back-off), forwards SIGHUP after checking the new script, and
 * on SIGTERM lets the workers drain, then exits. It does no SMTP. */
#ifndef LUAMTA_MASTER_H
#define LUAMTA_MASTER_H

#include "config.h"
#include "worker.h"

/* Runs until the workers are stopped; returns the exit status. */
/* Closes the listening sockets itself when it starts stopping. */
int master_run(const struct config *, struct worker_listen *, int nlisten);

#endif
