/* main.c - wiring: parse the command line, check the policy and the TLS
 * files, bind the listeners, drop privileges, then serve in this process
 * (--foreground) or under a master with --workers processes. */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "master.h"
#include "metrics.h"
#include "metrics_http.h"
#include "notify.h"
#include "queue_cli.h"
#include "script.h"
#include "tls.h"
#include "worker.h"

/* Written after every listener is bound, renamed into place so a reader
 * never sees half a file: one "ADDR PORT" line per listener ("ADDR PORT
 * lmtp" for --listen-lmtp, "unix:PATH 0 lmtp" for its UNIX sockets), then
 * "ADDR PORT metrics" for --metrics. */
static void
main_write_ready(const char *path, const struct config *cfg, const struct worker_listen *ls, int n)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL)
		fatal("ready file %s", tmp);
	for (int i = 0; i < n; i++) {
		char host[64];
		int port;

		if (cfg->listen[i].path != NULL) {
			fprintf(f, "unix:%s 0 lmtp\n", cfg->listen[i].path);
			continue;
		}
		if (listener_sockname(ls[i].fd, host, sizeof(host), &port) == -1)
			fatal("getsockname");
		fprintf(f, "%s %d%s\n", host, port, cfg->listen[i].lmtp ? " lmtp" : "");
	}
	if (metrics_http_fd() != -1) {
		char host[64];
		int port;

		if (listener_sockname(metrics_http_fd(), host, sizeof(host), &port) == -1)
			fatal("getsockname");
		fprintf(f, "%s %d metrics\n", host, port);
	}
	if (fclose(f) != 0 || rename(tmp, path) == -1)
		fatal("ready file %s", path);
}

/* Removes the UNIX sockets of the first n listeners (--listen-lmtp
 * unix:PATH), which this process created: at exit, or when a later bind
 * fails. The workers leave them to this process. */
static void
main_unlink_unix(const struct config *cfg, int n)
{
	for (int i = 0; i < n; i++)
		if (cfg->listen[i].path != NULL)
			listener_unlink_unix(cfg->listen[i].path);
}

/* --user: the UNIX sockets go to that user and its group, so that the
 * group's members (an MTA's user added to it) may connect, and so that the
 * process can remove them at exit after the drop (given a directory that
 * user may write). */
static void
main_chown_unix(const struct config *cfg)
{
	struct passwd *pw = getpwnam(cfg->user);

	if (pw == NULL)
		return; /* main_drop_privileges says so */
	for (int i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i].path != NULL &&
		    chown(cfg->listen[i].path, pw->pw_uid, pw->pw_gid) == -1)
			fatal("--listen-lmtp unix:%s: chown to %s", cfg->listen[i].path, cfg->user);
}

/* --user: after binding (so port 25 works as root), before serving. */
static void
main_drop_privileges(const char *user)
{
	struct passwd *pw;

	if ((pw = getpwnam(user)) == NULL)
		fatalx("--user %s: no such user", user);
	if (getuid() == pw->pw_uid)
		return;
	if (initgroups(pw->pw_name, pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1)
		fatal("--user %s", user);
	if (setuid(0) != -1)
		fatalx("--user %s: could regain root", user);
	log_info(NULL, "server.user user=%s uid=%d", user, (int)pw->pw_uid);
}

/* Started as an ordinary user holding capabilities (a systemd unit's
 * User= with AmbientCapabilities=CAP_NET_BIND_SERVICE, for port 25): they
 * did their work when the listeners were bound, so the master, the workers
 * and the policy run without any. Root keeps what it has (--user is how
 * root gives it up). */
static void
main_drop_capabilities(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	int held = 0;

	if (getuid() == 0 || geteuid() == 0)
		return;
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) == -1)
		fatal("capget");
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		held |= d[i].permitted != 0 || d[i].effective != 0 || d[i].inheritable != 0;
	if (!held)
		return;
	memset(d, 0, sizeof(d));
	/* Ambient first: the kernel keeps no ambient capability that is not
	 * also permitted and inheritable, but say it plainly. */
	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (syscall(SYS_capset, &h, d) == -1)
		fatal("dropping capabilities");
	log_info(NULL, "server.capabilities result=dropped");
}

/* Loads the policy and the TLS files into *sc and *tls (NULL when not
 * configured). Returns 0, or -1 after logging why (and printing it for
 * --check), with nothing loaded. */
static int
main_load(const struct config *cfg, struct script **sc, struct tls_config **tls)
{
	struct script_opts so;
	char err[2048];

	*sc = NULL;
	*tls = NULL;
	worker_script_opts(cfg, &so);
	if (config_has_policy(cfg) &&
	    (*sc = script_load(&so, EV_DEFAULT, NULL, err, sizeof(err))) == NULL) {
		if (cfg->check)
			printf("%s\n", err);
		log_error(NULL, "script.load_failed error=\"%s\"", err);
		return -1;
	}
	if (cfg->tls_cert != NULL &&
	    (*tls = tls_config_new(
		 cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca, err, sizeof(err))) == NULL) {
		if (cfg->check)
			printf("%s\n", err);
		log_error(NULL, "tls.load_failed error=\"%s\"", err);
		script_unref(*sc);
		*sc = NULL;
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct config cfg;
	struct worker_listen ls[CONFIG_LISTEN_MAX];
	struct script *script = NULL;
	struct tls_config *tls = NULL;
	char err[2048];
	int rc;

	/* `luamta [--spool DIR] queue ...` is a command, not a server. */
	if (queue_cli_wanted(argc, argv))
		return queue_cli_main(argc, argv);
	if ((rc = config_parse(&cfg, argc, argv)) != 0)
		return rc == 1 ? 0 : 2;
	/* Before the policy runs, so $NOTIFY_SOCKET is gone from the
	 * environment it and its children see. */
	notify_init();
	log_set_level((enum log_level)cfg.log_level);
	log_set_format((enum log_format)cfg.log_format);
	signal(SIGPIPE, SIG_IGN);
	if (ev_default_loop(EVFLAG_AUTO) == NULL)
		fatalx("cannot initialise libev");

	/* --capture: the directory must exist before the policy opens its
	 * files in it (the parent must exist already). */
	if (cfg.capture_dir != NULL && mkdir(cfg.capture_dir, 0700) == -1 && errno != EEXIST)
		fatal("--capture %s", cfg.capture_dir);
	/* The counters are mapped before the policy loads (its top level
	 * may define counters) and before any fork, so that every worker adds
	 * to the same ones (metrics.c says why). */
	if (cfg.metrics_on && !cfg.check && metrics_init() == -1)
		fatal("--metrics: shared memory");
	/* Load everything once here, so a broken script or certificate stops
	 * the start with its reason (and --check is just this). */
	if (main_load(&cfg, &script, &tls) == -1)
		return 1;
	if (cfg.check) {
		printf("OK %s\n", cfg.script != NULL ? cfg.script : "(no script)");
		tls_config_unref(tls);
		script_unref(script);
		return 0;
	}

	if (cfg.stdio) {
		rc = worker_run(&cfg, NULL, 0, 0, script, tls);
		ev_loop_destroy(EV_DEFAULT);
		return rc;
	}
	for (int i = 0; i < cfg.nlisten; i++) {
		ls[i].fd = cfg.listen[i].path != NULL ?
		    listener_bind_unix(cfg.listen[i].path, err, sizeof(err)) :
		    listener_bind(cfg.listen[i].host, cfg.listen[i].port, err, sizeof(err));
		if (ls[i].fd == -1) {
			main_unlink_unix(&cfg, i);
			fatalx("%s", err);
		}
		ls[i].tls = cfg.listen[i].tls;
		ls[i].proxy = cfg.listen[i].proxy;
		ls[i].lmtp = cfg.listen[i].lmtp;
	}
	if (cfg.metrics_on &&
	    metrics_http_bind(cfg.metrics.host, cfg.metrics.port, err, sizeof(err)) == -1)
		fatalx("--metrics: %s", err);
	/* The UNIX sockets belong to --user before anyone is told they are
	 * there (the ready file), while we are still allowed to give them. */
	if (cfg.user != NULL)
		main_chown_unix(&cfg);
	/* Whoever reads the ready file may signal us at once. */
	worker_block_signals(1);
	if (cfg.ready_file != NULL)
		main_write_ready(cfg.ready_file, &cfg, ls, cfg.nlisten);
	if (cfg.user != NULL) {
		main_drop_privileges(cfg.user);
		/* What serves (and what the master hands its workers) is
		 * loaded as that user, like every later reload: the policy's
		 * top level must not have run as root. */
		tls_config_unref(tls);
		script_unref(script);
		if (main_load(&cfg, &script, &tls) == -1)
			return 1;
	} else
		main_drop_capabilities();
	log_info(NULL, "server.ready version=%s script=%s pid=%d workers=%d", LUAMTA_VERSION,
	    cfg.script != NULL ? cfg.script : "-", (int)getpid(), cfg.foreground ? 0 : cfg.workers);

	/* No master, no watchdog: a worker stuck where the hook budget
	 * cannot reach stays stuck (README, Workers). */
	if (cfg.foreground)
		rc = worker_run(&cfg, ls, cfg.nlisten, 0, script, tls);
	else {
		/* The master keeps this generation for the workers it forks. */
		rc = master_run(&cfg, ls, cfg.nlisten, script, tls);
		for (int i = 0; i < cfg.nlisten; i++)
			if (ls[i].fd != -1)
				close(ls[i].fd);
	}
	main_unlink_unix(&cfg, cfg.nlisten);
	metrics_http_stop();
	ev_loop_destroy(EV_DEFAULT);
	return rc;
}
