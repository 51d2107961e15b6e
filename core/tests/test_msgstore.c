/* test_msgstore.c - the message store: random messages appended in random
 * sizes must read back (pieces and msgstore_write) byte for byte whatever
 * the memory bound, with fields prepended before and after the spill; the
 * memory held stays bounded; the directory list is tried in order and a
 * missing directory is made; a write that fails (RLIMIT_FSIZE, which works
 * as root too) leaves the store as it was; ranges cut from the head (in the
 * prepended fields, the appended bytes or across both, spilled or not) are
 * gone for every reader, appending afterwards included. */

#define _GNU_SOURCE
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msgstore.h"
#include "test.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

static char base[PATH_MAX];

/* The whole store read back through msgstore_piece with a small buffer. */
static int
same_by_pieces(const struct msgstore *ms, const char *want, size_t len)
{
	char buf[1000];
	const char *p;
	size_t off = 0;
	ssize_t n;

	while ((n = msgstore_piece(ms, off, buf, sizeof(buf), &p)) > 0) {
		if (off + (size_t)n > len || memcmp(p, want + off, (size_t)n) != 0)
			return 0;
		off += (size_t)n;
	}
	return n == 0 && off == len;
}

/* The whole store written to a fresh file and read back. */
static int
same_by_write(const struct msgstore *ms, const char *want, size_t len)
{
	char *got = malloc(len + 1);
	int fd = open(base, O_TMPFILE | O_RDWR, 0600), ok = 0;

	if (got != NULL && fd != -1 && msgstore_write(ms, fd) == 0 &&
	    lseek(fd, 0, SEEK_END) == (off_t)len && pread(fd, got, len + 1, 0) == (ssize_t)len)
		ok = memcmp(got, want, len) == 0;
	if (fd != -1)
		close(fd);
	free(got);
	return ok;
}

static void
test_random(void)
{
	const char *dirs[] = { base, NULL };
	size_t maxes[] = { 0, 1, 100, 5000, 70000, 1 << 20 };
	char *want = malloc(400000), *body;
	size_t n, off, k, pre;

	CHECK(want != NULL);
	if (want == NULL)
		return;
	srandom(7);
	for (int round = 0; round < 60; round++) {
		size_t mem_max = maxes[round % 6];
		struct msgstore *ms = msgstore_new(dirs, mem_max);

		CHECK(ms != NULL);
		if (ms == NULL)
			break;
		/* Prepended fields go at the front: build the body after
		 * room for them. */
		n = (size_t)random() % 300000;
		pre = 64;
		body = want + pre;
		for (size_t i = 0; i < n; i++)
			body[i] = (char)random();
		for (off = 0; off < n; off += k) {
			k = (size_t)random() % (round % 2 ? 100000 : 300) + 1;
			if (k > n - off)
				k = n - off;
			CHECK(msgstore_append(ms, body + off, k) == 0);
			if (off == 0 && k > 0) {
				/* One field before any spill... */
				memcpy(body - 10, "X-One: 1\r\n", 10);
				CHECK(msgstore_prepend(ms, body - 10, 10) == 0);
			}
		}
		if (n == 0) {
			memcpy(body - 10, "X-One: 1\r\n", 10);
			CHECK(msgstore_prepend(ms, body - 10, 10) == 0);
		}
		/* ...and one after it. */
		memcpy(body - 20, "X-Two: 2\r\n", 10);
		CHECK(msgstore_prepend(ms, body - 20, 10) == 0);
		CHECK(msgstore_len(ms) == n + 20);
		CHECK(msgstore_spilled(ms) == (n > mem_max));
		CHECK(msgstore_dir(ms) == (n > mem_max ? base : NULL));
		/* Memory: the bound (rounded up by doubling), the two fields,
		 * and one write buffer. */
		CHECK_MSG(msgstore_held(ms) <= 2 * mem_max + 4096 + 20 + MSGSTORE_WBUF ||
			!msgstore_spilled(ms),
		    "held %zu with mem_max %zu", msgstore_held(ms), mem_max);
		if (round % 3 == 0) {
			/* Finished: the write buffer is out and gone. */
			CHECK(msgstore_finish(ms) == 0);
			CHECK(msgstore_held(ms) < MSGSTORE_WBUF || !msgstore_spilled(ms));
		}
		CHECK_MSG(same_by_pieces(ms, body - 20, n + 20), "round %d: pieces", round);
		CHECK_MSG(same_by_write(ms, body - 20, n + 20), "round %d: write", round);
		/* Appending after finish works. */
		body[n] = 'Z';
		CHECK(msgstore_append(ms, body + n, 1) == 0);
		CHECK_MSG(same_by_pieces(ms, body - 20, n + 21), "round %d: appended", round);
		/* Cleared, it starts over. */
		msgstore_clear(ms);
		CHECK(msgstore_len(ms) == 0 && !msgstore_spilled(ms) && msgstore_held(ms) == 0);
		CHECK(msgstore_append(ms, "ab", 2) == 0 && same_by_pieces(ms, "ab", 2));
		msgstore_free(ms);
	}
	free(want);
}

static void
test_dirs(void)
{
	char missing[PATH_MAX + 32], file[PATH_MAX + 32];
	const char *dirs[3];
	struct msgstore *ms;
	struct stat st;
	int fd;

	/* A missing directory (and its missing parent) is made. */
	snprintf(missing, sizeof(missing), "%s/spool/incoming", base);
	dirs[0] = missing;
	dirs[1] = NULL;
	ms = msgstore_new(dirs, 2);
	CHECK(ms != NULL && msgstore_append(ms, "hello", 5) == 0);
	CHECK(ms != NULL && msgstore_dir(ms) == missing);
	CHECK(stat(missing, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
	msgstore_free(ms);

	/* One that cannot be a directory: the next in the list. */
	snprintf(file, sizeof(file), "%s/plain", base);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	CHECK(fd != -1);
	close(fd);
	dirs[0] = file;
	dirs[1] = missing;
	dirs[2] = NULL;
	ms = msgstore_new(dirs, 2);
	CHECK(ms != NULL && msgstore_append(ms, "hello", 5) == 0);
	CHECK(ms != NULL && msgstore_dir(ms) == missing && same_by_pieces(ms, "hello", 5));
	msgstore_free(ms);

	/* None: the append fails with the first one's errno and the store
	 * keeps what it had. */
	dirs[1] = NULL;
	ms = msgstore_new(dirs, 2);
	CHECK(ms != NULL && msgstore_append(ms, "he", 2) == 0);
	errno = 0;
	CHECK(ms != NULL && msgstore_append(ms, "llo", 3) == -1 && errno == ENOTDIR);
	CHECK(ms != NULL && !msgstore_spilled(ms) && same_by_pieces(ms, "he", 2));
	msgstore_free(ms);

	/* No list: memory only, however large. */
	ms = msgstore_new(NULL, 1);
	CHECK(ms != NULL && msgstore_append(ms, "hello", 5) == 0 && !msgstore_spilled(ms));
	msgstore_free(ms);
	msgstore_free(NULL);
}

/* A file that cannot grow: the failing append reports it, and what was
 * stored before reads back whole. */
/* Cuts random ranges of the head, checked against a model of the message
 * that has the same ranges taken out. */
static void
test_cut(void)
{
	const char *dirs[] = { base, NULL };
	size_t maxes[] = { 0, 10, 300, 5000, 1 << 20 };
	char *model = malloc(300000), *body = malloc(200000);
	size_t n, mlen, hlen;

	CHECK(model != NULL && body != NULL);
	if (model == NULL || body == NULL) {
		free(model);
		free(body);
		return;
	}
	srandom(11);
	for (int round = 0; round < 50; round++) {
		struct msgstore *ms = msgstore_new(dirs, maxes[round % 5]);

		CHECK(ms != NULL);
		if (ms == NULL)
			break;
		n = (size_t)random() % 150000;
		for (size_t i = 0; i < n; i++)
			body[i] = (char)('a' + random() % 26);
		CHECK(msgstore_append(ms, body, n) == 0);
		CHECK(msgstore_prepend(ms, "X-Pre: 12345\r\n", 14) == 0);
		memcpy(model, "X-Pre: 12345\r\n", 14);
		memcpy(model + 14, body, n);
		mlen = n + 14;
		if (round % 2)
			CHECK(msgstore_finish(ms) == 0);
		for (int k = 0; k < 4; k++) {
			size_t off, len;

			(void)msgstore_head(ms, &hlen);
			off = hlen > 0 ? (size_t)random() % hlen : 0;
			len = (size_t)random() % (hlen - off + 1);
			if (k == 0 && hlen > 20) {
				off = 10; /* across the prepended field's end */
				len = 10;
			}
			CHECK(msgstore_cut(ms, off, len) == 0);
			memmove(model + off, model + off + len, mlen - off - len);
			mlen -= len;
			CHECK_MSG(msgstore_len(ms) == mlen, "round %d: len %zu != %zu", round,
			    msgstore_len(ms), mlen);
			CHECK_MSG(
			    same_by_pieces(ms, model, mlen), "round %d cut %d: pieces", round, k);
			CHECK_MSG(
			    same_by_write(ms, model, mlen), "round %d cut %d: write", round, k);
		}
		/* Outside the head: refused, nothing changes. */
		(void)msgstore_head(ms, &hlen);
		errno = 0;
		CHECK(msgstore_cut(ms, hlen, 1) == -1 && errno == EINVAL);
		CHECK(msgstore_cut(ms, hlen + 1, 0) == -1 && msgstore_len(ms) == mlen);
		/* Appending afterwards lands after what is left, and a field
		 * prepended after a cut goes in front. */
		CHECK(msgstore_append(ms, "tail", 4) == 0);
		memcpy(model + mlen, "tail", 4);
		mlen += 4;
		CHECK(msgstore_prepend(ms, "A: b\r\n", 6) == 0);
		memmove(model + 6, model, mlen);
		memcpy(model, "A: b\r\n", 6);
		mlen += 6;
		CHECK_MSG(same_by_pieces(ms, model, mlen), "round %d: appended", round);
		CHECK_MSG(same_by_write(ms, model, mlen), "round %d: appended, write", round);
		msgstore_free(ms);
	}
	free(model);
	free(body);
}

static void
test_write_failure(void)
{
	const char *dirs[] = { base, NULL };
	struct rlimit old, lim;
	struct msgstore *ms;
	char *big = calloc(1, 3 * MSGSTORE_WBUF);

	CHECK(big != NULL && getrlimit(RLIMIT_FSIZE, &old) == 0);
	if (big == NULL)
		return;
	ms = msgstore_new(dirs, 10);
	CHECK(ms != NULL && msgstore_append(ms, big, 100) == 0 && msgstore_spilled(ms));
	lim = old;
	lim.rlim_cur = 1000;
	CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	errno = 0;
	CHECK(ms != NULL && msgstore_append(ms, big, 2 * MSGSTORE_WBUF) == -1 && errno == EFBIG);
	CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
	CHECK(ms != NULL && msgstore_len(ms) == 100 && same_by_pieces(ms, big, 100));
	CHECK(ms != NULL && msgstore_append(ms, big, 2 * MSGSTORE_WBUF) == 0);
	CHECK(ms != NULL && msgstore_len(ms) == 100 + 2 * MSGSTORE_WBUF);
	free(big);
	msgstore_free(ms);
}

int
main(void)
{
	const char *tmp = getenv("TMPDIR");
	char cmd[PATH_MAX + 16];

	signal(SIGXFSZ, SIG_IGN);
	snprintf(base, sizeof(base), "%s/test_msgstore.XXXXXX",
	    tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(base) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	test_random();
	test_dirs();
	test_cut();
	test_write_failure();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", base);
	return test_done("test_msgstore");
}
