/* main.c - wiring: parse the command line, load the policy and the TLS
 * files, bind the listeners, handle signals (TERM/INT stop, HUP reloads),
 * watch the policy files (--watch) and run the loop. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "script.h"
#include "smtp_session.h"
#include "tls.h"
#include "watch.h"

#define MAIN_WATCH_SETTLE 0.2 /* editors write in steps: reload once it is quiet */

struct main_ctx {
	struct ev_loop *loop;
	const struct config *cfg;
	struct hook_budget budget;
	struct smtp_server srv;
	struct listener *listeners[CONFIG_LISTEN_MAX];
	int nlisteners;
	ev_signal sigterm, sigint, sighup;
	struct watch *watch; /* --watch, or NULL */
};

static void main_watch_arm(struct main_ctx *);

/* Loads the policy (and the TLS files) again. The new generation serves
 * new connections at once; sessions already running finish on the one they
 * started with, which is freed after the last of them. A script or
 * certificate that fails to load leaves the one in force untouched. */
static void
main_reload(struct main_ctx *ctx, const char *why)
{
	const struct config *cfg = ctx->cfg;
	struct script *sc;
	struct tls_config *tls;
	char err[2048];

	if (cfg->script != NULL) {
		sc = script_load(cfg->script, ctx->loop, cfg->lua_memory, &ctx->budget,
		    cfg->hostname, ctx->srv.script, err, sizeof(err));
		if (sc == NULL)
			log_error(
			    NULL, "server.reload result=failed why=%s error=\"%s\"", why, err);
		else {
			log_info(NULL, "server.reload result=ok why=%s generation=%u", why,
			    sc->generation);
			smtp_server_set_script(&ctx->srv, sc);
		}
	}
	/* A renewed certificate needs no restart; a bad one keeps the old. */
	if (cfg->tls_cert != NULL) {
		tls = tls_config_new(
		    cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca, err, sizeof(err));
		if (tls == NULL)
			log_error(NULL, "tls.reload result=failed error=\"%s\"", err);
		else {
			tls_config_unref(ctx->srv.tls);
			ctx->srv.tls = tls;
		}
	}
	main_watch_arm(ctx);
}

static void
main_on_watch(void *arg)
{
	main_reload(arg, "watch");
}

/* Watches the policy file and the Lua files the generation in force
 * required (they may change with each reload). */
static void
main_watch_arm(struct main_ctx *ctx)
{
	char *only[2] = { (char *)ctx->cfg->script, NULL };

	if (ctx->watch == NULL)
		return;
	/* Without a generation (cannot happen after a good start) watch the
	 * policy file alone. */
	if (watch_set(ctx->watch,
		ctx->srv.script != NULL && ctx->srv.script->files != NULL ? ctx->srv.script->files :
									    only) == -1)
		log_warn(NULL, "server.watch error=\"some policy files cannot be watched\"");
}

static void
main_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct main_ctx *ctx = w->data;

	(void)revents;
	if (w->signum == SIGHUP) {
		main_reload(ctx, "signal");
		return;
	}
	log_info(NULL, "server.stop signal=%s", w->signum == SIGTERM ? "TERM" : "INT");
	for (int i = 0; i < ctx->nlisteners; i++) {
		listener_free(ctx->listeners[i]);
		ctx->listeners[i] = NULL;
	}
	ctx->nlisteners = 0;
	watch_free(ctx->watch);
	ctx->watch = NULL;
	smtp_server_shutdown(&ctx->srv);
	ev_signal_stop(loop, &ctx->sigterm);
	ev_signal_stop(loop, &ctx->sigint);
	ev_signal_stop(loop, &ctx->sighup);
}

/* Written after every listener is bound, renamed into place so a reader
 * never sees half a file. */
static void
main_write_ready(const char *path, struct main_ctx *ctx)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL)
		fatal("ready file %s", tmp);
	for (int i = 0; i < ctx->nlisteners; i++)
		fprintf(f, "%s %d\n", listener_host(ctx->listeners[i]),
		    listener_port(ctx->listeners[i]));
	if (fclose(f) != 0 || rename(tmp, path) == -1)
		fatal("ready file %s", path);
}

int
main(int argc, char **argv)
{
	struct config cfg;
	struct main_ctx ctx;
	struct ev_loop *loop;
	struct script *script = NULL;
	struct tls_config *tls = NULL;
	char err[2048];
	int rc;

	if ((rc = config_parse(&cfg, argc, argv)) != 0)
		return rc == 1 ? 0 : 2;
	log_set_level((enum log_level)cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	if ((loop = ev_default_loop(EVFLAG_AUTO)) == NULL)
		fatalx("cannot initialise libev");

	memset(&ctx, 0, sizeof(ctx));
	ctx.loop = loop;
	ctx.cfg = &cfg;
	ctx.budget.instructions = cfg.hook_instructions;
	ctx.budget.seconds = cfg.hook_timeout;
	if (cfg.script != NULL &&
	    (script = script_load(cfg.script, loop, cfg.lua_memory, &ctx.budget, cfg.hostname, NULL,
		 err, sizeof(err))) == NULL) {
		if (cfg.check)
			printf("%s\n", err);
		log_error(NULL, "script.load_failed error=\"%s\"", err);
		ev_loop_destroy(loop);
		return 1;
	}
	if (cfg.tls_cert != NULL &&
	    (tls = tls_config_new(
		 cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca, err, sizeof(err))) == NULL) {
		if (cfg.check)
			printf("%s\n", err);
		log_error(NULL, "tls.load_failed error=\"%s\"", err);
		script_unref(script);
		ev_loop_destroy(loop);
		return 1;
	}
	if (cfg.check) {
		tls_config_unref(tls);
		printf("OK %s\n", cfg.script != NULL ? cfg.script : "(no script)");
		script_unref(script);
		ev_loop_destroy(loop);
		return 0;
	}

	smtp_server_init(&ctx.srv, loop, &cfg, script);
	ctx.srv.tls = tls;
	for (int i = 0; i < cfg.nlisten; i++) {
		struct listener *l = listener_new(loop, cfg.listen[i].host, cfg.listen[i].port,
		    cfg.listen[i].tls ? smtp_server_accept_tls : smtp_server_accept, &ctx.srv, err,
		    sizeof(err));
		if (l == NULL)
			fatalx("%s", err);
		ctx.listeners[ctx.nlisteners++] = l;
		log_info(NULL, "server.listen addr=%s port=%d tls=%s", listener_host(l),
		    listener_port(l), cfg.listen[i].tls ? "implicit" : "starttls");
	}
	ev_signal_init(&ctx.sigterm, main_on_signal, SIGTERM);
	ev_signal_init(&ctx.sigint, main_on_signal, SIGINT);
	ev_signal_init(&ctx.sighup, main_on_signal, SIGHUP);
	ctx.sigterm.data = ctx.sigint.data = ctx.sighup.data = &ctx;
	ev_signal_start(loop, &ctx.sigterm);
	ev_signal_start(loop, &ctx.sigint);
	ev_signal_start(loop, &ctx.sighup);
	if (cfg.watch && cfg.script != NULL) {
		if ((ctx.watch = watch_new(loop, MAIN_WATCH_SETTLE, main_on_watch, &ctx)) == NULL)
			fatal("--watch: inotify");
		main_watch_arm(&ctx);
	}
	if (cfg.ready_file != NULL)
		main_write_ready(cfg.ready_file, &ctx);
	log_info(NULL, "server.ready version=%s script=%s pid=%d", LUAMTA_VERSION,
	    cfg.script != NULL ? cfg.script : "-", (int)getpid());

	ev_run(loop, 0);

	ev_loop_destroy(loop);
	log_info(NULL, "server.exit");
	return 0;
}
