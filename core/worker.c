/* worker.c - a serving process. Owns the event loop's SMTP side: listeners,
 * the smtp_server, reloads and the stop sequence:
 *   1st SIGTERM/SIGINT: stop accepting, let sessions finish for
 *                       --shutdown-timeout, then 421 4.3.2 the rest;
 *   2nd SIGTERM/SIGINT: 421 4.3.2 everybody now. */
#include "worker.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "cosocket.h"
#include "dmarc_lua.h"
#include "dns.h"
#include "dns_lua.h"
#include "every.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "notify.h"
#include "redis.h"
#include "relay.h"
#include "script.h"
#include "smtp_session.h"
#include "spf_lua.h"
#include "tls.h"
#include "watch.h"

struct worker {
	struct ev_loop *loop;
	const struct config *cfg;
	struct smtp_server srv;
	struct listener *listeners[CONFIG_LISTEN_MAX];
	int nlisteners;
	int index;
	int stopping;
	ev_signal sigterm, sigint, sighup;
	ev_timer drain;
	struct watch *watch; /* --watch, or NULL */
	struct every *every; /* the generation in force's luamta.every tasks */
};

/* A forked worker's end of the master's readiness pipe (-1: none). */
static int worker_ready_fd = -1;

void
worker_set_ready_fd(int fd)
{
	worker_ready_fd = fd;
}

int
worker_watch_set(struct watch *watch, const struct config *cfg, const struct script *sc)
{
	char *only[2] = { (char *)cfg->script, NULL };

	return watch_set(watch, sc != NULL && sc->files != NULL ? sc->files : only);
}

/* The luamta.every tasks of the generation in force. */
static struct every *
worker_every(struct worker *w)
{
	struct script *sc = w->srv.script;

	return sc != NULL ? every_start(sc->L, &sc->budget, w->loop) : NULL;
}

static void
worker_watch_arm(struct worker *w)
{
	if (w->watch != NULL && worker_watch_set(w->watch, w->cfg, w->srv.script) == -1)
		log_warn(NULL, "server.watch error=\"some policy files cannot be watched\"");
}

/* Loads the policy (and the TLS files) again. The new generation serves
 * new connections at once; sessions already running finish on the one they
 * started with, which is freed after the last of them. A script or
 * certificate that fails to load leaves the one in force untouched. */
static void
worker_reload(struct worker *w, const char *why)
{
	const struct config *cfg = w->cfg;
	struct script *sc;
	struct tls_config *tls;
	char err[2048], status[sizeof(err) + 64] = "Reloaded";

	/* In a forked worker these say nothing: the master speaks for all. */
	notify_reloading();
	if (config_has_policy(cfg)) {
		struct script_opts o;

		worker_script_opts(cfg, &o);
		sc = script_load(&o, w->loop, w->srv.script, err, sizeof(err));
		/* Under a master, the master counts the reload: once, not once
		 * per worker. */
		if (w->index == 0)
			metrics_inc(sc != NULL ? MC_RELOAD_OK : MC_RELOAD_FAILED);
		if (sc == NULL) {
			log_error(NULL, "server.reload result=failed why=%s worker=%d error=\"%s\"",
			    why, w->index, err);
			snprintf(status, sizeof(status),
			    "Reload failed, policy generation %u kept: %s",
			    w->srv.script != NULL ? w->srv.script->generation : 0, err);
		} else {
			log_info(NULL, "server.reload result=ok why=%s worker=%d generation=%u",
			    why, w->index, sc->generation);
			/* The old generation may go with the swap: its
			 * tasks first. */
			every_stop(w->every);
			smtp_server_set_script(&w->srv, sc);
			w->every = worker_every(w);
			relay_set_script(sc);
			snprintf(status, sizeof(status), "Reloaded: policy generation %u",
			    sc->generation);
		}
	}
	/* A renewed certificate needs no restart; a bad one keeps the old. */
	if (cfg->tls_cert != NULL) {
		tls = tls_config_new(
		    cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca, err, sizeof(err));
		if (tls == NULL) {
			log_error(
			    NULL, "tls.reload result=failed worker=%d error=\"%s\"", w->index, err);
			snprintf(status, sizeof(status),
			    "TLS reload failed, old certificate kept: %s", err);
		} else {
			log_info(NULL, "tls.reload result=ok worker=%d", w->index);
			tls_config_unref(w->srv.tls);
			w->srv.tls = tls;
		}
	}
	worker_watch_arm(w);
	notify_send("READY=1\nSTATUS=%s", notify_clean(status));
}

static void
worker_on_watch(void *arg)
{
	worker_reload(arg, "watch");
}

static void
worker_on_drained(struct smtp_server *srv)
{
	ev_break(srv->loop, EVBREAK_ALL);
}

static void
worker_on_drain_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;

	(void)revents;
	log_info(NULL, "server.drain_timeout worker=%d sessions=%d", w->index, w->srv.nsessions);
	smtp_server_shutdown(&w->srv);
	ev_break(loop, EVBREAK_ALL);
}

static void
worker_on_signal(struct ev_loop *loop, ev_signal *sig, int revents)
{
	struct worker *w = sig->data;

	(void)revents;
	if (sig->signum == SIGHUP) {
		worker_reload(w, "signal");
		return;
	}
	if (w->stopping) {
		/* A second TERM/INT: no more waiting. */
		log_info(NULL, "server.stop worker=%d now=yes", w->index);
		notify_send("STATUS=Stopping now");
		smtp_server_shutdown(&w->srv);
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	w->stopping = 1;
	log_info(NULL, "server.stop worker=%d signal=%s sessions=%d", w->index,
	    sig->signum == SIGTERM ? "TERM" : "INT", w->srv.nsessions);
	notify_send("STOPPING=1\nSTATUS=Draining %d sessions", w->srv.nsessions);
	for (int i = 0; i < w->nlisteners; i++)
		listener_free(w->listeners[i]);
	w->nlisteners = 0;
	watch_free(w->watch);
	w->watch = NULL;
	every_stop(w->every);
	w->every = NULL;
	ev_signal_stop(loop, &w->sighup);
	if (w->srv.nsessions == 0) {
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	smtp_server_drain(&w->srv, worker_on_drained);
	ev_timer_set(&w->drain, w->cfg->shutdown_timeout, 0);
	ev_timer_start(loop, &w->drain);
}

void
worker_script_opts(const struct config *cfg, struct script_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->path = cfg->script;
	o->mem_max = cfg->lua_memory;
	o->budget.instructions = cfg->hook_instructions;
	o->budget.seconds = cfg->hook_timeout;
	o->hostname = cfg->hostname;
	o->capture_dir = cfg->capture_dir;
}

/* Seeds math.random from the kernel. Without it every worker forked from
 * one master state would draw the same sequence (Lua's own seed is the
 * time in seconds and an address, both the same in each copy). Only the
 * library's own randomseed is called: a policy that replaced it gets no
 * say here, outside any hook's budget. */
static void
worker_reseed_lua(struct script *sc, int index)
{
	lua_State *L = sc->L;
	uint64_t seed[2];
	int top = lua_gettop(L);

	if (getrandom(seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		seed[0] = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
		seed[1] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30);
	}
	lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
	lua_pushliteral(L, "math");
	if (lua_rawget(L, -2) == LUA_TTABLE) {
		lua_pushliteral(L, "randomseed");
		if (lua_rawget(L, -2) == LUA_TFUNCTION && lua_iscfunction(L, -1)) {
			lua_pushinteger(L, (lua_Integer)(seed[0] & INT64_MAX));
			lua_pushinteger(L, (lua_Integer)(seed[1] & INT64_MAX));
			if (lua_pcall(L, 2, 0, 0) != LUA_OK)
				log_warn(NULL, "worker.reseed worker=%d error=\"%s\"", index,
				    lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
		}
	}
	lua_settop(L, top);
}

void
worker_forked(int index, struct script *sc, struct tls_config **tls)
{
	if (sc != NULL)
		worker_reseed_lua(sc, index);
	/* The TLS config holds the random generator that makes every
	 * handshake's keys: a copy shared with the master and the other
	 * workers would repeat them. */
	if (*tls != NULL && tls_config_reseed(*tls) == -1) {
		log_error(NULL, "tls.reseed result=failed worker=%d", index);
		_exit(1);
	}
}

void
worker_block_signals(int block)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

/* --stdio: one session on standard input and output, then exit. Under
 * inetd or systemd socket activation stdin is the socket itself (and TLS
 * works); over pipes replies go to stdout and STARTTLS is not offered. */
static void
worker_stdio(struct worker *w)
{
	struct stat st;
	int wfd = STDOUT_FILENO;

	if (fstat(STDIN_FILENO, &st) == 0 && S_ISSOCK(st.st_mode))
		wfd = STDIN_FILENO;
	else {
		tls_config_unref(w->srv.tls);
		w->srv.tls = NULL;
	}
	w->srv.on_drained = worker_on_drained;
	smtp_server_stdio(&w->srv, STDIN_FILENO, wfd);
}

void
worker_stop_signals(struct ev_loop *loop, ev_signal *term, ev_signal *intr, ev_signal *hup)
{
	/* Stopping a signal's last watcher restores its default action: a
	 * TERM arriving between that and SIG_IGN would kill the process
	 * instead of letting it exit 0. Blocked meanwhile, it stays pending
	 * and meets SIG_IGN. */
	worker_block_signals(1);
	ev_signal_stop(loop, term);
	ev_signal_stop(loop, intr);
	ev_signal_stop(loop, hup);
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	worker_block_signals(0);
}

int
worker_run(const struct config *cfg, const struct worker_listen *ls, int nlisten, int index,
    struct script *sc, struct tls_config *tls)
{
	struct worker w;
	struct script_opts so;
	char err[2048];

	memset(&w, 0, sizeof(w));
	w.loop = EV_DEFAULT;
	w.cfg = cfg;
	w.index = index;
	worker_script_opts(cfg, &so);
	dns_configure(cfg);
	if (sc == NULL && config_has_policy(cfg) &&
	    (sc = script_load(&so, w.loop, NULL, err, sizeof(err))) == NULL) {
		log_error(NULL, "script.load_failed worker=%d error=\"%s\"", index, err);
		return 1;
	}
	if (tls == NULL && cfg->tls_cert != NULL &&
	    (tls = tls_config_new(
		 cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca, err, sizeof(err))) == NULL) {
		log_error(NULL, "tls.load_failed worker=%d error=\"%s\"", index, err);
		script_unref(sc);
		return 1;
	}
	smtp_server_init(&w.srv, w.loop, cfg, sc);
	w.srv.tls = tls;
	for (int i = 0; i < nlisten; i++) {
		static listener_cb *const accept_cb[2][2] = {
			{ smtp_server_accept, smtp_server_accept_tls },
			{ smtp_server_accept_proxy, smtp_server_accept_tls_proxy },
		};
		struct listener *l = listener_new(w.loop, ls[i].fd,
		    ls[i].lmtp ? smtp_server_accept_lmtp : accept_cb[ls[i].proxy][ls[i].tls],
		    &w.srv);
		if (l == NULL)
			fatalx("out of memory");
		w.listeners[w.nlisteners++] = l;
	}
	ev_signal_init(&w.sigterm, worker_on_signal, SIGTERM);
	ev_signal_init(&w.sigint, worker_on_signal, SIGINT);
	ev_signal_init(&w.sighup, worker_on_signal, SIGHUP);
	w.sigterm.data = w.sigint.data = w.sighup.data = &w;
	ev_signal_start(w.loop, &w.sigterm);
	ev_signal_start(w.loop, &w.sigint);
	ev_signal_start(w.loop, &w.sighup);
	worker_block_signals(0);
	ev_init(&w.drain, worker_on_drain_timeout);
	w.drain.data = &w;
	if (cfg->watch && cfg->script != NULL) {
		if ((w.watch = watch_new(w.loop, WORKER_WATCH_SETTLE, worker_on_watch, &w)) == NULL)
			fatal("--watch: inotify");
		worker_watch_arm(&w);
	}
	w.every = worker_every(&w);
	/* --foreground: this process is also the one that answers scrapes. */
	if (index == 0 && !cfg->stdio) {
		metrics_worker_start(0);
		metrics_http_start(w.loop, cfg->spool);
	}
	relay_start(w.loop, cfg);
	relay_set_script(w.srv.script);
	log_info(NULL, "worker.ready worker=%d pid=%d", index, (int)getpid());
	if (cfg->stdio)
		worker_stdio(&w);
	else {
		/* Serving from the first turn of the loop: the listeners are
		 * in it. A forked worker tells its master, which tells systemd
		 * once every first worker has; in the foreground this process
		 * is the one systemd started. */
		if (worker_ready_fd != -1) {
			if (write(worker_ready_fd, "r", 1) != 1)
				log_warn(NULL, "worker.ready_pipe worker=%d", index);
			close(worker_ready_fd);
			worker_ready_fd = -1;
		}
		notify_send("READY=1\nSTATUS=Serving: policy generation %u",
		    w.srv.script != NULL ? w.srv.script->generation : 0);
	}

	ev_run(w.loop, 0);

	for (int i = 0; i < w.nlisteners; i++)
		listener_free(w.listeners[i]);
	watch_free(w.watch);
	every_stop(w.every);
	ev_timer_stop(w.loop, &w.drain);
	worker_stop_signals(w.loop, &w.sigterm, &w.sigint, &w.sighup);
	smtp_server_shutdown(&w.srv);
	relay_stop();
	http_shutdown(); /* after the sessions: their requests were cancelled */
	dns_lua_shutdown();
	dmarc_lua_shutdown();
	spf_lua_shutdown();
	dns_shutdown();
	redis_shutdown();
	cosocket_shutdown();
	log_info(NULL, "worker.exit worker=%d", index);
	return 0;
}
