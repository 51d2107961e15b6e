/* notify.h - tells a service manager how the server is doing, through
 * systemd's notification protocol (sd_notify(3)): READY=1 once it serves,
 * RELOADING=1 and READY=1 around a reload, STOPPING=1 when it drains, and a
 * STATUS= line for people. Without $NOTIFY_SOCKET every call does nothing.
 * When to say what is the caller's business (main, master, worker). */
#ifndef LUAMTA_NOTIFY_H
#define LUAMTA_NOTIFY_H

/* Reads $NOTIFY_SOCKET and removes it from the environment, so neither the
 * policy nor anything it runs (nor a forked worker) inherits it: systemd
 * hears from the main process only (NotifyAccess=main). An address that is
 * neither a path nor "@abstract", or too long, is ignored with a warning.
 * Call once, early, in the main process. */
void notify_init(void);

/* Whether a notification socket was given. */
int notify_enabled(void);

/* In a forked worker: forget the address, so whatever the worker runs
 * through (the same code as the foreground server) stays silent. */
void notify_forget(void);

/* Sends one datagram of newline-separated VAR=value assignments, formatted
 * as printf. Values must hold no newline (notify_clean() makes one safe).
 * A failure to send is logged at debug level and otherwise ignored: the
 * service manager may have gone, and serving goes on. */
void notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* RELOADING=1 with MONOTONIC_USEC= (the monotonic clock now, which
 * Type=notify-reload requires) and STATUS=Reloading. */
void notify_reloading(void);

/* Turns the control characters of s (newlines above all) into spaces, in
 * place: text fit for a STATUS= value. Returns s. */
char *notify_clean(char *s);

#endif
