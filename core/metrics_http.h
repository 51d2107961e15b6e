/* metrics_http.h - --metrics: the one HTTP route, GET /metrics, answered
 * with metrics.h's text by the process that supervises (the master, or the
 * --foreground process), on its own event loop. Knows no SMTP. */
#ifndef LUAMTA_METRICS_HTTP_H
#define LUAMTA_METRICS_HTTP_H

#include <stddef.h>

#include <ev.h>

#define METRICS_HTTP_HEAD_MAX  8192  /* request line and fields */
#define METRICS_HTTP_TIMEOUT   10.0  /* seconds a scraper has for its request and our answer */
#define METRICS_HTTP_CLIENTS   64    /* at once; one more closes the oldest */
#define METRICS_QUEUE_SCAN_MAX 10000 /* entries counted in the spool per scrape */

/* main.c, with the SMTP listeners (before --user and any fork): binds
 * host:port and keeps the socket. 0, or -1 with a message in err. */
int metrics_http_bind(const char *host, int port, char *err, size_t errsz);
/* The bound socket, or -1 (for the ready file). */
int metrics_http_fd(void);
/* Starts answering on loop; spool is the queue directory counted at each
 * scrape (borrowed). Without a bound socket, does nothing. */
void metrics_http_start(struct ev_loop *, const char *spool);
/* Stops: closes the socket and every scraper's connection unanswered. In
 * a worker just forked, it lets go of the master's copies. Idempotent. */
void metrics_http_stop(void);

#endif
