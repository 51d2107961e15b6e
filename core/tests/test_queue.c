/* test_queue.c - the spool on a scratch directory from mkdtemp(): enqueue
 * (one entry, several sharing one message file), load, save, remove, list,
 * quarantine, flush requests, a corrupt or missing ID.env, and an enqueue
 * that fails half way (RLIMIT_FSIZE, which works even as root) leaving
 * nothing behind. A lock held by a forked child is driven over pipes, so no
 * step depends on timing. */

#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msgstore.h"
#include "queue.h"
#include "test.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

static char base[512], spool[1024];
static struct msgstore *mem_last;

/* A store holding a copy of p, freed by the next call (or at exit). */
static const struct msgstore *
mem_of(const char *p, size_t n)
{
	msgstore_free(mem_last);
	mem_last = msgstore_of(p, n);
	return mem_last;
}
static const char body[] = "Subject: hi\r\n\r\nhello\r\n.dot\r\n";

static void
spool_file(char *buf, size_t bufsz, const char *id, const char *ext)
{
	if ((size_t)snprintf(buf, bufsz, "%s/%s%s", spool, id, ext) >= bufsz) {
		fprintf(stderr, "path too long\n");
		exit(2);
	}
}

/* Names in the spool, other than "." and "..", flush/ and corrupt/. */
static int
count_files(void)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	if ((d = opendir(spool)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.' && strcmp(de->d_name, "flush") != 0 &&
		    strcmp(de->d_name, "corrupt") != 0)
			n++;
	closedir(d);
	return n;
}

static void
make_entry(struct queue_entry *e, struct queue_rcpt *r, size_t nr, const char *first)
{
	memset(e, 0, sizeof(*e));
	memset(r, 0, nr * sizeof(*r));
	e->sender = "s@example.org";
	e->route.host = "mx.example.net";
	e->route.port = 2525;
	e->route.auth_pass = "pw";
	for (size_t i = 0; i < nr; i++) {
		r[i].address = (char *)(i == 0 ? first : "other@example.net");
		r[i].state = QUEUE_RCPT_QUEUED;
	}
	e->rcpts = r;
	e->nrcpts = nr;
}

static void
test_open(void)
{
	struct stat st;
	char err[512], file[PATH_MAX];
	int fd;

	CHECK_MSG(queue_open(spool, err, sizeof(err)) == 0, "%s", err);
	CHECK(stat(spool, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
	snprintf(file, sizeof(file), "%s/flush", spool);
	CHECK(stat(file, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
	/* Again: an existing spool is fine. */
	CHECK(queue_open(spool, err, sizeof(err)) == 0);
	/* A file where the spool should be is not. */
	snprintf(file, sizeof(file), "%s/file", base);
	fd = open(file, O_WRONLY | O_CREAT, 0600);
	close(fd);
	CHECK(queue_open(file, err, sizeof(err)) == -1);
	CHECK(strstr(err, "file") != NULL);
	CHECK(queue_open("", err, sizeof(err)) == -1);
}

static void
test_enqueue_load(void)
{
	struct queue_entry e, back;
	struct queue_rcpt r[2];
	struct stat st;
	char err[512], path[PATH_MAX], *msg;
	size_t len;

	make_entry(&e, r, 2, "a@example.net");
	CHECK_MSG(
	    queue_enqueue(spool, mem_of(body, sizeof(body) - 1), &e, 1, err, sizeof(err)) == 0,
	    "%s", err);
	CHECK(queue_id_valid(e.id) && strlen(e.id) == 16);
	CHECK(e.size == sizeof(body) - 1 && e.created > 0);
	spool_file(path, sizeof(path), e.id, ".msg");
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_nlink == 1);
	/* One file: the envelope in front of the message, no ID.env. */
	{
		char head[32];
		FILE *f = fopen(path, "r");

		CHECK(f != NULL && fread(head, 1, 15, f) == 15 &&
		    memcmp(head, "luamta-queue 1\n", 15) == 0);
		if (f != NULL)
			fclose(f);
	}
	spool_file(path, sizeof(path), e.id, ".env");
	CHECK(stat(path, &st) == -1 && errno == ENOENT);
	CHECK_MSG(queue_load(spool, e.id, &back, err, sizeof(err)) == 0, "%s", err);
	CHECK_STR(back.id, e.id);
	CHECK_STR(back.sender, "s@example.org");
	CHECK_STR(back.route.auth_pass, "pw");
	CHECK(back.nrcpts == 2 && strcmp(back.rcpts[0].address, "a@example.net") == 0);
	CHECK(back.size == sizeof(body) - 1 && back.created == e.created);
	CHECK(queue_read_body(spool, e.id, &msg, &len, err, sizeof(err)) == 0);
	CHECK(len == sizeof(body) - 1 && memcmp(msg, body, len) == 0);
	free(msg);

	/* save: a state change survives, and no temporary file is left. */
	back.rcpts[0].state = QUEUE_RCPT_DEFERRED;
	back.rcpts[0].attempts = 1;
	back.rcpts[0].next_attempt = 12345;
	back.rcpts[0].last_reply = strdup("451 4.7.1 greylisted");
	back.held = 1;
	CHECK_MSG(queue_save(spool, &back, err, sizeof(err)) == 0, "%s", err);
	queue_entry_clear(&back);
	CHECK(queue_load(spool, e.id, &back, err, sizeof(err)) == 0);
	CHECK(back.held == 1 && back.rcpts[0].state == QUEUE_RCPT_DEFERRED);
	CHECK(back.rcpts[0].next_attempt == 12345 && back.rcpts[0].attempts == 1);
	CHECK_STR(back.rcpts[0].last_reply, "451 4.7.1 greylisted");
	queue_entry_clear(&back);
	CHECK(count_files() == 2);

	CHECK(queue_remove(spool, e.id, err, sizeof(err)) == 0);
	CHECK(queue_load(spool, e.id, &back, err, sizeof(err)) == 1);
	CHECK(queue_remove(spool, e.id, err, sizeof(err)) == 0);
	CHECK(count_files() == 0);
	CHECK(queue_read_body(spool, e.id, &msg, &len, err, sizeof(err)) == -1);
	CHECK(queue_load(spool, "../etc/passwd", &back, err, sizeof(err)) == -1);
	CHECK(queue_load(spool, "0123456789abcdef", &back, err, sizeof(err)) == 1);
}

/* Three routes of one message: three entries, one inode. */
static char multi_ids[3][QUEUE_ID_MAX];

static void
test_enqueue_several(void)
{
	struct queue_entry e[3];
	struct queue_rcpt r[3][1];
	struct stat st[3];
	char err[512], path[PATH_MAX], **ids;
	size_t n;

	for (int i = 0; i < 3; i++)
		make_entry(&e[i], r[i], 1, i == 0 ? "a@x" : i == 1 ? "b@y" : "c@z");
	e[2].route.host = NULL;
	CHECK_MSG(queue_enqueue(spool, mem_of(body, sizeof(body) - 1), e, 3, err, sizeof(err)) == 0,
	    "%s", err);
	for (int i = 0; i < 3; i++) {
		char want[8];

		snprintf(want, sizeof(want), "-%d", i + 1);
		CHECK(queue_id_valid(e[i].id) && strlen(e[i].id) == 18);
		CHECK(strcmp(e[i].id + 16, want) == 0 && strncmp(e[i].id, e[0].id, 16) == 0);
		spool_file(path, sizeof(path), e[i].id, ".msg");
		CHECK(stat(path, &st[i]) == 0 && st[i].st_nlink == 3);
		CHECK(st[i].st_ino == st[0].st_ino);
		memcpy(multi_ids[i], e[i].id, QUEUE_ID_MAX);
	}
	CHECK(queue_list_ids(spool, &ids, &n, err, sizeof(err)) == 0);
	CHECK(n == 3);
	for (size_t i = 0; i < n; i++) {
		CHECK(i >= 3 || strcmp(ids[i], multi_ids[i]) == 0);
		free(ids[i]);
	}
	free(ids);
	/* Removing one leaves the message to the others. */
	CHECK(queue_remove(spool, multi_ids[0], err, sizeof(err)) == 0);
	spool_file(path, sizeof(path), multi_ids[1], ".msg");
	CHECK(stat(path, &st[1]) == 0 && st[1].st_nlink == 2);
	CHECK(queue_enqueue(spool, mem_of(body, 3), e, 0, err, sizeof(err)) == -1);
}

/* A child takes the lock and holds it until told to go. */
static void
test_lock(void)
{
	int ready[2], go[2], fd, status;
	pid_t pid;
	char c;

	CHECK(pipe(ready) == 0 && pipe(go) == 0);
	if ((pid = fork()) == 0) {
		int lfd = queue_lock(spool, multi_ids[1]);

		c = lfd >= 0 ? 'y' : 'n';
		(void)!write(ready[1], &c, 1);
		(void)!read(go[0], &c, 1);
		_exit(0);
	}
	CHECK(read(ready[0], &c, 1) == 1 && c == 'y');
	errno = 0;
	CHECK(queue_lock(spool, multi_ids[1]) == -1 && errno == EWOULDBLOCK);
	/* Entries of one message share the lock (one inode). */
	CHECK(queue_lock(spool, multi_ids[2]) == -1 && errno == EWOULDBLOCK);
	CHECK(write(go[1], "x", 1) == 1);
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
	/* The lock died with its process. */
	fd = queue_lock(spool, multi_ids[1]);
	CHECK(fd >= 0);
	queue_unlock(fd);
	CHECK(queue_lock(spool, multi_ids[0]) == -1 && errno == ENOENT);
	CHECK(queue_lock(spool, "../x") == -1 && errno == EINVAL);
	queue_unlock(-1);
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
}

static void
test_corrupt(void)
{
	struct queue_entry back;
	char err[512], path[PATH_MAX], to[PATH_MAX], **ids;
	struct stat st;
	size_t n;
	FILE *f;

	/* A truncated ID.env. */
	spool_file(path, sizeof(path), multi_ids[1], ".env");
	CHECK(truncate(path, 40) == 0);
	CHECK(queue_load(spool, multi_ids[1], &back, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "corrupt") != NULL, "%s", err);
	/* An ID.env copied under another name (its id says otherwise). */
	spool_file(path, sizeof(path), multi_ids[2], ".env");
	spool_file(to, sizeof(to), "fedcba9876543210", ".env");
	{
		char *text;
		size_t len;
		FILE *in = fopen(path, "r");

		text = malloc(4096);
		len = fread(text, 1, 4096, in);
		fclose(in);
		f = fopen(to, "w");
		fwrite(text, 1, len, f);
		fclose(f);
		free(text);
	}
	/* (With a message beside it: an envelope alone is no entry.) */
	spool_file(path, sizeof(path), "fedcba9876543210", ".msg");
	fclose(fopen(path, "w"));
	CHECK(queue_load(spool, "fedcba9876543210", &back, err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "id inside") != NULL, "%s", err);
	CHECK(unlink(path) == 0);
	CHECK(queue_load(spool, "fedcba9876543210", &back, err, sizeof(err)) == 1);
	CHECK(unlink(to) == 0);

	CHECK(queue_quarantine(spool, multi_ids[1], err, sizeof(err)) == 0);
	CHECK(queue_load(spool, multi_ids[1], &back, err, sizeof(err)) == 1);
	snprintf(path, sizeof(path), "%s/corrupt/%s.env", spool, multi_ids[1]);
	CHECK(stat(path, &st) == 0);
	snprintf(path, sizeof(path), "%s/corrupt/%s.msg", spool, multi_ids[1]);
	CHECK(stat(path, &st) == 0);
	CHECK(queue_list_ids(spool, &ids, &n, err, sizeof(err)) == 0);
	CHECK(n == 1 && strcmp(ids[0], multi_ids[2]) == 0);
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	/* Names that are not entries are not listed. */
	spool_file(path, sizeof(path), "notanid", ".env");
	f = fopen(path, "w");
	fclose(f);
	spool_file(path, sizeof(path), multi_ids[2], ".env.tmp123");
	f = fopen(path, "w");
	fclose(f);
	CHECK(queue_list_ids(spool, &ids, &n, err, sizeof(err)) == 0);
	CHECK(n == 1);
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	spool_file(path, sizeof(path), "notanid", ".env");
	unlink(path);
	spool_file(path, sizeof(path), multi_ids[2], ".env.tmp123");
	unlink(path);
	CHECK(queue_remove(spool, multi_ids[2], err, sizeof(err)) == 0);
	CHECK(queue_list_ids("/nonexistent/spool", &ids, &n, err, sizeof(err)) == -1);
}

/* RLIMIT_FSIZE lets the message through and stops the envelopes: what was
 * written (the message and its links) is taken back. */
static void
test_enqueue_failure(void)
{
	struct queue_entry e[2];
	struct queue_rcpt r[2][1];
	struct rlimit old, lim;
	char err[512];

	make_entry(&e[0], r[0], 1, "a@x");
	make_entry(&e[1], r[1], 1, "b@x");
	CHECK(count_files() == 0);
	signal(SIGXFSZ, SIG_IGN);
	CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
	lim = old;
	lim.rlim_cur = 100;
	CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	CHECK(queue_enqueue(spool, mem_of(body, sizeof(body) - 1), e, 2, err, sizeof(err)) == -1);
	CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
	CHECK_MSG(strstr(err, "large") != NULL, "%s", err);
	CHECK(e[0].id[0] == '\0' && e[1].id[0] == '\0');
	CHECK(count_files() == 0);
	CHECK(queue_enqueue("/nonexistent/spool", mem_of(body, 3), e, 1, err, sizeof(err)) == -1);
}

/* Leftovers of a crash go, entries and fresh files stay. */
static void
test_sweep(void)
{
	/* An old orphan message, an old temporary envelope, a fresh orphan,
	 * and an old file that is none of these. */
	/* An old orphan message (of an entry other than the first, whose
	 * envelope would be a file), an old temporary envelope, a fresh
	 * orphan, an old file that is none of these, an old envelope without
	 * its message and an old temporary message. */
	static const char *const names[] = { "1111111111111111-2.msg",
		"2222222222222222.env.Ab12Cd", "3333333333333333-2.msg", "notes.msg",
		"4444444444444444.env", "5555555555555555.msg.Xy12Zw" };
	struct queue_entry e;
	struct queue_rcpt r[1];
	struct timespec old[2] = { { 1000, 0 }, { 1000, 0 } };
	char err[512], path[PATH_MAX];
	int fd;

	make_entry(&e, r, 1, "a@x");
	CHECK(queue_enqueue(spool, mem_of(body, sizeof(body) - 1), &e, 1, err, sizeof(err)) == 0);
	for (size_t i = 0; i < 6; i++) {
		spool_file(path, sizeof(path), names[i], "");
		fd = open(path, O_WRONLY | O_CREAT, 0600);
		CHECK(fd >= 0);
		close(fd);
		if (i != 2)
			CHECK(utimensat(AT_FDCWD, path, old, 0) == 0);
	}
	/* The real entry looks old too: its envelope keeps it. */
	spool_file(path, sizeof(path), e.id, ".msg");
	CHECK(utimensat(AT_FDCWD, path, old, 0) == 0);
	CHECK(queue_sweep(spool, 2000, err, sizeof(err)) == 4);
	spool_file(path, sizeof(path), "1111111111111111-2", ".msg");
	CHECK(access(path, F_OK) == -1);
	spool_file(path, sizeof(path), "4444444444444444", ".env");
	CHECK(access(path, F_OK) == -1);
	spool_file(path, sizeof(path), "5555555555555555", ".msg.Xy12Zw");
	CHECK(access(path, F_OK) == -1);
	spool_file(path, sizeof(path), "2222222222222222", ".env.Ab12Cd");
	CHECK(access(path, F_OK) == -1);
	spool_file(path, sizeof(path), "3333333333333333-2", ".msg");
	CHECK(access(path, F_OK) == 0);
	spool_file(path, sizeof(path), "notes", ".msg");
	CHECK(access(path, F_OK) == 0);
	spool_file(path, sizeof(path), e.id, ".msg");
	CHECK(access(path, F_OK) == 0);
	CHECK(queue_sweep(spool, 2000, err, sizeof(err)) == 0);
	CHECK(queue_sweep("/nonexistent/spool", 2000, err, sizeof(err)) == -1);
	for (size_t i = 2; i < 4; i++) {
		spool_file(path, sizeof(path), names[i], "");
		unlink(path);
	}
	CHECK(queue_remove(spool, e.id, err, sizeof(err)) == 0);
	CHECK(count_files() == 0);
}

static void
test_flush(void)
{
	char err[512], path[PATH_MAX];
	struct dirent *de;
	struct stat st;
	int n = 0;
	DIR *d;

	CHECK(queue_flush_request(spool, "all", err, sizeof(err)) == 0);
	CHECK(queue_flush_request(spool, "0123456789abcdef", err, sizeof(err)) == 0);
	CHECK(queue_flush_request(spool, "../x", err, sizeof(err)) == -1);
	snprintf(path, sizeof(path), "%s/flush/all", spool);
	CHECK(stat(path, &st) == 0);
	snprintf(path, sizeof(path), "%s/flush", spool);
	if ((d = opendir(path)) != NULL) {
		while ((de = readdir(d)) != NULL)
			n += de->d_name[0] != '.';
		closedir(d);
	}
	CHECK(n == 2);
}

/* A message that went to a file on its way in is queued whole: the field
 * prepended in memory, then every byte of the file, past the head too. */
static void
test_enqueue_spilled(void)
{
	const char *dirs[] = { base, NULL };
	struct queue_entry e;
	struct queue_rcpt r[1];
	struct msgstore *ms = msgstore_new(dirs, 16);
	char err[512], *want, *got = NULL;
	size_t n = 200000, len = 0;

	want = malloc(14 + n);
	CHECK(ms != NULL && want != NULL);
	if (ms == NULL || want == NULL)
		return;
	memcpy(want, "Received: x\r\n", 13);
	for (size_t i = 0; i < n; i++)
		want[13 + i] = (char)('a' + i % 26);
	for (size_t i = 0; i < n; i += 1000)
		CHECK(msgstore_append(ms, want + 13 + i, 1000) == 0);
	CHECK(msgstore_prepend(ms, want, 13) == 0);
	CHECK(msgstore_spilled(ms) && msgstore_len(ms) == 13 + n);
	make_entry(&e, r, 1, "big@example.net");
	CHECK_MSG(queue_enqueue(spool, ms, &e, 1, err, sizeof(err)) == 0, "%s", err);
	CHECK(e.size == 13 + n);
	CHECK_MSG(queue_read_body(spool, e.id, &got, &len, err, sizeof(err)) == 0, "%s", err);
	CHECK(got != NULL && len == 13 + n && memcmp(got, want, len) == 0);
	CHECK(queue_remove(spool, e.id, err, sizeof(err)) == 0);
	free(got);
	free(want);
	msgstore_free(ms);
}

int
main(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(base, sizeof(base), "%s/luamta-test-queue.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(base) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(spool, sizeof(spool), "%s/var/spool", base);
	test_open();
	test_enqueue_load();
	test_enqueue_several();
	test_lock();
	test_corrupt();
	test_enqueue_failure();
	test_sweep();
	test_flush();
	test_enqueue_spilled();
	msgstore_free(mem_last);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", base);
	return test_done("test_queue");
}
