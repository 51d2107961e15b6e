/* dns.c - c-ares on the libev loop. c-ares tells us which sockets to watch
 * (its socket state callback: one ev_io each) and when it next has to look
 * at its timeouts (ares_timeout: one ev_timer, re-armed after every call
 * into it). c-ares skips a server that answers SERVFAIL or REFUSED, or does
 * not answer, for the next, and retries a truncated UDP answer over TCP.
 *
 * Each request has a timer of its own, for two jobs: its caller's timeout
 * (c-ares's timeouts are per channel, not per query), and handing over
 * every answer on a later turn of the loop. So a caller's callback never
 * runs inside c-ares (where it could not cancel or ask again safely) nor
 * inside dns_query(). A request whose caller is gone (cancelled, or timed
 * out) while c-ares still holds it stays allocated until c-ares calls back,
 * since c-ares keeps its pointer.
 *
 * c-ares 1.18 reports a query that every server answered with SERVFAIL or
 * REFUSED as ARES_ECONNREFUSED, like a server that is down, and sends the
 * query ID it is given. So the query ID is random (an answer must be
 * guessed to be forged), and the socket functions below note the rcode of
 * each UDP answer by ID, to tell servfail from refused. */
#include "dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "config.h"
#include "dns_cache.h"
#include "log.h"

#define DNS_CLASS_IN   1
#define DNS_RCODE_NONE 0xff

struct dns_req {
	struct dns_req *prev, *next; /* dns.reqs */
	dns_cb *cb;                  /* NULL once the caller is gone */
	void *arg;
	int in_ares;               /* c-ares holds this request */
	enum dns_err err;          /* without an answer: timed out, or this */
	struct dns_answer *answer; /* owned; waiting to be handed over */
	int qtype;
	unsigned short qid;
	ev_timer timer;
	char name[]; /* as asked */
};

struct dns_io {
	struct dns_io *next;
	ev_io io;
};

static struct {
	struct ev_loop *loop;
	ares_channel channel;
	int failed; /* the channel could not be made: every query fails */
	ev_timer tick;
	struct dns_io *ios;
	struct dns_req *reqs;
	struct dns_cache *cache;
	struct config_resolver servers[CONFIG_RESOLVER_MAX];
	int nservers;
	unsigned char rcodes[65536]; /* the last UDP answer's rcode by query ID */
} dns;

static void dns_arm_tick(void);

static enum dns_err
dns_err_from_ares(int status)
{
	switch (status) {
	case ARES_ENOTFOUND:
		return DNS_NXDOMAIN;
	case ARES_ENODATA:
		return DNS_NODATA;
	case ARES_ETIMEOUT:
		return DNS_TIMEOUT;
	case ARES_EREFUSED:
	case ARES_ECONNREFUSED:
		return DNS_REFUSED;
	default:
		return DNS_SERVFAIL;
	}
}

void
dns_configure(const struct config *cfg)
{
	dns_shutdown();
	dns.nservers = cfg->nresolvers;
	memcpy(dns.servers, cfg->resolvers, sizeof(dns.servers));
}

/* Sockets and timeouts ------------------------------------------------ */

static void
dns_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	int fd = w->fd;

	(void)loop;
	/* w may be freed inside: c-ares closes sockets as it goes. */
	ares_process_fd(dns.channel, revents & EV_READ ? fd : ARES_SOCKET_BAD,
	    revents & EV_WRITE ? fd : ARES_SOCKET_BAD);
	dns_arm_tick();
}

static void
dns_on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_io **pp, *d;
	int events = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);

	(void)data;
	for (pp = &dns.ios; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->io.fd == fd)
			break;
	if ((d = *pp) != NULL)
		ev_io_stop(dns.loop, &d->io);
	if (events == 0) {
		if (d != NULL) {
			*pp = d->next;
			free(d);
		}
		return;
	}
	if (d == NULL) {
		/* Without a watcher the query cannot see its answer; it
		 * still ends, by c-ares's timeout. */
		if ((d = calloc(1, sizeof(*d))) == NULL) {
			log_warn(NULL, "dns.io error=\"out of memory\"");
			return;
		}
		d->next = dns.ios;
		dns.ios = d;
	}
	ev_io_init(&d->io, dns_on_io, fd, events);
	ev_io_start(dns.loop, &d->io);
}

static void
dns_on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	ares_process_fd(dns.channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_arm_tick();
}

static void
dns_arm_tick(void)
{
	struct timeval tv, *tvp;

	if (dns.channel == NULL)
		return;
	ev_timer_stop(dns.loop, &dns.tick);
	if ((tvp = ares_timeout(dns.channel, NULL, &tv)) == NULL)
		return;
	/* A millisecond late rather than early: woken early, c-ares would
	 * find nothing due and the loop would spin until it is. */
	ev_timer_set(&dns.tick, (double)tvp->tv_sec + tvp->tv_usec / 1e6 + 0.001, 0);
	ev_timer_start(dns.loop, &dns.tick);
}

/* The socket functions c-ares would use anyway, but for a look at the
 * header of each UDP answer (a TCP read has no from address). */
static ares_socket_t
dns_sock_open(int family, int type, int protocol, void *data)
{
	(void)data;
	return socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
}

static int
dns_sock_close(ares_socket_t fd, void *data)
{
	(void)data;
	return close(fd);
}

static int
dns_sock_connect(ares_socket_t fd, const struct sockaddr *sa, ares_socklen_t len, void *data)
{
	(void)data;
	return connect(fd, sa, len);
}

static ares_ssize_t
dns_sock_recvfrom(ares_socket_t fd, void *buf, size_t len, int flags, struct sockaddr *from,
    ares_socklen_t *fromlen, void *data)
{
	ssize_t n = recvfrom(fd, buf, len, flags, from, fromlen);
	const unsigned char *h = buf;

	(void)data;
	if (from != NULL && n >= 12 && (h[2] & 0x80))
		dns.rcodes[h[0] << 8 | h[1]] = h[3] & 0x0f;
	return n;
}

static ares_ssize_t
dns_sock_sendv(ares_socket_t fd, const struct iovec *iov, int iovcnt, void *data)
{
	(void)data;
	return writev(fd, iov, iovcnt);
}

static const struct ares_socket_functions dns_sock_funcs = {
	dns_sock_open,
	dns_sock_close,
	dns_sock_connect,
	dns_sock_recvfrom,
	dns_sock_sendv,
};

/* A random query ID. */
static unsigned short
dns_qid(void)
{
	static unsigned short ids[256];
	static size_t left;

	if (left == 0) {
		if (getrandom(ids, sizeof(ids), GRND_NONBLOCK) != (ssize_t)sizeof(ids)) {
			/* Rare (no entropy yet): still spread the IDs. */
			for (size_t i = 0; i < 256; i++)
				ids[i] =
				    (unsigned short)(ids[i] * 40503u + (unsigned)ev_time() + i);
		}
		left = 256;
	}
	return ids[--left];
}

/* The channel, made on the first query. */
static int
dns_init(struct ev_loop *loop)
{
	struct ares_options o;
	struct ares_addr_port_node nodes[CONFIG_RESOLVER_MAX];
	uint32_t seed = 0;
	int rc;

	if (dns.channel != NULL)
		return 0;
	if (dns.failed)
		return -1;
	dns.loop = loop;
	ev_init(&dns.tick, dns_on_tick);
	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS)
		goto fail;
	memset(&o, 0, sizeof(o));
	o.sock_state_cb = dns_on_sock_state;
	o.timeout = (int)(DNS_TRY_TIMEOUT * 1000);
	o.tries = DNS_TRIES;
	/* No search list or HOSTALIASES: names are asked as given. */
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	rc = ares_init_options(&dns.channel, &o,
	    ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS);
	if (rc != ARES_SUCCESS) {
		dns.channel = NULL;
		ares_library_cleanup();
		goto fail;
	}
	ares_set_socket_functions(dns.channel, &dns_sock_funcs, NULL);
	if (dns.nservers > 0) {
		memset(nodes, 0, sizeof(nodes));
		for (int i = 0; i < dns.nservers; i++) {
			struct ares_addr_port_node *n = &nodes[i];
			const struct config_resolver *r = &dns.servers[i];

			n->next = i + 1 < dns.nservers ? &nodes[i + 1] : NULL;
			n->family = r->family;
			if (r->family == AF_INET)
				memcpy(&n->addr.addr4, r->addr, 4);
			else
				memcpy(&n->addr.addr6, r->addr, 16);
			n->udp_port = n->tcp_port = r->port;
		}
		if ((rc = ares_set_servers_ports(dns.channel, nodes)) != ARES_SUCCESS) {
			ares_destroy(dns.channel);
			dns.channel = NULL;
			ares_library_cleanup();
			goto fail;
		}
	}
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
		seed = (uint32_t)ev_time();
	if ((dns.cache = dns_cache_new(DNS_CACHE_MAX, seed)) == NULL)
		log_warn(NULL, "dns.cache error=\"out of memory\"");
	return 0;
fail:
	log_error(NULL, "dns.init error=\"%s\"", ares_strerror(rc));
	dns.failed = 1;
	return -1;
}

/* Requests ------------------------------------------------------------ */

static void
dns_req_free(struct dns_req *req)
{
	ev_timer_stop(dns.loop, &req->timer);
	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		dns.reqs = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	dns_answer_free(req->answer);
	free(req);
}

/* Hands the answer (or the timeout) over to the caller. */
static void
dns_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct dns_req *req = w->data;
	struct dns_answer *ans = req->answer, none;
	dns_cb *cb = req->cb;
	void *arg = req->arg;

	(void)loop;
	(void)revents;
	req->answer = NULL;
	req->cb = NULL;
	if (ans == NULL) {
		memset(&none, 0, sizeof(none));
		none.err = req->err;
	}
	/* The caller may do anything in cb, so the request is settled first:
	 * c-ares frees one it still holds when it calls back. */
	if (req->in_ares)
		ev_timer_stop(dns.loop, &req->timer);
	else
		dns_req_free(req);
	cb(arg, ans != NULL ? ans : &none);
	dns_answer_free(ans);
}

/* Hands ans (owned; NULL: req->err) over on the next turn of the loop. */
static void
dns_req_answer(struct dns_req *req, struct dns_answer *ans)
{
	req->answer = ans;
	ev_timer_stop(dns.loop, &req->timer);
	ev_timer_set(&req->timer, 0, 0);
	ev_timer_start(dns.loop, &req->timer);
}

static void
dns_on_ares(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_req *req = arg;
	struct dns_answer *ans = NULL;

	(void)timeouts;
	req->in_ares = 0;
	if (status == ARES_EDESTRUCTION) {
		dns_req_free(req);
		return;
	}
	if (status == ARES_SUCCESS) {
		ans = dns_parse(abuf, (size_t)alen, req->name, req->qtype);
		/* A late answer still fills the cache for the next caller. */
		if (ans != NULL && ans->ttl > 0 && dns.cache != NULL)
			dns_cache_put(dns.cache, req->name, req->qtype, ans, ev_now(dns.loop));
	} else {
		req->err = dns_err_from_ares(status);
		if (status == ARES_ECONNREFUSED || status == ARES_ESERVFAIL ||
		    status == ARES_EREFUSED) {
			if (dns.rcodes[req->qid] == 2)
				req->err = DNS_SERVFAIL;
			else if (dns.rcodes[req->qid] == 5)
				req->err = DNS_REFUSED;
		}
	}
	if (req->cb == NULL) {
		dns_answer_free(ans);
		dns_req_free(req);
		return;
	}
	if (ans == NULL && status == ARES_SUCCESS)
		req->err = DNS_SERVFAIL; /* out of memory */
	dns_req_answer(req, ans);
}

/* Hands the query q to c-ares and arms the request's timeout. */
static void
dns_send(struct dns_req *req, unsigned char *q, int qlen, double timeout)
{
	req->in_ares = 1;
	req->qid = (unsigned short)(q[0] << 8 | q[1]);
	dns.rcodes[req->qid] = DNS_RCODE_NONE;
	/* c-ares may call back from inside ares_send (no server it can
	 * reach): dns_on_ares then arms the timer to hand the failure over
	 * later, and the timeout is not needed. */
	ares_send(dns.channel, q, qlen, dns_on_ares, req);
	dns_arm_tick();
	if (ev_is_active(&req->timer))
		return;
	if (!(timeout > 0) || timeout > DNS_TIMEOUT_MAX)
		timeout = DNS_TIMEOUT_MAX;
	ev_timer_set(&req->timer, timeout, 0);
	ev_timer_start(dns.loop, &req->timer);
}

struct dns_req *
dns_query(struct ev_loop *loop, const char *name, int qtype, double timeout, dns_cb *cb, void *arg)
{
	struct dns_req *req;
	struct dns_answer *hit = NULL;
	unsigned char *q;
	size_t len = strlen(name);
	int qlen, rc;

	if ((req = calloc(1, sizeof(*req) + len + 1)) == NULL)
		return NULL;
	memcpy(req->name, name, len + 1);
	req->cb = cb;
	req->arg = arg;
	req->qtype = qtype;
	req->err = DNS_TIMEOUT;
	ev_timer_init(&req->timer, dns_on_timer, 0, 0);
	req->timer.data = req;
	req->next = dns.reqs;
	if (dns.reqs != NULL)
		dns.reqs->prev = req;
	dns.reqs = req;

	if (dns_init(loop) == -1)
		req->err = DNS_SERVFAIL;
	else if (!dns_name_ok(name, len))
		req->err = DNS_NXDOMAIN;
	else if (dns.cache == NULL ||
	    (hit = dns_cache_get(dns.cache, name, qtype, ev_now(loop))) == NULL) {
		rc = ares_create_query(name, DNS_CLASS_IN, qtype, dns_qid(), 1, &q, &qlen, 0);
		if (rc != ARES_SUCCESS)
			req->err = rc == ARES_EBADNAME ? DNS_NXDOMAIN : DNS_SERVFAIL;
		else {
			dns_send(req, q, qlen, timeout);
			ares_free_string(q);
			return req;
		}
	}
	dns_req_answer(req, hit);
	return req;
}

void
dns_cancel(struct dns_req *req)
{
	if (req == NULL)
		return;
	req->cb = NULL;
	if (req->in_ares) {
		ev_timer_stop(dns.loop, &req->timer);
		dns_answer_free(req->answer);
		req->answer = NULL;
	} else
		dns_req_free(req);
}

void
dns_shutdown(void)
{
	struct dns_req *req, *next;

	/* Requests c-ares does not hold go now; it frees the others as it
	 * calls them back with ARES_EDESTRUCTION. */
	for (req = dns.reqs; req != NULL; req = next) {
		next = req->next;
		req->cb = NULL;
		if (!req->in_ares)
			dns_req_free(req);
	}
	if (dns.channel != NULL) {
		ares_destroy(dns.channel);
		dns.channel = NULL;
		ares_library_cleanup();
		ev_timer_stop(dns.loop, &dns.tick);
	}
	while (dns.ios != NULL) {
		struct dns_io *d = dns.ios;

		dns.ios = d->next;
		ev_io_stop(dns.loop, &d->io);
		free(d);
	}
	dns_cache_free(dns.cache);
	dns.cache = NULL;
	dns.failed = 0;
}
