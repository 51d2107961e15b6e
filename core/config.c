/* config.c - defaults and the command line. Every limit here names the RFC
 * that motivates its default; see README.md for the user-facing table. */
#include "config.h"
#include "version.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config_int.h"
#include "log.h"

static const char usage_text[] =
    "usage: luamta [--listen ADDR:PORT]... [--script FILE] [--hostname NAME]\n"
    "              [--max-size BYTES] [--max-recipients N] [--timeout SECS]\n"
    "              [--data-timeout SECS] [--max-connections N] [--max-per-ip N]\n"
    "              [--max-conn-rate N] [--limit-exempt CIDR,...|none]... [--max-errors N]\n"
    "              [--max-data-memory BYTES] [--xclient-trusted CIDR,...]...\n"
    "              [--listen-proxy ADDR:PORT]... [--listen-tls-proxy ADDR:PORT]...\n"
    "              [--listen-lmtp ADDR:PORT|unix:PATH]...\n"
    "              [--proxy-trusted CIDR,...|none]... [--proxy-timeout SECS]\n"
    "              [--bare-lf reject|fix|allow] [--log-level error|warn|info|debug]\n"
    "              [--log-format text|json]\n"
    "              [--ready-file FILE] [--hook-timeout SECS] [--hook-instructions N]\n"
    "              [--lua-memory BYTES] [--listen-tls ADDR:PORT]... [--tls-cert FILE]\n"
    "              [--tls-key FILE] [--tls-client-ca FILE] [--tls-timeout SECS]\n"
    "              [--require-tls] [--auth-plaintext] [--max-auth-failures N] [--watch]\n"
    "              [--workers N] [--foreground] [--shutdown-timeout SECS] [--user NAME]\n"
    "              [--watchdog SECS] [--capture DIR] [--stdio] [--resolver ADDR[:PORT]]...\n"
    "              [--spool DIR] [--relay-port PORT] [--retry-min SECS] [--retry-max SECS]\n"
    "              [--queue-lifetime SECS] [--delay-warning SECS] [--max-hops N]\n"
    "              [--delivery-concurrency N]\n"
    "              [--destination-concurrency N] [--connection-cache-time SECS]\n"
    "              [--metrics ADDR:PORT] [--check] [--version] [--help]\n"
    "       luamta queue list|show ID|flush [ID]|remove ID|hold ID|release ID [--json]\n"
    "              [--spool DIR]\n"
    "\n"
    "Connection limits (Postfix's smtpd_client_* in spirit):\n"
    "  --max-per-ip N        concurrent sessions per client address (default 50; 0: off)\n"
    "  --max-conn-rate N     new connections per client address per minute (default 0: off)\n"
    "  --max-errors N        error replies (4xx/5xx) a session may get without a message\n"
    "                        accepted, then 421 and close (default 20; 0: no limit)\n"
    "  --limit-exempt LIST   comma-separated networks spared both limits; the first use\n"
    "                        replaces the default 127.0.0.0/8,::1/128, later ones add,\n"
    "                        'none' empties the list\n"
    "  --max-data-memory B   per worker: message data held in memory (default 268435456)\n"
    "  --xclient-trusted LIST networks allowed to use XCLIENT (default: none)\n"
    "Behind a load balancer (PROXY protocol v1 and v2):\n"
    "  --listen-proxy A:P    a listener whose connections start with a PROXY header\n"
    "  --listen-tls-proxy A:P the same, with implicit TLS after the header\n"
    "  --proxy-trusted LIST  networks allowed to connect there; the first use replaces\n"
    "                        the default 127.0.0.0/8,::1/128, 'none' empties the list\n"
    "  --proxy-timeout SECS  for the header to arrive (default 5)\n"
    "Final delivery behind another MTA (LMTP, RFC 2033):\n"
    "  --listen-lmtp A:P     an LMTP listener: LHLO, then one reply per recipient\n"
    "  --listen-lmtp unix:PATH the same on a UNIX socket (mode 0660, removed on exit)\n"
    "Workers:\n"
    "  --watchdog SECS       kill and restart a worker that has neither turned its event\n"
    "                        loop nor started a hook for SECS (default 3 x --hook-timeout,\n"
    "                        at least 5; 0: off; not in --foreground or --stdio)\n"
    "DNS (luamta.dns):\n"
    "  --resolver ADDR[:PORT] a DNS server to ask instead of /etc/resolv.conf's; repeat it\n"
    "                        for more, asked in order (IPv6: [ADDR]:PORT; port 53 by default)\n"
    "Queue and relay (msg:relay):\n"
    "  --spool DIR           the queue (default " CONFIG_SPOOL_DEFAULT ")\n"
    "  --relay-port PORT     the port of MX hosts (default 25)\n"
    "  --retry-min SECS      first retry of a deferred recipient (default 300), then doubling\n"
    "  --retry-max SECS      up to this (default 4000)\n"
    "  --queue-lifetime SECS then the recipients left bounce (default 432000: 5 days)\n"
    "  --delay-warning SECS  warn the sender once of recipients still deferred after a\n"
    "                        message has waited this long (default 0: never)\n"
    "  --max-hops N          refuse a message with more Received: fields (default 50)\n"
    "  --delivery-concurrency N      deliveries at once, per process (default 100)\n"
    "  --destination-concurrency N   of them to one destination (default 20)\n"
    "  --connection-cache-time SECS  a next hop's connection waits this long for the\n"
    "                        next message to its destination (default 2; 0: none)\n"
    "Monitoring:\n"
    "  --metrics ADDR:PORT   answer GET /metrics here (Prometheus text format)\n";

enum {
	OPT_LISTEN = 256,
	OPT_SCRIPT,
	OPT_HOSTNAME,
	OPT_MAX_SIZE,
	OPT_MAX_RCPT,
	OPT_TIMEOUT,
	OPT_DATA_TIMEOUT,
	OPT_MAX_CONN,
	OPT_MAX_PER_IP,
	OPT_BARE_LF,
	OPT_LOG_LEVEL,
	OPT_LOG_FORMAT,
	OPT_READY_FILE,
	OPT_HOOK_TIMEOUT,
	OPT_HOOK_INSNS,
	OPT_LUA_MEMORY,
	OPT_CHECK,
	OPT_VERSION,
	OPT_HELP,
	OPT_LISTEN_TLS,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_TLS_CLIENT_CA,
	OPT_TLS_TIMEOUT,
	OPT_REQUIRE_TLS,
	OPT_AUTH_PLAINTEXT,
	OPT_MAX_AUTH_FAILURES,
	OPT_WATCH,
	OPT_WORKERS,
	OPT_FOREGROUND,
	OPT_SHUTDOWN_TIMEOUT,
	OPT_USER,
	OPT_CAPTURE,
	OPT_STDIO,
	OPT_MAX_CONN_RATE,
	OPT_MAX_DATA_MEMORY,
	OPT_LIMIT_EXEMPT,
	OPT_XCLIENT_TRUSTED,
	OPT_WATCHDOG,
	OPT_RESOLVER,
	OPT_SPOOL,
	OPT_RELAY_PORT,
	OPT_RETRY_MIN,
	OPT_RETRY_MAX,
	OPT_QUEUE_LIFETIME,
	OPT_DELAY_WARNING,
	OPT_MAX_HOPS,
	OPT_DELIVERY_CONC,
	OPT_DEST_CONC,
	OPT_CONN_CACHE_TIME,
	OPT_LISTEN_PROXY,
	OPT_LISTEN_TLS_PROXY,
	OPT_PROXY_TRUSTED,
	OPT_PROXY_TIMEOUT,
	OPT_METRICS,
	OPT_MAX_ERRORS,
	OPT_LISTEN_LMTP,
};

static const struct option long_opts[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "script", required_argument, NULL, OPT_SCRIPT },
	{ "hostname", required_argument, NULL, OPT_HOSTNAME },
	{ "max-size", required_argument, NULL, OPT_MAX_SIZE },
	{ "max-recipients", required_argument, NULL, OPT_MAX_RCPT },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "data-timeout", required_argument, NULL, OPT_DATA_TIMEOUT },
	{ "max-connections", required_argument, NULL, OPT_MAX_CONN },
	{ "max-per-ip", required_argument, NULL, OPT_MAX_PER_IP },
	{ "bare-lf", required_argument, NULL, OPT_BARE_LF },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
	{ "ready-file", required_argument, NULL, OPT_READY_FILE },
	{ "hook-timeout", required_argument, NULL, OPT_HOOK_TIMEOUT },
	{ "hook-instructions", required_argument, NULL, OPT_HOOK_INSNS },
	{ "lua-memory", required_argument, NULL, OPT_LUA_MEMORY },
	{ "check", no_argument, NULL, OPT_CHECK },
	{ "listen-tls", required_argument, NULL, OPT_LISTEN_TLS },
	{ "tls-cert", required_argument, NULL, OPT_TLS_CERT },
	{ "tls-key", required_argument, NULL, OPT_TLS_KEY },
	{ "tls-client-ca", required_argument, NULL, OPT_TLS_CLIENT_CA },
	{ "tls-timeout", required_argument, NULL, OPT_TLS_TIMEOUT },
	{ "require-tls", no_argument, NULL, OPT_REQUIRE_TLS },
	{ "auth-plaintext", no_argument, NULL, OPT_AUTH_PLAINTEXT },
	{ "max-auth-failures", required_argument, NULL, OPT_MAX_AUTH_FAILURES },
	{ "watch", no_argument, NULL, OPT_WATCH },
	{ "workers", required_argument, NULL, OPT_WORKERS },
	{ "foreground", no_argument, NULL, OPT_FOREGROUND },
	{ "shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT },
	{ "user", required_argument, NULL, OPT_USER },
	{ "capture", required_argument, NULL, OPT_CAPTURE },
	{ "stdio", no_argument, NULL, OPT_STDIO },
	{ "max-conn-rate", required_argument, NULL, OPT_MAX_CONN_RATE },
	{ "max-data-memory", required_argument, NULL, OPT_MAX_DATA_MEMORY },
	{ "limit-exempt", required_argument, NULL, OPT_LIMIT_EXEMPT },
	{ "xclient-trusted", required_argument, NULL, OPT_XCLIENT_TRUSTED },
	{ "listen-proxy", required_argument, NULL, OPT_LISTEN_PROXY },
	{ "listen-tls-proxy", required_argument, NULL, OPT_LISTEN_TLS_PROXY },
	{ "listen-lmtp", required_argument, NULL, OPT_LISTEN_LMTP },
	{ "proxy-trusted", required_argument, NULL, OPT_PROXY_TRUSTED },
	{ "proxy-timeout", required_argument, NULL, OPT_PROXY_TIMEOUT },
	{ "watchdog", required_argument, NULL, OPT_WATCHDOG },
	{ "resolver", required_argument, NULL, OPT_RESOLVER },
	{ "spool", required_argument, NULL, OPT_SPOOL },
	{ "relay-port", required_argument, NULL, OPT_RELAY_PORT },
	{ "retry-min", required_argument, NULL, OPT_RETRY_MIN },
	{ "retry-max", required_argument, NULL, OPT_RETRY_MAX },
	{ "queue-lifetime", required_argument, NULL, OPT_QUEUE_LIFETIME },
	{ "delay-warning", required_argument, NULL, OPT_DELAY_WARNING },
	{ "max-hops", required_argument, NULL, OPT_MAX_HOPS },
	{ "delivery-concurrency", required_argument, NULL, OPT_DELIVERY_CONC },
	{ "destination-concurrency", required_argument, NULL, OPT_DEST_CONC },
	{ "connection-cache-time", required_argument, NULL, OPT_CONN_CACHE_TIME },
	{ "metrics", required_argument, NULL, OPT_METRICS },
	{ "max-errors", required_argument, NULL, OPT_MAX_ERRORS },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static int
parse_num(const char *opt, const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "luamta: --%s: invalid value '%s' (%g..%g)\n", opt, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

/* "1.2.3.4:25", "[::1]:25" into l, for the option opt. The address must
 * be numeric: resolving names at startup would make binding depend on DNS. */
static int
parse_addr(const char *opt, struct config_listen *l, const char *s, int tls)
{
	const char *colon, *host = s;
	size_t hlen;
	double port;

	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':')
			goto bad;
		host = s + 1;
		hlen = (size_t)(rb - host);
		colon = rb + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			goto bad;
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= sizeof(l->host))
		goto bad;
	if (parse_num(opt, colon + 1, 0, 65535, &port) == -1)
		return -1;
	memcpy(l->host, host, hlen);
	l->host[hlen] = '\0';
	l->port = (int)port;
	l->tls = tls;
	l->proxy = 0;
	l->lmtp = 0;
	l->path = NULL;
	return 0;
bad:
	fprintf(stderr, "luamta: --%s: expected ADDR:PORT or [ADDR6]:PORT, got '%s'\n", opt, s);
	return -1;
}

/* A listener: --listen, --listen-tls, --listen-proxy, --listen-tls-proxy
 * (opt, for messages). */
static int
parse_listen(struct config *cfg, const char *opt, const char *s, int tls, int proxy)
{
	if (cfg->nlisten == CONFIG_LISTEN_MAX) {
		fprintf(stderr, "luamta: too many listeners (max %d)\n", CONFIG_LISTEN_MAX);
		return -1;
	}
	if (parse_addr(opt, &cfg->listen[cfg->nlisten], s, tls) == -1)
		return -1;
	cfg->listen[cfg->nlisten++].proxy = proxy;
	return 0;
}

/* --listen-lmtp ADDR:PORT or unix:PATH (an absolute path that fits a
 * sockaddr_un). */
static int
parse_listen_lmtp(struct config *cfg, const char *s)
{
	struct config_listen *l = &cfg->listen[cfg->nlisten];

	if (strncmp(s, "unix:", 5) != 0) {
		if (parse_listen(cfg, "listen-lmtp", s, 0, 0) == -1)
			return -1;
		cfg->listen[cfg->nlisten - 1].lmtp = 1;
		return 0;
	}
	if (cfg->nlisten == CONFIG_LISTEN_MAX) {
		fprintf(stderr, "luamta: too many listeners (max %d)\n", CONFIG_LISTEN_MAX);
		return -1;
	}
	if (s[5] != '/' || strlen(s + 5) >= CONFIG_UNIX_PATH_MAX) {
		fprintf(stderr,
		    "luamta: --listen-lmtp: expected unix: and an absolute path shorter than %d "
		    "bytes, got '%s'\n",
		    CONFIG_UNIX_PATH_MAX, s);
		return -1;
	}
	memset(l, 0, sizeof(*l));
	snprintf(l->host, sizeof(l->host), "unix");
	l->path = s + 5;
	l->lmtp = 1;
	cfg->nlisten++;
	return 0;
}

/* --resolver: "192.0.2.1", "192.0.2.1:5353", "2001:db8::1", "[2001:db8::1]:5353".
 * Numeric only: the resolver cannot ask itself where its servers are. */
static int
parse_resolver(struct config *cfg, const char *s)
{
	struct config_resolver *r;
	char host[64];
	const char *colon = NULL;
	size_t hlen;
	double port = 53;

	if (cfg->nresolvers == CONFIG_RESOLVER_MAX) {
		fprintf(stderr, "luamta: too many --resolver (max %d)\n", CONFIG_RESOLVER_MAX);
		return -1;
	}
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || (rb[1] != ':' && rb[1] != '\0'))
			goto bad;
		hlen = (size_t)(rb - s - 1);
		if (hlen >= sizeof(host))
			goto bad;
		memcpy(host, s + 1, hlen);
		colon = rb[1] == ':' ? rb + 1 : NULL;
	} else {
		/* More than one colon: a bare IPv6 address, without a port. */
		colon = strchr(s, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			colon = NULL;
		hlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
		if (hlen >= sizeof(host))
			goto bad;
		memcpy(host, s, hlen);
	}
	host[hlen] = '\0';
	r = &cfg->resolvers[cfg->nresolvers];
	memset(r, 0, sizeof(*r));
	if (inet_pton(AF_INET, host, r->addr) == 1 && *s != '[')
		r->family = AF_INET;
	else if (inet_pton(AF_INET6, host, r->addr) == 1)
		r->family = AF_INET6;
	else
		goto bad;
	if (colon != NULL && parse_num("resolver", colon + 1, 1, 65535, &port) == -1)
		return -1;
	r->port = (int)port;
	cfg->nresolvers++;
	return 0;
bad:
	fprintf(stderr,
	    "luamta: --resolver: expected ADDR, ADDR:PORT or [ADDR6]:PORT (numeric), got '%s'\n",
	    s);
	return -1;
}

int
config_parse(struct config *cfg, int argc, char **argv)
{
	enum log_level lvl;
	double v;
	int c, exempt_given = 0, proxy_given = 0;

	memset(cfg, 0, sizeof(*cfg));
	if (gethostname(cfg->hostname, sizeof(cfg->hostname) - 1) == -1 || cfg->hostname[0] == '\0')
		strcpy(cfg->hostname, "localhost");
	cfg->max_size = 32u << 20;
	cfg->max_recipients = 1000; /* Postfix smtpd_recipient_limit */
	cfg->timeout = 300;
	cfg->data_timeout = 300;
	cfg->max_connections = 1024;
	cfg->max_per_ip = 50;   /* Postfix smtpd_client_connection_count_limit */
	cfg->max_conn_rate = 0; /* Postfix smtpd_client_connection_rate_limit */
	cfg->max_data_memory = 256u << 20;
	/* A load balancer on this host only, until told otherwise. */
	if (config_parse_nets("proxy-trusted", cfg->proxy, &cfg->nproxy, "127.0.0.0/8,::1/128") ==
	    -1)
		return -1;
	cfg->proxy_timeout = 5; /* Postfix's smtpd_upstream_proxy_timeout */
	/* Postfix spares $mynetworks, which defaults to the host's own. */
	if (config_parse_nets("limit-exempt", cfg->exempt, &cfg->nexempt, "127.0.0.0/8,::1/128") ==
	    -1)
		return -1;
	cfg->watchdog = -1; /* from --hook-timeout, below */
	cfg->bare = SMTP_BARE_REJECT;
	cfg->log_level = LOG_INFO;
	cfg->hook_timeout = 5;
	cfg->hook_instructions = 100000000;
	cfg->lua_memory = 256u << 20;
	cfg->tls_timeout = 30;
	cfg->max_auth_failures = 3;
	cfg->max_errors = 20; /* Postfix's smtpd_hard_error_limit */
	cfg->shutdown_timeout = 30;
	/* Postfix's defaults: minimal_backoff_time, maximal_backoff_time,
	 * maximal_queue_lifetime, hopcount_limit,
	 * default_destination_concurrency_limit. */
	cfg->spool = CONFIG_SPOOL_DEFAULT;
	cfg->relay_port = 25;
	cfg->retry_min = 300;
	cfg->retry_max = 4000;
	cfg->queue_lifetime = 5 * 86400;
	cfg->delay_warning = 0; /* Postfix's delay_warning_time: 0h, off */
	cfg->max_hops = 50;
	cfg->delivery_concurrency = 100;
	cfg->destination_concurrency = 20;
	cfg->connection_cache_time = 2; /* Postfix's smtp_connection_cache_time_limit */
	{
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		cfg->workers = n > 0 && n <= 256 ? (int)n : 1;
	}

	optind = 1;
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_LISTEN:
			if (parse_listen(cfg, "listen", optarg, 0, 0) == -1)
				return -1;
			break;
		case OPT_SCRIPT:
			cfg->script = optarg;
			break;
		case OPT_HOSTNAME:
			if (strlen(optarg) == 0 || strlen(optarg) >= sizeof(cfg->hostname) ||
			    strpbrk(optarg, " \r\n\t") != NULL) {
				fprintf(stderr, "luamta: --hostname: invalid name\n");
				return -1;
			}
			strcpy(cfg->hostname, optarg);
			break;
		case OPT_MAX_SIZE:
			if (parse_num("max-size", optarg, 1, 1e12, &v) == -1)
				return -1;
			cfg->max_size = (size_t)v;
			break;
		case OPT_MAX_RCPT:
			if (parse_num("max-recipients", optarg, 1, 1e6, &v) == -1)
				return -1;
			cfg->max_recipients = (int)v;
			break;
		case OPT_LISTEN_LMTP:
			if (parse_listen_lmtp(cfg, optarg) == -1)
				return -1;
			break;
		case OPT_TIMEOUT:
			if (parse_num("timeout", optarg, 0.01, 86400, &cfg->timeout) == -1)
				return -1;
			break;
		case OPT_DATA_TIMEOUT:
			if (parse_num("data-timeout", optarg, 0.01, 86400, &cfg->data_timeout) ==
			    -1)
				return -1;
			break;
		case OPT_MAX_CONN:
			if (parse_num("max-connections", optarg, 1, 1e7, &v) == -1)
				return -1;
			cfg->max_connections = (int)v;
			break;
		case OPT_MAX_PER_IP:
			if (parse_num("max-per-ip", optarg, 0, 1e7, &v) == -1)
				return -1;
			cfg->max_per_ip = (int)v;
			break;
		case OPT_MAX_CONN_RATE:
			if (parse_num("max-conn-rate", optarg, 0, 1e7, &v) == -1)
				return -1;
			cfg->max_conn_rate = (int)v;
			break;
		case OPT_MAX_DATA_MEMORY:
			if (parse_num("max-data-memory", optarg, 1024, 1e13, &v) == -1)
				return -1;
			cfg->max_data_memory = (size_t)v;
			break;
		case OPT_LIMIT_EXEMPT:
			/* The first one replaces the default list. */
			if (!exempt_given)
				cfg->nexempt = 0;
			exempt_given = 1;
			if (config_parse_nets("limit-exempt", cfg->exempt, &cfg->nexempt, optarg) ==
			    -1)
				return -1;
			break;
		case OPT_LISTEN_PROXY:
		case OPT_LISTEN_TLS_PROXY:
			if (parse_listen(cfg,
				c == OPT_LISTEN_TLS_PROXY ? "listen-tls-proxy" : "listen-proxy",
				optarg, c == OPT_LISTEN_TLS_PROXY, 1) == -1)
				return -1;
			break;
		case OPT_PROXY_TRUSTED:
			if (!proxy_given)
				cfg->nproxy = 0;
			proxy_given = 1;
			if (config_parse_nets("proxy-trusted", cfg->proxy, &cfg->nproxy, optarg) ==
			    -1)
				return -1;
			break;
		case OPT_PROXY_TIMEOUT:
			if (parse_num("proxy-timeout", optarg, 0.1, 3600, &cfg->proxy_timeout) ==
			    -1)
				return -1;
			break;
		case OPT_XCLIENT_TRUSTED:
			if (config_parse_nets(
				"xclient-trusted", cfg->xclient, &cfg->nxclient, optarg) == -1)
				return -1;
			break;
		case OPT_RESOLVER:
			if (parse_resolver(cfg, optarg) == -1)
				return -1;
			break;
		case OPT_SPOOL:
			if (optarg[0] == '\0') {
				fprintf(stderr, "luamta: --spool: empty path\n");
				return -1;
			}
			cfg->spool = optarg;
			break;
		case OPT_RELAY_PORT:
			if (parse_num("relay-port", optarg, 1, 65535, &v) == -1)
				return -1;
			cfg->relay_port = (int)v;
			break;
		case OPT_CONN_CACHE_TIME:
			if (parse_num("connection-cache-time", optarg, 0, 3600,
				&cfg->connection_cache_time) == -1)
				return -1;
			break;
		case OPT_MAX_ERRORS:
			if (parse_num("max-errors", optarg, 0, 1e9, &v) == -1)
				return -1;
			cfg->max_errors = (int)v;
			break;
		case OPT_METRICS:
			if (parse_addr("metrics", &cfg->metrics, optarg, 0) == -1)
				return -1;
			cfg->metrics_on = 1;
			break;
		case OPT_RETRY_MIN:
			if (parse_num("retry-min", optarg, 0.01, 86400 * 30, &cfg->retry_min) == -1)
				return -1;
			break;
		case OPT_RETRY_MAX:
			if (parse_num("retry-max", optarg, 0.01, 86400 * 30, &cfg->retry_max) == -1)
				return -1;
			break;
		case OPT_QUEUE_LIFETIME:
			if (parse_num("queue-lifetime", optarg, 0, 86400 * 365,
				&cfg->queue_lifetime) == -1)
				return -1;
			break;
		case OPT_DELAY_WARNING:
			if (parse_num(
				"delay-warning", optarg, 0, 86400 * 365, &cfg->delay_warning) == -1)
				return -1;
			break;
		case OPT_MAX_HOPS:
			if (parse_num("max-hops", optarg, 1, 1000, &v) == -1)
				return -1;
			cfg->max_hops = (int)v;
			break;
		case OPT_DELIVERY_CONC:
			if (parse_num("delivery-concurrency", optarg, 1, 100000, &v) == -1)
				return -1;
			cfg->delivery_concurrency = (int)v;
			break;
		case OPT_DEST_CONC:
			if (parse_num("destination-concurrency", optarg, 1, 100000, &v) == -1)
				return -1;
			cfg->destination_concurrency = (int)v;
			break;
		case OPT_WATCHDOG:
			if (parse_num("watchdog", optarg, 0, 86400, &cfg->watchdog) == -1)
				return -1;
			break;
		case OPT_BARE_LF:
			if (smtp_bare_parse(optarg, &cfg->bare) == -1) {
				fprintf(
				    stderr, "luamta: --bare-lf: expected reject, fix or allow\n");
				return -1;
			}
			break;
		case OPT_LOG_LEVEL:
			if (log_level_parse(optarg, &lvl) == -1) {
				fprintf(stderr,
				    "luamta: --log-level: expected error, warn, info or debug\n");
				return -1;
			}
			cfg->log_level = (int)lvl;
			break;
		case OPT_LOG_FORMAT: {
			enum log_format fmt;

			if (log_format_parse(optarg, &fmt) == -1) {
				fprintf(stderr, "luamta: --log-format: expected text or json\n");
				return -1;
			}
			cfg->log_format = (int)fmt;
			break;
		}
		case OPT_READY_FILE:
			cfg->ready_file = optarg;
			break;
		case OPT_HOOK_TIMEOUT:
			if (parse_num("hook-timeout", optarg, 0.001, 3600, &cfg->hook_timeout) ==
			    -1)
				return -1;
			break;
		case OPT_HOOK_INSNS:
			if (parse_num("hook-instructions", optarg, 1000, 1e15, &v) == -1)
				return -1;
			cfg->hook_instructions = (long)v;
			break;
		case OPT_LUA_MEMORY:
			if (parse_num("lua-memory", optarg, 1 << 20, 1e12, &v) == -1)
				return -1;
			cfg->lua_memory = (size_t)v;
			break;
		case OPT_CHECK:
			cfg->check = 1;
			break;
		case OPT_LISTEN_TLS:
			if (parse_listen(cfg, "listen-tls", optarg, 1, 0) == -1)
				return -1;
			break;
		case OPT_TLS_CERT:
			cfg->tls_cert = optarg;
			break;
		case OPT_TLS_KEY:
			cfg->tls_key = optarg;
			break;
		case OPT_TLS_CLIENT_CA:
			cfg->tls_client_ca = optarg;
			break;
		case OPT_TLS_TIMEOUT:
			if (parse_num("tls-timeout", optarg, 0.01, 3600, &cfg->tls_timeout) == -1)
				return -1;
			break;
		case OPT_REQUIRE_TLS:
			cfg->require_tls = 1;
			break;
		case OPT_WATCH:
			cfg->watch = 1;
			break;
		case OPT_WORKERS:
			if (parse_num("workers", optarg, 1, 256, &v) == -1)
				return -1;
			cfg->workers = (int)v;
			break;
		case OPT_FOREGROUND:
			cfg->foreground = 1;
			break;
		case OPT_SHUTDOWN_TIMEOUT:
			if (parse_num(
				"shutdown-timeout", optarg, 0, 86400, &cfg->shutdown_timeout) == -1)
				return -1;
			break;
		case OPT_USER:
			cfg->user = optarg;
			break;
		case OPT_CAPTURE:
			cfg->capture_dir = optarg;
			break;
		case OPT_STDIO:
			cfg->stdio = 1;
			break;
		case OPT_AUTH_PLAINTEXT:
			cfg->auth_plaintext = 1;
			break;
		case OPT_MAX_AUTH_FAILURES:
			if (parse_num("max-auth-failures", optarg, 1, 1000, &v) == -1)
				return -1;
			cfg->max_auth_failures = (int)v;
			break;
		case OPT_VERSION:
			version_print(stdout);
			return 1;
		case OPT_HELP:
			fputs(usage_text, stdout);
			return 1;
		default:
			fputs(usage_text, stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "luamta: unexpected argument '%s'\n", argv[optind]);
		fputs(usage_text, stderr);
		return -1;
	}
	if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
		fprintf(stderr, "luamta: --tls-cert and --tls-key go together\n");
		return -1;
	}
	for (int i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i].tls && cfg->tls_cert == NULL) {
			fprintf(stderr, "luamta: --listen-tls%s needs --tls-cert and --tls-key\n",
			    cfg->listen[i].proxy ? "-proxy" : "");
			return -1;
		}
	if (cfg->tls_client_ca != NULL && cfg->tls_cert == NULL) {
		fprintf(stderr, "luamta: --tls-client-ca needs --tls-cert and --tls-key\n");
		return -1;
	}
	/* The watchdog must let a hook use its whole time budget: it is for
	 * what the budget cannot interrupt. The floor keeps a tiny
	 * --hook-timeout from turning a slow fsync into a killed worker. */
	if (cfg->watchdog < 0)
		cfg->watchdog = cfg->hook_timeout * 3 > 5 ? cfg->hook_timeout * 3 : 5;
	if (cfg->metrics_on && cfg->stdio) {
		fprintf(stderr, "luamta: --metrics does not go with --stdio\n");
		return -1;
	}
	if (cfg->retry_max < cfg->retry_min) {
		fprintf(stderr, "luamta: --retry-max must not be below --retry-min\n");
		return -1;
	} else if (cfg->watchdog > 0 && cfg->watchdog <= cfg->hook_timeout) {
		fprintf(
		    stderr, "luamta: --watchdog must be 0 (off) or longer than --hook-timeout\n");
		return -1;
	}
	if (cfg->nlisten == 0) {
		strcpy(cfg->listen[0].host, "127.0.0.1");
		cfg->listen[0].port = 2525;
		cfg->nlisten = 1;
	}
	return 0;
}
