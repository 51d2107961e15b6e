/* delivery.c - local delivery: Maildir, mbox and a debugging dump to an fd.
 * Every call writes and fsyncs before it returns, so a 0 means the message
 * is on disk. Errors come back as text; logging and the SMTP reply are the
 * caller's business. Messages arrive with CRLF line endings from DATA. */

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "delivery.h"
#include "fileio.h"
#include "msgstore.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif
#ifndef HOST_NAME_MAX
#define HOST_NAME_MAX 255
#endif

/* "<secs>.M<usecs>P<pid>Q<counter>." is under 80 bytes; an escaped hostname
 * takes at most four bytes per character. */
#define DELIVERY_NAME_MAX (80 + 4 * HOST_NAME_MAX + 1)

/* Makes Maildir names unique within this process when two deliveries fall
 * in the same microsecond; the only mutable global in this file. */
static unsigned long delivery_maildir_seq;

/* Output goes through one buffer, written out as it fills: a message of
 * any size costs DELIVERY_BUF bytes of memory, and one that fits is one
 * write(). The state carries the line-ending and mboxrd rules across the
 * pieces a message is read in (msgstore_piece). */
#define DELIVERY_BUF (64 * 1024)

struct delivery_out {
	int fd;
	char *buf; /* DELIVERY_BUF bytes */
	size_t len;
	int err;   /* errno of the first failed write; nothing is written after */
	int bol;   /* at the start of a line */
	int cr;    /* a CR ended the last piece: dropped if an LF follows */
	size_t gt; /* '>' at the start of this line, not yet written */
	size_t fm; /* bytes of "From " after them, not yet written */
};

static const char *const delivery_wday[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *const delivery_mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
	"Sep", "Oct", "Nov", "Dec" };

static void delivery_err(char *, size_t, const char *, ...) __attribute__((format(printf, 3, 4)));

static void
delivery_err(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errsz == 0)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
}

/* "<kind> <op> <path>: <strerror(errno)>"; call it before anything that
 * may change errno. */
static void
delivery_syserr(char *err, size_t errsz, const char *kind, const char *op, const char *path)
{
	delivery_err(err, errsz, "%s: %s %s: %s", kind, op, path, strerror(errno));
}

static int
delivery_out_init(struct delivery_out *o, int fd)
{
	memset(o, 0, sizeof(*o));
	o->fd = fd;
	o->bol = 1;
	return (o->buf = malloc(DELIVERY_BUF)) != NULL ? 0 : -1;
}

/* Writes what the buffer holds. 0, or -1 with errno (also for an earlier
 * failure). */
static int
delivery_flush(struct delivery_out *o)
{
	if (o->err == 0 && o->len > 0 && fileio_write(o->fd, o->buf, o->len) == -1)
		o->err = errno;
	o->len = 0;
	errno = o->err;
	return o->err != 0 ? -1 : 0;
}

static void
delivery_put(struct delivery_out *o, const char *s, size_t n)
{
	size_t take;

	while (n > 0 && o->err == 0) {
		if (o->len == DELIVERY_BUF)
			(void)delivery_flush(o);
		take = DELIVERY_BUF - o->len < n ? DELIVERY_BUF - o->len : n;
		memcpy(o->buf + o->len, s, take);
		o->len += take;
		s += take;
		n -= take;
	}
}

static void
delivery_puts(struct delivery_out *o, const char *s)
{
	delivery_put(o, s, strlen(s));
}

/* Writes the '>' and "From" bytes held at the start of a line. */
static void
delivery_put_held(struct delivery_out *o)
{
	for (; o->gt > 0; o->gt--)
		delivery_put(o, ">", 1);
	delivery_put(o, "From ", o->fm);
	o->fm = 0;
}

/* One piece of the message with every line ending in a single LF: the CR
 * of a CRLF is dropped (a bare CR elsewhere is kept). With mboxrd set, a
 * line matching ^>*From  gets one more '>', which a reader strips again,
 * so quoting is reversible (unlike the older mboxo). The bytes that decide
 * (a CR at the end of a piece, the start of a line) are held in o until
 * the next piece shows what follows. */
static void
delivery_put_piece(struct delivery_out *o, const char *p, size_t n, int mboxrd)
{
	const char *end = p + n, *nl;
	size_t k;

	while (p < end) {
		if (o->cr) {
			o->cr = 0;
			if (*p != '\n')
				delivery_put(o, "\r", 1);
		}
		if (o->bol && mboxrd) {
			if (o->fm == 0 && *p == '>') {
				o->gt++;
				p++;
				continue;
			}
			if (*p == "From "[o->fm]) {
				p++;
				if (++o->fm < 5)
					continue;
				delivery_put(o, ">", 1);
			}
			delivery_put_held(o);
		}
		o->bol = 0;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL) {
			k = (size_t)(end - p);
			if (end[-1] == '\r') {
				k--;
				o->cr = 1;
			}
			delivery_put(o, p, k);
			return;
		}
		k = (size_t)(nl - p);
		if (k > 0 && nl[-1] == '\r')
			k--;
		delivery_put(o, p, k);
		delivery_put(o, "\n", 1);
		o->bol = 1;
		p = nl + 1;
	}
}

/* The whole message through delivery_put_piece; a last line without an
 * end gets one (its final CR dropped), so what follows always starts on a
 * line of its own. 0, or -1 with errno (a read of the store failed). */
static int
delivery_put_message(struct delivery_out *o, const struct msgstore *ms, int mboxrd)
{
	char buf[8192];
	const char *p;
	size_t off = 0;
	ssize_t n;

	while ((n = msgstore_piece(ms, off, buf, sizeof(buf), &p)) > 0) {
		delivery_put_piece(o, p, (size_t)n, mboxrd);
		off += (size_t)n;
	}
	if (n == -1)
		return -1;
	o->cr = 0;
	if (o->gt > 0 || o->fm > 0) {
		delivery_put_held(o);
		o->bol = 0;
	}
	if (!o->bol)
		delivery_put(o, "\n", 1);
	o->bol = 1;
	return 0;
}

/* Joins up to three components with '/'; c may be NULL. */
static int
delivery_path(char *buf, size_t bufsz, const char *a, const char *b, const char *c)
{
	int r;

	if (c == NULL)
		r = snprintf(buf, bufsz, "%s/%s", a, b);
	else
		r = snprintf(buf, bufsz, "%s/%s/%s", a, b, c);
	if (r < 0 || (size_t)r >= bufsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* mkdir -p: creates the missing parents of a Maildir too, as Postfix's
 * local(8) does for a home directory's Maildir, so "users/alice/Maildir"
 * works on first delivery. A component that exists as a file still fails. */
static int
delivery_mkdir_p(const char *dir)
{
	char path[PATH_MAX];
	size_t len = strlen(dir);

	if (mkdir(dir, 0700) == 0 || errno == EEXIST)
		return 0;
	if (errno != ENOENT || len >= sizeof(path))
		return -1;
	memcpy(path, dir, len + 1);
	for (char *p = path + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(path, 0700) == -1 && errno != EEXIST ? -1 : 0;
}

static int
delivery_maildir_mkdirs(const char *dir, char *err, size_t errsz)
{
	static const char *const sub[] = { "tmp", "new", "cur" };
	char path[PATH_MAX];
	size_t i;

	if (delivery_mkdir_p(dir) == -1) {
		delivery_syserr(err, errsz, "maildir", "mkdir", dir);
		return -1;
	}
	for (i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
		if (delivery_path(path, sizeof(path), dir, sub[i], NULL) == -1) {
			delivery_syserr(err, errsz, "maildir", "mkdir", dir);
			return -1;
		}
		if (mkdir(path, 0700) == -1 && errno != EEXIST) {
			delivery_syserr(err, errsz, "maildir", "mkdir", path);
			return -1;
		}
	}
	return 0;
}

/* "<secs>.M<usecs>P<pid>Q<counter>.<host>". The hostname is escaped
 * because '/' would make it a path and ':' starts the info part that
 * readers parse in cur/. */
static int
delivery_maildir_name(char *buf, size_t bufsz)
{
	struct timeval tv;
	char host[HOST_NAME_MAX + 1], esc[4 * HOST_NAME_MAX + 1];
	char *e;
	size_t i;
	int r;

	if (gethostname(host, sizeof(host)) == -1 || host[0] == '\0')
		(void)strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0'; /* POSIX allows truncation without NUL */
	for (i = 0, e = esc; host[i] != '\0'; i++) {
		if (host[i] == '/') {
			memcpy(e, "\\057", 4);
			e += 4;
		} else if (host[i] == ':') {
			memcpy(e, "\\072", 4);
			e += 4;
		} else
			*e++ = host[i];
	}
	*e = '\0';

	(void)gettimeofday(&tv, NULL);
	r = snprintf(buf, bufsz, "%lld.M%ldP%ldQ%lu.%s", (long long)tv.tv_sec, (long)tv.tv_usec,
	    (long)getpid(), ++delivery_maildir_seq, esc);
	if (r < 0 || (size_t)r >= bufsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int
delivery_maildir(
    const char *dir, const struct msgstore *ms, char *name, size_t namesz, char *err, size_t errsz)
{
	char uniq[DELIVERY_NAME_MAX], newdir[PATH_MAX];
	char tmppath[PATH_MAX], newpath[PATH_MAX];
	int fd = -1, dfd = -1, ret = -1, in_tmp = 0, in_new = 0, r;

	if (delivery_maildir_mkdirs(dir, err, errsz) == -1)
		return -1;
	if (delivery_maildir_name(uniq, sizeof(uniq)) == -1) {
		delivery_syserr(err, errsz, "maildir", "name in", dir);
		return -1;
	}
	/* Checked before writing: telling the caller "failed" after the
	 * message is in new/ would make the client send it twice. */
	if (name != NULL && strlen(uniq) >= namesz) {
		delivery_err(err, errsz,
		    "maildir: name buffer of %zu bytes too "
		    "small for %s",
		    namesz, uniq);
		return -1;
	}
	if (delivery_path(tmppath, sizeof(tmppath), dir, "tmp", uniq) == -1 ||
	    delivery_path(newpath, sizeof(newpath), dir, "new", uniq) == -1 ||
	    delivery_path(newdir, sizeof(newdir), dir, "new", NULL) == -1) {
		delivery_syserr(err, errsz, "maildir", "path in", dir);
		return -1;
	}

	/* O_EXCL: the name is unique, so an existing file means something
	 * else is wrong; never write into it. */
	if ((fd = open(tmppath, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600)) == -1) {
		delivery_syserr(err, errsz, "maildir", "open", tmppath);
		goto fail;
	}
	in_tmp = 1;
	if (msgstore_write(ms, fd) == -1) {
		delivery_syserr(err, errsz, "maildir", "write", tmppath);
		goto fail;
	}
	if (fsync(fd) == -1) {
		delivery_syserr(err, errsz, "maildir", "fsync", tmppath);
		goto fail;
	}
	/* close() may report a deferred write error (NFS). The descriptor is
	 * gone whatever it returns, so it is not retried. */
	r = close(fd);
	fd = -1;
	if (r == -1) {
		delivery_syserr(err, errsz, "maildir", "close", tmppath);
		goto fail;
	}
	/* The name is unique, so rename() cannot replace another message;
	 * it also works where hard links do not (some network and FAT
	 * file systems). */
	if (rename(tmppath, newpath) == -1) {
		delivery_syserr(err, errsz, "maildir", "rename to", newpath);
		goto fail;
	}
	in_tmp = 0;
	in_new = 1;
	/* The rename is durable only once the directory entry is. */
	if ((dfd = open(newdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		delivery_syserr(err, errsz, "maildir", "open", newdir);
		goto fail;
	}
	/* Some file systems cannot fsync a directory and say EINVAL; the
	 * rename is then as durable as they allow, and refusing would make
	 * such a Maildir unusable. */
	if (fsync(dfd) == -1 && errno != EINVAL) {
		delivery_syserr(err, errsz, "maildir", "fsync", newdir);
		goto fail;
	}
	if (name != NULL)
		memcpy(name, uniq, strlen(uniq) + 1);
	ret = 0;

fail:
	if (fd != -1)
		(void)close(fd);
	if (dfd != -1)
		(void)close(dfd);
	/* A failure tells the client to retry, so a copy left in new/ would
	 * be delivered twice and one in tmp/ would only be litter. */
	if (ret == -1 && in_tmp)
		(void)unlink(tmppath);
	if (ret == -1 && in_new)
		(void)unlink(newpath);
	return ret;
}

/* "From <sender> Www Mmm dd hh:mm:ss yyyy" in the asctime() layout. The
 * names come from fixed tables so the locale cannot change them, and the
 * time is UTC: the line has no zone field, so local time would be
 * ambiguous. Whitespace and control bytes in the sender (a quoted local
 * part may hold them) become '_' so the line stays one line of three
 * fields for readers that split it. */
static void
delivery_put_from(struct delivery_out *o, const char *sender, time_t now)
{
	struct tm tm;
	char date[64];
	const char *s;

	if (sender == NULL || sender[0] == '\0')
		sender = "MAILER-DAEMON";
	delivery_puts(o, "From ");
	for (s = sender; *s != '\0'; s++) {
		if ((unsigned char)*s <= ' ' || (unsigned char)*s == 0x7f)
			delivery_put(o, "_", 1);
		else
			delivery_put(o, s, 1);
	}
	if (gmtime_r(&now, &tm) == NULL)
		memset(&tm, 0, sizeof(tm)); /* 1900, but still one line */
	(void)snprintf(date, sizeof(date), " %s %s%3d %.2d:%.2d:%.2d %d\n",
	    delivery_wday[(unsigned)tm.tm_wday % 7], delivery_mon[(unsigned)tm.tm_mon % 12],
	    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, tm.tm_year + 1900);
	delivery_puts(o, date);
}

/* Takes both locks a reader may rely on, without waiting: an fcntl write
 * lock (procmail, mutt and Dovecot take it by default) and flock (the
 * BSDs' default, an option in Dovecot and mutt), the pair Postfix takes
 * with mailbox_delivery_lock = fcntl, flock. On Linux the two are
 * independent on local file systems, so a holder of one never sees the
 * other. Dot-locking is not done. Waiting is the caller's decision:
 * blocking here would stop every session of the process for as long as
 * a MUA keeps its mailbox locked. Returns 0 with both held,
 * DELIVERY_LOCKED when another process holds either, or -1 (errno);
 * *what names the lock tried last, for the error text. */
static int
delivery_mbox_lock(int fd, const char **what)
{
	struct flock lk;

	/* l_start 0 and l_len 0 from SEEK_SET: the whole file, however far
	 * it grows while locked. */
	memset(&lk, 0, sizeof(lk));
	lk.l_type = F_WRLCK;
	lk.l_whence = SEEK_SET;
	*what = "fcntl";
	if (fcntl(fd, F_SETLK, &lk) == -1)
		return errno == EACCES || errno == EAGAIN ? DELIVERY_LOCKED : -1;
	*what = "flock";
	if (flock(fd, LOCK_EX | LOCK_NB) == -1)
		return errno == EWOULDBLOCK ? DELIVERY_LOCKED : -1;
	return 0;
}

int
delivery_mbox(
    const char *path, const char *sender, const struct msgstore *ms, char *err, size_t errsz)
{
	struct delivery_out o;
	struct stat st;
	const char *lockname;
	int fd = -1, ret = -1, r;

	if (delivery_out_init(&o, -1) == -1) {
		delivery_syserr(err, errsz, "mbox", "buffer for", path);
		return -1;
	}
	/* O_NONBLOCK: a FIFO put where the mailbox should be would otherwise
	 * hang the open until a reader came; now it fails, or is refused
	 * below as not a regular file. Regular files ignore the flag. */
	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600)) == -1) {
		delivery_syserr(err, errsz, "mbox", "open", path);
		goto fail;
	}
	if ((r = delivery_mbox_lock(fd, &lockname)) != 0) {
		if (r == DELIVERY_LOCKED)
			delivery_err(
			    err, errsz, "mbox: %s: locked by another process (%s)", path, lockname);
		else
			delivery_syserr(err, errsz, "mbox", lockname, path);
		ret = r;
		goto fail; /* closing fd drops whichever lock was taken */
	}
	/* The size is read under the lock, so it is the end of the last
	 * complete message and a safe point to truncate back to. */
	if (fstat(fd, &st) == -1) {
		delivery_syserr(err, errsz, "mbox", "fstat", path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		delivery_err(err, errsz, "mbox: %s: not a regular file", path);
		goto fail;
	}
	o.fd = fd;
	delivery_put_from(&o, sender, time(NULL));
	if (delivery_put_message(&o, ms, 1) == -1 && o.err == 0)
		o.err = errno;
	delivery_put(&o, "\n", 1);
	if (delivery_flush(&o) == -1 || fsync(fd) == -1) {
		/* A partial message would corrupt the mailbox for every
		 * reader and the client will send it again anyway. An fsync
		 * failure counts too: the bytes may not be on disk. */
		char why[128];

		(void)snprintf(why, sizeof(why), "%s", strerror(errno));
		if (ftruncate(fd, st.st_size) == -1)
			delivery_err(err, errsz,
			    "mbox: write %s: %s; truncate "
			    "back to %lld: %s",
			    path, why, (long long)st.st_size, strerror(errno));
		else
			delivery_err(err, errsz, "mbox: write %s: %s", path, why);
		goto fail;
	}
	/* Closing also drops both locks. After a good fsync a close error is
	 * unlikely, but if it happens the caller tempfails: a possible
	 * duplicate is better than a lost message. */
	r = close(fd);
	fd = -1;
	if (r == -1) {
		delivery_syserr(err, errsz, "mbox", "close", path);
		goto fail;
	}
	ret = 0;

fail:
	if (fd != -1)
		(void)close(fd);
	free(o.buf);
	return ret;
}

int
delivery_print(int fd, const char *peer, const char *sender, const char *const *rcpts,
    size_t nrcpts, const struct msgstore *ms)
{
	struct delivery_out o;
	int ret = -1, saved;
	size_t i;

	/* A dump that fits the buffer is one write, so dumps from
	 * concurrent processes sharing a terminal or log stay whole (for
	 * pipes, up to PIPE_BUF only). */
	if (delivery_out_init(&o, fd) == -1)
		return -1;
	delivery_puts(&o, "---------- MESSAGE FOLLOWS ----------\n");
	delivery_puts(&o, "X-Peer: ");
	delivery_puts(&o, peer != NULL ? peer : "");
	delivery_puts(&o, "\nX-MailFrom: ");
	delivery_puts(&o, sender != NULL ? sender : "");
	delivery_puts(&o, "\nX-RcptTo: ");
	for (i = 0; i < nrcpts; i++) {
		if (i > 0)
			delivery_puts(&o, ", ");
		delivery_puts(&o, rcpts[i] != NULL ? rcpts[i] : "");
	}
	delivery_puts(&o, "\n");
	if (delivery_put_message(&o, ms, 0) == -1 && o.err == 0)
		o.err = errno;
	delivery_puts(&o, "------------ END MESSAGE ------------\n");
	if (delivery_flush(&o) == 0)
		ret = 0;
	saved = errno;
	free(o.buf);
	errno = saved;
	return ret;
}

int
delivery_file(const char *path, const struct msgstore *ms, char *err, size_t errsz)
{
	char tmp[PATH_MAX];
	int fd = -1;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
		delivery_err(err, errsz, "file: path too long: %s", path);
		return -1;
	}
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1) {
		delivery_syserr(err, errsz, "file", "open", tmp);
		return -1;
	}
	if (msgstore_write(ms, fd) == -1 || fsync(fd) == -1) {
		delivery_syserr(err, errsz, "file", "write", tmp);
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		delivery_syserr(err, errsz, "file", "close", tmp);
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1) {
		delivery_syserr(err, errsz, "file", "rename", path);
		goto fail;
	}
	return 0;
fail:
	if (fd != -1)
		close(fd);
	unlink(tmp);
	return -1;
}

int
delivery_append(const char *path, const char *data, size_t len, char *err, size_t errsz)
{
	int fd;

	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		delivery_syserr(err, errsz, "append", "open", path);
		return -1;
	}
	/* One write with O_APPEND: lines from several workers never mix. */
	if (fileio_write(fd, data, len) == -1 || fsync(fd) == -1) {
		delivery_syserr(err, errsz, "append", "write", path);
		close(fd);
		return -1;
	}
	if (close(fd) == -1) {
		delivery_syserr(err, errsz, "append", "close", path);
		return -1;
	}
	return 0;
}
