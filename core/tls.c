/* tls.c - mbedTLS 2.28 server and client contexts over non-blocking fds. Maps mbedTLS
 * return codes onto enum tls_status and keeps errors sticky, so the caller
 * only ever waits on the fd it is told to; when to time out, what to do
 * with an unverified client certificate and how to log it are the caller's. */
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/x509.h>
#include <mbedtls/x509_crt.h>

#define TLS_ERRBUF 320

struct tls_config {
	int refs;
	mbedtls_ssl_config conf; /* points into every field below */
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg; /* shared by all connections: one thread */
	mbedtls_x509_crt cert;         /* our chain, leaf first */
	mbedtls_pk_context key;
	mbedtls_x509_crt ca; /* client CAs; empty without client_ca */
	int suites[8];       /* tls_suites[] that this mbedTLS build has, 0-ended */
};

struct tls {
	mbedtls_ssl_context ssl;
	struct tls_config *cfg; /* a reference, dropped by tls_free() */
	int fd;                 /* borrowed; never closed here */
	int done;               /* handshake completed */
	int failed;             /* a fatal error: every call returns TLS_ERROR */
	int closed;             /* peer sent close_notify or hung up */
	int eof;                /* ... hung up, so there is no one to answer */
	int sys_errno;          /* errno behind the last NET error, or 0 */
	size_t wpend;           /* length of a record mbedTLS holds half-sent */
	char errbuf[TLS_ERRBUF];
};

/* Forward-secret AEAD suites only, in our order of preference (Mozilla's
 * "intermediate" list restricted to what TLS 1.2 in mbedTLS offers).
 * mbedTLS 2.28 has no mbedtls_ssl_conf_preference_order(): a server uses
 * its own order unless the library was built with
 * MBEDTLS_SSL_SRV_RESPECT_CLIENT_PREFERENCE (Debian's is not; test_tls
 * checks it). Which of the ECDSA or RSA halves applies follows from the
 * certificate's key. */
static const int tls_suites[] = {
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
};

/* The default list also offers secp192r1/secp224r1 and the Koblitz and
 * Brainpool curves. This list also bounds the curves accepted for client
 * certificate keys (others verify as MBEDTLS_X509_BADCERT_BAD_KEY), hence
 * P-521 stays. */
static const mbedtls_ecp_group_id tls_curves[] = {
	MBEDTLS_ECP_DP_CURVE25519,
	MBEDTLS_ECP_DP_SECP256R1,
	MBEDTLS_ECP_DP_SECP384R1,
	MBEDTLS_ECP_DP_SECP521R1,
	MBEDTLS_ECP_DP_NONE,
};

static const char *const tls_status_names[] = {
	"ok",
	"want_read",
	"want_write",
	"closed",
	"error",
};

const char *
tls_status_str(enum tls_status st)
{
	return (unsigned)st < sizeof(tls_status_names) / sizeof(tls_status_names[0]) ?
	    tls_status_names[st] :
	    "?";
}

static void tls_config_msg(char *, size_t, const char *, ...) __attribute__((format(printf, 3, 4)));

static void
tls_config_msg(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errsz == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
}

/* "what file: mbedTLS text", with the errno of a failed fopen() inside
 * mbedTLS, which its own text ("Read/write of file failed") leaves out. */
static void
tls_config_fail(char *err, size_t errsz, const char *what, const char *file, int ret, int saved)
{
	char mbed[128];

	if (ret > 0) {
		/* mbedtls_x509_crt_parse_file() counts the certificates it
		 * skipped; a chain with a hole in it is not what was meant. */
		tls_config_msg(
		    err, errsz, "%s %s: %d certificate(s) could not be parsed", what, file, ret);
		return;
	}
	mbedtls_strerror(ret, mbed, sizeof(mbed));
	if ((ret == MBEDTLS_ERR_PK_FILE_IO_ERROR || ret == MBEDTLS_ERR_X509_FILE_IO_ERROR) &&
	    saved != 0)
		tls_config_msg(err, errsz, "%s %s: %s (%s)", what, file, mbed, strerror(saved));
	else
		tls_config_msg(err, errsz, "%s %s: %s", what, file, mbed);
}

/* A config with everything initialised (so one exit path can free it
 * all) and nothing loaded, or NULL. */
static struct tls_config *
tls_config_alloc(char *err, size_t errsz)
{
	struct tls_config *cfg;

	if ((cfg = calloc(1, sizeof(*cfg))) == NULL) {
		tls_config_msg(err, errsz, "tls config: %s", strerror(errno));
		return NULL;
	}
	cfg->refs = 1;
	mbedtls_ssl_config_init(&cfg->conf);
	mbedtls_entropy_init(&cfg->entropy);
	mbedtls_ctr_drbg_init(&cfg->drbg);
	mbedtls_x509_crt_init(&cfg->cert);
	mbedtls_pk_init(&cfg->key);
	mbedtls_x509_crt_init(&cfg->ca);
	return cfg;
}

/* What servers and clients share: a seeded generator, TLS 1.2, the suites
 * and curves below, no renegotiation and no session tickets. 0 or -1. */
static int
tls_config_base(struct tls_config *cfg, int endpoint, char *err, size_t errsz)
{
	static const char pers[] = "luamta tls";
	size_t i, ns = 0;
	int ret;

	if ((ret = mbedtls_ctr_drbg_seed(&cfg->drbg, mbedtls_entropy_func, &cfg->entropy,
		 (const unsigned char *)pers, sizeof(pers) - 1)) != 0) {
		tls_config_fail(err, errsz, "random generator", "seed", ret, 0);
		return -1;
	}
	if ((ret = mbedtls_ssl_config_defaults(&cfg->conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
		 MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
		tls_config_fail(err, errsz, "tls", "defaults", ret, 0);
		return -1;
	}
	mbedtls_ssl_conf_rng(&cfg->conf, mbedtls_ctr_drbg_random, &cfg->drbg);

	/* TLS 1.2 both ways: mbedTLS 2.28 implements TLS 1.3 only behind
	 * MBEDTLS_SSL_PROTO_TLS1_3_EXPERIMENTAL, outside its stable API, and
	 * 1.0/1.1 are deprecated (RFC 8996). */
	mbedtls_ssl_conf_min_version(
	    &cfg->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_max_version(
	    &cfg->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);

	/* A suite this build lacks would fail the handshake of any client that
	 * offers it ("should never happen" in ssl_ciphersuite_match), so only
	 * list the ones mbedTLS knows. */
	for (i = 0; i < sizeof(tls_suites) / sizeof(tls_suites[0]); i++)
		if (mbedtls_ssl_ciphersuite_from_id(tls_suites[i]) != NULL)
			cfg->suites[ns++] = tls_suites[i];
	cfg->suites[ns] = 0;
	if (ns == 0) {
		tls_config_msg(err, errsz, "tls: this mbedTLS has no ECDHE AEAD cipher suite");
		return -1;
	}
	mbedtls_ssl_conf_ciphersuites(&cfg->conf, cfg->suites);
	mbedtls_ssl_conf_curves(&cfg->conf, tls_curves);

	/* Client-initiated renegotiation costs the server a full handshake
	 * per request (a CPU DoS) and SMTP never needs it; this is the
	 * default, stated so that no one turns it on by accident. */
	mbedtls_ssl_conf_renegotiation(&cfg->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);

	/* No resumption: no ticket callbacks and no session cache. SMTP
	 * clients seldom reconnect within a ticket's lifetime, a full
	 * handshake costs little next to a delivery, and tickets would need a
	 * key that rotates and survives reloads; a static one would undo
	 * forward secrecy. For a client this stops it asking for tickets. */
	mbedtls_ssl_conf_session_tickets(&cfg->conf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
	return 0;
}

struct tls_config *
tls_config_new(
    const char *cert_file, const char *key_file, const char *client_ca, char *err, size_t errsz)
{
	struct tls_config *cfg;
	int ret;

	if ((cfg = tls_config_alloc(err, errsz)) == NULL)
		return NULL;
	errno = 0;
	if ((ret = mbedtls_x509_crt_parse_file(&cfg->cert, cert_file)) != 0) {
		tls_config_fail(err, errsz, "certificate", cert_file, ret, errno);
		goto fail;
	}
	errno = 0;
	if ((ret = mbedtls_pk_parse_keyfile(&cfg->key, key_file, NULL)) != 0) {
		tls_config_fail(err, errsz, "key", key_file, ret, errno);
		goto fail;
	}
	/* Without this, a key left over from the previous certificate loads
	 * fine and every handshake fails later, far from the cause. */
	if ((ret = mbedtls_pk_check_pair(&cfg->cert.pk, &cfg->key)) != 0) {
		char mbed[128];

		mbedtls_strerror(ret, mbed, sizeof(mbed));
		tls_config_msg(err, errsz, "key %s does not match certificate %s: %s", key_file,
		    cert_file, mbed);
		goto fail;
	}
	errno = 0;
	if (client_ca != NULL && (ret = mbedtls_x509_crt_parse_file(&cfg->ca, client_ca)) != 0) {
		tls_config_fail(err, errsz, "client CA", client_ca, ret, errno);
		goto fail;
	}
	if (tls_config_base(cfg, MBEDTLS_SSL_IS_SERVER, err, errsz) == -1)
		goto fail;
	if ((ret = mbedtls_ssl_conf_own_cert(&cfg->conf, &cfg->cert, &cfg->key)) != 0) {
		tls_config_fail(err, errsz, "certificate", cert_file, ret, 0);
		goto fail;
	}
	if (client_ca != NULL) {
		/* OPTIONAL: the handshake succeeds whatever the client sends;
		 * the verify result is reported and the policy decides. */
		mbedtls_ssl_conf_ca_chain(&cfg->conf, &cfg->ca, NULL);
		mbedtls_ssl_conf_authmode(&cfg->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
	} else
		mbedtls_ssl_conf_authmode(&cfg->conf, MBEDTLS_SSL_VERIFY_NONE);
	return cfg;
fail:
	tls_config_unref(cfg);
	return NULL;
}

struct tls_config *
tls_config_client_new(const char *ca_file, char *err, size_t errsz)
{
	struct tls_config *cfg;
	int ret;

	if ((cfg = tls_config_alloc(err, errsz)) == NULL)
		return NULL;
	errno = 0;
	if (ca_file != NULL && (ret = mbedtls_x509_crt_parse_file(&cfg->ca, ca_file)) != 0) {
		/* A system bundle holds a few certificates this mbedTLS cannot
		 * parse (other key types, odd extensions); the rest still
		 * anchor trust. Only a file with none usable is an error. */
		if (ret < 0 || cfg->ca.version == 0) {
			tls_config_fail(err, errsz, "CA file", ca_file, ret, errno);
			goto fail;
		}
	}
	if (tls_config_base(cfg, MBEDTLS_SSL_IS_CLIENT, err, errsz) == -1)
		goto fail;
	if (ca_file != NULL) {
		mbedtls_ssl_conf_ca_chain(&cfg->conf, &cfg->ca, NULL);
		mbedtls_ssl_conf_authmode(&cfg->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	} else
		mbedtls_ssl_conf_authmode(&cfg->conf, MBEDTLS_SSL_VERIFY_NONE);
	return cfg;
fail:
	tls_config_unref(cfg);
	return NULL;
}

struct tls_config *
tls_config_ref(struct tls_config *cfg)
{
	cfg->refs++;
	return cfg;
}

int
tls_config_reseed(struct tls_config *cfg)
{
	pid_t pid = getpid();

	return mbedtls_ctr_drbg_reseed(&cfg->drbg, (const unsigned char *)&pid, sizeof(pid)) == 0 ?
	    0 :
	    -1;
}

void
tls_config_unref(struct tls_config *cfg)
{
	if (cfg == NULL || --cfg->refs > 0)
		return;
	mbedtls_ssl_config_free(&cfg->conf);
	mbedtls_x509_crt_free(&cfg->ca);
	mbedtls_pk_free(&cfg->key);
	mbedtls_x509_crt_free(&cfg->cert);
	mbedtls_ctr_drbg_free(&cfg->drbg);
	mbedtls_entropy_free(&cfg->entropy);
	free(cfg);
}

/* The bio callbacks. mbedTLS asks for exactly the bytes of the current
 * record, never more, so no ciphertext waits in its buffers while the fd
 * looks idle; only decrypted bytes can (tls_pending). */
static int
tls_bio_send(void *ctx, const unsigned char *p, size_t len)
{
	struct tls *t = ctx;
	ssize_t n;

	for (;;) {
		if ((n = write(t->fd, p, len)) >= 0)
			return (int)n; /* len is one record, far below INT_MAX */
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return MBEDTLS_ERR_SSL_WANT_WRITE;
		t->sys_errno = errno;
		if (errno == EPIPE || errno == ECONNRESET)
			return MBEDTLS_ERR_NET_CONN_RESET;
		return MBEDTLS_ERR_NET_SEND_FAILED;
	}
}

static int
tls_bio_recv(void *ctx, unsigned char *p, size_t len)
{
	struct tls *t = ctx;
	ssize_t n;

	for (;;) {
		if ((n = read(t->fd, p, len)) >= 0)
			return (int)n; /* 0 is EOF: MBEDTLS_ERR_SSL_CONN_EOF */
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return MBEDTLS_ERR_SSL_WANT_READ;
		t->sys_errno = errno;
		if (errno == EPIPE || errno == ECONNRESET)
			return MBEDTLS_ERR_NET_CONN_RESET;
		return MBEDTLS_ERR_NET_RECV_FAILED;
	}
}

struct tls *
tls_new(struct tls_config *cfg, int fd)
{
	struct tls *t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	mbedtls_ssl_init(&t->ssl);
	/* This allocates the record buffers, MBEDTLS_SSL_IN_CONTENT_LEN and
	 * MBEDTLS_SSL_OUT_CONTENT_LEN plus overhead: most of what a
	 * connection costs, and fixed unless mbedTLS is rebuilt. */
	if (mbedtls_ssl_setup(&t->ssl, &cfg->conf) != 0) {
		mbedtls_ssl_free(&t->ssl);
		free(t);
		return NULL;
	}
	mbedtls_ssl_set_bio(&t->ssl, t, tls_bio_send, tls_bio_recv, NULL);
	t->fd = fd;
	t->cfg = tls_config_ref(cfg);
	strcpy(t->errbuf, "no error");
	return t;
}

int
tls_set_hostname(struct tls *t, const char *name)
{
	return mbedtls_ssl_set_hostname(&t->ssl, name) == 0 ? 0 : -1;
}

void
tls_free(struct tls *t)
{
	if (t == NULL)
		return;
	/* One try, without waiting: the peer may be gone or its window full,
	 * and a connection being freed has nothing to wait for. After an
	 * error the record state is unknown, and after a hang-up no one reads. */
	if (t->done && !t->failed && !t->eof)
		(void)mbedtls_ssl_close_notify(&t->ssl);
	mbedtls_ssl_free(&t->ssl);
	tls_config_unref(t->cfg);
	free(t);
}

/* mbedTLS gives " reason\n" per verify flag; one line wants "a; b". */
static char *
tls_verify_info(uint32_t flags, char *buf, size_t len)
{
	size_t i, j;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (mbedtls_x509_crt_verify_info(buf, len, " ", flags) < 0)
		buf[len - 1] = '\0';
	for (i = buf[0] == ' ', j = 0; buf[i] != '\0'; i++) {
		if (buf[i] != '\n')
			buf[j++] = buf[i];
		else if (buf[i + 1] != '\0')
			buf[j++] = ';';
	}
	buf[j] = '\0';
	return buf;
}

/* Maps a negative mbedTLS return onto a status, recording failures. */
static enum tls_status
tls_status_of(struct tls *t, int ret)
{
	char mbed[128], info[TLS_ERRBUF - 32];

	switch (ret) {
	case MBEDTLS_ERR_SSL_WANT_READ:
		return TLS_WANT_READ;
	case MBEDTLS_ERR_SSL_WANT_WRITE:
		return TLS_WANT_WRITE;
	case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
		t->closed = 1;
		return TLS_CLOSED;
	case 0: /* mbedtls_ssl_read(): EOF without close_notify */
	case MBEDTLS_ERR_SSL_CONN_EOF:
		t->closed = t->eof = 1;
		return TLS_CLOSED;
	}
	t->failed = 1;
	/* Only a client config verifies during the handshake (a server's
	 * client certificate check is optional and reported afterwards). */
	if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
		tls_verify_info(mbedtls_ssl_get_verify_result(&t->ssl), info, sizeof(info));
		snprintf(t->errbuf, sizeof(t->errbuf), "certificate verify failed: %s", info);
		return TLS_ERROR;
	}
	mbedtls_strerror(ret, mbed, sizeof(mbed));
	if (t->sys_errno != 0)
		snprintf(t->errbuf, sizeof(t->errbuf), "%s (%s)", mbed, strerror(t->sys_errno));
	else
		snprintf(t->errbuf, sizeof(t->errbuf), "%s", mbed);
	return TLS_ERROR;
}

/* Sticky states first: mbedTLS gives no guarantees for a context that has
 * failed, and a closed one has nothing more to say. */
static int
tls_finished(const struct tls *t, enum tls_status *st)
{
	if (t->failed)
		*st = TLS_ERROR;
	else if (t->closed)
		*st = TLS_CLOSED;
	else
		return 0;
	return 1;
}

enum tls_status
tls_handshake(struct tls *t)
{
	enum tls_status st;
	int ret;

	if (tls_finished(t, &st))
		return st;
	if (t->done)
		return TLS_OK;
	if ((ret = mbedtls_ssl_handshake(&t->ssl)) != 0)
		return tls_status_of(t, ret);
	t->done = 1;
	return TLS_OK;
}

enum tls_status
tls_read(struct tls *t, void *buf, size_t len, size_t *n)
{
	enum tls_status st;
	int ret;

	*n = 0;
	if ((st = tls_handshake(t)) != TLS_OK)
		return st;
	if (len == 0)
		return TLS_OK;
	if (len > INT_MAX)
		len = INT_MAX;
	if ((ret = mbedtls_ssl_read(&t->ssl, buf, len)) <= 0)
		return tls_status_of(t, ret);
	*n = (size_t)ret;
	return TLS_OK;
}

size_t
tls_pending(const struct tls *t)
{
	return t->failed ? 0 : mbedtls_ssl_get_bytes_avail(&t->ssl);
}

enum tls_status
tls_write(struct tls *t, const void *buf, size_t len, size_t *n)
{
	const unsigned char *p = buf;
	enum tls_status st;
	size_t off = 0, chunk, max;
	int ret;

	*n = 0;
	if ((st = tls_handshake(t)) != TLS_OK)
		return st;
	if ((ret = mbedtls_ssl_get_max_out_record_payload(&t->ssl)) <= 0)
		return tls_status_of(t, ret < 0 ? ret : MBEDTLS_ERR_SSL_INTERNAL_ERROR);
	max = (size_t)ret;
	/* A retry after WANT_WRITE must present the pending record's length
	 * again: mbedtls_ssl_write() only flushes then and reports that many
	 * bytes as written, whatever they are. Remembering it ourselves lets
	 * the caller append behind the pending bytes without losing any. */
	if (t->wpend > len) {
		t->failed = 1;
		snprintf(t->errbuf, sizeof(t->errbuf),
		    "tls_write retried with %zu bytes, %zu are pending", len, t->wpend);
		return TLS_ERROR;
	}
	while (off < len) {
		chunk = t->wpend != 0 ? t->wpend : (len - off < max ? len - off : max);
		if ((ret = mbedtls_ssl_write(&t->ssl, p + off, chunk)) > 0) {
			off += (size_t)ret;
			t->wpend = 0;
			continue;
		}
		if (ret == MBEDTLS_ERR_SSL_WANT_WRITE)
			t->wpend = chunk; /* encrypted, partly sent */
		st = tls_status_of(t, ret);
		if (off > 0 && (st == TLS_WANT_WRITE || st == TLS_WANT_READ))
			break;
		return st;
	}
	*n = off;
	return TLS_OK;
}

const char *
tls_strerror(const struct tls *t)
{
	return t->errbuf;
}

const char *
tls_version(const struct tls *t)
{
	return t->done ? mbedtls_ssl_get_version(&t->ssl) : "none";
}

const char *
tls_cipher(const struct tls *t)
{
	const char *s = t->done ? mbedtls_ssl_get_ciphersuite(&t->ssl) : NULL;

	return s != NULL ? s : "none";
}

static const mbedtls_x509_crt *
tls_peer_cert(const struct tls *t)
{
	return t->done ? mbedtls_ssl_get_peer_cert(&t->ssl) : NULL;
}

int
tls_peer_cert_present(const struct tls *t)
{
	return tls_peer_cert(t) != NULL;
}

int
tls_peer_cert_verified(const struct tls *t)
{
	return tls_peer_cert(t) != NULL && mbedtls_ssl_get_verify_result(&t->ssl) == 0;
}

char *
tls_peer_verify_str(const struct tls *t, char *buf, size_t len)
{
	uint32_t flags;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (tls_peer_cert(t) == NULL || (flags = mbedtls_ssl_get_verify_result(&t->ssl)) == 0)
		return buf;
	return tls_verify_info(flags, buf, len);
}

int
tls_peer_subject(const struct tls *t, char *buf, size_t len)
{
	const mbedtls_x509_crt *crt = tls_peer_cert(t);

	if (crt == NULL || len == 0 || mbedtls_x509_dn_gets(buf, len, &crt->subject) < 0)
		return -1;
	return 0;
}

int
tls_peer_fingerprint(const struct tls *t, char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const mbedtls_x509_crt *crt = tls_peer_cert(t);
	unsigned char md[32];
	size_t i;

	if (crt == NULL || len < 2 * sizeof(md) + 1)
		return -1;
	if (mbedtls_sha256_ret(crt->raw.p, crt->raw.len, md, 0) != 0)
		return -1;
	for (i = 0; i < sizeof(md); i++) {
		buf[2 * i] = hex[md[i] >> 4];
		buf[2 * i + 1] = hex[md[i] & 0xf];
	}
	buf[2 * sizeof(md)] = '\0';
	return 0;
}
