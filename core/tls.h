/* tls.h - TLS over a non-blocking socket, on mbedTLS 2.28: the server side,
 * and the client side for the cosockets of hooks (cosocket.c).
 * A refcounted config (certificate, key, optional client CA) and one context
 * per connection whose calls never block and return named statuses. Knows
 * nothing of SMTP or of the event loop: the caller waits for the fd as told
 * (TLS_WANT_READ/TLS_WANT_WRITE) and decides policy from what it reports.
 * Writes use plain write(2): the process must ignore SIGPIPE (main.c does). */
#ifndef LUAMTA_TLS_H
#define LUAMTA_TLS_H

#include <stddef.h>

struct tls_config; /* opaque, refcounted */
struct tls;        /* opaque, one per connection */

enum tls_status {
	TLS_OK = 0,     /* done, or *n bytes moved */
	TLS_WANT_READ,  /* wait until the fd is readable, then call again */
	TLS_WANT_WRITE, /* wait until the fd is writable, then call again */
	TLS_CLOSED,     /* the peer sent close_notify or hung up */
	TLS_ERROR,      /* fatal for this connection, see tls_strerror() */
};
const char *tls_status_str(enum tls_status);

/* Loads a PEM certificate chain and its private key (unencrypted), checks
 * that they match, and builds a server config: TLS 1.2 only, ECDHE with
 * AES-GCM or ChaCha20-Poly1305 in the server's order, no renegotiation, no
 * session resumption. With client_ca (a PEM file of CAs, or NULL) clients
 * are asked for a certificate but may go without one, and a certificate
 * that does not verify is reported (tls_peer_cert_verified), not fatal.
 * Returns a config holding one reference, or NULL with a message naming the
 * file in err (if err is not NULL). Blocks on file reads: startup and
 * reload only. */
struct tls_config *tls_config_new(
    const char *cert_file, const char *key_file, const char *client_ca, char *err, size_t errsz);
/* A client config: TLS 1.2 with the suites and curves of the server's.
 * With ca_file (a PEM bundle), the server's certificate must chain to one
 * of its CAs and, when tls_set_hostname() named it, carry that name; a
 * failure ends the handshake with TLS_ERROR and "certificate verify failed:
 * <reasons>" from tls_strerror(). Without, nothing is verified. Certificates
 * of the bundle this mbedTLS cannot parse are skipped. Returns a config
 * holding one reference, or NULL with a message in err. Blocks reading the
 * file: build it once and keep it. */
struct tls_config *tls_config_client_new(const char *ca_file, char *err, size_t errsz);
/* Takes one more reference, for each holder (a listener, a connection). A
 * reload builds a new config and unrefs the old one; connections that took
 * a reference keep using theirs. Returns cfg. */
struct tls_config *tls_config_ref(struct tls_config *);
/* Drops a reference; the last one frees the config. NULL is a no-op. */
void tls_config_unref(struct tls_config *);
/* After fork(): gives this process's copy of cfg a random generator state
 * of its own (fresh entropy, the pid as extra input), so processes that
 * share a copy never make the same handshake keys. 0, or -1 when the
 * entropy source failed (the copy must not be used then). */
int tls_config_reseed(struct tls_config *);

/* Starts a context on fd (server or client, after its config), which the caller has made
 * non-blocking and keeps owning: tls_free() does not close it. Takes a
 * reference on cfg, released by tls_free(). NULL when out of memory. */
struct tls *tls_new(struct tls_config *, int fd);
/* For a context on a client config, before the handshake: the name sent
 * as SNI and, when the config verifies, the name the certificate must
 * carry (the copy is the context's). 0, or -1 when out of memory or too
 * long. */
int tls_set_hostname(struct tls *, const char *name);
/* Sends one close_notify if the handshake completed and nothing failed
 * (without waiting, ignoring the result), then frees everything but the fd.
 * NULL is a no-op. */
void tls_free(struct tls *);

/* Advances the handshake: TLS_OK once it is complete, TLS_WANT_READ or
 * TLS_WANT_WRITE while it needs the fd, TLS_CLOSED if the client hung up,
 * TLS_ERROR on anything else (garbage, no shared suite, bad version).
 * The handshake has no timer of its own; the caller's idle timeout ends a
 * client that stalls. Errors are sticky: every later call returns
 * TLS_ERROR. */
enum tls_status tls_handshake(struct tls *);

/* Reads decrypted bytes: TLS_OK with 0 < *n <= len (len 0 gives TLS_OK and
 * *n = 0), or TLS_WANT_READ/WANT_WRITE, TLS_CLOSED, TLS_ERROR with *n = 0.
 * Like tls_write(), it first finishes the handshake if that is not done. */
enum tls_status tls_read(struct tls *, void *buf, size_t len, size_t *n);
/* Bytes already decrypted and buffered inside mbedTLS. When a tls_read()
 * filled its buffer, read again while this is non-zero: the fd will not
 * become readable for bytes that have already left it. */
size_t tls_pending(const struct tls *);

/* Encrypts and sends up to len bytes, one record (16 KiB) at a time.
 * TLS_OK with *n == len: all sent. TLS_OK with *n < len: the socket filled
 * up; the first *n bytes are gone, and the caller waits for writability and
 * calls again with buf + *n. TLS_WANT_WRITE (*n = 0): nothing more went out;
 * a record may already be encrypted and half-sent, so, as mbedTLS requires,
 * the caller calls again with the SAME bytes at the start of buf and at
 * least the same len (bytes appended behind them are fine). Also
 * TLS_WANT_READ, TLS_CLOSED or TLS_ERROR, with *n = 0. */
enum tls_status tls_write(struct tls *, const void *buf, size_t len, size_t *n);

/* The last failure as text (mbedTLS error and errno where one applies), or
 * "no error". Valid until the next call on t. */
const char *tls_strerror(const struct tls *);

/* After a completed handshake: "TLSv1.2" and the suite's IANA-like name
 * ("TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256"); "none" before. Static strings. */
const char *tls_version(const struct tls *);
const char *tls_cipher(const struct tls *);

/* The client certificate, when the config has a client CA. */
int tls_peer_cert_present(const struct tls *);  /* 1 if the client sent one */
int tls_peer_cert_verified(const struct tls *); /* 1 if it chains to the client CA */
/* Why the client certificate did not verify, one line ("" when it did or
 * was not sent). Returns buf. */
char *tls_peer_verify_str(const struct tls *, char *buf, size_t len);
/* The subject DN ("O=Example, CN=client.example") into buf. 0, or -1 when
 * there is no certificate or it does not fit. */
int tls_peer_subject(const struct tls *, char *buf, size_t len);
/* The SHA-256 of the certificate's DER, as 64 lower-case hex digits and a
 * NUL (len >= 65). 0, or -1 when there is no certificate or len is short. */
int tls_peer_fingerprint(const struct tls *, char *buf, size_t len);

#endif
