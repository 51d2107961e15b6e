/* smtp_client_drive.c - runs one smtp_client attempt from the command line
 * and prints its result as one JSON object, for spec/integration/
 * smtp_client_spec.lua (which finds it through $LUAMTA_CLIENT_DRIVE) and
 * for trying the client by hand:
 *
 *   smtp_client_drive --host mx.example=127.0.0.2,127.0.0.3 --port 2525 \
 *       --sender a@example.org --rcpt b@example.net --message msg.eml
 *
 * Options: --host NAME=ADDR[,ADDR...] (repeatable, in order), --port N,
 * --unix PATH, --lmtp, --tls may|require|none, --ca-file FILE, --auth
 * USER:PASS, --sender ADDR, --rcpt ADDR (repeatable), --message FILE,
 * --8bit, --smtputf8, --helo NAME, --id ID, --timeout-connect/-command/-data
 * SECS, --cancel-after SECS (cancel the attempt then; prints
 * {"cancelled":true}), --log-level LEVEL. The log goes to stderr. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "cosocket_pool.h"
#include "log.h"
#include "smtp_client.h"

#define MAX_HOSTS 16
#define MAX_ADDRS 16
#define MAX_RCPTS 1000

static int done;

static void
json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void
on_result(void *arg, const struct smtp_client_result *res)
{
	const struct smtp_client_req *req = arg;

	printf("{\"remote\":");
	json_str(res->remote);
	printf(",\"tls\":%s,\"tls_version\":", res->tls ? "true" : "false");
	json_str(res->tls_version);
	printf(",\"tls_cipher\":");
	json_str(res->tls_cipher);
	printf(",\"rcpts\":[");
	for (size_t i = 0; i < res->nrcpts; i++) {
		printf("%s{\"rcpt\":", i > 0 ? "," : "");
		json_str(req->rcpts[i]);
		printf(",\"code\":%d,\"text\":", res->rcpt[i].code);
		json_str(res->rcpt[i].text != NULL ? res->rcpt[i].text : "");
		putchar('}');
	}
	printf("]}\n");
	fflush(stdout);
	done = 1;
}

static struct smtp_client *client;

static void
on_cancel(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	if (done)
		return;
	smtp_client_cancel(client);
	done = 1;
	printf("{\"cancelled\":true}\n");
	ev_break(loop, EVBREAK_ALL);
}

static char *
read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p = NULL;
	size_t cap = 0, n;

	*len = 0;
	if (f == NULL)
		return NULL;
	for (;;) {
		if (*len == cap && (p = realloc(p, cap = cap * 2 + 65536)) == NULL)
			exit(2);
		if ((n = fread(p + *len, 1, cap - *len, f)) == 0)
			break;
		*len += n;
	}
	fclose(f);
	return p;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = { { "host", 1, NULL, 'H' }, { "port", 1, NULL, 'p' },
		{ "unix", 1, NULL, 'u' }, { "lmtp", 0, NULL, 'L' }, { "tls", 1, NULL, 't' },
		{ "ca-file", 1, NULL, 'C' }, { "auth", 1, NULL, 'a' }, { "sender", 1, NULL, 's' },
		{ "rcpt", 1, NULL, 'r' }, { "message", 1, NULL, 'm' }, { "8bit", 0, NULL, '8' },
		{ "smtputf8", 0, NULL, 'U' }, { "helo", 1, NULL, 'e' }, { "id", 1, NULL, 'i' },
		{ "timeout-connect", 1, NULL, 'c' }, { "timeout-command", 1, NULL, 'o' },
		{ "timeout-data", 1, NULL, 'd' }, { "cancel-after", 1, NULL, 'x' },
		{ "log-level", 1, NULL, 'l' }, { NULL, 0, NULL, 0 } };
	static struct smtp_client_host hosts[MAX_HOSTS];
	static const char *addrs[MAX_HOSTS][MAX_ADDRS];
	static const char *rcpts[MAX_RCPTS];
	struct smtp_client_req req;
	struct ev_loop *loop = EV_DEFAULT;
	ev_timer cancel;
	double cancel_after = 0;
	char *msg = NULL, *tok, *colon;
	enum log_level lvl;
	int ch;

	memset(&req, 0, sizeof(req));
	req.sender = "";
	req.helo = "client.drive.test";
	req.id = "DRIVE";
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			if (req.nhosts == MAX_HOSTS || (tok = strchr(optarg, '=')) == NULL)
				goto usage;
			*tok++ = '\0';
			hosts[req.nhosts].name = optarg;
			hosts[req.nhosts].addrs = addrs[req.nhosts];
			for (tok = strtok(tok, ",");
			     tok != NULL && hosts[req.nhosts].naddrs < MAX_ADDRS;
			     tok = strtok(NULL, ","))
				addrs[req.nhosts][hosts[req.nhosts].naddrs++] = tok;
			req.nhosts++;
			break;
		case 'p':
			req.port = atoi(optarg);
			break;
		case 'u':
			req.unix_path = optarg;
			break;
		case 'L':
			req.lmtp = 1;
			break;
		case 't':
			if (strcmp(optarg, "may") == 0)
				req.tls = QUEUE_TLS_MAY;
			else if (strcmp(optarg, "require") == 0)
				req.tls = QUEUE_TLS_REQUIRE;
			else if (strcmp(optarg, "none") == 0)
				req.tls = QUEUE_TLS_NONE;
			else
				goto usage;
			break;
		case 'C':
			req.ca_file = optarg;
			break;
		case 'a':
			if ((colon = strchr(optarg, ':')) == NULL)
				goto usage;
			*colon = '\0';
			req.auth_user = optarg;
			req.auth_pass = colon + 1;
			break;
		case 's':
			req.sender = optarg;
			break;
		case 'r':
			if (req.nrcpts == MAX_RCPTS)
				goto usage;
			rcpts[req.nrcpts++] = optarg;
			break;
		case 'm':
			free(msg);
			if ((msg = read_all(optarg, &req.msglen)) == NULL) {
				perror(optarg);
				return 2;
			}
			break;
		case '8':
			req.body_8bit = 1;
			break;
		case 'U':
			req.smtputf8 = 1;
			break;
		case 'e':
			req.helo = optarg;
			break;
		case 'i':
			req.id = optarg;
			break;
		case 'c':
			req.timeout_connect = atof(optarg);
			break;
		case 'o':
			req.timeout_command = atof(optarg);
			break;
		case 'd':
			req.timeout_data = atof(optarg);
			break;
		case 'x':
			cancel_after = atof(optarg);
			break;
		case 'l':
			if (log_level_parse(optarg, &lvl) == -1)
				goto usage;
			log_set_level(lvl);
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc)
		goto usage;
	req.rcpts = rcpts;
	req.hosts = hosts;
	req.msg = msg != NULL ? msg : "";
	signal(SIGPIPE, SIG_IGN); /* TLS writes use write(2) */
	if ((client = smtp_client_start(loop, &req, on_result, &req)) == NULL) {
		fprintf(stderr, "smtp_client_start: out of memory\n");
		return 1;
	}
	if (cancel_after > 0) {
		ev_timer_init(&cancel, on_cancel, cancel_after, 0);
		ev_timer_start(loop, &cancel);
	}
	while (!done && ev_run(loop, EVRUN_ONCE))
		;
	cosocket_pool_shutdown();
	free(msg);
	ev_loop_destroy(loop);
	return done ? 0 : 1;
usage:
	fprintf(stderr,
	    "usage: smtp_client_drive [--host NAME=ADDR,...] [--port N] [--unix PATH]"
	    " [--lmtp] [--tls may|require|none] [--ca-file F] [--auth U:P] [--sender A]"
	    " --rcpt A... [--message FILE] [--8bit] [--smtputf8] [--helo N] [--id ID]"
	    " [--timeout-connect|-command|-data S] [--cancel-after S] [--log-level L]\n");
	free(msg);
	return 2;
}
