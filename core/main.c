/* main.c - wiring: parse the command line, load the policy, bind the
 * listeners, handle signals and run the loop. */
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

struct main_ctx {
	struct smtp_server srv;
	struct listener *listeners[CONFIG_LISTEN_MAX];
	int nlisteners;
	ev_signal sigterm, sigint;
};

static void
main_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct main_ctx *ctx = w->data;

	(void)revents;
	log_info(NULL, "server.stop signal=%s", w->signum == SIGTERM ? "TERM" : "INT");
	for (int i = 0; i < ctx->nlisteners; i++) {
		listener_free(ctx->listeners[i]);
		ctx->listeners[i] = NULL;
	}
	ctx->nlisteners = 0;
	smtp_server_shutdown(&ctx->srv);
	ev_signal_stop(loop, &ctx->sigterm);
	ev_signal_stop(loop, &ctx->sigint);
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
	struct hook_budget budget;
	char err[2048];
	int rc;

	if ((rc = config_parse(&cfg, argc, argv)) != 0)
		return rc == 1 ? 0 : 2;
	log_set_level((enum log_level)cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	if ((loop = ev_default_loop(EVFLAG_AUTO)) == NULL)
		fatalx("cannot initialise libev");

	budget.instructions = cfg.hook_instructions;
	budget.seconds = cfg.hook_timeout;
	if (cfg.script != NULL &&
	    (script = script_load(cfg.script, loop, cfg.lua_memory, &budget, cfg.hostname, err,
		 sizeof(err))) == NULL) {
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

	memset(&ctx, 0, sizeof(ctx));
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
	ctx.sigterm.data = ctx.sigint.data = &ctx;
	ev_signal_start(loop, &ctx.sigterm);
	ev_signal_start(loop, &ctx.sigint);
	if (cfg.ready_file != NULL)
		main_write_ready(cfg.ready_file, &ctx);
	log_info(NULL, "server.ready version=%s script=%s pid=%d", LUAMTA_VERSION,
	    cfg.script != NULL ? cfg.script : "-", (int)getpid());

	ev_run(loop, 0);

	ev_loop_destroy(loop);
	log_info(NULL, "server.exit");
	return 0;
}
