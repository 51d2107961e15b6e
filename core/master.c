/* master.c - fork, supervise and stop the workers.
 * Workers share the master's listening sockets rather than one
 * SO_REUSEPORT socket each: the kernel hands a connection to whichever
 * worker calls accept() first, so a worker stuck in a blocking hook simply
 * takes no new clients while the others do. With SO_REUSEPORT the kernel
 * hashes a fixed share of new connections to the stuck worker, where they
 * wait. Measured on Linux 6.x, 2 workers, 8 clients connecting in a loop
 * (800 connections): both spread evenly when idle (379/421 shared, 397/403
 * reuseport); with one worker blocked for 1 s, 1 connection waited > 0.5 s
 * with the shared socket, 8 with SO_REUSEPORT (p99 0.8 ms against 997 ms).
 *
 * The master keeps the last policy generation and TLS config that loaded:
 * a worker it starts or restarts gets a copy of them through the fork, so
 * it serves what the others serve, never a file broken or edited since.
 * Its watchdog kills a worker whose loop has stopped turning (watchdog.h);
 * the restart logic then treats it like any other death. With --metrics
 * it answers the scrapes: the workers count in memory shared with it
 * (metrics.h), so it does no SMTP to know what they did. */
#define _GNU_SOURCE /* pipe2 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "notify.h"
#include "script.h"
#include "tls.h"
#include "watch.h"
#include "watchdog.h"

#define MASTER_WORKERS_MAX   256
#define MASTER_BACKOFF_MIN   0.1  /* seconds before restarting a dead worker */
#define MASTER_BACKOFF_MAX   10.0 /* doubling while workers keep dying young */
#define MASTER_STABLE_SECS   5.0  /* a worker that lived this long resets the back-off */
#define MASTER_WATCHDOG_TICK 1.0  /* longest gap between beats, and between checks */

struct master;

struct master_worker {
	struct master *m;
	int index;
	pid_t pid; /* 0 when not running */
	ev_tstamp started;
	double backoff;
	int stalled; /* the watchdog sent SIGKILL; not reaped yet */
	ev_child child;
	ev_timer restart;
};

struct master {
	struct ev_loop *loop;
	const struct config *cfg;
	struct worker_listen *ls; /* the listening sockets; closed when stopping */
	int nlisten;
	pid_t pid;
	struct script *sc;      /* the last generation that loaded; NULL without a policy */
	struct tls_config *tls; /* the last TLS config that loaded, or NULL */
	struct watch *watch;    /* --watch, or NULL */
	struct watchdog *wd;    /* NULL when --watchdog 0 (or unmappable) */
	ev_timer wdcheck;
	struct master_worker w[MASTER_WORKERS_MAX];
	int nworkers;
	int alive;
	int stopping;
	ev_signal sigterm, sigint, sighup;
	/* Under systemd (notify_enabled()): each first worker writes a byte
	 * once it serves, and READY=1 waits for all of them. -1 otherwise,
	 * and after READY=1. */
	int ready[2];
	int nready;
	ev_io readyio;
};

static void master_spawn(struct master_worker *);

/* Seconds between a worker's beats and between the master's checks: a
 * few per period, so a stall is seen soon after it passes the limit. */
static double
master_watchdog_tick(const struct config *cfg)
{
	return cfg->watchdog / 4 < MASTER_WATCHDOG_TICK ? cfg->watchdog / 4 : MASTER_WATCHDOG_TICK;
}

/* In the child: forget everything of the master's loop, then serve the
 * master's generation. */
static void
master_become_worker(struct master_worker *mw)
{
	struct master *m = mw->m;
	struct script *sc = m->sc;
	struct tls_config *tls = m->tls;

	/* A worker that outlived its master would serve on unsupervised,
	 * holding the port: the kernel sends it TERM (a drain) when the
	 * master dies. If that happened before this call, the parent is
	 * already someone else. TERM is blocked until worker_run() has its
	 * handler, so it waits rather than kills. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
		log_warn(
		    NULL, "worker.pdeathsig worker=%d error=\"%s\"", mw->index, strerror(errno));
	if (getppid() != m->pid) {
		log_warn(NULL, "worker.orphan worker=%d pid=%d", mw->index, (int)getpid());
		exit(0);
	}
	ev_loop_fork(m->loop);
	ev_signal_stop(m->loop, &m->sigterm);
	ev_signal_stop(m->loop, &m->sigint);
	ev_signal_stop(m->loop, &m->sighup);
	notify_forget();
	if (m->ready[0] != -1) {
		ev_io_stop(m->loop, &m->readyio);
		close(m->ready[0]);
		m->ready[0] = -1;
		worker_set_ready_fd(m->ready[1]);
		m->ready[1] = -1;
	}
	if (m->wd != NULL) {
		/* It was unref'ed: give the count back, or the worker's loop
		 * would end one watcher too early. */
		ev_ref(m->loop);
		ev_timer_stop(m->loop, &m->wdcheck);
	}
	for (int i = 0; i < m->nworkers; i++) {
		ev_child_stop(m->loop, &m->w[i].child);
		ev_timer_stop(m->loop, &m->w[i].restart);
	}
	watch_free(m->watch);
	m->watch = NULL;
	/* The scrapes are the master's: its socket and scrapers are not ours. */
	metrics_http_stop();
	metrics_worker_start(mw->index);
	/* This copy of the master is gone: the worker owns the references. */
	m->sc = NULL;
	m->tls = NULL;
	if (m->wd != NULL)
		watchdog_start(m->wd, mw->index - 1, m->loop, master_watchdog_tick(m->cfg));
	worker_forked(mw->index, sc, &tls);
	exit(worker_run(m->cfg, m->ls, m->nlisten, mw->index, sc, tls));
}

static void master_on_watch(void *);

/* --watch in the master: a watch of its own on the kept generation's
 * files. Returns -1 when inotify is not available. */
static int
master_watch_start(struct master *m)
{
	if ((m->watch = watch_new(m->loop, WORKER_WATCH_SETTLE, master_on_watch, m)) == NULL)
		return -1;
	if (worker_watch_set(m->watch, m->cfg, m->sc) == -1)
		log_warn(NULL, "master.watch error=\"some policy files cannot be watched\"");
	return 0;
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
	mw->stalled = 0;
	m->alive--;
	metrics_worker_gone(mw->index);
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
	 * young (a broken script or a crash on every start). A worker the
	 * watchdog killed is one more death here: it lived at least
	 * --watchdog seconds, so with the default the back-off resets. */
	if (lived >= MASTER_STABLE_SECS)
		mw->backoff = MASTER_BACKOFF_MIN;
	else
		mw->backoff =
		    mw->backoff * 2 > MASTER_BACKOFF_MAX ? MASTER_BACKOFF_MAX : mw->backoff * 2;
	log_info(NULL, "worker.restart worker=%d in=%.1f", mw->index, mw->backoff);
	metrics_inc(MC_WORKER_RESTARTS);
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
	/* Before the fork: the child may stamp its slot at once. */
	if (m->wd != NULL)
		watchdog_arm(m->wd, mw->index - 1);
	/* The policy ran in this process: whatever its files (or stdout)
	 * still buffer would otherwise be written once by every worker. */
	fflush(NULL);
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

/* Loads the policy and the TLS files again into the generation kept for
 * workers started from now on. Returns -1 when the policy fails to load:
 * the kept one stays. A TLS pair that fails keeps the old one; the workers
 * report that themselves. why is "signal" or "watch". */
static int
master_reload(struct master *m, const char *why)
{
	const struct config *cfg = m->cfg;
	struct script_opts so;
	struct script *sc;
	struct tls_config *tls;
	char err[2048], status[sizeof(err) + 64];

	if (config_has_policy(cfg)) {
		worker_script_opts(cfg, &so);
		if ((sc = script_load(&so, m->loop, m->sc, err, sizeof(err))) == NULL) {
			/* On SIGHUP the workers are not asked to reload, so this is
			 * the one report; with --watch each worker reports its own. */
			metrics_inc(MC_RELOAD_FAILED);
			if (strcmp(why, "signal") == 0)
				log_error(NULL, "server.reload result=failed why=%s error=\"%s\"",
				    why, err);
			else
				log_info(NULL, "master.reload result=failed why=%s kept=%u", why,
				    m->sc != NULL ? m->sc->generation : 0);
			snprintf(status, sizeof(status),
			    "Reload failed, policy generation %u kept: %s",
			    m->sc != NULL ? m->sc->generation : 0, err);
			notify_send("READY=1\nSTATUS=%s", notify_clean(status));
			return -1;
		}
		script_unref(m->sc);
		m->sc = sc;
		log_info(NULL, "master.reload result=ok why=%s generation=%u", why, sc->generation);
		metrics_inc(MC_RELOAD_OK);
	}
	if (cfg->tls_cert != NULL) {
		tls = tls_config_new(
		    cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca, err, sizeof(err));
		if (tls == NULL)
			log_debug(NULL, "master.tls_reload result=failed error=\"%s\"", err);
		else {
			tls_config_unref(m->tls);
			m->tls = tls;
		}
	}
	if (m->watch != NULL && worker_watch_set(m->watch, cfg, m->sc) == -1)
		log_warn(NULL, "master.watch error=\"some policy files cannot be watched\"");
	/* The workers load the same files on the HUP that follows (or on
	 * their own watch); a worker started from now on gets this one. */
	notify_send("READY=1\nSTATUS=Reloaded: policy generation %u, %d workers",
	    m->sc != NULL ? m->sc->generation : 0, m->alive);
	return 0;
}

/* --watch: the workers reload by themselves; the master follows, so a
 * worker it restarts serves what the others serve. */
static void
master_on_watch(void *arg)
{
	notify_reloading();
	(void)master_reload(arg, "watch");
}

static void
master_ready_close(struct master *m)
{
	if (m->ready[0] == -1)
		return;
	ev_io_stop(m->loop, &m->readyio);
	close(m->ready[0]);
	close(m->ready[1]);
	m->ready[0] = m->ready[1] = -1;
}

/* A first worker serves. READY=1 once all have: a client systemd lets in
 * after that is accepted by a worker running its loop, not left in the
 * backlog. A worker that died before its byte is restarted and writes
 * one too. */
static void
master_on_ready(struct ev_loop *loop, ev_io *io, int revents)
{
	struct master *m = io->data;
	char b[MASTER_WORKERS_MAX];
	ssize_t n;

	(void)loop;
	(void)revents;
	if ((n = read(m->ready[0], b, sizeof(b))) <= 0)
		return;
	m->nready += (int)n;
	if (m->nready < m->nworkers)
		return;
	master_ready_close(m);
	notify_send("READY=1\nSTATUS=Serving: %d workers, policy generation %u", m->alive,
	    m->sc != NULL ? m->sc->generation : 0);
}

/* SIGKILL: a loop that does not turn would never run a TERM handler, and
 * its sessions are lost either way. The death is then reaped, logged and
 * restarted like any other. */
static void
master_on_watchdog(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct master *m = t->data;
	char sid[32], hook[40];

	(void)loop;
	(void)revents;
	for (int i = 0; i < m->nworkers; i++) {
		struct master_worker *mw = &m->w[i];
		double stalled;

		if (mw->pid <= 0 || mw->stalled)
			continue;
		if ((stalled = watchdog_stalled(m->wd, i)) < m->cfg->watchdog)
			continue;
		watchdog_hook(m->wd, i, sid, sizeof(sid), hook, sizeof(hook));
		log_warn(NULL, "worker.watchdog worker=%d pid=%d stalled=%.1f sid=%s hook=%s",
		    mw->index, (int)mw->pid, stalled, sid, hook);
		if (kill(mw->pid, SIGKILL) == 0)
			mw->stalled = 1;
	}
}

/* HUP: load the new script here first, so a broken one is reported once
 * rather than by every worker; TERM/INT: drain; a second one: now. */
static void
master_on_signal(struct ev_loop *loop, ev_signal *sig, int revents)
{
	struct master *m = sig->data;

	(void)revents;
	if (sig->signum == SIGHUP) {
		notify_reloading();
		if (master_reload(m, "signal") == 0)
			master_signal_workers(m, SIGHUP);
		return;
	}
	if (m->stopping) {
		log_info(NULL, "server.stop now=yes");
		notify_send("STATUS=Stopping now");
		master_signal_workers(m, SIGTERM);
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	m->stopping = 1;
	log_info(NULL, "server.stop signal=%s workers=%d", sig->signum == SIGTERM ? "TERM" : "INT",
	    m->alive);
	notify_send("STOPPING=1\nSTATUS=Draining %d workers", m->alive);
	master_ready_close(m);
	/* The watchdog keeps watching: a worker stuck while draining would
	 * hold the stop up for good. */
	watch_free(m->watch);
	m->watch = NULL;
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
master_run(const struct config *cfg, struct worker_listen *ls, int nlisten, struct script *sc,
    struct tls_config *tls)
{
	static struct master m; /* large; and the forked children share its layout */

	memset(&m, 0, sizeof(m));
	m.loop = EV_DEFAULT;
	m.cfg = cfg;
	m.ls = ls;
	m.nlisten = nlisten;
	m.pid = getpid();
	m.sc = sc;
	m.tls = tls;
	m.nworkers = cfg->workers < MASTER_WORKERS_MAX ? cfg->workers : MASTER_WORKERS_MAX;
	m.ready[0] = m.ready[1] = -1;
	if (notify_enabled()) {
		if (pipe2(m.ready, O_CLOEXEC | O_NONBLOCK) == -1)
			fatal("pipe");
		ev_io_init(&m.readyio, master_on_ready, m.ready[0], EV_READ);
		m.readyio.data = &m;
		ev_io_start(m.loop, &m.readyio);
	}
	if (cfg->watchdog > 0) {
		/* Without the mapping the workers still serve, unwatched. */
		if ((m.wd = watchdog_new(m.nworkers)) == NULL)
			log_error(NULL, "master.watchdog result=off error=\"%s\"", strerror(errno));
		else {
			ev_timer_init(&m.wdcheck, master_on_watchdog, master_watchdog_tick(cfg),
			    master_watchdog_tick(cfg));
			m.wdcheck.data = &m;
			ev_timer_start(m.loop, &m.wdcheck);
			/* Only the children keep the loop running. */
			ev_unref(m.loop);
		}
	}
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
	metrics_http_start(m.loop, cfg->spool);
	/* After the first forks, so they have no watch to let go of. */
	if (cfg->watch && cfg->script != NULL && master_watch_start(&m) == -1)
		fatal("--watch: inotify");
	log_info(NULL, "master.ready workers=%d pid=%d watchdog=%.1f", m.nworkers, (int)getpid(),
	    m.wd != NULL ? cfg->watchdog : 0.0);

	ev_run(m.loop, 0);

	worker_stop_signals(m.loop, &m.sigterm, &m.sigint, &m.sighup);
	for (int i = 0; i < m.nworkers; i++) {
		ev_child_stop(m.loop, &m.w[i].child);
		ev_timer_stop(m.loop, &m.w[i].restart);
	}
	if (m.wd != NULL) {
		ev_ref(m.loop);
		ev_timer_stop(m.loop, &m.wdcheck);
	}
	master_ready_close(&m);
	metrics_http_stop();
	watchdog_free(m.wd);
	watch_free(m.watch);
	script_unref(m.sc);
	tls_config_unref(m.tls);
	log_info(NULL, "master.exit");
	return 0;
}
