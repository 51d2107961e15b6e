/* test_tls.c - the server side of tls.c against a client written here with
 * mbedTLS directly (and, last, tls.c's own client side against its server), over a non-blocking
 * socketpair driven by poll(). The certificates are made at run time with the openssl CLI in a
 * mkdtemp() directory: a CA, EC and RSA server certificates and a client certificate it signed, and
 * a self-signed client certificate it did not. */

#include <sys/socket.h>
#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "test.h"
#include "tls.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

#define BIG        (100 * 1024) /* more than the socket buffers below hold */
#define POLL_MS    3000         /* a stalled exchange fails after this */
#define MAX_ROUNDS 200          /* poll rounds before an exchange counts as looping */

static char dir[PATH_MAX];
static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;

/* openssl configuration: extensions for each kind of certificate, so that
 * mbedTLS's key-usage checks on both sides pass for the right reasons. */
static const char ca_cnf[] = "[req]\n"
			     "distinguished_name = dn\n"
			     "x509_extensions = v3_ca\n"
			     "prompt = no\n"
			     "[dn]\n"
			     "CN = luamta test CA\n"
			     "[v3_ca]\n"
			     "basicConstraints = critical,CA:true\n"
			     "keyUsage = critical,keyCertSign,cRLSign\n"
			     "subjectKeyIdentifier = hash\n"
			     "[server]\n"
			     "basicConstraints = CA:false\n"
			     "keyUsage = critical,digitalSignature,keyEncipherment\n"
			     "extendedKeyUsage = serverAuth\n"
			     "subjectAltName = DNS:localhost\n"
			     "[client]\n"
			     "basicConstraints = CA:false\n"
			     "keyUsage = critical,digitalSignature\n"
			     "extendedKeyUsage = clientAuth\n";

/* A path in the scratch directory; eight calls may be in use at once. */
static const char *
tpath(const char *name)
{
	static char ring[8][PATH_MAX];
	static int next;
	char *p = ring[next++ % 8];

	if ((size_t)snprintf(p, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX) {
		fprintf(stderr, "path too long: %s/%s\n", dir, name);
		exit(2);
	}
	return p;
}

static int run(const char *, ...) __attribute__((format(printf, 1, 2)));

/* Runs a shell command in the scratch directory; output goes to a log
 * that is shown when the command fails. 0 on exit status 0. */
static int
run(const char *fmt, ...)
{
	char cmd[2048], sh[PATH_MAX + 2048 + 32];
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (r < 0 || (size_t)r >= sizeof(cmd))
		return -1;
	snprintf(sh, sizeof(sh), "cd '%s' && (%s) >cmd.log 2>&1", dir, cmd);
	if ((r = system(sh)) != 0) {
		fprintf(stderr, "command failed (%d): %s\n", r, cmd);
		snprintf(sh, sizeof(sh), "cat '%s/cmd.log' >&2", dir);
		(void)system(sh);
		return -1;
	}
	return 0;
}

#define EC_KEY(k) "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " k
#define SIGN(name, subj, ext)                                                                      \
	"openssl req -new -config ca.cnf -key " name ".key -subj '" subj "' -out " name ".csr && " \
	"openssl x509 -req -in " name ".csr -CA ca.crt -CAkey ca.key -CAcreateserial "             \
	"-days 2 -extfile ca.cnf -extensions " ext " -out " name ".crt"

static const char *const cert_cmds[] = {
	EC_KEY("ca.key"),
	"openssl req -new -x509 -config ca.cnf -key ca.key -days 2 -out ca.crt",
	EC_KEY("srv_ec.key"),
	SIGN("srv_ec", "/CN=localhost", "server"),
	"openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out srv_rsa.key",
	SIGN("srv_rsa", "/CN=localhost", "server"),
	EC_KEY("cli.key"),
	SIGN("cli", "/O=Luamta Test/CN=client.example", "client"),
	EC_KEY("rogue.key"),
	"openssl req -new -x509 -config ca.cnf -key rogue.key -subj /CN=rogue.example "
	"-extensions client -days 2 -out rogue.crt",
	"openssl x509 -noout -fingerprint -sha256 -in cli.crt >cli.fp",
};

static int
make_certs(void)
{
	FILE *f;
	size_t i;

	if ((f = fopen(tpath("ca.cnf"), "w")) == NULL)
		return -1;
	fputs(ca_cnf, f);
	if (fclose(f) != 0)
		return -1;
	for (i = 0; i < sizeof(cert_cmds) / sizeof(cert_cmds[0]); i++)
		if (run("%s", cert_cmds[i]) == -1)
			return -1;
	return 0;
}

/* "sha256 Fingerprint=AB:CD:..." (OpenSSL 3; 1.1 says SHA256) into the
 * form tls_peer_fingerprint() gives: lower-case hex, no colons. */
static int
read_fingerprint(char *out, size_t len)
{
	char line[512], *p;
	size_t j = 0;
	FILE *f;

	if ((f = fopen(tpath("cli.fp"), "r")) == NULL)
		return -1;
	p = fgets(line, sizeof(line), f);
	fclose(f);
	if (p == NULL || (p = strchr(line, '=')) == NULL)
		return -1;
	for (p++; *p != '\0' && *p != '\n'; p++) {
		if (*p == ':')
			continue;
		if (j + 1 >= len)
			return -1;
		out[j++] = (char)tolower((unsigned char)*p);
	}
	out[j] = '\0';
	return j == 64 ? 0 : -1;
}

/* The client, written against mbedTLS directly so it shares no code with
 * the module under test. */
struct client {
	mbedtls_ssl_config conf;
	mbedtls_ssl_context ssl;
	mbedtls_x509_crt ca, crt;
	mbedtls_pk_context key;
	mbedtls_net_context net;
};

struct client_opts {
	const char *crt, *key; /* client certificate, or NULL */
	const int *suites;     /* offered suites, or NULL for the defaults */
	int max_minor;         /* highest version offered, 0 for TLS 1.2 */
};

static int
client_init(struct client *c, int fd, const struct client_opts *o)
{
	mbedtls_ssl_config_init(&c->conf);
	mbedtls_ssl_init(&c->ssl);
	mbedtls_x509_crt_init(&c->ca);
	mbedtls_x509_crt_init(&c->crt);
	mbedtls_pk_init(&c->key);
	mbedtls_net_init(&c->net);
	c->net.fd = fd;
	if (mbedtls_x509_crt_parse_file(&c->ca, tpath("ca.crt")) != 0 ||
	    mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT,
		MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT) != 0)
		return -1;
	mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
	mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &drbg);
	if (o->suites != NULL)
		mbedtls_ssl_conf_ciphersuites(&c->conf, o->suites);
	if (o->max_minor != 0) {
		mbedtls_ssl_conf_min_version(
		    &c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_1);
		mbedtls_ssl_conf_max_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, o->max_minor);
	}
	if (o->crt != NULL &&
	    (mbedtls_x509_crt_parse_file(&c->crt, tpath(o->crt)) != 0 ||
		mbedtls_pk_parse_keyfile(&c->key, tpath(o->key), NULL) != 0 ||
		mbedtls_ssl_conf_own_cert(&c->conf, &c->crt, &c->key) != 0))
		return -1;
	if (mbedtls_ssl_setup(&c->ssl, &c->conf) != 0 ||
	    mbedtls_ssl_set_hostname(&c->ssl, "localhost") != 0)
		return -1;
	mbedtls_ssl_set_bio(&c->ssl, &c->net, mbedtls_net_send, mbedtls_net_recv, NULL);
	return 0;
}

static void
client_free(struct client *c)
{
	/* Not mbedtls_net_free(): the pair closes its own fds. */
	mbedtls_ssl_free(&c->ssl);
	mbedtls_ssl_config_free(&c->conf);
	mbedtls_pk_free(&c->key);
	mbedtls_x509_crt_free(&c->crt);
	mbedtls_x509_crt_free(&c->ca);
}

struct pair {
	int sfd, cfd;
	struct tls *t;
	struct client c;
};

static int
nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl == -1 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* A connected pair: struct tls on one end, the client on the other. With
 * o == NULL the client end stays a raw fd for writing garbage. */
static int
pair_open(struct pair *p, struct tls_config *cfg, const struct client_opts *o)
{
	int sv[2];

	memset(p, 0, sizeof(*p));
	p->sfd = p->cfd = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		return -1;
	p->sfd = sv[0];
	p->cfd = sv[1];
	if (nonblock(p->sfd) == -1 || nonblock(p->cfd) == -1)
		return -1;
	if ((p->t = tls_new(cfg, p->sfd)) == NULL)
		return -1;
	if (o != NULL && client_init(&p->c, p->cfd, o) == -1)
		return -1;
	return 0;
}

static void
pair_close(struct pair *p)
{
	tls_free(p->t);
	p->t = NULL;
	client_free(&p->c);
	if (p->sfd != -1)
		close(p->sfd);
	if (p->cfd != -1)
		close(p->cfd);
	p->sfd = p->cfd = -1;
}

static int
want(int ret)
{
	return ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE;
}

static short
tls_events(enum tls_status st)
{
	return st == TLS_WANT_WRITE ? POLLOUT : POLLIN;
}

static short
mbed_events(int ret)
{
	return ret == MBEDTLS_ERR_SSL_WANT_WRITE ? POLLOUT : POLLIN;
}

/* Waits for what each side asked for (fd -1 sides are skipped): a status
 * that names the wrong event shows up as a timeout instead of passing.
 * -1 on timeout. */
static int
wait_fds(int sfd, short sev, int cfd, short cev)
{
	struct pollfd pfd[2] = { { sfd, sev, 0 }, { cfd, cev, 0 } };
	int r;

	while ((r = poll(pfd, 2, POLL_MS)) == -1 && errno == EINTR)
		;
	if (r <= 0)
		fprintf(stderr, "poll timed out or failed\n");
	return r > 0 ? 0 : -1;
}

/* Steps both handshakes until neither wants the fd. Returns the server's
 * last status; *cret is the client's last mbedTLS return, *rounds the
 * number of poll rounds. */
static enum tls_status
handshake(struct pair *p, int *cret, int *rounds)
{
	enum tls_status st = TLS_WANT_READ;
	int cr = MBEDTLS_ERR_SSL_WANT_WRITE, i, swait, cwait;

	for (i = 0; i < MAX_ROUNDS; i++) {
		if (st == TLS_WANT_READ || st == TLS_WANT_WRITE)
			st = tls_handshake(p->t);
		if (want(cr))
			cr = mbedtls_ssl_handshake(&p->c.ssl);
		swait = st == TLS_WANT_READ || st == TLS_WANT_WRITE;
		cwait = want(cr);
		if (!swait && !cwait)
			break;
		/* A side that failed may leave the other waiting for an alert
		 * that never comes; the timeout ends that. */
		if (wait_fds(swait ? p->sfd : -1, tls_events(st), cwait ? p->cfd : -1,
			mbed_events(cr)) == -1)
			break;
	}
	*cret = cr;
	*rounds = i;
	return st;
}

static void
fill(unsigned char *b, size_t len, unsigned seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		b[i] = (unsigned char)(i * 31 + i / 4093 + seed);
}

/* Sends BIG bytes from the server while the client reads them, like an
 * output queue: data[0..avail) is queued and data[0..sent) already went
 * out; the first time the socket fills up, the rest of the data is
 * appended to the queue, which is the retry tls_write() allows after
 * TLS_WANT_WRITE. *blocked counts WANT_WRITE and short writes. 0 when
 * every byte arrived in order. */
static int
server_to_client(struct pair *p, const unsigned char *data, size_t sent, size_t avail, int *blocked)
{
	static unsigned char got[BIG];
	size_t rcvd = 0, n;
	enum tls_status st = TLS_OK;
	int i, r;

	for (i = 0; i < 10 * MAX_ROUNDS && rcvd < BIG; i++) {
		if (sent < avail) {
			st = tls_write(p->t, data + sent, avail - sent, &n);
			if (st != TLS_OK && st != TLS_WANT_WRITE) {
				fprintf(stderr, "tls_write: %s: %s\n", tls_status_str(st),
				    tls_strerror(p->t));
				return -1;
			}
			sent += n;
			if (st == TLS_WANT_WRITE || sent < avail) {
				(*blocked)++;
				avail = BIG;
			}
		}
		while ((r = mbedtls_ssl_read(&p->c.ssl, got + rcvd, BIG - rcvd)) > 0)
			rcvd += (size_t)r;
		if (r != MBEDTLS_ERR_SSL_WANT_READ && rcvd < BIG)
			return -1;
		if (rcvd < BIG &&
		    wait_fds(sent < avail ? p->sfd : -1, POLLOUT, p->cfd, POLLIN) == -1)
			return -1;
	}
	return sent == BIG && rcvd == BIG && memcmp(got, data, BIG) == 0 ? 0 : -1;
}

/* Sends BIG bytes from the client (retrying with the same arguments, as
 * mbedTLS wants) while the server reads them in 4 KiB steps, draining
 * tls_pending() before it waits. 0 when every byte arrived in order. */
static int
client_to_server(struct pair *p, const unsigned char *data, int *cblocked)
{
	static unsigned char got[BIG];
	size_t sent = 0, rcvd = 0, n;
	enum tls_status st;
	int i, r = 0;

	for (i = 0; i < 10 * MAX_ROUNDS && rcvd < BIG; i++) {
		while (
		    sent < BIG && (r = mbedtls_ssl_write(&p->c.ssl, data + sent, BIG - sent)) > 0)
			sent += (size_t)r;
		if (sent < BIG && r != MBEDTLS_ERR_SSL_WANT_WRITE)
			return -1;
		if (sent < BIG)
			(*cblocked)++;
		do {
			n = 0;
			st = tls_read(p->t, got + rcvd, BIG - rcvd < 4096 ? BIG - rcvd : 4096, &n);
			rcvd += n;
		} while (st == TLS_OK && (tls_pending(p->t) > 0 || n > 0) && rcvd < BIG);
		if (st != TLS_OK && st != TLS_WANT_READ)
			return -1;
		if (rcvd < BIG && wait_fds(p->sfd, POLLIN, sent < BIG ? p->cfd : -1, POLLOUT) == -1)
			return -1;
	}
	return rcvd == BIG && memcmp(got, data, BIG) == 0 ? 0 : -1;
}

/* Reads from the server side until want bytes or a non-OK status. */
static enum tls_status
server_read(struct pair *p, char *buf, size_t len, size_t *got)
{
	enum tls_status st;
	size_t n;
	int i;

	*got = 0;
	for (i = 0; i < MAX_ROUNDS; i++) {
		st = tls_read(p->t, buf + *got, len - *got, &n);
		*got += n;
		if (st != TLS_WANT_READ || *got == len)
			return st;
		if (wait_fds(p->sfd, POLLIN, -1, 0) == -1)
			return st;
	}
	return TLS_ERROR;
}

/* Reads from the client side until len bytes or an error; mbedTLS return. */
static int
client_read(struct pair *p, char *buf, size_t len, size_t *got)
{
	int i, r = 0;

	*got = 0;
	for (i = 0; i < MAX_ROUNDS && *got < len; i++) {
		r = mbedtls_ssl_read(&p->c.ssl, (unsigned char *)buf + *got, len - *got);
		if (r > 0) {
			*got += (size_t)r;
			continue;
		}
		if (r != MBEDTLS_ERR_SSL_WANT_READ || wait_fds(-1, 0, p->cfd, POLLIN) == -1)
			return r;
	}
	return r;
}

static void
test_status_str(void)
{
	CHECK_STR(tls_status_str(TLS_OK), "ok");
	CHECK_STR(tls_status_str(TLS_WANT_READ), "want_read");
	CHECK_STR(tls_status_str(TLS_WANT_WRITE), "want_write");
	CHECK_STR(tls_status_str(TLS_CLOSED), "closed");
	CHECK_STR(tls_status_str(TLS_ERROR), "error");
	CHECK_STR(tls_status_str((enum tls_status)42), "?");
}

static void
test_config_errors(void)
{
	struct tls_config *cfg;
	char err[512];

	err[0] = '\0';
	cfg = tls_config_new(tpath("missing.crt"), tpath("srv_ec.key"), NULL, err, sizeof(err));
	CHECK(cfg == NULL);
	CHECK_MSG(
	    strstr(err, "missing.crt") != NULL && strstr(err, "No such file") != NULL, "%s", err);

	err[0] = '\0';
	cfg = tls_config_new(tpath("srv_ec.crt"), tpath("missing.key"), NULL, err, sizeof(err));
	CHECK(cfg == NULL);
	CHECK_MSG(strstr(err, "missing.key") != NULL, "%s", err);

	err[0] = '\0';
	cfg = tls_config_new(
	    tpath("srv_ec.crt"), tpath("srv_ec.key"), tpath("missing-ca.crt"), err, sizeof(err));
	CHECK(cfg == NULL);
	CHECK_MSG(strstr(err, "missing-ca.crt") != NULL, "%s", err);

	/* Same key type, another key: only the pair check catches it. */
	err[0] = '\0';
	cfg = tls_config_new(tpath("srv_ec.crt"), tpath("cli.key"), NULL, err, sizeof(err));
	CHECK(cfg == NULL);
	CHECK_MSG(strstr(err, "does not match") != NULL && strstr(err, "cli.key") != NULL &&
		strstr(err, "srv_ec.crt") != NULL,
	    "%s", err);

	err[0] = '\0';
	cfg = tls_config_new(tpath("srv_rsa.crt"), tpath("srv_ec.key"), NULL, err, sizeof(err));
	CHECK(cfg == NULL);
	CHECK_MSG(strstr(err, "does not match") != NULL, "%s", err);

	/* A key where the certificate should be. */
	err[0] = '\0';
	cfg = tls_config_new(tpath("srv_ec.key"), tpath("srv_ec.key"), NULL, err, sizeof(err));
	CHECK(cfg == NULL);
	CHECK_MSG(
	    strstr(err, "certificate") != NULL && strstr(err, "srv_ec.key") != NULL, "%s", err);

	/* No message buffer is allowed. */
	CHECK(tls_config_new(tpath("missing.crt"), tpath("srv_ec.key"), NULL, NULL, 0) == NULL);
	tls_config_unref(NULL);
}

/* EC certificate, client CA, a client certificate from that CA: the full
 * path, with data both ways, pending bytes and close_notify. */
static void
test_ec_client_cert(void)
{
	static unsigned char big[BIG];
	struct client_opts o = { "cli.crt", "cli.key", NULL, 0 };
	struct tls_config *cfg;
	struct pair p;
	char err[512], buf[1024], fp[80], want_fp[80];
	size_t n, got, sent, avail;
	int cr = 0, rounds = 0, blocked = 0, cblocked = 0, sz = 8192;
	enum tls_status st;

	cfg = tls_config_new(
	    tpath("srv_ec.crt"), tpath("srv_ec.key"), tpath("ca.crt"), err, sizeof(err));
	CHECK_MSG(cfg != NULL, "%s", err);
	if (cfg == NULL)
		return;
	CHECK(pair_open(&p, cfg, &o) == 0);
	/* The connection keeps the config alive after a reload drops it;
	 * ASan reports any use after free from here on. */
	tls_config_unref(cfg);

	CHECK_STR(tls_version(p.t), "none");
	CHECK_STR(tls_cipher(p.t), "none");
	CHECK(tls_peer_cert_present(p.t) == 0);
	st = handshake(&p, &cr, &rounds);
	CHECK_MSG(st == TLS_OK, "%s: %s", tls_status_str(st), tls_strerror(p.t));
	CHECK_MSG(cr == 0, "client handshake -0x%04x", (unsigned)-cr);
	CHECK_MSG(rounds < 20, "%d rounds", rounds);
	CHECK(tls_handshake(p.t) == TLS_OK);
	CHECK_STR(tls_version(p.t), "TLSv1.2");
	/* Our first choice, whatever order the client offered. */
	CHECK_STR(tls_cipher(p.t), "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256");
	CHECK_STR(tls_strerror(p.t), "no error");

	CHECK(tls_peer_cert_present(p.t) == 1);
	CHECK(tls_peer_cert_verified(p.t) == 1);
	CHECK_STR(tls_peer_verify_str(p.t, buf, sizeof(buf)), "");
	buf[0] = '\0';
	CHECK(tls_peer_subject(p.t, buf, sizeof(buf)) == 0);
	CHECK_STR(buf, "O=Luamta Test, CN=client.example");
	CHECK(tls_peer_subject(p.t, buf, 8) == -1);
	CHECK(read_fingerprint(want_fp, sizeof(want_fp)) == 0);
	fp[0] = '\0';
	CHECK(tls_peer_fingerprint(p.t, fp, sizeof(fp)) == 0);
	CHECK_STR(fp, want_fp);
	CHECK(tls_peer_fingerprint(p.t, fp, 64) == -1);

	/* Nothing sent yet: the server must ask to wait, not spin. */
	n = 1;
	CHECK(tls_read(p.t, buf, sizeof(buf), &n) == TLS_WANT_READ && n == 0);
	CHECK(tls_pending(p.t) == 0);

	/* A greeting one way, a command the other. */
	st = tls_write(p.t, "220 ready\r\n", 11, &n);
	CHECK(st == TLS_OK && n == 11);
	CHECK(client_read(&p, buf, 11, &got) > 0 && got == 11 &&
	    memcmp(buf, "220 ready\r\n", 11) == 0);
	CHECK(mbedtls_ssl_write(&p.c.ssl, (const unsigned char *)"EHLO x\r\n", 8) == 8);
	CHECK(server_read(&p, buf, 8, &got) == TLS_OK && got == 8 &&
	    memcmp(buf, "EHLO x\r\n", 8) == 0);
	n = 0;
	CHECK(tls_write(p.t, "", 0, &n) == TLS_OK && n == 0);

	/* One 1000-byte record read 100 bytes at a time: the rest waits in
	 * mbedTLS, where poll() cannot see it. */
	fill(big, 1000, 7);
	CHECK(mbedtls_ssl_write(&p.c.ssl, big, 1000) == 1000);
	CHECK(wait_fds(p.sfd, POLLIN, -1, 0) == 0);
	n = 0;
	CHECK(tls_read(p.t, buf, 100, &n) == TLS_OK && n == 100);
	CHECK_MSG(tls_pending(p.t) == 900, "%zu", tls_pending(p.t));
	CHECK(tls_read(p.t, buf + 100, sizeof(buf) - 100, &n) == TLS_OK && n == 900);
	CHECK(memcmp(buf, big, 1000) == 0);
	CHECK(tls_pending(p.t) == 0);
	CHECK(tls_read(p.t, buf, sizeof(buf), &n) == TLS_WANT_READ);

	/* Small socket buffers, so 100 KiB forces WANT_WRITE both ways. */
	CHECK(setsockopt(p.sfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) == 0);
	CHECK(setsockopt(p.cfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) == 0);
	fill(big, BIG, 1);
	CHECK(server_to_client(&p, big, 0, BIG / 2, &blocked) == 0);
	CHECK_MSG(blocked > 0, "server never blocked");

	/* 1000-byte replies queued one by one while the client reads nothing,
	 * until one blocks half-sent; then more is appended behind it. A
	 * tls_write() that let mbedtls_ssl_write() see the longer length would
	 * count bytes as sent that were never encrypted. */
	fill(big, BIG, 4);
	for (sent = 0, avail = 1000, st = TLS_OK; st == TLS_OK && avail < BIG;) {
		st = tls_write(p.t, big + sent, avail - sent, &n);
		sent += n;
		if (st == TLS_OK && sent == avail)
			avail += 1000;
	}
	CHECK_MSG(st == TLS_WANT_WRITE && avail - sent == 1000, "%s, %zu of %zu",
	    tls_status_str(st), sent, avail);
	blocked = 0;
	CHECK(server_to_client(&p, big, sent, BIG, &blocked) == 0);
	fill(big, BIG, 2);
	CHECK(client_to_server(&p, big, &cblocked) == 0);
	CHECK_MSG(cblocked > 0, "client never blocked");

	/* close_notify from the client: TLS_CLOSED, and it stays so. */
	CHECK(mbedtls_ssl_close_notify(&p.c.ssl) == 0);
	CHECK(server_read(&p, buf, sizeof(buf), &got) == TLS_CLOSED && got == 0);
	CHECK(tls_read(p.t, buf, sizeof(buf), &n) == TLS_CLOSED);
	CHECK(tls_write(p.t, "x", 1, &n) == TLS_CLOSED && n == 0);
	/* tls_free() answers with its own close_notify. */
	tls_free(p.t);
	p.t = NULL;
	CHECK(client_read(&p, buf, sizeof(buf), &got) == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
	pair_close(&p);
}

/* RSA certificate and no client CA: RSA suites, and no certificate asked
 * for even from a client that has one. Then the server's order against a
 * client that prefers ChaCha, and ChaCha when it is all the client has. */
static void
test_rsa_suites(void)
{
	static const int chacha_first[] = {
		MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		0,
	};
	static const int chacha_only[] = { MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, 0 };
	static const int aes256_only[] = { MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, 0 };
	struct client_opts o = { "cli.crt", "cli.key", NULL, 0 };
	struct tls_config *cfg;
	struct pair p;
	char err[512], buf[128];
	enum tls_status st;
	int cr = 0, rounds;

	cfg = tls_config_new(tpath("srv_rsa.crt"), tpath("srv_rsa.key"), NULL, err, sizeof(err));
	CHECK_MSG(cfg != NULL, "%s", err);
	if (cfg == NULL)
		return;

	CHECK(pair_open(&p, cfg, &o) == 0);
	st = handshake(&p, &cr, &rounds);
	CHECK_MSG(st == TLS_OK && cr == 0, "%s: %s", tls_status_str(st), tls_strerror(p.t));
	CHECK_STR(tls_version(p.t), "TLSv1.2");
	CHECK_MSG(strstr(tls_cipher(p.t), "TLS-ECDHE-RSA-WITH-") == tls_cipher(p.t) &&
		(strstr(tls_cipher(p.t), "GCM") != NULL ||
		    strstr(tls_cipher(p.t), "CHACHA") != NULL),
	    "%s", tls_cipher(p.t));
	CHECK(tls_peer_cert_present(p.t) == 0);
	CHECK(tls_peer_cert_verified(p.t) == 0);
	CHECK(tls_peer_subject(p.t, buf, sizeof(buf)) == -1);
	CHECK(tls_peer_fingerprint(p.t, buf, sizeof(buf)) == -1);
	CHECK_STR(tls_peer_verify_str(p.t, buf, sizeof(buf)), "");
	pair_close(&p);

	o.suites = chacha_first;
	CHECK(pair_open(&p, cfg, &o) == 0);
	st = handshake(&p, &cr, &rounds);
	CHECK(st == TLS_OK && cr == 0);
	CHECK_STR(tls_cipher(p.t), "TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256");
	pair_close(&p);

	o.suites = chacha_only;
	CHECK(pair_open(&p, cfg, &o) == 0);
	st = handshake(&p, &cr, &rounds);
	CHECK(st == TLS_OK && cr == 0);
	CHECK_STR(tls_cipher(p.t), "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256");
	pair_close(&p);

	o.suites = aes256_only;
	CHECK(pair_open(&p, cfg, &o) == 0);
	st = handshake(&p, &cr, &rounds);
	CHECK(st == TLS_OK && cr == 0);
	CHECK_STR(tls_cipher(p.t), "TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384");
	pair_close(&p);
	tls_config_unref(cfg);
}

/* What the server must refuse: suites without forward secrecy or AEAD,
 * and versions below 1.2. Each ends in TLS_ERROR on our side. */
static void
test_refused(void)
{
	static const int rsa_kx[] = { MBEDTLS_TLS_RSA_WITH_AES_128_GCM_SHA256, 0 };
	static const int cbc[] = { MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, 0 };
	struct client_opts o = { NULL, NULL, NULL, 0 };
	struct tls_config *cfg;
	struct pair p;
	char err[512];
	enum tls_status st;
	int cr = 0, rounds;

	cfg = tls_config_new(tpath("srv_rsa.crt"), tpath("srv_rsa.key"), NULL, err, sizeof(err));
	CHECK_MSG(cfg != NULL, "%s", err);
	if (cfg == NULL)
		return;

	o.suites = rsa_kx;
	CHECK(pair_open(&p, cfg, &o) == 0);
	st = handshake(&p, &cr, &rounds);
	CHECK_MSG(st == TLS_ERROR && cr != 0, "%s", tls_status_str(st));
	CHECK(strcmp(tls_strerror(p.t), "no error") != 0);
	pair_close(&p);

	o.suites = cbc;
	CHECK(pair_open(&p, cfg, &o) == 0);
	st = handshake(&p, &cr, &rounds);
	CHECK_MSG(st == TLS_ERROR && cr != 0, "%s", tls_status_str(st));
	pair_close(&p);

	o.suites = NULL;
	o.max_minor = MBEDTLS_SSL_MINOR_VERSION_2; /* TLS 1.1 */
	CHECK(pair_open(&p, cfg, &o) == 0);
	st = handshake(&p, &cr, &rounds);
	CHECK_MSG(st == TLS_ERROR && cr != 0, "%s", tls_status_str(st));
	CHECK_STR(tls_version(p.t), "none");
	/* Refused for its version, not only because 1.1 has no AEAD suites. */
	CHECK_MSG(strstr(tls_strerror(p.t), "min/max") != NULL, "%s", tls_strerror(p.t));
	pair_close(&p);
	tls_config_unref(cfg);
}

/* Client certificates the CA did not sign, or none: the handshake still
 * succeeds (VERIFY_OPTIONAL) and the result is reported. */
static void
test_unverified_client(void)
{
	struct client_opts o = { "rogue.crt", "rogue.key", NULL, 0 };
	struct tls_config *cfg;
	struct pair p;
	char err[512], buf[512];
	enum tls_status st;
	int cr = 0, rounds;

	cfg = tls_config_new(
	    tpath("srv_ec.crt"), tpath("srv_ec.key"), tpath("ca.crt"), err, sizeof(err));
	CHECK_MSG(cfg != NULL, "%s", err);
	if (cfg == NULL)
		return;

	CHECK(pair_open(&p, cfg, &o) == 0);
	st = handshake(&p, &cr, &rounds);
	CHECK_MSG(st == TLS_OK && cr == 0, "%s: %s", tls_status_str(st), tls_strerror(p.t));
	CHECK(tls_peer_cert_present(p.t) == 1);
	CHECK(tls_peer_cert_verified(p.t) == 0);
	tls_peer_verify_str(p.t, buf, sizeof(buf));
	CHECK_MSG(
	    strstr(buf, "not correctly signed") != NULL && strchr(buf, '\n') == NULL, "%s", buf);
	CHECK(tls_peer_subject(p.t, buf, sizeof(buf)) == 0);
	CHECK_STR(buf, "CN=rogue.example");
	pair_close(&p);

	o.crt = o.key = NULL;
	CHECK(pair_open(&p, cfg, &o) == 0);
	st = handshake(&p, &cr, &rounds);
	CHECK(st == TLS_OK && cr == 0);
	CHECK(tls_peer_cert_present(p.t) == 0);
	CHECK(tls_peer_cert_verified(p.t) == 0);
	pair_close(&p);
	tls_config_unref(cfg);
}

/* Writes raw bytes at the server and steps its handshake: it must fail in
 * a few rounds, waiting only for readability, and stay failed. */
static void
check_garbage(struct tls_config *cfg, const char *what, const void *bytes, size_t len)
{
	struct pair p;
	enum tls_status st = TLS_WANT_READ;
	char buf[16];
	size_t n;
	int i;

	CHECK(pair_open(&p, cfg, NULL) == 0);
	CHECK(write(p.cfd, bytes, len) == (ssize_t)len);
	for (i = 0; i < 10; i++) {
		if ((st = tls_handshake(p.t)) != TLS_WANT_READ && st != TLS_WANT_WRITE)
			break;
		if (wait_fds(p.sfd, tls_events(st), -1, 0) == -1)
			break;
	}
	CHECK_MSG(st == TLS_ERROR && i < 3, "%s: %s after %d rounds", what, tls_status_str(st), i);
	CHECK_MSG(strcmp(tls_strerror(p.t), "no error") != 0, "%s", what);
	CHECK(tls_handshake(p.t) == TLS_ERROR);
	CHECK(tls_read(p.t, buf, sizeof(buf), &n) == TLS_ERROR);
	CHECK(tls_write(p.t, "x", 1, &n) == TLS_ERROR);
	CHECK(tls_pending(p.t) == 0);
	pair_close(&p);
}

static void
test_garbage(void)
{
	static const char smtp[] = "EHLO garbage.example\r\n";
	/* A handshake record longer than any record may be. */
	static const unsigned char huge[] = { 0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0 };
	/* A well-framed record holding a ClientHello of length 0. */
	static const unsigned char empty_hello[] = { 0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0, 0, 0 };
	unsigned char noise[600];
	struct tls_config *cfg;
	struct pair p;
	char err[512];
	size_t i;

	cfg = tls_config_new(tpath("srv_ec.crt"), tpath("srv_ec.key"), NULL, err, sizeof(err));
	CHECK_MSG(cfg != NULL, "%s", err);
	if (cfg == NULL)
		return;
	check_garbage(cfg, "smtp", smtp, sizeof(smtp) - 1);
	check_garbage(cfg, "huge", huge, sizeof(huge));
	check_garbage(cfg, "empty_hello", empty_hello, sizeof(empty_hello));
	for (i = 0; i < sizeof(noise); i++)
		noise[i] = (unsigned char)(i * 167 + 13);
	check_garbage(cfg, "noise", noise, sizeof(noise));

	/* A client that hangs up before saying anything. */
	CHECK(pair_open(&p, cfg, NULL) == 0);
	close(p.cfd);
	p.cfd = -1;
	CHECK(tls_handshake(p.t) == TLS_CLOSED);
	CHECK(tls_handshake(p.t) == TLS_CLOSED);
	pair_close(&p);
	tls_config_unref(cfg);
}

/* After the handshake: EOF without close_notify is TLS_CLOSED too, and
 * tls_free() writes nothing to a peer that is gone (SIGPIPE is restored
 * to its default for that call, so a write there would end the test). Then
 * a retry after WANT_WRITE with fewer bytes than mbedTLS holds is refused
 * rather than silently misreporting what was sent. */
static void
test_eof_and_misuse(void)
{
	static unsigned char big[BIG];
	struct client_opts o = { NULL, NULL, NULL, 0 };
	struct tls_config *cfg;
	struct pair p;
	char err[512], buf[64];
	enum tls_status st;
	size_t n, sent = 0;
	int cr = 0, rounds, i, sz = 8192;

	cfg = tls_config_new(tpath("srv_ec.crt"), tpath("srv_ec.key"), NULL, err, sizeof(err));
	CHECK_MSG(cfg != NULL, "%s", err);
	if (cfg == NULL)
		return;

	CHECK(pair_open(&p, cfg, &o) == 0);
	st = handshake(&p, &cr, &rounds);
	CHECK(st == TLS_OK && cr == 0);
	close(p.cfd);
	p.cfd = -1;
	CHECK(tls_read(p.t, buf, sizeof(buf), &n) == TLS_CLOSED);
	signal(SIGPIPE, SIG_DFL);
	tls_free(p.t);
	p.t = NULL;
	signal(SIGPIPE, SIG_IGN);
	pair_close(&p);

	CHECK(pair_open(&p, cfg, &o) == 0);
	st = handshake(&p, &cr, &rounds);
	CHECK(st == TLS_OK && cr == 0);
	CHECK(setsockopt(p.sfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) == 0);
	fill(big, BIG, 3);
	for (i = 0, st = TLS_OK; i < 100 && st == TLS_OK && sent < BIG; i++) {
		st = tls_write(p.t, big + sent, BIG - sent, &n);
		sent += n;
	}
	CHECK_MSG(st == TLS_WANT_WRITE, "%s after %zu bytes", tls_status_str(st), sent);
	CHECK(tls_write(p.t, big + sent, 1, &n) == TLS_ERROR && n == 0);
	CHECK_MSG(strstr(tls_strerror(p.t), "pending") != NULL, "%s", tls_strerror(p.t));
	pair_close(&p);
	tls_config_unref(cfg);
}

/* Two struct tls over a socketpair, a server and a client: steps both
 * handshakes until neither waits. Returns the client's status. */
static enum tls_status
both_handshake(struct tls *srv, int sfd, struct tls *cli, int cfd, enum tls_status *sst)
{
	enum tls_status ss = TLS_WANT_READ, cs = TLS_WANT_WRITE;
	int i, sw, cw;

	for (i = 0; i < MAX_ROUNDS; i++) {
		if (ss == TLS_WANT_READ || ss == TLS_WANT_WRITE)
			ss = tls_handshake(srv);
		if (cs == TLS_WANT_READ || cs == TLS_WANT_WRITE)
			cs = tls_handshake(cli);
		sw = ss == TLS_WANT_READ || ss == TLS_WANT_WRITE;
		cw = cs == TLS_WANT_READ || cs == TLS_WANT_WRITE;
		if (!sw && !cw)
			break;
		if (wait_fds(sw ? sfd : -1, tls_events(ss), cw ? cfd : -1, tls_events(cs)) == -1)
			break;
	}
	*sst = ss;
	return cs;
}

/* One client handshake against the EC server: the client's status, and
 * its error text in err. */
static enum tls_status
client_try(
    struct tls_config *scfg, struct tls_config *ccfg, const char *name, char *err, size_t errsz)
{
	struct tls *srv = NULL, *cli = NULL;
	enum tls_status cs = TLS_ERROR, ss;
	char buf[16];
	size_t n;
	int sv[2];

	err[0] = '\0';
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1 || nonblock(sv[0]) == -1 ||
	    nonblock(sv[1]) == -1)
		return TLS_ERROR;
	if ((srv = tls_new(scfg, sv[0])) == NULL || (cli = tls_new(ccfg, sv[1])) == NULL)
		goto out;
	if (name != NULL && tls_set_hostname(cli, name) == -1)
		goto out;
	cs = both_handshake(srv, sv[0], cli, sv[1], &ss);
	snprintf(err, errsz, "%s", tls_strerror(cli));
	if (cs == TLS_OK) {
		/* Data goes through once both sides are done. */
		CHECK(ss == TLS_OK);
		CHECK(tls_write(cli, "ping", 4, &n) == TLS_OK && n == 4);
		CHECK(wait_fds(sv[0], POLLIN, -1, 0) == 0);
		CHECK(tls_read(srv, buf, sizeof(buf), &n) == TLS_OK && n == 4 &&
		    memcmp(buf, "ping", 4) == 0);
	}
out:
	tls_free(cli);
	tls_free(srv);
	close(sv[0]);
	close(sv[1]);
	return cs;
}

/* The client side (luamta.tcp's starttls): verification against a CA
 * file, the name checked, no verification at all, and a missing file. */
static void
test_client_side(void)
{
	struct tls_config *scfg, *ca, *none;
	char err[512];

	scfg = tls_config_new(tpath("srv_ec.crt"), tpath("srv_ec.key"), NULL, err, sizeof(err));
	ca = tls_config_client_new(tpath("ca.crt"), err, sizeof(err));
	none = tls_config_client_new(NULL, err, sizeof(err));
	CHECK(scfg != NULL && ca != NULL && none != NULL);
	if (scfg == NULL || ca == NULL || none == NULL)
		goto out;

	CHECK_MSG(client_try(scfg, ca, "localhost", err, sizeof(err)) == TLS_OK, "%s", err);
	CHECK(client_try(scfg, ca, "wrong.example", err, sizeof(err)) == TLS_ERROR);
	CHECK_MSG(strncmp(err, "certificate verify failed: ", 27) == 0 &&
		strstr(err, "Common Name") != NULL && strchr(err, '\n') == NULL,
	    "%s", err);
	CHECK_MSG(client_try(scfg, none, "wrong.example", err, sizeof(err)) == TLS_OK, "%s", err);

	/* A CA that did not sign the server's certificate. */
	tls_config_unref(ca);
	ca = tls_config_client_new(tpath("rogue.crt"), err, sizeof(err));
	CHECK(ca != NULL);
	if (ca != NULL) {
		CHECK(client_try(scfg, ca, "localhost", err, sizeof(err)) == TLS_ERROR);
		CHECK_MSG(strstr(err, "not correctly signed") != NULL, "%s", err);
	}

	err[0] = '\0';
	CHECK(tls_config_client_new(tpath("missing-ca.crt"), err, sizeof(err)) == NULL);
	CHECK_MSG(
	    strstr(err, "CA file") != NULL && strstr(err, "missing-ca.crt") != NULL, "%s", err);
out:
	tls_config_unref(none);
	tls_config_unref(ca);
	tls_config_unref(scfg);
}

static void
cleanup(void)
{
	char cmd[PATH_MAX + 32];

	if (dir[0] == '\0' || getenv("LUAMTA_TEST_KEEP") != NULL)
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)system(cmd);
}

int
main(void)
{
	static const char pers[] = "test_tls";
	const char *tmp = getenv("TMPDIR");

	/* The client writes with mbedtls_net_send(), plain write(2), as the
	 * server does; main.c ignores SIGPIPE the same way. */
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "%s/test_tls.XXXXXX", tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	atexit(cleanup);
	if (make_certs() == -1) {
		fprintf(stderr, "could not make certificates with openssl\n");
		return 2;
	}
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
		(const unsigned char *)pers, sizeof(pers) - 1) != 0) {
		fprintf(stderr, "ctr_drbg_seed failed\n");
		return 2;
	}

	test_status_str();
	test_config_errors();
	test_ec_client_cert();
	test_rsa_suites();
	test_refused();
	test_unverified_client();
	test_garbage();
	test_eof_and_misuse();
	test_client_side();

	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return test_done("test_tls");
}
