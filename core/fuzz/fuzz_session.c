/* fuzz_session.c - libFuzzer target for a whole SMTP session: the server
 * (every core/ object but main.c) on a private libev loop, one end of a
 * socketpair handed to smtp_server_accept() under the fixture policy
 * (core/fuzz/fixture.lua), the input written to the other end in chunks.
 * After the input the client half-closes; the session must then go away,
 * and what the server wrote must be well-formed SMTP replies, with nothing
 * after a 221 or 421. LeakSanitizer checks that a session frees all it took.
 *
 * Input layout:
 *   byte 0     bits 0-1: --bare-lf policy (reject, fix, allow, reject)
 *              bit 2: read nothing back until the end (replies pile up)
 *   byte 1     chunk size for the writes (0: all at once)
 *   the rest   what the client sends after connecting
 *
 * Configuration is built once, as main.c would from this command line; the
 * budgets are small so "lop" and "hog" in the fixture end quickly. */

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "script.h"
#include "smtp_parse.h"
#include "smtp_session.h"
#include "worker.h"

#ifndef LUAMTA_FUZZ_FIXTURE
#define LUAMTA_FUZZ_FIXTURE "core/fuzz/fixture.lua"
#endif

/* Turns of the loop allowed after the client half-closed; a session still
 * alive then never noticed the close. */
#define SESSION_SPINS_MAX 2000

static struct ev_loop *fz_loop;
static struct config fz_cfg;
static struct smtp_server fz_srv;

static void
fuzz_init(void)
{
	char *argv[] = { "luamta", "--script", LUAMTA_FUZZ_FIXTURE, "--hostname", "fuzz.example",
		"--log-level", "error", "--max-size", "4096", "--max-recipients", "8",
		"--hook-instructions", "200000", "--lua-memory", "2097152", "--auth-plaintext",
		"--max-auth-failures", "3", NULL };
	struct script_opts so;
	struct script *sc;
	char err[2048];

	if (config_parse(&fz_cfg, (int)(sizeof(argv) / sizeof(argv[0])) - 1, argv) != 0)
		abort();
	log_set_level((enum log_level)fz_cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	if ((fz_loop = ev_loop_new(EVFLAG_AUTO)) == NULL)
		abort();
	/* The options a worker would load the policy with. */
	worker_script_opts(&fz_cfg, &so);
	if ((sc = script_load(&so, fz_loop, NULL, err, sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_session: %s\n", err);
		abort();
	}
	smtp_server_init(&fz_srv, fz_loop, &fz_cfg, sc);
}

/* Everything the server wrote to the client. */
struct output {
	char *p;
	size_t len, cap;
	int eof;
};

static void
drain(int fd, struct output *o)
{
	ssize_t r;

	for (;;) {
		if (o->cap - o->len < 4096) {
			o->cap = o->cap ? o->cap * 2 : 8192;
			FUZZ_CHECK((o->p = realloc(o->p, o->cap)) != NULL);
		}
		r = read(fd, o->p + o->len, o->cap - o->len);
		if (r > 0) {
			o->len += (size_t)r;
			continue;
		}
		if (r == 0)
			o->eof = 1;
		else
			FUZZ_CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNRESET);
		return;
	}
}

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 5321 4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 * Reply-code [ SP textstring ] CRLF, at most 512 octets a line (4.5.3.1.5),
 * the same code on every line of a reply. Nothing follows 221 or 421. */
static void
check_replies(const struct output *o)
{
	const char *line = o->p, *end = o->p + o->len, *lf;
	char code[3];
	size_t len, i;
	int in_multi = 0, closed = 0;

	while (line < end) {
		FUZZ_CHECK(!closed);
		lf = memchr(line, '\n', (size_t)(end - line));
		FUZZ_CHECK(lf != NULL); /* the last reply is complete */
		len = (size_t)(lf - line) + 1;
		FUZZ_CHECK(len >= 5 && len <= SMTP_CMD_LINE_MAX && lf[-1] == '\r');
		FUZZ_CHECK(
		    line[0] >= '2' && line[0] <= '5' && is_digit(line[1]) && is_digit(line[2]));
		if (in_multi)
			FUZZ_CHECK(memcmp(code, line, 3) == 0);
		memcpy(code, line, 3);
		FUZZ_CHECK(len == 5 || line[3] == ' ' || line[3] == '-');
		for (i = 4; i + 2 < len; i++)
			FUZZ_CHECK(line[i] != '\r' && line[i] != '\n' && line[i] != '\0');
		in_multi = len > 5 && line[3] == '-';
		if (!in_multi && (memcmp(code, "221", 3) == 0 || memcmp(code, "421", 3) == 0))
			closed = 1;
		line += len;
	}
	FUZZ_CHECK(!in_multi);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct sockaddr_in peer;
	struct output out = { NULL, 0, 0, 0 };
	size_t chunk, off = 0, n;
	ssize_t w;
	int sv[2], quiet, spins;
	uint8_t flags;

	if (fz_loop == NULL)
		fuzz_init();
	flags = fuzz_take_byte(&in);
	chunk = fuzz_take_byte(&in);
	if (chunk == 0)
		chunk = in.n > 0 ? in.n : 1;
	quiet = (flags & 4) != 0;
	fz_cfg.bare = (enum smtp_bare)((flags & 3) == 3 ? 0 : (flags & 3));

	FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	FUZZ_CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
	memset(&peer, 0, sizeof(peer));
	peer.sin_family = AF_INET;
	peer.sin_port = htons(40000);
	peer.sin_addr.s_addr = htonl(0xc0000201); /* 192.0.2.1, RFC 5737 */
	smtp_server_accept(sv[0], (struct sockaddr *)&peer, sizeof(peer), &fz_srv);

	while (off < in.n) {
		n = in.n - off < chunk ? in.n - off : chunk;
		w = write(sv[1], in.p + off, n);
		if (w > 0)
			off += (size_t)w;
		else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			break; /* the server closed: the rest is not read */
		ev_run(fz_loop, EVRUN_NOWAIT);
		if (!quiet || w <= 0)
			drain(sv[1], &out);
		if (fz_srv.nsessions == 0)
			break;
	}

	/* The client is done sending; the session must end by itself. */
	shutdown(sv[1], SHUT_WR);
	for (spins = 0; spins < SESSION_SPINS_MAX; spins++) {
		ev_run(fz_loop, EVRUN_NOWAIT);
		drain(sv[1], &out);
		if (fz_srv.nsessions == 0 && out.eof)
			break;
	}
	FUZZ_CHECK(fz_srv.nsessions == 0);
	FUZZ_CHECK(out.eof);
	close(sv[1]);
	/* Collect what the session's hooks left to the Lua GC now: libFuzzer
	 * runs LeakSanitizer after every input that freed less than it
	 * allocated, which would otherwise be nearly all of them. */
	lua_gc(fz_srv.script->L, LUA_GCCOLLECT, 0);
	check_replies(&out);
	free(out.p);
	return 0;
}
