/* msgstore.c - one message's bytes: the beginning in memory, the whole of
 * it in an unnamed file once it outgrows its bound (see msgstore.h).
 *
 * Layout. head holds the prepended fields (pre bytes) followed by the
 * first appended bytes. Until the store spills, that is all there is.
 * When it spills, every appended byte so far is written to the file, which
 * from then on holds the appended bytes from the first one: the file's
 * flen bytes, then wlen bytes in wbuf not yet written. The head keeps its
 * copy of the first ones for header look-ups, and prepending still only
 * touches the head.
 *
 * Cutting a range out of the head (a removed header field) moves the rest
 * of the head down. Once spilled, the file keeps the cut bytes: cut counts
 * those of the appended part, so the head's copy then ends at appended
 * byte hlen - pre + cut, and the message offset off past the head is the
 * file offset off - pre + cut. */

#define _GNU_SOURCE /* O_TMPFILE, copy_file_range, mkostemp */

#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "msgstore.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

#define MSGSTORE_HEAD_MIN 4096 /* first allocation of the head; doubles after */

struct msgstore {
	const char *const *dirs; /* NULL: memory only */
	const char *dir;         /* the one that took the file */
	size_t mem_max;
	char *head;
	size_t hlen, hcap;
	size_t pre;  /* prepended bytes at the front of head */
	size_t cut;  /* appended bytes cut from the head while spilled */
	int fd;      /* -1 until spilled */
	size_t flen; /* appended bytes written to the file */
	char *wbuf;  /* MSGSTORE_WBUF bytes once spilled */
	size_t wlen;
};

struct msgstore *
msgstore_new(const char *const *dirs, size_t mem_max)
{
	struct msgstore *ms;

	if ((ms = calloc(1, sizeof(*ms))) == NULL)
		return NULL;
	ms->dirs = dirs;
	ms->mem_max = dirs != NULL ? mem_max : SIZE_MAX;
	ms->fd = -1;
	return ms;
}

struct msgstore *
msgstore_of(const char *p, size_t n)
{
	struct msgstore *ms = msgstore_new(NULL, 0);

	if (ms != NULL && msgstore_append(ms, p, n) == -1) {
		msgstore_free(ms);
		return NULL;
	}
	return ms;
}

void
msgstore_clear(struct msgstore *ms)
{
	free(ms->head);
	free(ms->wbuf);
	if (ms->fd != -1)
		close(ms->fd);
	ms->head = ms->wbuf = NULL;
	ms->hlen = ms->hcap = ms->pre = ms->cut = ms->flen = ms->wlen = 0;
	ms->fd = -1;
	ms->dir = NULL;
}

void
msgstore_free(struct msgstore *ms)
{
	if (ms == NULL)
		return;
	msgstore_clear(ms);
	free(ms);
}

/* An unnamed file in dir, read-write. Where the file system has no
 * O_TMPFILE, a named file is made and unlinked at once: the same file,
 * except for the instant a crash could leave it behind. */
static int
tmpfile_in(const char *dir)
{
	char path[PATH_MAX];
	int fd;

	if ((fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) != -1)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
		return -1;
	if (snprintf(path, sizeof(path), "%s/.msg.XXXXXX", dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = mkostemp(path, O_CLOEXEC)) == -1)
		return -1;
	(void)unlink(path);
	return fd;
}

/* Creates dir, and its parent when that is missing too. */
static int
mkdir_2(const char *dir)
{
	char parent[PATH_MAX];
	char *slash;

	if (mkdir(dir, 0700) == 0 || errno == EEXIST)
		return 0;
	if (errno != ENOENT || strlen(dir) >= sizeof(parent))
		return -1;
	memcpy(parent, dir, strlen(dir) + 1);
	if ((slash = strrchr(parent, '/')) == NULL || slash == parent)
		return -1;
	*slash = '\0';
	if (mkdir(parent, 0700) == -1 && errno != EEXIST)
		return -1;
	return mkdir(dir, 0700) == -1 && errno != EEXIST ? -1 : 0;
}

/* Moves the appended bytes so far to a new file and takes the write
 * buffer. On failure nothing changed; errno is the first directory's. */
static int
spill(struct msgstore *ms)
{
	int fd = -1, first = 0;

	if ((ms->wbuf = malloc(MSGSTORE_WBUF)) == NULL)
		return -1;
	for (size_t i = 0; ms->dirs[i] != NULL; i++) {
		fd = tmpfile_in(ms->dirs[i]);
		if (fd == -1 && errno == ENOENT && mkdir_2(ms->dirs[i]) == 0)
			fd = tmpfile_in(ms->dirs[i]);
		if (fd != -1) {
			ms->dir = ms->dirs[i];
			break;
		}
		if (i == 0)
			first = errno;
	}
	if (fd == -1) {
		errno = first != 0 ? first : ENOENT;
		goto fail;
	}
	if (fileio_pwrite(fd, ms->head + ms->pre, ms->hlen - ms->pre, 0) == -1)
		goto fail;
	ms->fd = fd;
	ms->flen = ms->hlen - ms->pre;
	ms->wlen = 0;
	return 0;
fail:
	first = errno;
	if (fd != -1)
		close(fd);
	free(ms->wbuf);
	ms->wbuf = NULL;
	ms->dir = NULL;
	errno = first;
	return -1;
}

/* Room for need more bytes in the head, doubling. */
static int
head_grow(struct msgstore *ms, size_t need)
{
	size_t cap;
	char *nhead;

	if (ms->hcap - ms->hlen >= need)
		return 0;
	if (need > SIZE_MAX / 2 - ms->hlen) {
		errno = ENOMEM;
		return -1;
	}
	cap = ms->hcap > 0 ? ms->hcap : MSGSTORE_HEAD_MIN;
	while (cap - ms->hlen < need)
		cap *= 2;
	/* Doubling stops at the bound; past it (prepended fields) the head
	 * grows by what is asked only. */
	if (ms->dirs != NULL && cap - ms->pre > ms->mem_max)
		cap = ms->hlen + need > ms->mem_max + ms->pre ? ms->hlen + need :
								ms->mem_max + ms->pre;
	if ((nhead = realloc(ms->head, cap)) == NULL)
		return -1;
	ms->head = nhead;
	ms->hcap = cap;
	return 0;
}

int
msgstore_append(struct msgstore *ms, const char *p, size_t n)
{
	size_t inhead, take;

	if (ms->fd == -1) {
		inhead = ms->hlen - ms->pre;
		take = ms->mem_max - inhead;
		if (take >= n)
			take = n;
		else if (ms->dirs == NULL) {
			/* Memory only: mem_max is SIZE_MAX, not reached. */
			errno = ENOMEM;
			return -1;
		}
		if (take > 0) {
			if (head_grow(ms, take) == -1)
				return -1;
			memcpy(ms->head + ms->hlen, p, take);
			ms->hlen += take;
		}
		if (take == n)
			return 0;
		if (spill(ms) == -1) {
			ms->hlen -= take; /* as before the call */
			return -1;
		}
		p += take;
		n -= take;
	}
	if (ms->wbuf == NULL && (ms->wbuf = malloc(MSGSTORE_WBUF)) == NULL)
		return -1;
	if (ms->wlen + n > MSGSTORE_WBUF) {
		if (fileio_pwrite(ms->fd, ms->wbuf, ms->wlen, (off_t)ms->flen) == -1)
			return -1;
		ms->flen += ms->wlen;
		ms->wlen = 0;
		if (n >= MSGSTORE_WBUF) {
			if (fileio_pwrite(ms->fd, p, n, (off_t)ms->flen) == -1)
				return -1;
			ms->flen += n;
			return 0;
		}
	}
	memcpy(ms->wbuf + ms->wlen, p, n);
	ms->wlen += n;
	return 0;
}

int
msgstore_cut(struct msgstore *ms, size_t off, size_t n)
{
	size_t pcut;

	if (off > ms->hlen || n > ms->hlen - off) {
		errno = EINVAL;
		return -1;
	}
	if (n == 0)
		return 0;
	/* The part of the range in the prepended fields, then the rest. */
	pcut = off < ms->pre ? (off + n < ms->pre ? n : ms->pre - off) : 0;
	if (ms->fd != -1)
		ms->cut += n - pcut;
	memmove(ms->head + off, ms->head + off + n, ms->hlen - off - n);
	ms->hlen -= n;
	ms->pre -= pcut;
	return 0;
}

int
msgstore_finish(struct msgstore *ms)
{
	if (ms->wbuf == NULL)
		return 0;
	if (fileio_pwrite(ms->fd, ms->wbuf, ms->wlen, (off_t)ms->flen) == -1)
		return -1;
	ms->flen += ms->wlen;
	ms->wlen = 0;
	free(ms->wbuf);
	ms->wbuf = NULL;
	return 0;
}

int
msgstore_prepend(struct msgstore *ms, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	if (head_grow(ms, n) == -1)
		return -1;
	memmove(ms->head + n, ms->head, ms->hlen);
	memcpy(ms->head, p, n);
	ms->hlen += n;
	ms->pre += n;
	return 0;
}

size_t
msgstore_len(const struct msgstore *ms)
{
	if (ms->fd == -1)
		return ms->hlen;
	return ms->pre + ms->flen + ms->wlen - ms->cut;
}

const char *
msgstore_head(const struct msgstore *ms, size_t *len)
{
	if (len != NULL)
		*len = ms->hlen;
	return ms->head != NULL ? ms->head : "";
}

int
msgstore_spilled(const struct msgstore *ms)
{
	return ms->fd != -1;
}

const char *
msgstore_dir(const struct msgstore *ms)
{
	return ms->dir;
}

size_t
msgstore_held(const struct msgstore *ms)
{
	return ms->hcap + (ms->wbuf != NULL ? MSGSTORE_WBUF : 0);
}

ssize_t
msgstore_piece(const struct msgstore *ms, size_t off, char *buf, size_t bufsz, const char **p)
{
	size_t d, want;
	ssize_t r;

	if (off < ms->hlen) {
		*p = ms->head + off;
		return (ssize_t)(ms->hlen - off);
	}
	if (ms->fd == -1)
		return 0;
	/* Past the head: d counts appended bytes, which the file holds from
	 * the first one (off >= hlen >= pre). */
	d = off - ms->pre + ms->cut;
	if (d < ms->flen) {
		want = ms->flen - d;
		if (want > bufsz)
			want = bufsz;
		if (want > SSIZE_MAX)
			want = SSIZE_MAX;
		do
			r = pread(ms->fd, buf, want, (off_t)d);
		while (r == -1 && errno == EINTR);
		if (r == 0) {
			errno = EIO; /* the file shrank under us */
			return -1;
		}
		*p = buf;
		return r;
	}
	if (d < ms->flen + ms->wlen) {
		*p = ms->wbuf + (d - ms->flen);
		return (ssize_t)(ms->flen + ms->wlen - d);
	}
	return 0;
}

int
msgstore_write(const struct msgstore *ms, int fd)
{
	size_t off = 0, len = msgstore_len(ms);
	const char *p;
	char *buf;
	ssize_t n;
	int saved;

	if (fileio_write(fd, ms->head, ms->hlen) == -1)
		return -1;
	if (ms->fd == -1)
		return 0;
	/* The file's part past the head, copied by the kernel where it can
	 * (no trip through user space; a reflink on some file systems). */
	off = ms->hlen;
	while (off < ms->pre + ms->flen - ms->cut) {
		loff_t in = (loff_t)(off - ms->pre + ms->cut);
		ssize_t c =
		    copy_file_range(ms->fd, &in, fd, NULL, ms->pre + ms->flen - ms->cut - off, 0);
		if (c > 0) {
			off += (size_t)c;
			continue;
		}
		if (c == -1 && errno == EINTR)
			continue;
		break; /* unsupported here, or an error the loop below reports */
	}
	if (off == len)
		return 0;
	if ((buf = malloc(MSGSTORE_WBUF)) == NULL)
		return -1;
	while (off < len) {
		if ((n = msgstore_piece(ms, off, buf, MSGSTORE_WBUF, &p)) <= 0) {
			if (n == 0)
				errno = EIO;
			goto fail;
		}
		if (fileio_write(fd, p, (size_t)n) == -1)
			goto fail;
		off += (size_t)n;
	}
	free(buf);
	return 0;
fail:
	saved = errno;
	free(buf);
	errno = saved;
	return -1;
}
