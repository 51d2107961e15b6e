/* dsn_print.c - writes dsn_build()'s report to stdout, for specs that hand
 * it to a real MIME parser. The original message is read from stdin.
 *
 *   dsn_print [-H] SENDER MTA QID (ADDRESS ACTION STATUS REMOTE DIAG)...
 *
 * ACTION is failed, delayed, delivered or relayed; "-" for STATUS, REMOTE
 * or DIAG leaves it out (NULL); -H attaches the header only. The times are
 * fixed so that the output can be compared. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsn.h"

static const char *
arg_or_null(const char *s)
{
	return strcmp(s, "-") == 0 ? NULL : s;
}

static int
parse_action(const char *s, enum dsn_action *a)
{
	static const char *const names[] = { "failed", "delayed", "delivered", "relayed" };

	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*a = (enum dsn_action)i;
			return 0;
		}
	return -1;
}

int
main(int argc, char **argv)
{
	struct dsn_report r;
	struct dsn_rcpt *rcpts;
	char *msg = NULL, *out;
	size_t len = 0, cap = 0, n, outlen;
	int i = 1;

	memset(&r, 0, sizeof(r));
	if (argc > 1 && strcmp(argv[1], "-H") == 0) {
		r.headers_only = 1;
		i++;
	}
	if (argc - i < 3 || (argc - i - 3) % 5 != 0) {
		fprintf(stderr,
		    "usage: dsn_print [-H] SENDER MTA QID "
		    "(ADDRESS ACTION STATUS REMOTE DIAG)...\n");
		return 2;
	}
	r.sender = argv[i];
	r.reporting_mta = argv[i + 1];
	r.queue_id = argv[i + 2];
	i += 3;
	r.nrcpts = (size_t)(argc - i) / 5;
	if ((rcpts = calloc(r.nrcpts + 1, sizeof(*rcpts))) == NULL)
		return 1;
	for (size_t k = 0; k < r.nrcpts; k++, i += 5) {
		rcpts[k].address = argv[i];
		if (parse_action(argv[i + 1], &rcpts[k].action) == -1) {
			fprintf(stderr, "dsn_print: bad action %s\n", argv[i + 1]);
			return 2;
		}
		rcpts[k].status = arg_or_null(argv[i + 2]);
		rcpts[k].remote_mta = arg_or_null(argv[i + 3]);
		rcpts[k].diagnostic = arg_or_null(argv[i + 4]);
		rcpts[k].last_attempt = 1700003000;
	}
	r.rcpts = rcpts;
	for (;;) {
		if (len == cap) {
			char *p = realloc(msg, cap = cap ? cap * 2 : 65536);
			if (p == NULL)
				return 1;
			msg = p;
		}
		if ((n = fread(msg + len, 1, cap - len, stdin)) == 0)
			break;
		len += n;
	}
	r.msg = msg;
	r.msglen = len;
	r.arrival = 1700000000;
	r.now = 1700003600;
	r.message_id_seed = "print.1700003600";
	if ((out = dsn_build(&r, &outlen)) == NULL)
		return 1;
	fwrite(out, 1, outlen, stdout);
	free(out);
	free(msg);
	free(rcpts);
	return 0;
}
