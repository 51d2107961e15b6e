/* master.c - fork, supervise and stop the workers.
 * Workers share the master's listening sockets rather than one
 * SO_REUSEPORT socket each: the kernel hands a connection to whichever
 * worker calls accept() first, so a worker stuck in a blocking hook simply
 * takes no new clients while the others do. With SO_REUSEPORT the kernel
 * hashes a fixed share of new connections to the stuck worker, where they
 * wait. Measured on Linux 6.x, 2 workers, 8 clients connecting in a loop
 * (800 connections): both spread evenly when idle (379/421 shared, 397/403
 * reuseport); with one worker blocked for 1 s, 1 connection waited > 0.5 s
 * with the shared socket, 8 with SO_REUSEPORT (p99 0.8 ms against 997 ms). */
#include "master.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"
#include "script.h"

#define MASTER_WORKERS_MAX 256
#define MASTER_BACKOFF_MIN 0.1  /* seconds before restarting a dead worker */
#define MASTER_BACKOFF_MAX 10.0 /* doubling while workers keep dying young */
#define MASTER_STABLE_SECS 5.0  /* a worker that lived this long resets the back-off */

struct master;

struct master_worker {
	struct master *m;
	int index;
	pid_t pid; /* 0 when not running */
	ev_tstamp started;
	double backoff;
	ev_child child;
	ev_timer restart;
};

struct master {
	struct ev_loop *loop;
	const struct config *cfg;
	struct worker_listen *ls; /* the listening sockets; closed when stopping */
	int nlisten;
	struct master_worker w[MASTER_WORKERS_MAX];
	int nworkers;
	int alive;
	int stopping;
	ev_signal sigterm, sigint, sighup;
};

static void master_spawn(struct master_worker *);

/* In the child: forget everything of the master's loop, then serve. */
static void
master_become_worker(struct master_worker *mw)
{
	struct master *m = mw->m;

	ev_loop_fork(m->loop);
	ev_signal_stop(m->loop, &m->sigterm);
	ev_signal_stop(m->loop, &m->sigint);
	ev_signal_stop(m->loop, &m->sighup);
	for (int i = 0; i < m->nworkers; i++) {
		ev_child_stop(m->loop, &m->w[i].child);
		ev_timer_stop(m->loop, &m->w[i].restart);
	}
	exit(worker_run(m->cfg, m->ls, m->nlisten, mw->index, NULL, NULL));
}

static void
master_on_restart(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	master_spawn(t->data);
}

static void
master_on_child(struct ev_loop *loop, ev_child *c, int revents)
{
	struct master_worker *mw = c->data;
	struct master *m = mw->m;
	int st = c->rstatus;
	double lived = ev_now(loop) - mw->started;

	(void)revents;
	ev_child_stop(loop, c);
	mw->pid = 0;
	m->alive--;
	if (WIFSIGNALED(st))
		log_warn(NULL, "worker.died worker=%d pid=%d signal=%d lived=%.1f", mw->index,
		    c->rpid, WTERMSIG(st), lived);
	else if (!m->stopping || WEXITSTATUS(st) != 0)
		log_warn(NULL, "worker.died worker=%d pid=%d status=%d lived=%.1f", mw->index,
		    c->rpid, WEXITSTATUS(st), lived);
	if (m->stopping) {
		if (m->alive == 0)
			ev_break(loop, EVBREAK_ALL);
		return;
	}
	/* Restart at once after a long life; back off while it keeps dying
	 * young (a broken script or a crash on every start). */
	if (lived >= MASTER_STABLE_SECS)
		mw->backoff = MASTER_BACKOFF_MIN;
	else
		mw->backoff =
		    mw->backoff * 2 > MASTER_BACKOFF_MAX ? MASTER_BACKOFF_MAX : mw->backoff * 2;
	log_info(NULL, "worker.restart worker=%d in=%.1f", mw->index, mw->backoff);
	ev_timer_set(&mw->restart, mw->backoff, 0);
	ev_timer_start(loop, &mw->restart);
}

static void
master_spawn(struct master_worker *mw)
{
	struct master *m = mw->m;
	pid_t pid;

	if (m->stopping)
		return;
	worker_block_signals(1);
	pid = fork();
	if (pid != 0)
		worker_block_signals(0);
	if (pid == -1) {
		log_error(NULL, "worker.fork worker=%d error=\"%s\"", mw->index, strerror(errno));
		ev_timer_set(&mw->restart, MASTER_BACKOFF_MAX, 0);
		ev_timer_start(m->loop, &mw->restart);
		return;
	}
	if (pid == 0)
		master_become_worker(mw);
	mw->pid = pid;
	mw->started = ev_now(m->loop);
	m->alive++;
	ev_child_set(&mw->child, pid, 0);
	ev_child_start(m->loop, &mw->child);
}

static void
master_signal_workers(struct master *m, int sig)
{
	for (int i = 0; i < m->nworkers; i++)
		if (m->w[i].pid > 0)
			(void)kill(m->w[i].pid, sig);
}

/* HUP: check the new script here first, so a broken one is reported once
 * rather than by every worker; TERM/INT: drain; a second one: now. */
static void
master_on_signal(struct ev_loop *loop, ev_signal *sig, int revents)
{
	struct master *m = sig->data;
	struct script_opts so;
	struct script *sc;
	char err[2048];

	(void)revents;
	if (sig->signum == SIGHUP) {
		worker_script_opts(m->cfg, &so);
		if (config_has_policy(m->cfg) &&
		    (sc = script_load(&so, loop, NULL, err, sizeof(err))) == NULL) {
			log_error(NULL, "server.reload result=failed why=signal error=\"%s\"", err);
			return;
		}
		if (config_has_policy(m->cfg))
			script_unref(sc);
		master_signal_workers(m, SIGHUP);
		return;
	}
	if (m->stopping) {
		log_info(NULL, "server.stop now=yes");
		master_signal_workers(m, SIGTERM);
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	m->stopping = 1;
	log_info(NULL, "server.stop signal=%s workers=%d", sig->signum == SIGTERM ? "TERM" : "INT",
	    m->alive);
	for (int i = 0; i < m->nworkers; i++)
		ev_timer_stop(loop, &m->w[i].restart);
	/* Once the workers have closed theirs too, a new client is refused at
	 * once instead of waiting in a backlog nobody accepts from. */
	for (int i = 0; i < m->nlisten; i++) {
		close(m->ls[i].fd);
		m->ls[i].fd = -1;
	}
	master_signal_workers(m, SIGTERM);
	if (m->alive == 0)
		ev_break(loop, EVBREAK_ALL);
}

int
master_run(const struct config *cfg, struct worker_listen *ls, int nlisten)
{
	static struct master m; /* large; and the forked children share its layout */

	memset(&m, 0, sizeof(m));
	m.loop = EV_DEFAULT;
	m.cfg = cfg;
	m.ls = ls;
	m.nlisten = nlisten;
	m.nworkers = cfg->workers < MASTER_WORKERS_MAX ? cfg->workers : MASTER_WORKERS_MAX;
	ev_signal_init(&m.sigterm, master_on_signal, SIGTERM);
	ev_signal_init(&m.sigint, master_on_signal, SIGINT);
	ev_signal_init(&m.sighup, master_on_signal, SIGHUP);
	m.sigterm.data = m.sigint.data = m.sighup.data = &m;
	ev_signal_start(m.loop, &m.sigterm);
	ev_signal_start(m.loop, &m.sigint);
	ev_signal_start(m.loop, &m.sighup);
	worker_block_signals(0);
	for (int i = 0; i < m.nworkers; i++) {
		struct master_worker *mw = &m.w[i];
		mw->m = &m;
		mw->index = i + 1;
		mw->backoff = MASTER_BACKOFF_MIN;
		ev_init(&mw->child, master_on_child);
		ev_init(&mw->restart, master_on_restart);
		mw->child.data = mw->restart.data = mw;
		master_spawn(mw);
	}
	log_info(NULL, "master.ready workers=%d pid=%d", m.nworkers, (int)getpid());

	ev_run(m.loop, 0);

	ev_signal_stop(m.loop, &m.sigterm);
	ev_signal_stop(m.loop, &m.sigint);
	ev_signal_stop(m.loop, &m.sighup);
	worker_ignore_signals();
	for (int i = 0; i < m.nworkers; i++) {
		ev_child_stop(m.loop, &m.w[i].child);
		ev_timer_stop(m.loop, &m.w[i].restart);
	}
	log_info(NULL, "master.exit");
	return 0;
}
