/* relay_route.c - from a destination to the hosts smtp_client tries: the
 * MX look-up and its rules (see relay_route.h), then the A and AAAA of
 * every host at once. */
#include "relay_route.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "dns.h"

struct rr_host;

/* The argument of one address query: which host, and which type. */
struct rr_query {
	struct rr_host *h;
	int which; /* 0: A, 1: AAAA */
};

struct rr_host {
	struct relay_route *rt;
	char *name;
	char *addrs[16]; /* owned: A first, then AAAA */
	size_t naddrs;
	struct dns_req *q[2]; /* A, AAAA in flight */
	char *got[2][8];      /* owned: each answer's addresses until both are in */
	size_t ngot[2];
	enum dns_err err[2];
	struct rr_query arg[2];
};

struct relay_route {
	struct ev_loop *loop;
	relay_route_cb *cb;
	void *arg;
	int port;
	char *dest;
	struct dns_req *mxq;
	struct rr_host *hosts;
	size_t nhosts;
	size_t pending; /* A/AAAA queries in flight */
	struct smtp_client_host *out;
	ev_timer later; /* an answer known at once goes out from the loop */
	int code;
	char text[300];
};

static void rr_resolve_hosts(struct relay_route *);

static void
rr_finish(struct relay_route *rt)
{
	struct relay_route_result res;
	size_t n = 0;

	memset(&res, 0, sizeof(res));
	res.port = rt->port;
	if (rt->code == 0 && rt->nhosts > 0) {
		int temporary = 0;

		rt->out = calloc(rt->nhosts, sizeof(*rt->out));
		for (size_t i = 0; rt->out != NULL && i < rt->nhosts; i++) {
			struct rr_host *h = &rt->hosts[i];

			if (h->naddrs == 0) {
				temporary |=
				    dns_err_temporary(h->err[0]) || dns_err_temporary(h->err[1]);
				continue;
			}
			rt->out[n].name = h->name;
			rt->out[n].addrs = (const char *const *)h->addrs;
			rt->out[n].naddrs = h->naddrs;
			n++;
		}
		if (rt->out == NULL) {
			rt->code = 451;
			snprintf(rt->text, sizeof(rt->text), "4.3.0 out of memory");
		} else if (n == 0) {
			rt->code = temporary ? 451 : 550;
			snprintf(rt->text, sizeof(rt->text), "%s no address for the hosts of %s",
			    temporary ? "4.4.3" : "5.4.4", rt->dest);
		}
	}
	res.code = rt->code;
	res.text = rt->text;
	res.hosts = rt->out;
	res.nhosts = n;
	rt->cb(rt->arg, &res);
}

static void
rr_on_later(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	rr_finish(w->data);
}

static void
rr_later(struct relay_route *rt)
{
	ev_timer_init(&rt->later, rr_on_later, 0, 0);
	rt->later.data = rt;
	ev_timer_start(rt->loop, &rt->later);
}

static int
rr_add_host(struct relay_route *rt, const char *name)
{
	struct rr_host *h;

	if (rt->nhosts == RELAY_ROUTE_MAX_MX)
		return 0;
	h = &rt->hosts[rt->nhosts];
	memset(h, 0, sizeof(*h));
	h->rt = rt;
	if ((h->name = strdup(name)) == NULL)
		return -1;
	rt->nhosts++;
	return 0;
}

/* The A (slot 0) or AAAA (slot 1) answer of one host; once both are in,
 * its addresses are A first, then AAAA. */
static void
rr_on_addr(void *arg, const struct dns_answer *ans)
{
	struct rr_query *q = arg;
	struct rr_host *h = q->h;
	int which = q->which;
	struct relay_route *rt = h->rt;

	h->q[which] = NULL;
	h->err[which] = ans->err;
	for (size_t i = 0; ans->err == DNS_OK && i < ans->nrr && h->ngot[which] < 8; i++)
		if ((h->got[which][h->ngot[which]] = strdup(ans->rr[i].data)) != NULL)
			h->ngot[which]++;
	if (h->q[0] == NULL && h->q[1] == NULL) {
		for (int k = 0; k < 2; k++)
			for (size_t i = 0; i < h->ngot[k]; i++) {
				h->addrs[h->naddrs++] = h->got[k][i];
				h->got[k][i] = NULL;
			}
	}
	if (--rt->pending == 0)
		rr_finish(rt);
}

static void
rr_resolve_hosts(struct relay_route *rt)
{
	static const int types[2] = { DNS_T_A, DNS_T_AAAA };
	unsigned char bin[16];

	for (size_t i = 0; i < rt->nhosts; i++) {
		struct rr_host *h = &rt->hosts[i];

		/* An address literal (a route's host "192.0.2.1"). */
		if (dns_addr_parse(h->name, bin) != 0) {
			if ((h->addrs[0] = strdup(h->name)) != NULL)
				h->naddrs = 1;
			continue;
		}
		for (int k = 0; k < 2; k++) {
			h->arg[k].h = h;
			h->arg[k].which = k;
			h->q[k] = dns_query(
			    rt->loop, h->name, types[k], RELAY_DNS_TIMEOUT, rr_on_addr, &h->arg[k]);
			if (h->q[k] != NULL)
				rt->pending++;
			else
				h->err[k] = DNS_SERVFAIL;
		}
	}
	if (rt->pending == 0)
		rr_later(rt);
}

static int
rr_cmp_pref(const void *a, const void *b)
{
	const struct dns_rr *x = a, *y = b;

	return (x->preference > y->preference) - (x->preference < y->preference);
}

static void
rr_on_mx(void *arg, const struct dns_answer *ans)
{
	struct relay_route *rt = arg;
	struct dns_rr *mx;
	size_t n;

	rt->mxq = NULL;
	if (ans->err == DNS_NODATA) {
		/* No MX: the domain is its own exchange (RFC 5321 5.1). */
		if (rr_add_host(rt, rt->dest) == -1)
			goto oom;
		rr_resolve_hosts(rt);
		return;
	}
	if (ans->err != DNS_OK) {
		if (dns_err_temporary(ans->err)) {
			rt->code = 451;
			snprintf(rt->text, sizeof(rt->text), "4.4.3 DNS: MX of %s: %s", rt->dest,
			    dns_err_str(ans->err));
		} else {
			rt->code = 550;
			snprintf(rt->text, sizeof(rt->text), "5.1.2 Domain %s not found", rt->dest);
		}
		rr_finish(rt);
		return;
	}
	/* A null MX (RFC 7505): the domain takes no mail. */
	for (size_t i = 0; i < ans->nrr; i++)
		if (ans->rr[i].data[0] == '\0' || strcmp(ans->rr[i].data, ".") == 0) {
			rt->code = 556;
			snprintf(rt->text, sizeof(rt->text),
			    "5.1.10 Domain %s does not accept mail (null MX)", rt->dest);
			rr_finish(rt);
			return;
		}
	/* Sorted from a bounded copy: only the best RELAY_ROUTE_MAX_MX are
	 * tried, but the choice among equals needs them all in view. */
	n = ans->nrr < 64 ? ans->nrr : 64;
	if ((mx = malloc(n * sizeof(*mx))) == NULL)
		goto oom;
	memcpy(mx, ans->rr, n * sizeof(*mx));
	qsort(mx, n, sizeof(*mx), rr_cmp_pref);
	/* Equal preferences in random order (RFC 5321 5.1). */
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && mx[j].preference == mx[i].preference)
			j++;
		/* Fisher-Yates over mx[i..j). */
		for (size_t m = j - i; m > 1; m--) {
			size_t a = i + m - 1, r = i + arc4random_uniform((uint32_t)m);
			struct dns_rr t = mx[a];
			mx[a] = mx[r];
			mx[r] = t;
		}
		i = j;
	}
	for (size_t i = 0; i < n; i++)
		if (rr_add_host(rt, mx[i].data) == -1) {
			free(mx);
			goto oom;
		}
	free(mx);
	rr_resolve_hosts(rt);
	return;
oom:
	rt->code = 451;
	snprintf(rt->text, sizeof(rt->text), "4.3.0 out of memory");
	rr_finish(rt);
}

struct relay_route *
relay_route_start(struct ev_loop *loop, const struct config *cfg, const struct queue_route *route,
    const char *dest, relay_route_cb *cb, void *arg)
{
	struct relay_route *rt;

	if ((rt = calloc(1, sizeof(*rt))) == NULL)
		return NULL;
	rt->loop = loop;
	rt->cb = cb;
	rt->arg = arg;
	ev_init(&rt->later, rr_on_later);
	if ((rt->dest = strdup(dest)) == NULL ||
	    (rt->hosts = calloc(RELAY_ROUTE_MAX_MX, sizeof(*rt->hosts))) == NULL) {
		relay_route_free(rt);
		return NULL;
	}
	if (route->socket != NULL) {
		rr_later(rt);
		return rt;
	}
	if (route->host != NULL) {
		rt->port = route->port != 0 ? route->port : route->lmtp ? 24 : 25;
		if (rr_add_host(rt, route->host) == -1) {
			relay_route_free(rt);
			return NULL;
		}
		rr_resolve_hosts(rt);
		return rt;
	}
	rt->port = route->port != 0 ? route->port : cfg->relay_port;
	if ((rt->mxq = dns_query(loop, dest, DNS_T_MX, RELAY_DNS_TIMEOUT, rr_on_mx, rt)) == NULL) {
		relay_route_free(rt);
		return NULL;
	}
	return rt;
}

void
relay_route_free(struct relay_route *rt)
{
	if (rt == NULL)
		return;
	ev_timer_stop(rt->loop, &rt->later);
	if (rt->mxq != NULL)
		dns_cancel(rt->mxq);
	for (size_t i = 0; rt->hosts != NULL && i < rt->nhosts; i++) {
		struct rr_host *h = &rt->hosts[i];

		for (int k = 0; k < 2; k++) {
			if (h->q[k] != NULL)
				dns_cancel(h->q[k]);
			for (size_t j = 0; j < h->ngot[k]; j++)
				free(h->got[k][j]);
		}
		for (size_t j = 0; j < h->naddrs; j++)
			free(h->addrs[j]);
		free(h->name);
	}
	free(rt->hosts);
	free(rt->out);
	free(rt->dest);
	free(rt);
}
