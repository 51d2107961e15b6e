/* config.h - the server's limits, timeouts and listeners, filled from argv.
 * Owns no sockets and no Lua; main.c reads it, everything else borrows it. */
#ifndef LUAMTA_CONFIG_H
#define LUAMTA_CONFIG_H

#include <stddef.h>

#include "smtp_data.h"

#define CONFIG_LISTEN_MAX    16
#define CONFIG_UNIX_PATH_MAX 108 /* sizeof(sockaddr_un.sun_path) on Linux */
#define CONFIG_EXEMPT_MAX    64  /* --limit-exempt networks */
#define CONFIG_RESOLVER_MAX  8   /* --resolver servers (resolv.conf allows 3) */

struct sockaddr;

struct config_listen {
	char host[64];    /* numeric address, without brackets */
	int port;         /* 0: the kernel picks one */
	int tls;          /* implicit TLS (RFC 8314): handshake before the greeting */
	int proxy;        /* a PROXY protocol header comes first (--listen-proxy) */
	int lmtp;         /* LMTP (RFC 2033) instead of SMTP (--listen-lmtp) */
	const char *path; /* a UNIX socket's path (borrowed from argv), or NULL */
};

/* One --limit-exempt network. An IPv4 client seen on an IPv6 socket
 * (::ffff:a.b.c.d) is matched as IPv4. */
struct config_net {
	int family;             /* AF_INET or AF_INET6 */
	unsigned char addr[16]; /* network byte order; AF_INET uses the first 4 */
	int prefix;             /* 0..32 or 0..128; host bits are zero */
};

/* One --resolver server. */
struct config_resolver {
	int family;             /* AF_INET or AF_INET6 */
	unsigned char addr[16]; /* network byte order; AF_INET uses the first 4 */
	int port;
};

/* The queue's directory when --spool is not given (an installed server's). */
#ifndef CONFIG_SPOOL_DEFAULT
#define CONFIG_SPOOL_DEFAULT "/var/spool/luamta"
#endif

struct config {
	struct config_listen listen[CONFIG_LISTEN_MAX];
	int nlisten;
	const char *script; /* borrowed from argv, or NULL */
	char hostname[256];
	size_t max_size;     /* RFC 1870 SIZE */
	int max_recipients;  /* RFC 5321 4.5.3.1.8 asks for at least 100 */
	double timeout;      /* RFC 5321 4.5.3.2.7: at least 5 minutes */
	double data_timeout; /* RFC 5321 4.5.3.2.5: 3 minutes per block */
	int max_connections;
	int max_per_ip;         /* concurrent sessions per address; 0: no limit */
	int max_conn_rate;      /* new connections per address per minute; 0: off */
	size_t max_data_memory; /* per worker: message data held in memory */
	struct config_net exempt[CONFIG_EXEMPT_MAX]; /* spared max_per_ip and max_conn_rate */
	int nexempt;
	struct config_net xclient[CONFIG_EXEMPT_MAX]; /* --xclient-trusted: may use XCLIENT */
	int nxclient;
	struct config_net proxy[CONFIG_EXEMPT_MAX]; /* --proxy-trusted: may send a PROXY header */
	int nproxy;
	double proxy_timeout; /* for the PROXY header to arrive */
	enum smtp_bare bare;
	int log_level;          /* enum log_level */
	int log_format;         /* enum log_format: --log-format */
	const char *ready_file; /* borrowed from argv, or NULL */
	double hook_timeout;    /* wall clock per hook resume */
	long hook_instructions;
	size_t lua_memory;
	int check;                 /* --check: load the script and exit */
	const char *tls_cert;      /* PEM chain, or NULL: no STARTTLS */
	const char *tls_key;       /* PEM key for tls_cert */
	const char *tls_client_ca; /* verify client certificates, or NULL */
	double tls_timeout;        /* seconds for a TLS handshake */
	int require_tls;           /* MAIL needs TLS first (RFC 3207 4) */
	int auth_plaintext;        /* offer AUTH without TLS (test servers) */
	int max_auth_failures;     /* then 421 and close */
	int max_errors;            /* 4xx/5xx replies without a message accepted; 0: no limit */
	int watch;                 /* reload when the policy files change */
	int workers;               /* serving processes under a master */
	int foreground;            /* no master: serve in this process */
	double shutdown_timeout;   /* SIGTERM: time sessions get to finish */
	const char *user;          /* drop privileges to this user after binding */
	const char *capture_dir;   /* --capture: store accepted messages here */
	int stdio;                 /* one session on stdin/stdout, no listeners */
	double watchdog;           /* kill a worker whose loop stalls this long; 0: off */
	struct config_resolver resolvers[CONFIG_RESOLVER_MAX]; /* none: /etc/resolv.conf */
	int nresolvers;
	const char *spool;            /* --spool: the queue's directory (borrowed) */
	int relay_port;               /* --relay-port: MX hosts' port */
	double retry_min, retry_max;  /* back-off of deferred recipients, seconds */
	double queue_lifetime;        /* then what is left bounces */
	double delay_warning;         /* then one delay warning to the sender; 0: none */
	int max_hops;                 /* Received: fields before 554 5.4.6 */
	int delivery_concurrency;     /* deliveries at once, per process */
	int destination_concurrency;  /* of them to one destination */
	double connection_cache_time; /* a next hop's connection kept idle; 0: not kept */
	struct config_listen metrics; /* --metrics: where GET /metrics is answered */
	int metrics_on;               /* --metrics was given */
};

/* Whether a Lua policy runs: a --script, or --capture's wrapper alone. */
static inline int
config_has_policy(const struct config *cfg)
{
	return cfg->script != NULL || cfg->capture_dir != NULL;
}

/* Whether a client address is in --limit-exempt: 1 if it is, else 0 (also
 * for an address that is neither IPv4 nor IPv6, such as a pipe's). Pure. */
int config_exempt(const struct config *, const struct sockaddr *);
/* The same for a numeric address ("192.0.2.1", "2001:db8::1"); 0 when ip
 * does not parse. */
int config_exempt_ip(const struct config *, const char *ip);
/* Whether a numeric address is in --xclient-trusted. */
int config_xclient_ip(const struct config *, const char *ip);
/* Whether a connecting address is in --proxy-trusted. */
int config_proxy_trusted(const struct config *, const struct sockaddr *);

/* Fills cfg with defaults, then applies argv. Returns 0 to run, 1 when the
 * caller should exit 0 (--help, --version: already printed), -1 on a usage
 * error (already printed to stderr). */
int config_parse(struct config *cfg, int argc, char **argv);

#endif
