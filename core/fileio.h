/* fileio.h - the write loops every file writer shares (the spool, the
 * deliverers, the message store): all bytes or an error, never a silent
 * short write. */
#ifndef LUAMTA_FILEIO_H
#define LUAMTA_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

/* Writes all n bytes at the descriptor's offset. A short write (a signal,
 * a quota, a file size limit) is followed by another, which then reports
 * the real error. 0, or -1 with errno. */
int fileio_write(int fd, const void *p, size_t n);
/* The same at offset off (pwrite): a failed call leaves nothing to undo,
 * the next one starts at the same place. */
int fileio_pwrite(int fd, const void *p, size_t n, off_t off);
/* fsync of a directory by path: what makes a rename, link or unlink in it
 * durable. 0, or -1 with errno. */
int fileio_sync_dir(const char *dir);

#endif
