/* http.c - luamta.http.request on libcurl's multi-socket interface.
 *
 * curl says which sockets to watch (http_on_socket) and when to call it
 * back (http_on_timer); libev watches them and calls
 * curl_multi_socket_action(). Finished transfers are read with
 * curl_multi_info_read() once curl_multi_socket_action() has returned, and
 * only then are hooks woken: a woken hook may end its session or another
 * one, cancelling a request that curl must not see freed under its feet.
 * So every request that is over (answered, failed before it started, or
 * cancelled) goes through one queue, drained outside curl: right after the
 * finished transfers were read, or from an ev_prepare before the loop next
 * waits. A cancel callback only queues.
 * A little over 800 lines on purpose: curl's callbacks, the queue and the
 * request's lifetime are one discipline and read best together.
 *
 * Names are resolved by curl's threaded resolver (Debian's libcurl is built
 * with it): a lookup runs in a helper thread, never in the loop, and curl
 * polls for its end with its timer. Pooling is curl's connection cache in
 * the multi handle. */
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <ev.h>
#include <lauxlib.h>

#include "hook.h"
#include "http_parse.h"
#include "log.h"

#define HTTP_WHAT             "luamta.http.request"
#define HTTP_TIMEOUT_DEFAULT  10.0 /* seconds, from connect to the last byte */
#define HTTP_TIMEOUT_MAX      3600.0
#define HTTP_MAX_BODY_DEFAULT (16L << 20)
#define HTTP_MAX_BODY_MAX     (1L << 30)
#define HTTP_HEAD_MAX         (64 * 1024) /* a response's header block, bytes */
#define HTTP_FIELDS_MAX       100         /* request header fields */
#define HTTP_METHOD_MAX       32
#define HTTP_URL_MAX          8192
#define HTTP_MAXCONNECTS      32 /* idle connections the cache keeps */
#define HTTP_MAXREDIRS        5

enum http_big {
	HTTP_FITS = 0,
	HTTP_BODY_BIG, /* past max_body */
	HTTP_HEAD_BIG, /* past HTTP_HEAD_MAX */
};

struct http_req {
	CURL *easy;
	struct curl_slist *fields;    /* owned: the request's header fields */
	struct hook_run *run;         /* the waiting hook; NULL once cancelled */
	struct http_req *prev, *next; /* http.reqs: every request alive */
	struct http_req *qnext;       /* http.queue, while queued */
	int queued;
	int in_multi;
	const char *error; /* a failure before the transfer began (static text) */
	enum http_big big;
	CURLcode result;
	char *body; /* owned: the last response's body */
	size_t blen, bcap, bmax;
	char *head; /* owned: the last response's header lines */
	size_t hlen, hcap;
	char errbuf[CURL_ERROR_SIZE];
};

/* One socket curl asked us to watch; curl_multi_assign() ties it to the fd. */
struct http_sock {
	ev_io io;
	struct http_sock *prev, *next;
};

/* Per worker, made on first use. */
static struct {
	int curl_ready; /* curl_global_init() done */
	CURLM *multi;
	struct ev_loop *loop; /* the hooks' loop, known from the first park */
	ev_timer timer;       /* curl's timeout */
	ev_prepare later;     /* drains the queue before the loop waits */
	struct http_req *reqs;
	struct http_req *queue, *qtail;
	struct http_sock *socks;
	/* The next request, allocated before its hook parks: hook_park() may
	 * raise, and then nothing is lost; after it, nothing can fail that
	 * could not be answered as nil, err. */
	struct http_req *spare;
} http;

struct http_opts {
	const char *method, *url, *body, *cafile;
	size_t blen;
	int has_body;
	int has_expect, has_ctype; /* the script set these fields itself */
	int nfields;               /* "Name: value" strings in a table */
	double timeout;
	lua_Integer max_body;
	int follow, verify;
};

static const char *const http_opt_names[] = { "method", "url", "headers", "body", "timeout",
	"max_body", "follow", "verify", "cafile", NULL };

/* Where the options sit on the Lua stack while the call is checked. */
enum {
	HTTP_ARG_OPTS = 1,
	HTTP_ARG_URL,
	HTTP_ARG_METHOD,
	HTTP_ARG_BODY,
	HTTP_ARG_CAFILE,
	HTTP_ARG_HEADERS,
	HTTP_ARG_FIELDS, /* the fields as "Name: value" strings, an array */
};

/* Requests ---------------------------------------------------------------- */

static void
http_req_free(struct http_req *req)
{
	if (req->easy != NULL) {
		if (req->in_multi)
			curl_multi_remove_handle(http.multi, req->easy);
		curl_easy_cleanup(req->easy);
	}
	curl_slist_free_all(req->fields);
	free(req->body);
	free(req->head);
	if (req->prev != NULL)
		req->prev->next = req->next;
	else if (http.reqs == req)
		http.reqs = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	free(req);
}

/* The request is over for the hook: answered, failed or cancelled. */
static void
http_enqueue(struct http_req *req)
{
	if (req->queued)
		return;
	req->queued = 1;
	req->qnext = NULL;
	if (http.qtail != NULL)
		http.qtail->qnext = req;
	else
		http.queue = req;
	http.qtail = req;
	ev_prepare_start(http.loop, &http.later);
}

/* The hook's session ended while it waited. Called from inside hook code
 * (even from a wake in http_drain), maybe while curl is on the stack of
 * another caller: only mark and queue; http_drain frees. */
static void
http_cancel(void *arg)
{
	struct http_req *req = arg;

	log_info(hook_run_sid(req->run), "http.cancel");
	req->run = NULL;
	http_enqueue(req);
}

static int
http_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
	size_t ncap;
	char *nbuf;

	if (n > *cap - *len) {
		for (ncap = *cap > 0 ? *cap : 4096; ncap - *len < n; ncap *= 2)
			;
		if ((nbuf = realloc(*buf, ncap)) == NULL)
			return -1;
		*buf = nbuf;
		*cap = ncap;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	return 0;
}

/* CURLOPT_HEADERFUNCTION: one header line at a time, status lines too.
 * Answering with less than len fails the transfer (CURLE_WRITE_ERROR). */
static size_t
http_on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_req *req = arg;
	size_t len = size * nmemb;

	/* A new response (after a 100 Continue or a followed redirect): only
	 * the last one is the answer. */
	if (len >= 5 && memcmp(data, "HTTP/", 5) == 0)
		req->hlen = req->blen = 0;
	if (len > HTTP_HEAD_MAX - req->hlen) {
		req->big = HTTP_HEAD_BIG;
		return 0;
	}
	if (http_append(&req->head, &req->hlen, &req->hcap, data, len) == -1)
		return 0;
	return len;
}

/* CURLOPT_WRITEFUNCTION: the body, bounded here, since the script's memory
 * cap is not enforced outside Lua code. */
static size_t
http_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_req *req = arg;
	size_t len = size * nmemb;

	if (len > req->bmax - req->blen) {
		req->big = HTTP_BODY_BIG;
		return 0;
	}
	if (len > 0 && http_append(&req->body, &req->blen, &req->bcap, data, len) == -1)
		return 0;
	return len;
}

/* Results --------------------------------------------------------------- */

/* A short text for the failure; curl's own where nothing shorter fits. */
static const char *
http_strerror(struct http_req *req, char *buf, size_t size)
{
	long oserr = 0;

	if (req->error != NULL)
		return req->error;
	curl_easy_getinfo(req->easy, CURLINFO_OS_ERRNO, &oserr);
	switch (req->result) {
	case CURLE_OPERATION_TIMEDOUT:
		return "timeout";
	case CURLE_COULDNT_RESOLVE_HOST:
		return "could not resolve host";
	case CURLE_COULDNT_CONNECT:
		if (oserr == ECONNREFUSED)
			return "connection refused";
		if (oserr == ETIMEDOUT)
			return "timeout";
		break;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		if (oserr == ECONNRESET || oserr == EPIPE)
			return "reset";
		break;
	case CURLE_GOT_NOTHING:
		return "empty reply";
	case CURLE_PARTIAL_FILE:
		return "truncated reply";
	case CURLE_WRITE_ERROR:
		if (req->big == HTTP_BODY_BIG)
			return "response too large";
		if (req->big == HTTP_HEAD_BIG)
			return "response headers too large";
		return "out of memory";
	case CURLE_FILESIZE_EXCEEDED:
		return "response too large";
	case CURLE_PEER_FAILED_VERIFICATION:
		return "certificate verification failed";
	case CURLE_SSL_CACERT_BADFILE:
		return "cannot read cafile";
	case CURLE_TOO_MANY_REDIRECTS:
		return "too many redirects";
	case CURLE_OUT_OF_MEMORY:
		return "out of memory";
	default:
		break;
	}
	snprintf(buf, size, "%s",
	    req->errbuf[0] != '\0' ? req->errbuf : curl_easy_strerror(req->result));
	return buf;
}

/* The response's header fields as a table on co: names lower-cased, the
 * values of a repeated field joined with ", " (RFC 9110 5.3), a folded
 * line appended to its field's value after a space. */
static void
http_push_headers(lua_State *co, struct http_req *req)
{
	struct http_field f;
	char *p = req->head, *end = req->head + req->hlen, *nl;
	char *last = NULL; /* the name of the field a folded line continues */
	size_t lastlen = 0, len;
	int t;

	lua_newtable(co);
	t = lua_gettop(co);
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		switch (http_header_line(p, len, &f)) {
		case HTTP_LINE_FIELD:
			lua_pushlstring(co, f.name, f.nlen);
			lua_pushvalue(co, -1);
			if (lua_rawget(co, t) == LUA_TNIL) {
				lua_pop(co, 1);
				lua_pushlstring(co, f.value, f.vlen);
			} else {
				lua_pushliteral(co, ", ");
				lua_pushlstring(co, f.value, f.vlen);
				lua_concat(co, 3);
			}
			lua_rawset(co, t);
			last = f.name;
			lastlen = f.nlen;
			break;
		case HTTP_LINE_FOLD:
			if (last == NULL)
				break;
			lua_pushlstring(co, last, lastlen);
			lua_pushvalue(co, -1);
			lua_rawget(co, t);
			lua_pushliteral(co, " ");
			lua_pushlstring(co, f.value, f.vlen);
			lua_concat(co, 3);
			lua_rawset(co, t);
			break;
		case HTTP_LINE_SKIP:
			last = NULL;
			break;
		}
		p += len;
	}
}

/* Pushes the call's results onto co: the response table, or nil and an
 * error. Returns how many. */
static int
http_push(lua_State *co, struct http_req *req)
{
	char buf[CURL_ERROR_SIZE];
	long status = 0;

	if (!lua_checkstack(co, 8))
		return 0;
	if (req->error != NULL || req->result != CURLE_OK) {
		lua_pushnil(co);
		lua_pushstring(co, http_strerror(req, buf, sizeof(buf)));
		return 2;
	}
	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	lua_createtable(co, 0, 3);
	lua_pushliteral(co, "status");
	lua_pushinteger(co, status);
	lua_rawset(co, -3);
	lua_pushliteral(co, "headers");
	http_push_headers(co, req);
	lua_rawset(co, -3);
	lua_pushliteral(co, "body");
	lua_pushlstring(co, req->body != NULL ? req->body : "", req->blen);
	lua_rawset(co, -3);
	return 1;
}

/* Wakes the hooks of the requests that are over and frees every queued
 * request. Never called with curl on the stack. A wake may cancel other
 * requests (queued behind, or still in the multi) or start new ones: the
 * loop takes them as they come. */
static void
http_drain(void)
{
	struct http_req *req;
	struct hook_run *run;
	int n = 0;

	while ((req = http.queue) != NULL) {
		if ((http.queue = req->qnext) == NULL)
			http.qtail = NULL;
		req->queued = 0;
		run = req->run;
		req->run = NULL;
		if (run != NULL)
			n = http_push(hook_run_thread(run), req);
		http_req_free(req);
		if (run != NULL)
			hook_wake(run, n);
	}
	ev_prepare_stop(http.loop, &http.later);
}

/* Takes the finished transfers out of the multi, then drains. */
static void
http_collect(void)
{
	struct http_req *req;
	CURLMsg *m;
	char *priv;
	int left;

	while ((m = curl_multi_info_read(http.multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		priv = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
		req = (struct http_req *)(void *)priv;
		req->result = m->data.result;
		/* m is not to be read after this. */
		curl_multi_remove_handle(http.multi, req->easy);
		req->in_multi = 0;
		http_enqueue(req);
	}
	http_drain();
}

/* The loop side ----------------------------------------------------------- */

static void
http_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	int flags = 0, running;

	if (revents & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (revents & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	/* w may be freed inside (CURL_POLL_REMOVE): not touched afterwards. */
	curl_multi_socket_action(http.multi, w->fd, flags, &running);
	http_collect();
}

static void
http_on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	int running;

	curl_multi_socket_action(http.multi, CURL_SOCKET_TIMEOUT, 0, &running);
	http_collect();
}

static void
http_on_later(struct ev_loop *loop, ev_prepare *w, int revents)
{
	http_drain();
}

static void
http_sock_free(struct http_sock *hs)
{
	ev_io_stop(http.loop, &hs->io);
	if (hs->prev != NULL)
		hs->prev->next = hs->next;
	else
		http.socks = hs->next;
	if (hs->next != NULL)
		hs->next->prev = hs->prev;
	free(hs);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl wants, or stop. */
static int
http_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http_sock *hs = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (hs != NULL)
			http_sock_free(hs);
		return 0;
	}
	if (hs == NULL) {
		if ((hs = calloc(1, sizeof(*hs))) == NULL)
			return -1;
		ev_init(&hs->io, http_on_io);
		if ((hs->next = http.socks) != NULL)
			hs->next->prev = hs;
		http.socks = hs;
		curl_multi_assign(http.multi, fd, hs);
	}
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	ev_io_stop(http.loop, &hs->io);
	ev_io_set(&hs->io, fd, events);
	ev_io_start(http.loop, &hs->io);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl wants a call back in ms (-1: never). Even
 * at 0 it waits for the loop: curl must not be re-entered from here. */
static int
http_on_timer(CURLM *multi, long ms, void *userp)
{
	if (http.loop == NULL)
		return 0;
	ev_timer_stop(http.loop, &http.timer);
	if (ms >= 0) {
		ev_timer_set(&http.timer, (double)ms / 1000.0, 0);
		ev_timer_start(http.loop, &http.timer);
	}
	return 0;
}

/* libcurl once per process, the multi handle once per worker, and the
 * next request. NULL, or why not. */
static const char *
http_init(void)
{
	if (!http.curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return "cannot initialise libcurl";
		http.curl_ready = 1;
	}
	if (http.multi == NULL) {
		if ((http.multi = curl_multi_init()) == NULL)
			return "out of memory";
		curl_multi_setopt(http.multi, CURLMOPT_SOCKETFUNCTION, http_on_socket);
		curl_multi_setopt(http.multi, CURLMOPT_TIMERFUNCTION, http_on_timer);
		curl_multi_setopt(http.multi, CURLMOPT_MAXCONNECTS, (long)HTTP_MAXCONNECTS);
		ev_init(&http.timer, http_on_timeout);
		ev_prepare_init(&http.later, http_on_later);
	}
	if (http.spare == NULL && (http.spare = calloc(1, sizeof(*http.spare))) == NULL)
		return "out of memory";
	return NULL;
}

/* The easy handle for the checked options, in the multi. NULL, or why not. */
static const char *
http_setup(lua_State *L, struct http_req *req, const struct http_opts *o)
{
	struct curl_slist *l;
	CURLcode rc = CURLE_OK;
	CURL *e;
	long ms;

	if ((req->easy = e = curl_easy_init()) == NULL)
		return "out of memory";
	for (int i = 1; i <= o->nfields + 2; i++) {
		const char *field;

		if (i <= o->nfields) {
			lua_rawgeti(L, HTTP_ARG_FIELDS, i); /* a string: no allocation */
			field = lua_tostring(L, -1);
			lua_pop(L, 1);
		} else if (i == o->nfields + 1 && !o->has_expect) {
			/* No "Expect: 100-continue" wait before a large body. */
			field = "Expect:";
		} else if (i == o->nfields + 2 && o->has_body && !o->has_ctype) {
			/* Not curl's form type for a body the script did not label. */
			field = "Content-Type:";
		} else {
			continue;
		}
		if ((l = curl_slist_append(req->fields, field)) == NULL)
			return "out of memory";
		req->fields = l;
	}
	ms = (long)(o->timeout * 1000);
	if (ms < 1)
		ms = 1;
#define HTTP_SET(opt, val)                                                                         \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(e, opt, val);                                        \
	} while (0)
	HTTP_SET(CURLOPT_PRIVATE, (char *)req);
	HTTP_SET(CURLOPT_ERRORBUFFER, req->errbuf);
	HTTP_SET(CURLOPT_URL, o->url);
	/* No file://, dict://, gopher://...: not even through a redirect. */
	HTTP_SET(CURLOPT_PROTOCOLS_STR, "http,https");
	HTTP_SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	HTTP_SET(CURLOPT_NOSIGNAL, 1L);
	/* The environment's http_proxy is not the policy's business. */
	HTTP_SET(CURLOPT_PROXY, "");
	HTTP_SET(CURLOPT_USERAGENT, "luamta/" LUAMTA_VERSION);
	HTTP_SET(CURLOPT_TIMEOUT_MS, ms);
	HTTP_SET(CURLOPT_CONNECTTIMEOUT_MS, ms);
	HTTP_SET(CURLOPT_HEADERFUNCTION, http_on_header);
	HTTP_SET(CURLOPT_HEADERDATA, req);
	HTTP_SET(CURLOPT_WRITEFUNCTION, http_on_body);
	HTTP_SET(CURLOPT_WRITEDATA, req);
	/* Refused before a byte of the body when Content-Length says so. */
	HTTP_SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_body);
	HTTP_SET(CURLOPT_FOLLOWLOCATION, (long)o->follow);
	HTTP_SET(CURLOPT_MAXREDIRS, (long)HTTP_MAXREDIRS);
	HTTP_SET(CURLOPT_SSL_VERIFYPEER, (long)o->verify);
	HTTP_SET(CURLOPT_SSL_VERIFYHOST, o->verify ? 2L : 0L);
	if (o->cafile != NULL)
		HTTP_SET(CURLOPT_CAINFO, o->cafile);
	if (strcmp(o->method, "HEAD") == 0) {
		HTTP_SET(CURLOPT_NOBODY, 1L);
	} else if (strcmp(o->method, "GET") == 0 && !o->has_body) {
		HTTP_SET(CURLOPT_HTTPGET, 1L);
	} else {
		if (o->has_body) {
			HTTP_SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->blen);
			HTTP_SET(CURLOPT_COPYPOSTFIELDS, o->body);
		}
		HTTP_SET(CURLOPT_CUSTOMREQUEST, o->method);
	}
	HTTP_SET(CURLOPT_HTTPHEADER, req->fields);
#undef HTTP_SET
	if (rc != CURLE_OK)
		return curl_easy_strerror(rc);
	req->bmax = (size_t)o->max_body;
	if (curl_multi_add_handle(http.multi, e) != CURLM_OK)
		return "out of memory";
	req->in_multi = 1;
	return NULL;
}

/* The Lua side ------------------------------------------------------------ */

/* Pushes opts[name] (read raw); raises unless it is nil or of type want. */
static int
http_opt(lua_State *L, const char *name, int want, const char *what)
{
	int t;

	lua_pushstring(L, name);
	t = lua_rawget(L, HTTP_ARG_OPTS);
	if (t != LUA_TNIL && t != want)
		luaL_error(L, HTTP_WHAT ": %s must be %s, not %s", name, what, lua_typename(L, t));
	return t;
}

/* Each field of opts.headers as a "Name: value" string in a new array. */
static void
http_check_fields(lua_State *L, struct http_opts *o)
{
	const char *name, *value;
	size_t nlen, vlen;

	lua_newtable(L); /* HTTP_ARG_FIELDS */
	if (lua_isnil(L, HTTP_ARG_HEADERS))
		return;
	lua_pushnil(L);
	while (lua_next(L, HTTP_ARG_HEADERS) != 0) {
		/* [key, value] */
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, HTTP_WHAT ": header names must be strings");
		name = lua_tolstring(L, -2, &nlen);
		if (!http_token_ok(name, nlen))
			luaL_error(L, HTTP_WHAT ": bad header name '%s'", name);
		if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
			luaL_error(L, HTTP_WHAT ": header %s must be a string", name);
		/* A copy: lua_tolstring turns a number into a string in place. */
		lua_pushvalue(L, -1);
		value = lua_tolstring(L, -1, &vlen);
		if (!http_value_ok(value, vlen))
			luaL_error(L, HTTP_WHAT ": header %s holds CR, LF or NUL", name);
		if (++o->nfields > HTTP_FIELDS_MAX)
			luaL_error(L, HTTP_WHAT ": more than %d headers", HTTP_FIELDS_MAX);
		if (strcasecmp(name, "expect") == 0)
			o->has_expect = 1;
		if (strcasecmp(name, "content-type") == 0)
			o->has_ctype = 1;
		/* "Name;" is curl's way to send a field with an empty value. */
		if (vlen == 0)
			lua_pushfstring(L, "%s;", name);
		else
			lua_pushfstring(L, "%s: %s", name, value);
		lua_rawseti(L, HTTP_ARG_FIELDS, o->nfields);
		lua_pop(L, 2);
	}
}

/* Whether url is an absolute http:// or https:// URL curl can parse. */
static int
http_url_ok(const char *url)
{
	CURLU *u;
	char *scheme = NULL;
	int ok = 0;

	if ((u = curl_url()) == NULL)
		return 0;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK)
		ok = strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0;
	curl_free(scheme);
	curl_url_cleanup(u);
	return ok;
}

/* Reads and checks every option, raising on a bad one. Leaves the stack
 * as the HTTP_ARG_* positions say. */
static void
http_check(lua_State *L, struct http_opts *o)
{
	size_t len;
	int isnum;

	memset(o, 0, sizeof(*o));
	o->timeout = HTTP_TIMEOUT_DEFAULT;
	o->max_body = HTTP_MAX_BODY_DEFAULT;
	o->verify = 1;
	luaL_checktype(L, HTTP_ARG_OPTS, LUA_TTABLE);
	lua_settop(L, HTTP_ARG_OPTS);
	lua_pushnil(L);
	while (lua_next(L, HTTP_ARG_OPTS) != 0) {
		int i;

		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, HTTP_WHAT ": option names must be strings");
		for (i = 0; http_opt_names[i] != NULL; i++)
			if (strcmp(lua_tostring(L, -1), http_opt_names[i]) == 0)
				break;
		if (http_opt_names[i] == NULL)
			luaL_error(L, HTTP_WHAT ": unknown option '%s'", lua_tostring(L, -1));
	}

	if (http_opt(L, "url", LUA_TSTRING, "a string") == LUA_TNIL)
		luaL_error(L, HTTP_WHAT ": url is required");
	o->url = lua_tolstring(L, HTTP_ARG_URL, &len);
	if (len > HTTP_URL_MAX || strlen(o->url) != len || !http_url_ok(o->url))
		luaL_error(L, HTTP_WHAT ": url must be an http:// or https:// URL");

	if (http_opt(L, "method", LUA_TSTRING, "a string") == LUA_TSTRING) {
		o->method = lua_tolstring(L, HTTP_ARG_METHOD, &len);
		if (len > HTTP_METHOD_MAX || !http_token_ok(o->method, len))
			luaL_error(L, HTTP_WHAT ": bad method");
	}
	if (http_opt(L, "body", LUA_TSTRING, "a string") == LUA_TSTRING) {
		o->body = lua_tolstring(L, HTTP_ARG_BODY, &o->blen);
		o->has_body = 1;
	}
	if (o->method == NULL)
		o->method = o->has_body ? "POST" : "GET";
	if (strcmp(o->method, "POST") == 0 && !o->has_body) {
		o->body = "";
		o->has_body = 1;
	}
	if (o->has_body && strcmp(o->method, "HEAD") == 0)
		luaL_error(L, HTTP_WHAT ": a HEAD request has no body");
	if (http_opt(L, "cafile", LUA_TSTRING, "a string") == LUA_TSTRING) {
		o->cafile = lua_tolstring(L, HTTP_ARG_CAFILE, &len);
		if (strlen(o->cafile) != len)
			luaL_error(L, HTTP_WHAT ": bad cafile");
	}
	http_opt(L, "headers", LUA_TTABLE, "a table");

	if (http_opt(L, "timeout", LUA_TNUMBER, "a number") == LUA_TNUMBER) {
		o->timeout = lua_tonumber(L, -1);
		if (!(o->timeout > 0 && o->timeout <= HTTP_TIMEOUT_MAX))
			luaL_error(L, HTTP_WHAT ": timeout must be over 0 and at most %d seconds",
			    (int)HTTP_TIMEOUT_MAX);
	}
	lua_pop(L, 1);
	if (http_opt(L, "max_body", LUA_TNUMBER, "a number") == LUA_TNUMBER) {
		o->max_body = lua_tointegerx(L, -1, &isnum);
		if (!isnum || o->max_body < 0 || o->max_body > HTTP_MAX_BODY_MAX)
			luaL_error(L, HTTP_WHAT ": max_body must be an integer from 0 to %d",
			    (int)HTTP_MAX_BODY_MAX);
	}
	lua_pop(L, 1);
	if (http_opt(L, "follow", LUA_TBOOLEAN, "a boolean") == LUA_TBOOLEAN)
		o->follow = lua_toboolean(L, -1);
	lua_pop(L, 1);
	if (http_opt(L, "verify", LUA_TBOOLEAN, "a boolean") == LUA_TBOOLEAN)
		o->verify = lua_toboolean(L, -1);
	lua_pop(L, 1);
	http_check_fields(L, o);
}

/* luamta.http.request{ url =, method =, headers =, body =, timeout =,
 * max_body =, follow =, verify =, cafile = } -> { status =, headers =,
 * body = } or nil, err. Waits (parks the hook) for the answer. */
static int
http_request(lua_State *L)
{
	struct http_opts o;
	struct http_req *req;
	struct hook_run *run;
	const char *err;

	http_check(L, &o);
	if ((err = http_init()) != NULL) {
		luaL_pushfail(L);
		lua_pushstring(L, err);
		return 2;
	}
	req = http.spare;
	run = hook_park(L, HTTP_WHAT, http_cancel, req);
	http.spare = NULL;
	if (http.loop == NULL)
		http.loop = hook_run_loop(run);
	if ((req->next = http.reqs) != NULL)
		req->next->prev = req;
	http.reqs = req;
	req->run = run;
	/* Answered from the loop, never from here, even when it failed. */
	if ((req->error = http_setup(L, req, &o)) != NULL)
		http_enqueue(req);
	return lua_yield(L, 0);
}

void
http_lua_open(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "request", http_request },
		{ NULL, NULL },
	};

	luaL_newlib(L, funcs);
	lua_setfield(L, -2, "http");
}

void
http_shutdown(void)
{
	struct http_sock *hs;

	if (http.multi != NULL) {
		http.queue = http.qtail = NULL;
		while (http.reqs != NULL)
			http_req_free(http.reqs);
		/* Closing the cached connections may report their sockets
		 * removed (http_on_socket) and touch the timer: the watchers
		 * are stopped after, and the sockets left are freed. */
		curl_multi_cleanup(http.multi);
		if (http.loop != NULL) {
			ev_timer_stop(http.loop, &http.timer);
			ev_prepare_stop(http.loop, &http.later);
		}
		while ((hs = http.socks) != NULL)
			http_sock_free(hs);
	}
	free(http.spare);
	if (http.curl_ready)
		curl_global_cleanup();
	memset(&http, 0, sizeof(http));
}
