/* smtp_pace.c - release a reply line by line (see smtp_pace.h). */
#include "smtp_pace.h"

#include <stdlib.h>
#include <string.h>

#include "conn.h"

struct smtp_pace {
	struct ev_loop *loop;
	struct conn *conn; /* borrowed */
	ev_timer timer;
	size_t len, off; /* off: released so far */
	int lines;       /* released so far */
	int drop_after;  /* -1: send it all */
	double delay;    /* seconds between lines */
	int over;        /* the last step ended it: end says how */
	enum smtp_pace_end end;
	smtp_pace_cb *done;
	void *arg;
	char buf[]; /* the reply */
};

static const char *const smtp_pace_end_names[] = { "done", "dropped", "failed" };

const char *
smtp_pace_end_str(enum smtp_pace_end e)
{
	return (unsigned)e < 3 ? smtp_pace_end_names[e] : "?";
}

/* Releases the next line. Returns 1 while the pace goes on, 0 when it is
 * over (p->end says how). */
static int
smtp_pace_step(struct smtp_pace *p)
{
	const char *lf;
	size_t n;

	p->over = 1;
	if (p->drop_after >= 0 && p->lines >= p->drop_after) {
		p->end = SMTP_PACE_DROPPED;
		return 0;
	}
	lf = memchr(p->buf + p->off, '\n', p->len - p->off);
	n = lf != NULL ? (size_t)(lf - (p->buf + p->off)) + 1 : p->len - p->off;
	if (conn_write(p->conn, p->buf + p->off, n) == -1) {
		p->end = SMTP_PACE_FAILED;
		return 0;
	}
	conn_flush(p->conn);
	p->off += n;
	p->lines++;
	if (p->off < p->len || (p->drop_after >= 0 && p->lines >= p->drop_after)) {
		p->over = 0;
		return 1;
	}
	p->end = SMTP_PACE_DONE;
	return 0;
}

static void
smtp_pace_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct smtp_pace *p = t->data;

	(void)revents;
	if (!p->over && smtp_pace_step(p)) {
		ev_timer_set(&p->timer, p->delay, 0);
		ev_timer_start(loop, &p->timer);
		return;
	}
	p->done(p, p->end, p->lines, p->arg);
}

struct smtp_pace *
smtp_pace_new(struct ev_loop *loop, struct conn *conn, const char *reply, size_t len, double delay,
    int drop_after, smtp_pace_cb *done, void *arg)
{
	struct smtp_pace *p;

	if ((p = calloc(1, sizeof(*p) + len)) == NULL)
		return NULL;
	memcpy(p->buf, reply, len);
	p->loop = loop;
	p->conn = conn;
	p->len = len;
	p->drop_after = drop_after;
	p->done = done;
	p->arg = arg;
	p->delay = delay;
	ev_timer_init(&p->timer, smtp_pace_on_timer, delay, 0);
	p->timer.data = p;
	/* The first line goes out with the replies before it; the end is
	 * always reported from the loop, even when it comes at once. */
	if (!smtp_pace_step(p))
		ev_timer_set(&p->timer, 0, 0);
	ev_timer_start(loop, &p->timer);
	return p;
}

void
smtp_pace_free(struct smtp_pace *p)
{
	if (p == NULL)
		return;
	ev_timer_stop(p->loop, &p->timer);
	free(p);
}
