/* test_delivery.c - Maildir, mbox and print delivery against a scratch
 * directory from mkdtemp(). Failures are provoked with a regular file where
 * a directory should be and with RLIMIT_FSIZE, which work even as root,
 * where permission bits do not. A locked mbox is locked by a forked child,
 * driven over pipes so no step depends on timing. */

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

#include "delivery.h"
#include "msgstore.h"
#include "test.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

static char base[PATH_MAX];
static struct msgstore *mem_last;

/* A store holding a copy of p (NULL: empty), freed by the next call. */
static const struct msgstore *
mem_of(const char *p, size_t n)
{
	msgstore_free(mem_last);
	mem_last = msgstore_of(p != NULL ? p : "", n);
	return mem_last;
}

static void
path_of(char *buf, size_t bufsz, const char *rel)
{
	if ((size_t)snprintf(buf, bufsz, "%s/%s", base, rel) >= bufsz) {
		fprintf(stderr, "path too long: %s/%s\n", base, rel);
		exit(2);
	}
}

/* Whole file into a NUL-terminated heap buffer, or NULL. */
static char *
read_file(const char *path, size_t *lenp)
{
	struct stat st;
	char *buf = NULL;
	ssize_t r;
	size_t off = 0;
	int fd;

	*lenp = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	if (fstat(fd, &st) == -1 || (buf = malloc((size_t)st.st_size + 1)) == NULL)
		goto fail;
	while (off < (size_t)st.st_size) {
		if ((r = read(fd, buf + off, (size_t)st.st_size - off)) <= 0)
			goto fail;
		off += (size_t)r;
	}
	buf[off] = '\0';
	*lenp = off;
	close(fd);
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}

static int
write_file(const char *path, const char *s)
{
	int fd, r = -1;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1)
		return -1;
	if (write(fd, s, strlen(s)) == (ssize_t)strlen(s))
		r = 0;
	close(fd);
	return r;
}

/* Entries in dir other than . and ..; the first name goes into first. */
static int
count_entries(const char *dir, char *first, size_t firstsz)
{
	DIR *d;
	struct dirent *de;
	int n = 0;

	if (first != NULL && firstsz > 0)
		first[0] = '\0';
	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n++ == 0 && first != NULL)
			snprintf(first, firstsz, "%s", de->d_name);
	}
	closedir(d);
	return n;
}

static int
is_private_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 077) == 0;
}

static off_t
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

static void
rm_rf(const char *path)
{
	struct stat st;
	struct dirent *de;
	DIR *d;
	char sub[PATH_MAX];

	if (lstat(path, &st) == -1)
		return;
	if (S_ISDIR(st.st_mode) && (d = opendir(path)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
			rm_rf(sub);
		}
		closedir(d);
		rmdir(path);
	} else
		unlink(path);
}

/* Lowers the soft file size limit so the next large write fails with
 * EFBIG; SIGXFSZ is ignored so the process survives it. */
static int
limit_fsize(struct rlimit *saved, rlim_t max)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_FSIZE, saved) == -1)
		return -1;
	rl = *saved;
	rl.rlim_cur = max;
	return setrlimit(RLIMIT_FSIZE, &rl);
}

static void
test_maildir_ok(void)
{
	/* Embedded NUL and CRLF: Maildir stores the bytes as given. */
	static const char msg[] = "Subject: hi\r\n\r\nline\0one\r\nlast";
	char dir[PATH_MAX], sub[PATH_MAX], file[PATH_MAX], err[256];
	char name[512], name2[512], first[512], pid[32];
	char *got;
	size_t gotlen;
	int r;

	path_of(dir, sizeof(dir), "Maildir");
	err[0] = '\0';
	r = delivery_maildir(
	    dir, mem_of(msg, sizeof(msg) - 1), name, sizeof(name), err, sizeof(err));
	CHECK_MSG(r == 0, "maildir: %s", err);
	CHECK(is_private_dir(dir));
	path_of(sub, sizeof(sub), "Maildir/tmp");
	CHECK(is_private_dir(sub));
	CHECK(count_entries(sub, NULL, 0) == 0);
	path_of(sub, sizeof(sub), "Maildir/cur");
	CHECK(is_private_dir(sub));
	CHECK(count_entries(sub, NULL, 0) == 0);
	path_of(sub, sizeof(sub), "Maildir/new");
	CHECK(is_private_dir(sub));
	CHECK(count_entries(sub, first, sizeof(first)) == 1);
	CHECK_STR(first, name);

	/* <secs>.M<usecs>P<pid>Q<n>.<host>, no '/' or ':' from the host. */
	snprintf(pid, sizeof(pid), "P%ld", (long)getpid());
	CHECK(name[0] >= '1' && name[0] <= '9');
	CHECK(strstr(name, ".M") != NULL);
	CHECK(strstr(name, pid) != NULL);
	CHECK(strchr(name, 'Q') != NULL);
	CHECK(strchr(name, '/') == NULL && strchr(name, ':') == NULL);

	CHECK(snprintf(file, sizeof(file), "%s/%s", sub, name) < (int)sizeof(file));
	got = read_file(file, &gotlen);
	CHECK(got != NULL);
	CHECK(gotlen == sizeof(msg) - 1);
	CHECK(got != NULL && gotlen == sizeof(msg) - 1 && memcmp(got, msg, gotlen) == 0);
	free(got);
	{
		struct stat st;

		CHECK(stat(file, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600);
	}

	/* Existing directories are fine and names never repeat. */
	r = delivery_maildir(dir, mem_of("x\r\n", 3), name2, sizeof(name2), err, sizeof(err));
	CHECK_MSG(r == 0, "maildir: %s", err);
	CHECK(strcmp(name, name2) != 0);
	CHECK(count_entries(sub, NULL, 0) == 2);
	/* name may be NULL, and an empty message is a message. */
	r = delivery_maildir(dir, mem_of(NULL, 0), NULL, 0, err, sizeof(err));
	CHECK_MSG(r == 0, "maildir: %s", err);
	CHECK(count_entries(sub, NULL, 0) == 3);
	path_of(sub, sizeof(sub), "Maildir/tmp");
	CHECK(count_entries(sub, NULL, 0) == 0);
}

static void
test_maildir_fail(void)
{
	char dir[PATH_MAX], sub[PATH_MAX], file[PATH_MAX];
	char err[256], name[8];
	char *got;
	size_t gotlen;
	struct rlimit saved;
	static char big[65536];
	int r;

	/* The parent is a regular file: nothing can be created. */
	path_of(file, sizeof(file), "plain");
	CHECK(write_file(file, "keep") == 0);
	path_of(dir, sizeof(dir), "plain/Maildir");
	err[0] = '\0';
	r = delivery_maildir(dir, mem_of("x\r\n", 3), NULL, 0, err, sizeof(err));
	CHECK(r == -1);
	CHECK(err[0] != '\0');
	CHECK_MSG(strstr(err, dir) != NULL, "error lacks the path: %s", err);
	got = read_file(file, &gotlen);
	CHECK(got != NULL && strcmp(got, "keep") == 0);
	free(got);

	/* new/ is a regular file: the rename fails after tmp/ was written,
	 * and the tmp file must be gone. */
	path_of(dir, sizeof(dir), "badnew");
	CHECK(mkdir(dir, 0700) == 0);
	path_of(file, sizeof(file), "badnew/new");
	CHECK(write_file(file, "") == 0);
	err[0] = '\0';
	r = delivery_maildir(dir, mem_of("x\r\n", 3), NULL, 0, err, sizeof(err));
	CHECK(r == -1);
	CHECK(err[0] != '\0');
	path_of(sub, sizeof(sub), "badnew/tmp");
	CHECK(count_entries(sub, NULL, 0) == 0);
	CHECK(file_size(file) == 0);

	/* A name buffer too small fails before anything is written. */
	path_of(dir, sizeof(dir), "Maildir");
	err[0] = '\0';
	r = delivery_maildir(dir, mem_of("x\r\n", 3), name, sizeof(name), err, sizeof(err));
	CHECK(r == -1);
	CHECK(err[0] != '\0');
	path_of(sub, sizeof(sub), "Maildir/new");
	CHECK(count_entries(sub, NULL, 0) == 3);
	path_of(sub, sizeof(sub), "Maildir/tmp");
	CHECK(count_entries(sub, NULL, 0) == 0);

	/* A write that fails half way (file size limit) leaves nothing. */
	memset(big, 'a', sizeof(big));
	CHECK(limit_fsize(&saved, 4096) == 0);
	err[0] = '\0';
	r = delivery_maildir(dir, mem_of(big, sizeof(big)), NULL, 0, err, sizeof(err));
	CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
	CHECK(r == -1);
	CHECK_MSG(strstr(err, "write") != NULL, "unexpected error: %s", err);
	CHECK(count_entries(sub, NULL, 0) == 0);
	path_of(sub, sizeof(sub), "Maildir/new");
	CHECK(count_entries(sub, NULL, 0) == 3);

	/* A NULL err is allowed. */
	path_of(dir, sizeof(dir), "plain/Maildir");
	CHECK(delivery_maildir(dir, mem_of("x", 1), NULL, 0, NULL, 0) == -1);
}

/* Checks "From <sender> Www Mmm dd hh:mm:ss yyyy\n" at *p and moves past
 * it. */
static int
check_from_line(const char **p, const char *sender)
{
	static const char *const wday = "SunMonTueWedThuFriSat";
	static const char *const mon = "JanFebMarAprMayJunJulAugSepOctNovDec";
	const char *s = *p, *d;
	char head[512], w[4], m[4];
	size_t i;

	snprintf(head, sizeof(head), "From %s ", sender);
	if (strncmp(s, head, strlen(head)) != 0)
		return 0;
	d = s + strlen(head);
	/* "Sun Nov 22 18:42:42 2026\n" is 25 bytes. */
	for (i = 0; i < 25; i++)
		if (d[i] == '\0')
			return 0;
	memcpy(w, d, 3);
	w[3] = '\0';
	memcpy(m, d + 4, 3);
	m[3] = '\0';
	if (strstr(wday, w) == NULL || (strstr(wday, w) - wday) % 3 != 0 ||
	    strstr(mon, m) == NULL || (strstr(mon, m) - mon) % 3 != 0)
		return 0;
	if (d[3] != ' ' || d[7] != ' ' || d[10] != ' ' || d[13] != ':' || d[16] != ':' ||
	    d[19] != ' ' || d[24] != '\n')
		return 0;
	if (!(d[8] == ' ' || (d[8] >= '1' && d[8] <= '3')) || d[9] < '0' || d[9] > '9')
		return 0;
	for (i = 11; i < 24; i++)
		if (i != 13 && i != 16 && i != 19 && (d[i] < '0' || d[i] > '9'))
			return 0;
	*p = d + 25;
	return 1;
}

static void
test_mbox(void)
{
	static const char msg1[] = "From: a@b.c\r\n"
				   "Subject: one\r\n"
				   "\r\n"
				   "From here\r\n"
				   ">From there\r\n"
				   ">>From far\r\n"
				   "Fromage\r\n"
				   " From indented\r\n"
				   ">From\r\n"
				   "bare\rcr\r\n"
				   "last line";
	static const char want1[] = "From: a@b.c\n"
				    "Subject: one\n"
				    "\n"
				    ">From here\n"
				    ">>From there\n"
				    ">>>From far\n"
				    "Fromage\n"
				    " From indented\n"
				    ">From\n"
				    "bare\rcr\n"
				    "last line\n"
				    "\n";
	static const char msg2[] = "From the top\r\nbye\r\n";
	static const char want2[] = ">From the top\nbye\n\n";
	char path[PATH_MAX], err[256];
	char *got;
	const char *p;
	size_t gotlen;
	struct stat st;
	int r;

	path_of(path, sizeof(path), "mbox");
	err[0] = '\0';
	r = delivery_mbox(path, "a@b.c", mem_of(msg1, sizeof(msg1) - 1), err, sizeof(err));
	CHECK_MSG(r == 0, "mbox: %s", err);
	r = delivery_mbox(path, "", mem_of(msg2, sizeof(msg2) - 1), err, sizeof(err));
	CHECK_MSG(r == 0, "mbox: %s", err);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

	got = read_file(path, &gotlen);
	CHECK(got != NULL);
	if (got == NULL)
		return;
	CHECK(strlen(got) == gotlen);
	p = got;
	CHECK_MSG(check_from_line(&p, "a@b.c"), "first From_ line: %.60s", p);
	CHECK_MSG(strncmp(p, want1, sizeof(want1) - 1) == 0, "first message:\n%s", p);
	if (strncmp(p, want1, sizeof(want1) - 1) == 0)
		p += sizeof(want1) - 1;
	CHECK_MSG(check_from_line(&p, "MAILER-DAEMON"), "second From_ line: %.60s", p);
	CHECK_STR(p, want2);
	free(got);

	/* A sender with a space must not split the From_ line. */
	path_of(path, sizeof(path), "mbox-space");
	r = delivery_mbox(path, "\"a b\"@c", mem_of("x\r\n", 3), err, sizeof(err));
	CHECK_MSG(r == 0, "mbox: %s", err);
	got = read_file(path, &gotlen);
	p = got != NULL ? got : "";
	CHECK_MSG(check_from_line(&p, "\"a_b\"@c"), "From_ line: %.60s", p);
	CHECK_STR(p, "x\n\n");
	free(got);

	/* An empty message still gets its separator line. */
	path_of(path, sizeof(path), "mbox-empty");
	r = delivery_mbox(path, NULL, mem_of(NULL, 0), err, sizeof(err));
	CHECK_MSG(r == 0, "mbox: %s", err);
	got = read_file(path, &gotlen);
	p = got != NULL ? got : "";
	CHECK(check_from_line(&p, "MAILER-DAEMON"));
	CHECK_STR(p, "\n");
	free(got);
}

static void
test_mbox_fail(void)
{
	char path[PATH_MAX], err[256];
	char *before, *after;
	size_t blen, alen;
	struct rlimit saved;
	static char big[65536];
	off_t size;
	int r;

	/* Parent is a regular file ("plain" from test_maildir_fail). */
	path_of(path, sizeof(path), "plain/mbox");
	err[0] = '\0';
	CHECK(delivery_mbox(path, "a@b", mem_of("x\r\n", 3), err, sizeof(err)) == -1);
	CHECK(err[0] != '\0');
	CHECK_MSG(strstr(err, path) != NULL, "error lacks the path: %s", err);

	/* A directory is not a mailbox. */
	err[0] = '\0';
	CHECK(delivery_mbox(base, "a@b", mem_of("x\r\n", 3), err, sizeof(err)) == -1);
	CHECK(err[0] != '\0');

	/* A device is not a mailbox either; nothing is written to it. */
	err[0] = '\0';
	CHECK(delivery_mbox("/dev/null", "a@b", mem_of("x\r\n", 3), err, sizeof(err)) == -1);
	CHECK_MSG(strstr(err, "not a regular file") != NULL, "unexpected error: %s", err);

	/* A write that fails half way is truncated back, so the mailbox
	 * holds exactly what it held before. */
	path_of(path, sizeof(path), "mbox");
	before = read_file(path, &blen);
	size = file_size(path);
	CHECK(before != NULL && size > 0);
	memset(big, 'b', sizeof(big));
	CHECK(limit_fsize(&saved, (rlim_t)size + 100) == 0);
	err[0] = '\0';
	r = delivery_mbox(path, "a@b", mem_of(big, sizeof(big)), err, sizeof(err));
	CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
	CHECK(r == -1);
	CHECK_MSG(strstr(err, "write") != NULL, "unexpected error: %s", err);
	CHECK(file_size(path) == size);
	after = read_file(path, &alen);
	CHECK(before != NULL && after != NULL && alen == blen && memcmp(before, after, blen) == 0);
	free(before);
	free(after);
}

/* How the child of a lock test holds the mailbox. */
enum holder_kind {
	HOLD_FCNTL_WRITE = 0, /* fcntl write lock on the whole file */
	HOLD_FCNTL_READ_PART, /* fcntl read lock on a few bytes only */
	HOLD_FLOCK_EX,        /* flock, exclusive */
	HOLD_FLOCK_SH,        /* flock, shared */
};

/* A child process holding a lock on a file until told to stop. It answers
 * one byte per request on reply: 'L' once the lock is held (or 'E'), and
 * for each 'c' on cmd, 'y' when no other process holds a lock it can see
 * ('n' otherwise). It exits when cmd reaches end of file. */
struct holder {
	pid_t pid;
	int cmd;   /* write end: requests to the child */
	int reply; /* read end: its answers */
};

/* The child's side: never returns. An fcntl lock is tested with F_GETLK,
 * which ignores the child's own locks and changes nothing; a flock with a
 * non-blocking try on the child's descriptor when it holds no flock of its
 * own. Closing any descriptor of the file would drop the child's fcntl
 * locks, so it opens exactly one. */
static void
holder_child(const char *path, enum holder_kind kind, int cmd, int reply)
{
	struct flock lk;
	char c;
	int fd, ok;

	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1)
		goto fail;
	memset(&lk, 0, sizeof(lk));
	lk.l_whence = SEEK_SET;
	switch (kind) {
	case HOLD_FCNTL_WRITE:
		lk.l_type = F_WRLCK;
		ok = fcntl(fd, F_SETLKW, &lk) == 0;
		break;
	case HOLD_FCNTL_READ_PART:
		lk.l_type = F_RDLCK;
		lk.l_start = 5;
		lk.l_len = 10;
		ok = fcntl(fd, F_SETLKW, &lk) == 0;
		break;
	case HOLD_FLOCK_EX:
		ok = flock(fd, LOCK_EX) == 0;
		break;
	default:
		ok = flock(fd, LOCK_SH) == 0;
		break;
	}
	if (!ok || write(reply, "L", 1) != 1)
		goto fail;
	while (read(cmd, &c, 1) == 1) {
		memset(&lk, 0, sizeof(lk));
		lk.l_type = F_WRLCK;
		lk.l_whence = SEEK_SET;
		ok = fcntl(fd, F_GETLK, &lk) == 0 && lk.l_type == F_UNLCK;
		if (ok && (kind == HOLD_FCNTL_WRITE || kind == HOLD_FCNTL_READ_PART))
			ok = flock(fd, LOCK_EX | LOCK_NB) == 0 && flock(fd, LOCK_UN) == 0;
		if (write(reply, ok ? "y" : "n", 1) != 1)
			goto fail;
	}
	_exit(0);
fail:
	/* The parent reads anything but 'L' as a failure, end of file too. */
	if (write(reply, "E", 1) != 1)
		_exit(2);
	_exit(1);
}

/* Forks a child that locks path; returns 0 once it holds the lock. */
static int
holder_start(struct holder *h, const char *path, enum holder_kind kind)
{
	int cmd[2], reply[2];
	char c;

	h->pid = -1;
	h->cmd = h->reply = -1;
	if (pipe(cmd) == -1)
		return -1;
	if (pipe(reply) == -1) {
		close(cmd[0]);
		close(cmd[1]);
		return -1;
	}
	if ((h->pid = fork()) == -1) {
		close(cmd[0]);
		close(cmd[1]);
		close(reply[0]);
		close(reply[1]);
		return -1;
	}
	if (h->pid == 0) {
		close(cmd[1]);
		close(reply[0]);
		holder_child(path, kind, cmd[0], reply[1]);
	}
	close(cmd[0]);
	close(reply[1]);
	h->cmd = cmd[1];
	h->reply = reply[0];
	return read(h->reply, &c, 1) == 1 && c == 'L' ? 0 : -1;
}

/* Whether the child sees no lock of another process on the file. */
static int
holder_sees_none(struct holder *h)
{
	char c;

	return write(h->cmd, "c", 1) == 1 && read(h->reply, &c, 1) == 1 && c == 'y';
}

/* Lets the child go (its exit releases the lock) and reaps it; returns its
 * exit status, or -1. */
static int
holder_stop(struct holder *h)
{
	int status;

	if (h->cmd != -1)
		close(h->cmd);
	if (h->reply != -1)
		close(h->reply);
	h->cmd = h->reply = -1;
	if (h->pid <= 0)
		return -1;
	while (waitpid(h->pid, &status, 0) == -1)
		if (errno != EINTR)
			return -1;
	h->pid = -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_mbox_locked(void)
{
	static const struct {
		const char *name;
		enum holder_kind kind;
		const char *lock; /* the lock the error must name */
	} cases[] = {
		{ "fcntl write lock", HOLD_FCNTL_WRITE, "fcntl" },
		{ "fcntl read lock on bytes 5-14", HOLD_FCNTL_READ_PART, "fcntl" },
		{ "exclusive flock", HOLD_FLOCK_EX, "flock" },
		{ "shared flock", HOLD_FLOCK_SH, "flock" },
	};
	static const char msg[] = "Subject: new\r\n\r\nx\r\n";
	static const char old[] = "From old@x Thu Jan  1 00:00:00 1970\n"
				  "Subject: already here\n\nbody\n\n";
	char path[PATH_MAX], err[256];
	char *before, *after;
	const char *p;
	size_t blen, alen, i;
	struct holder h;
	int r;

	/* A delivery that waited for the lock would wait for ever, the
	 * child waiting for us: let SIGALRM end the test instead. */
	alarm(60);
	path_of(path, sizeof(path), "mbox-locked");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK(write_file(path, old) == 0);
		before = read_file(path, &blen);
		CHECK_MSG(holder_start(&h, path, cases[i].kind) == 0, "%s: child did not lock",
		    cases[i].name);

		err[0] = '\0';
		r = delivery_mbox(path, "a@b", mem_of(msg, sizeof(msg) - 1), err, sizeof(err));
		CHECK_MSG(r == DELIVERY_LOCKED, "%s: returned %d (%s)", cases[i].name, r, err);
		CHECK_MSG(strstr(err, "locked") != NULL && strstr(err, cases[i].lock) != NULL &&
			strstr(err, path) != NULL,
		    "%s: error: %s", cases[i].name, err);
		after = read_file(path, &alen);
		CHECK_MSG(before != NULL && after != NULL && alen == blen &&
			memcmp(before, after, blen) == 0,
		    "%s: the mailbox changed", cases[i].name);
		free(after);
		/* Whatever lock delivery did get before it met the other one
		 * is released again: the child sees no lock but its own. */
		CHECK_MSG(holder_sees_none(&h), "%s: a lock was left behind", cases[i].name);
		CHECK_MSG(holder_stop(&h) == 0, "%s: child failed", cases[i].name);

		/* Released: the same delivery now goes through, after the old
		 * content. */
		err[0] = '\0';
		r = delivery_mbox(path, "a@b", mem_of(msg, sizeof(msg) - 1), err, sizeof(err));
		CHECK_MSG(r == 0, "%s: after release: %s", cases[i].name, err);
		after = read_file(path, &alen);
		CHECK_MSG(before != NULL && after != NULL && alen > blen &&
			memcmp(before, after, blen) == 0,
		    "%s: old content not kept", cases[i].name);
		p = after != NULL && alen > blen ? after + blen : "";
		CHECK_MSG(check_from_line(&p, "a@b"), "%s: From_ line: %.60s", cases[i].name, p);
		CHECK_STR(p, "Subject: new\n\nx\n\n");
		free(after);
		free(before);
	}
	alarm(0);
}

static void
test_print(void)
{
	static const char *const rcpts[] = { "x@y.z", "w@v.u" };
	static const char want[] = "---------- MESSAGE FOLLOWS ----------\n"
				   "X-Peer: 127.0.0.1\n"
				   "X-MailFrom: a@b.c\n"
				   "X-RcptTo: x@y.z, w@v.u\n"
				   "Subject: hi\n"
				   "\n"
				   "From me\n"
				   "bare\rcr\n"
				   "no newline\n"
				   "------------ END MESSAGE ------------\n";
	static const char want_empty[] = "---------- MESSAGE FOLLOWS ----------\n"
					 "X-Peer: ::1\n"
					 "X-MailFrom: \n"
					 "X-RcptTo: only@x\n"
					 "------------ END MESSAGE ------------\n";
	static const char want_none[] = "---------- MESSAGE FOLLOWS ----------\n"
					"X-Peer: \n"
					"X-MailFrom: \n"
					"X-RcptTo: \n"
					"x\n"
					"------------ END MESSAGE ------------\n";
	static const char *const one[] = { "only@x" };
	static const char msg[] = "Subject: hi\r\n\r\nFrom me\r\nbare\rcr\r\nno newline";
	char path[PATH_MAX];
	char *got;
	size_t gotlen;
	int fd, r;

	path_of(path, sizeof(path), "dump");
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd != -1);
	r = delivery_print(fd, "127.0.0.1", "a@b.c", rcpts, 2, mem_of(msg, sizeof(msg) - 1));
	CHECK(r == 0);
	close(fd);
	got = read_file(path, &gotlen);
	CHECK(got != NULL && gotlen == sizeof(want) - 1);
	CHECK_STR(got != NULL ? got : "", want);
	free(got);

	/* Empty sender, one recipient, empty message. */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd != -1);
	r = delivery_print(fd, "::1", "", one, 1, mem_of(NULL, 0));
	CHECK(r == 0);
	close(fd);
	got = read_file(path, &gotlen);
	CHECK_STR(got != NULL ? got : "", want_empty);
	free(got);

	/* No recipients at all still gives the header line. */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd != -1);
	r = delivery_print(fd, NULL, NULL, NULL, 0, mem_of("x", 1));
	CHECK(r == 0);
	close(fd);
	got = read_file(path, &gotlen);
	CHECK_STR(got != NULL ? got : "", want_none);
	free(got);

	/* A bad descriptor reports errno. */
	errno = 0;
	CHECK(delivery_print(-1, "p", "s", rcpts, 2, mem_of("x", 1)) == -1);
	CHECK(errno == EBADF);
}

/* The mbox text of a message after its From_ line, through the store st. */
static char *
mbox_body(const char *name, const struct msgstore *st, size_t *len)
{
	char path[PATH_MAX], err[256];
	char *got, *nl;

	path_of(path, sizeof(path), name);
	(void)unlink(path);
	CHECK_MSG(delivery_mbox(path, "a@b", st, err, sizeof(err)) == 0, "mbox: %s", err);
	if ((got = read_file(path, len)) == NULL || (nl = memchr(got, '\n', *len)) == NULL) {
		free(got);
		return NULL;
	}
	*len -= (size_t)(nl + 1 - got);
	memmove(got, nl + 1, *len);
	got[*len] = '\0';
	return got;
}

/* A message read in pieces (the start in memory, the rest from a file)
 * gets the same mbox text as one read whole, wherever the pieces split
 * it: between CR and LF, inside ">>From ", at a line's start. */
static void
test_mbox_pieces(void)
{
	static const char msg[] = "a\r\nFrom x\r\n>>From y\r\n>Fro\r\n\r\rFrom\r\nFrom z\r";
	const char *dirs[] = { base, NULL };
	char *want, *got, *big;
	size_t wlen, glen, n = 300000, i;
	struct msgstore *st;

	want = mbox_body("mbox-whole", mem_of(msg, sizeof(msg) - 1), &wlen);
	CHECK(want != NULL);
	if (want == NULL)
		return;
	CHECK_STR(want, "a\n>From x\n>>>From y\n>Fro\n\r\rFrom\n>From z\n\n");
	for (size_t k = 0; k < sizeof(msg) - 1; k++) {
		st = msgstore_new(dirs, k);
		for (i = 0; st != NULL && i < sizeof(msg) - 1; i++)
			CHECK(msgstore_append(st, msg + i, 1) == 0);
		CHECK(st != NULL && msgstore_spilled(st));
		got = st != NULL ? mbox_body("mbox-piece", st, &glen) : NULL;
		CHECK_MSG(got != NULL && glen == wlen && memcmp(got, want, wlen) == 0,
		    "split after %zu bytes", k);
		free(got);
		msgstore_free(st);
	}
	free(want);

	/* Large: the file is read back a buffer at a time. */
	if ((big = malloc(n)) == NULL)
		return;
	for (i = 0; i < n; i++)
		big[i] = "From \r\n>x"[(i * 7 + i / 13) % 10];
	want = mbox_body("mbox-whole", mem_of(big, n), &wlen);
	st = msgstore_new(dirs, 1000);
	for (i = 0; st != NULL && i < n; i += 997)
		CHECK(msgstore_append(st, big + i, n - i < 997 ? n - i : 997) == 0);
	got = st != NULL ? mbox_body("mbox-piece", st, &glen) : NULL;
	CHECK(want != NULL && got != NULL && glen == wlen && memcmp(got, want, wlen) == 0);
	free(want);
	free(got);
	free(big);
	msgstore_free(st);
}

int
main(void)
{
	const char *tmp;

	/* The file size limit tests must not be killed by SIGXFSZ, nor
	 * the lock tests by SIGPIPE should a child die early. */
	signal(SIGXFSZ, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	if ((tmp = getenv("TMPDIR")) == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	snprintf(base, sizeof(base), "%s/test_delivery.XXXXXX", tmp);
	if (mkdtemp(base) == NULL) {
		perror("mkdtemp");
		return 2;
	}

	test_maildir_ok();
	test_maildir_fail();
	test_mbox();
	test_mbox_fail();
	test_mbox_locked();
	test_print();
	test_mbox_pieces();
	msgstore_free(mem_last);

	if (test_failures == 0)
		rm_rf(base);
	else
		fprintf(stderr, "test_delivery: kept %s\n", base);
	return test_done("test_delivery");
}
