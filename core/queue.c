/* queue.c - the spool directory: entries written durably (temporary name,
 * fsync, rename, fsync of the directory), loaded, replaced, removed, moved
 * aside when corrupt, listed and locked. Plain synchronous file work on
 * libc only; the text of ID.env is queue_file.c's, and when to deliver
 * what is the scheduler's. */
#define _GNU_SOURCE /* memmem */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "msgstore.h"
#include "queue.h"

/* An ID.env larger than this is not one we wrote (a thousand recipients
 * with long replies stay far below it): refused as corrupt rather than
 * read into memory. */
#define QUEUE_ENV_MAX (16u << 20)

static int fail(char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errsz > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errsz, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* SPOOL/NAME or SPOOL/ID.EXT; -1 when it does not fit. */
static int
path_of(char *out, size_t outsz, const char *spool, const char *name, const char *ext)
{
	int n = snprintf(out, outsz, "%s/%s%s", spool, name, ext);

	if (n < 0 || (size_t)n >= outsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* Reads a whole file of at most max bytes into a malloc'ed, NUL-terminated
 * buffer. -1 with errno (EFBIG past max). */
static int
read_all(const char *path, size_t max, char **out, size_t *len)
{
	struct stat st;
	char *p = NULL;
	size_t got = 0;
	ssize_t r;
	int fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, &st) == -1)
		goto fail;
	if ((size_t)st.st_size > max) {
		errno = EFBIG;
		goto fail;
	}
	if ((p = malloc((size_t)st.st_size + 1)) == NULL)
		goto fail;
	/* The size cannot change under us (files are never rewritten in
	 * place), but stop at what fits. */
	while (got < (size_t)st.st_size) {
		if ((r = read(fd, p + got, (size_t)st.st_size - got)) == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	p[got] = '\0';
	close(fd);
	*out = p;
	*len = got;
	return 0;
fail:
	saved = errno;
	free(p);
	close(fd);
	errno = saved;
	return -1;
}

/* Writes text to a fresh temporary name next to final, syncs it and
 * renames it over final; the caller syncs the directory. */
static int
write_replace(const char *final, const char *text, size_t len)
{
	char tmp[PATH_MAX];
	int fd, saved;

	/* "ID.env.XXXXXX" never ends in ".env": listing skips it. */
	if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", final) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	/* mkostemp is a GNU extension; set FD_CLOEXEC right after. */
	if ((fd = mkstemp(tmp)) == -1)
		return -1;
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	if (fileio_write(fd, text, len) == -1 || fsync(fd) == -1)
		goto fail;
	if (close(fd) == -1) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, final) == -1)
		goto fail;
	return 0;
fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	unlink(tmp);
	errno = saved;
	return -1;
}

static int
mkdir_p(char *path, mode_t leaf_mode)
{
	struct stat st;
	char *s;

	for (s = path + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(path, 0755) == -1 && errno != EEXIST) {
			*s = '/';
			return -1;
		}
		*s = '/';
	}
	if (mkdir(path, leaf_mode) == -1) {
		if (errno != EEXIST)
			return -1;
		if (stat(path, &st) == -1)
			return -1;
		if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			return -1;
		}
	}
	return 0;
}

int
queue_open(const char *spool, char *err, size_t errsz)
{
	char path[PATH_MAX];
	size_t n = strlen(spool);

	if (n == 0 || n >= sizeof(path))
		return fail(err, errsz, "spool %s: bad path", spool);
	memcpy(path, spool, n + 1);
	while (n > 1 && path[n - 1] == '/')
		path[--n] = '\0';
	if (mkdir_p(path, 0700) == -1)
		return fail(err, errsz, "spool %s: %s", spool, strerror(errno));
	if (access(path, W_OK | X_OK) == -1)
		return fail(err, errsz, "spool %s: %s", spool, strerror(errno));
	/* The server watches flush/ from its start: it must exist by then. */
	if (n + sizeof("/" QUEUE_FLUSH_DIR) > sizeof(path))
		return fail(err, errsz, "spool %s: bad path", spool);
	memcpy(path + n, "/" QUEUE_FLUSH_DIR, sizeof("/" QUEUE_FLUSH_DIR));
	if (mkdir(path, 0700) == -1 && errno != EEXIST)
		return fail(err, errsz, "%s: %s", path, strerror(errno));
	return 0;
}

/* 16 hex digits from the kernel's random source: ids are not guessable and
 * two processes never need to agree on a counter. */
static int
random_id(char id[QUEUE_ID_MAX])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char r[8];
	size_t got = 0;
	ssize_t n;

	while (got < sizeof(r)) {
		if ((n = getrandom(r + got, sizeof(r) - got, 0)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof(r); i++) {
		id[2 * i] = hex[r[i] >> 4];
		id[2 * i + 1] = hex[r[i] & 15];
	}
	id[16] = '\0';
	return 0;
}

/* Writes ID.msg for a new id: the first entry's envelope (env, which
 * names first) and then the message, to a temporary name, synced, and
 * linked into place: a visible ID.msg is always whole, since its envelope
 * alone makes it an entry. The id is base, or base-1 when n > 1. */
static int
enqueue_body(const char *spool, const struct msgstore *ms, struct queue_entry *first, size_t n,
    char *base, char *err, size_t errsz)
{
	char path[PATH_MAX], tmp[PATH_MAX], *env = NULL;
	size_t envlen;
	int fd = -1, saved;

	if (random_id(base) == -1)
		return fail(err, errsz, "getrandom: %s", strerror(errno));
	snprintf(first->id, QUEUE_ID_MAX, "%.16s%s", base, n > 1 ? "-1" : "");
	if ((env = queue_env_format(first, &envlen)) == NULL)
		return fail(err, errsz, "enqueue: out of memory");
	/* "ID.msg.XXXXXX" never ends in ".msg": listing skips it. */
	if (path_of(path, sizeof(path), spool, first->id, ".msg") == -1 ||
	    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp)) {
		free(env);
		return fail(err, errsz, "spool %s: %s", spool, strerror(ENAMETOOLONG));
	}
	if ((fd = mkstemp(tmp)) == -1) {
		saved = errno;
		free(env);
		return fail(err, errsz, "%s: %s", tmp, strerror(saved));
	}
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	/* link, not rename: an id drawn twice (one chance in 2^64) fails
	 * with EEXIST rather than replacing another entry. */
	if (fileio_write(fd, env, envlen) == -1 || msgstore_write(ms, fd) == -1 ||
	    fsync(fd) == -1 || close(fd) == -1 || (fd = -1, link(tmp, path) == -1)) {
		saved = errno;
		if (fd != -1)
			close(fd);
		unlink(tmp);
		free(env);
		first->id[0] = '\0';
		return fail(err, errsz, "%s: %s", path, strerror(saved));
	}
	unlink(tmp);
	free(env);
	return 0;
}

/* Removes what a failed enqueue wrote: every ID.env and ID.msg of the first
 * `made` entries (the links included). */
static void
enqueue_undo(const char *spool, struct queue_entry *entries, size_t made, int envs)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < made; i++) {
		if (envs && path_of(path, sizeof(path), spool, entries[i].id, ".env") == 0)
			unlink(path);
		if (path_of(path, sizeof(path), spool, entries[i].id, ".msg") == 0)
			unlink(path);
	}
	for (size_t i = 0; i < made; i++)
		entries[i].id[0] = '\0';
	fileio_sync_dir(spool);
}

int
queue_enqueue(const char *spool, const struct msgstore *ms, struct queue_entry *entries, size_t n,
    char *err, size_t errsz)
{
	char base[QUEUE_ID_MAX], first[PATH_MAX], path[PATH_MAX];
	time_t now = time(NULL);
	size_t made = 0, i, tlen;
	char *text;

	path[0] = '\0';
	if (n == 0 || n > 999999)
		return fail(err, errsz, "enqueue: %zu entries", n);
	for (i = 0; i < n; i++)
		if (entries[i].nrcpts == 0 || entries[i].sender == NULL)
			return fail(err, errsz, "enqueue: an entry without sender or recipients");
	for (i = 0; i < n; i++) {
		entries[i].created = now;
		entries[i].size = msgstore_len(ms);
	}
	if (enqueue_body(spool, ms, &entries[0], n, base, err, errsz) == -1)
		return -1;
	made = 1;
	if (path_of(first, sizeof(first), spool, entries[0].id, ".msg") == -1)
		goto fail_errno;
	/* The other entries share the message: one inode, one copy. */
	for (i = 1; i < n; i++) {
		/* n <= 999999: the modulo only tells the compiler so. */
		snprintf(
		    entries[i].id, QUEUE_ID_MAX, "%.16s-%u", base, (unsigned)((i + 1) % 1000000));
		if (path_of(path, sizeof(path), spool, entries[i].id, ".msg") == -1 ||
		    link(first, path) == -1) {
			entries[i].id[0] = '\0';
			goto fail_errno;
		}
		made++;
	}
	/* The first entry's envelope is in ID.msg; the others' are files. */
	for (i = 1; i < n; i++) {
		if ((text = queue_env_format(&entries[i], &tlen)) == NULL) {
			errno = ENOMEM;
			goto fail_errno;
		}
		if (path_of(path, sizeof(path), spool, entries[i].id, ".env") == -1 ||
		    write_replace(path, text, tlen) == -1) {
			free(text);
			goto fail_errno;
		}
		free(text);
	}
	if (fileio_sync_dir(spool) == -1) {
		snprintf(path, sizeof(path), "%s", spool);
		goto fail_errno;
	}
	return 0;
fail_errno:
	fail(err, errsz, "enqueue %s: %s", path, strerror(errno));
	enqueue_undo(spool, entries, made, 1);
	return -1;
}

/* The length of the envelope at the start of buf (got bytes), or 0 while
 * buf holds no whole one; -1 when buf does not start like one. Escaped
 * values never make a line "end": the first one closes the envelope. */
static ssize_t
envelope_end(const char *buf, size_t got)
{
	static const char magic[] = "luamta-queue ";
	const char *end;

	if (memcmp(buf, magic, got < sizeof(magic) - 1 ? got : sizeof(magic) - 1) != 0)
		return -1;
	if ((end = memmem(buf, got, "\nend\n", 5)) == NULL)
		return 0;
	return end + 5 - buf;
}

/* Reads the envelope written in front of the message in ID.msg (open as
 * fd): its text, malloc'ed and NUL-terminated, and its length, which is
 * where the message starts. 0, or -1 with errno (EINVAL: no envelope). */
static int
read_front_envelope(int fd, char **text, size_t *len)
{
	size_t cap = 4096, got = 0;
	char *buf = NULL, *grown;
	ssize_t r, e;

	for (;;) {
		if ((grown = realloc(buf, cap + 1)) == NULL)
			goto fail;
		buf = grown;
		if ((r = pread(fd, buf + got, cap - got, (off_t)got)) == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		got += (size_t)r;
		if ((e = envelope_end(buf, got)) == -1)
			break;
		if (e > 0) {
			*len = (size_t)e;
			buf[*len] = '\0';
			*text = buf;
			return 0;
		}
		if (r == 0 || got >= QUEUE_ENV_MAX)
			break;
		if (got == cap)
			cap *= 2;
	}
	errno = EINVAL;
fail:
	free(buf);
	return -1;
}

int
queue_body_offset(int fd, size_t *off)
{
	char *text;

	if (read_front_envelope(fd, &text, off) == -1)
		return -1;
	free(text);
	return 0;
}

/* Whether id names the first entry of its message (no "-N", or "-1"): the
 * one whose envelope ID.msg carries in front. */
static int
first_entry(const char *id)
{
	const char *dash = strchr(id, '-');

	return dash == NULL || strcmp(dash, "-1") == 0;
}

int
queue_load(const char *spool, const char *id, struct queue_entry *out, char *err, size_t errsz)
{
	char path[PATH_MAX], msg[PATH_MAX], perr[256];
	char *text;
	size_t len;
	int fd;

	memset(out, 0, sizeof(*out));
	if (!queue_id_valid(id))
		return fail(err, errsz, "bad queue id");
	if (path_of(path, sizeof(path), spool, id, ".env") == -1 ||
	    path_of(msg, sizeof(msg), spool, id, ".msg") == -1)
		return fail(err, errsz, "%s/%s: %s", spool, id, strerror(errno));
	if (read_all(path, QUEUE_ENV_MAX, &text, &len) == 0) {
		/* An envelope whose message is gone is what a removal
		 * cut short leaves: no entry. */
		if (access(msg, F_OK) == -1 && errno == ENOENT) {
			free(text);
			return 1;
		}
	} else if (errno != ENOENT)
		return fail(err, errsz, "%s: %s", path, strerror(errno));
	else {
		/* No ID.env: the envelope in front of the message, which is
		 * this entry's only for the first entry of a message. */
		if (!first_entry(id))
			return 1;
		snprintf(path, sizeof(path), "%s", msg);
		if ((fd = open(msg, O_RDONLY | O_CLOEXEC)) == -1) {
			if (errno == ENOENT)
				return 1;
			return fail(err, errsz, "%s: %s", msg, strerror(errno));
		}
		if (read_front_envelope(fd, &text, &len) == -1) {
			int saved = errno;
			close(fd);
			return fail(err, errsz, "%s: %s", msg,
			    saved == EINVAL ? "corrupt: no envelope in front" : strerror(saved));
		}
		close(fd);
	}
	if (queue_env_parse(text, len, out, perr, sizeof(perr)) == -1) {
		free(text);
		return fail(err, errsz, "%s: corrupt: %s", path, perr);
	}
	free(text);
	if (strcmp(out->id, id) != 0) {
		queue_entry_clear(out);
		return fail(err, errsz, "%s: corrupt: the id inside differs", path);
	}
	return 0;
}

int
queue_save(const char *spool, const struct queue_entry *e, char *err, size_t errsz)
{
	char path[PATH_MAX];
	size_t len;
	char *text;

	if (!queue_id_valid(e->id))
		return fail(err, errsz, "bad queue id");
	if (path_of(path, sizeof(path), spool, e->id, ".env") == -1)
		return fail(err, errsz, "%s/%s.env: %s", spool, e->id, strerror(errno));
	if ((text = queue_env_format(e, &len)) == NULL)
		return fail(err, errsz, "%s: out of memory", path);
	if (write_replace(path, text, len) == -1) {
		free(text);
		return fail(err, errsz, "%s: %s", path, strerror(errno));
	}
	free(text);
	if (fileio_sync_dir(spool) == -1)
		return fail(err, errsz, "%s: %s", spool, strerror(errno));
	return 0;
}

/* Unlinks ID.msg, then ID.env; the directory is synced only with sync. */
static int
remove_entry(const char *spool, const char *id, int sync, char *err, size_t errsz)
{
	char path[PATH_MAX];

	if (!queue_id_valid(id))
		return fail(err, errsz, "bad queue id");
	/* The message first: it may carry the entry's first envelope, and a
	 * process killed in between leaves an ID.env without its message,
	 * which is no entry (queue_load) and is swept, rather than that
	 * first envelope, which would be the entry again from its start. */
	if (path_of(path, sizeof(path), spool, id, ".msg") == -1 ||
	    (unlink(path) == -1 && errno != ENOENT))
		return fail(err, errsz, "%s: %s", path, strerror(errno));
	if (path_of(path, sizeof(path), spool, id, ".env") == -1 ||
	    (unlink(path) == -1 && errno != ENOENT))
		return fail(err, errsz, "%s: %s", path, strerror(errno));
	if (sync && fileio_sync_dir(spool) == -1)
		return fail(err, errsz, "%s: %s", spool, strerror(errno));
	return 0;
}

int
queue_remove(const char *spool, const char *id, char *err, size_t errsz)
{
	return remove_entry(spool, id, 1, err, errsz);
}

int
queue_remove_finished(const char *spool, const char *id, char *err, size_t errsz)
{
	return remove_entry(spool, id, 0, err, errsz);
}

int
queue_quarantine(const char *spool, const char *id, char *err, size_t errsz)
{
	static const char *const exts[] = { ".env", ".msg" };
	char dir[PATH_MAX], from[PATH_MAX], to[PATH_MAX], name[QUEUE_ID_MAX + 8];

	if (!queue_id_valid(id))
		return fail(err, errsz, "bad queue id");
	if (path_of(dir, sizeof(dir), spool, "corrupt", "") == -1 ||
	    (mkdir(dir, 0700) == -1 && errno != EEXIST))
		return fail(err, errsz, "%s/corrupt: %s", spool, strerror(errno));
	for (size_t i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "%s%s", id, exts[i]);
		if (path_of(from, sizeof(from), spool, name, "") == -1 ||
		    path_of(to, sizeof(to), dir, name, "") == -1)
			return fail(err, errsz, "%s: %s", name, strerror(errno));
		if (rename(from, to) == -1 && errno != ENOENT)
			return fail(err, errsz, "%s: %s", from, strerror(errno));
	}
	if (fileio_sync_dir(dir) == -1 || fileio_sync_dir(spool) == -1)
		return fail(err, errsz, "%s: %s", spool, strerror(errno));
	return 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
queue_list_ids(const char *spool, char ***ids, size_t *n, char *err, size_t errsz)
{
	char **v = NULL, **grown, name[QUEUE_ID_MAX];
	size_t cnt = 0, cap = 0, len;
	struct dirent *de;
	DIR *d;

	*ids = NULL;
	*n = 0;
	if ((d = opendir(spool)) == NULL)
		return fail(err, errsz, "%s: %s", spool, strerror(errno));
	while ((errno = 0, de = readdir(d)) != NULL) {
		/* An entry is an ID.env, or the ID.msg of a first entry (its
		 * envelope in front); both may be there: one id, once. */
		len = strlen(de->d_name);
		if (len < 5 || len - 4 >= QUEUE_ID_MAX)
			continue;
		if (strcmp(de->d_name + len - 4, ".env") != 0 &&
		    strcmp(de->d_name + len - 4, ".msg") != 0)
			continue;
		memcpy(name, de->d_name, len - 4);
		name[len - 4] = '\0';
		if (!queue_id_valid(name) || (de->d_name[len - 3] == 'm' && !first_entry(name)))
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			if ((grown = realloc(v, cap * sizeof(*v))) == NULL)
				goto nomem;
			v = grown;
		}
		if ((v[cnt] = strdup(name)) == NULL)
			goto nomem;
		cnt++;
	}
	if (errno != 0) {
		fail(err, errsz, "%s: %s", spool, strerror(errno));
		goto fail;
	}
	closedir(d);
	if (cnt > 0)
		qsort(v, cnt, sizeof(*v), cmp_str);
	for (size_t i = 1, k = 1; i <= cnt; i++) {
		if (i == cnt) {
			cnt = cnt > 0 ? k : 0;
			break;
		}
		if (strcmp(v[i], v[k - 1]) == 0)
			free(v[i]);
		else
			v[k++] = v[i];
	}
	*ids = v;
	*n = cnt;
	return 0;
nomem:
	fail(err, errsz, "%s: out of memory", spool);
fail:
	for (size_t i = 0; i < cnt; i++)
		free(v[i]);
	free(v);
	closedir(d);
	return -1;
}

/* Whether name is "ID.msg" (1), a temporary "ID.env.XXXXXX" or
 * "ID.msg.XXXXXX" (2) or "ID.env" (3) for a valid ID; 0 for anything else.
 * The id is copied into id. */
static int
sweep_kind(const char *name, char id[QUEUE_ID_MAX])
{
	const char *dot = strchr(name, '.');
	size_t n;

	if (dot == NULL || (n = (size_t)(dot - name)) >= QUEUE_ID_MAX)
		return 0;
	memcpy(id, name, n);
	id[n] = '\0';
	if (!queue_id_valid(id))
		return 0;
	if (strcmp(dot, ".msg") == 0)
		return 1;
	if ((strncmp(dot, ".env.", 5) == 0 || strncmp(dot, ".msg.", 5) == 0) &&
	    strlen(dot + 5) == 6)
		return 2;
	if (strcmp(dot, ".env") == 0)
		return 3;
	return 0;
}

int
queue_sweep(const char *spool, time_t before, char *err, size_t errsz)
{
	char path[PATH_MAX], env[PATH_MAX], id[QUEUE_ID_MAX];
	struct dirent *de;
	struct stat st;
	int kind, removed = 0;
	DIR *d;

	if ((d = opendir(spool)) == NULL)
		return fail(err, errsz, "%s: %s", spool, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if ((kind = sweep_kind(de->d_name, id)) == 0 ||
		    path_of(path, sizeof(path), spool, de->d_name, "") == -1 ||
		    lstat(path, &st) == -1 || !S_ISREG(st.st_mode) || st.st_mtime >= before)
			continue;
		/* A message file is an orphan only without its envelope,
		 * which the first entry's carries in front; an envelope is
		 * one only with its message. */
		if (kind == 1 &&
		    (first_entry(id) || path_of(env, sizeof(env), spool, id, ".env") == -1 ||
			access(env, F_OK) == 0 || errno != ENOENT))
			continue;
		if (kind == 3 &&
		    (path_of(env, sizeof(env), spool, id, ".msg") == -1 || access(env, F_OK) == 0 ||
			errno != ENOENT))
			continue;
		if (unlink(path) == 0)
			removed++;
	}
	closedir(d);
	if (removed > 0 && fileio_sync_dir(spool) == -1)
		return fail(err, errsz, "%s: %s", spool, strerror(errno));
	return removed;
}

int
queue_read_body(const char *spool, const char *id, char **msg, size_t *len, char *err, size_t errsz)
{
	char path[PATH_MAX];
	ssize_t off;

	if (!queue_id_valid(id))
		return fail(err, errsz, "bad queue id");
	if (path_of(path, sizeof(path), spool, id, ".msg") == -1 ||
	    read_all(path, SIZE_MAX - 1, msg, len) == -1)
		return fail(err, errsz, "%s: %s", path, strerror(errno));
	/* What follows the envelope in front. */
	if ((off = envelope_end(*msg, *len)) <= 0) {
		free(*msg);
		*msg = NULL;
		return fail(err, errsz, "%s: corrupt: no envelope in front", path);
	}
	memmove(*msg, *msg + off, *len - (size_t)off + 1);
	*len -= (size_t)off;
	return 0;
}

int
queue_lock(const char *spool, const char *id)
{
	char path[PATH_MAX];
	int fd, saved;

	if (!queue_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if (path_of(path, sizeof(path), spool, id, ".msg") == -1)
		return -1;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

void
queue_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

int
queue_flush_request(const char *spool, const char *name, char *err, size_t errsz)
{
	char dir[PATH_MAX], path[PATH_MAX];

	if (strcmp(name, "all") != 0 && !queue_id_valid(name))
		return fail(err, errsz, "bad queue id");
	if (path_of(dir, sizeof(dir), spool, QUEUE_FLUSH_DIR, "") == -1 ||
	    path_of(path, sizeof(path), dir, name, "") == -1)
		return fail(err, errsz, "%s: %s", spool, strerror(errno));
	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		return fail(err, errsz, "%s: %s", dir, strerror(errno));
	/* Renamed into place, so a watcher sees it whole (IN_MOVED_TO). */
	if (write_replace(path, "", 0) == -1)
		return fail(err, errsz, "%s: %s", path, strerror(errno));
	return 0;
}
