/* anvil.c - per-client connection counts and rates in a seeded hash table.
 *
 * The table is chained rather than open addressed. Entries come and go all
 * the time (a client is dropped once idle), and unlinking from a chain needs
 * no tombstones or backward shifting; the table may also hold more than
 * ANVIL_ENTRIES_MAX entries (those with connections open) without a rehash
 * or a "table full" failure; and an entry never moves, so a resize cannot
 * invalidate one a caller holds. The price is one malloc per client, small
 * next to what its connection allocates.
 *
 * Buckets are chosen by SipHash-2-4 under a random per-table key, so a
 * client cannot pick addresses that land in one chain and make every lookup
 * walk all of them (the attack on unkeyed hashes described by Crosby and
 * Wallach, 2003; SipHash is what Python, Rust and Redis use against it). */
#include "anvil.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Bucket counts are powers of two. Under the cap, growing at one entry per
 * bucket keeps chains short; past ANVIL_BUCKETS_MAX only entries with open
 * connections are added, and chains grow a little instead. */
#define ANVIL_BUCKETS_MIN 64
#define ANVIL_BUCKETS_MAX 65536
/* Buckets the sweep visits per call, and per call while the table is full:
 * a full table needs a dropped entry soon to count new clients again. */
#define ANVIL_SWEEP      4
#define ANVIL_SWEEP_FULL 64

/* 48 bytes on LP64 (64 with glibc's malloc header). */
struct anvil_entry {
	struct anvil_entry *next; /* owned: the rest of the chain */
	double start;             /* when the current rate window opened */
	unsigned int count;       /* attempts in that window; 0: no window */
	int open;                 /* connections counted open */
	uint32_t hash;            /* of key, kept for resizing and quick compares */
	struct anvil_key key;
};

struct anvil {
	struct anvil_entry **buckets; /* owned: nbuckets chains */
	size_t nbuckets;              /* a power of two */
	size_t size;                  /* entries in all chains */
	size_t cursor;                /* next bucket the sweep visits */
	double now;                   /* latest time passed to anvil_connect */
	uint64_t seed[2];             /* SipHash key */
};

const char *
anvil_verdict_str(enum anvil_verdict v)
{
	switch (v) {
	case ANVIL_OK:
		return "ok";
	case ANVIL_TOO_MANY:
		return "max_per_ip";
	case ANVIL_TOO_FAST:
		return "max_conn_rate";
	}
	return "?";
}

static uint64_t
rotl64(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static void
sip_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = rotl64(v[1], 13);
	v[1] ^= v[0];
	v[0] = rotl64(v[0], 32);
	v[2] += v[3];
	v[3] = rotl64(v[3], 16);
	v[3] ^= v[2];
	v[0] += v[3];
	v[3] = rotl64(v[3], 21);
	v[3] ^= v[0];
	v[2] += v[1];
	v[1] = rotl64(v[1], 17);
	v[1] ^= v[2];
	v[2] = rotl64(v[2], 32);
}

/* Little-endian whatever the host, as SipHash is defined. */
static uint64_t
load_le64(const unsigned char *p)
{
	uint64_t x = 0;
	int i;

	for (i = 7; i >= 0; i--)
		x = (x << 8) | p[i];
	return x;
}

/* SipHash-2-4 (Aumasson and Bernstein, 2012) of len bytes under key k. */
static uint64_t
siphash24(const uint64_t k[2], const unsigned char *p, size_t len)
{
	uint64_t v[4] = {
		k[0] ^ 0x736f6d6570736575ULL,
		k[1] ^ 0x646f72616e646f6dULL,
		k[0] ^ 0x6c7967656e657261ULL,
		k[1] ^ 0x7465646279746573ULL,
	};
	size_t i, tail = len & 7, whole = len - tail;
	uint64_t m;

	for (i = 0; i < whole; i += 8) {
		m = load_le64(p + i);
		v[3] ^= m;
		sip_round(v);
		sip_round(v);
		v[0] ^= m;
	}
	/* The last block carries the length in its top byte. */
	m = (uint64_t)len << 56;
	for (i = 0; i < tail; i++)
		m |= (uint64_t)p[whole + i] << (8 * i);
	v[3] ^= m;
	sip_round(v);
	sip_round(v);
	v[0] ^= m;
	v[2] ^= 0xff;
	for (i = 0; i < 4; i++)
		sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* The kernel's randomness, else /dev/urandom (a kernel older than
 * getrandom(), or a seccomp filter that refuses it), else the time, the pid
 * and an address: guessable, but it varies between processes and restarts,
 * and losing the seed only brings back long chains, not wrong counts. */
static void
anvil_seed(uint64_t seed[2])
{
	struct timespec ts;
	ssize_t n;
	int fd;

	if (getrandom(seed, 2 * sizeof(seed[0]), GRND_NONBLOCK) == (ssize_t)(2 * sizeof(seed[0])))
		return;
	if ((fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)) != -1) {
		n = read(fd, seed, 2 * sizeof(seed[0]));
		close(fd);
		if (n == (ssize_t)(2 * sizeof(seed[0])))
			return;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	seed[0] = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)seed;
	seed[1] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30);
}

static uint32_t
key_hash(const struct anvil *t, const struct anvil_key *key)
{
	return (uint32_t)siphash24(t->seed, key->b, sizeof(key->b));
}

/* Whether an entry holds nothing worth keeping: no connection open and no
 * rate window still running. t->now never goes back, so an entry judged
 * idle stays idle. */
static int
entry_idle(const struct anvil *t, const struct anvil_entry *e)
{
	return e->open == 0 && (e->count == 0 || t->now - e->start >= ANVIL_WINDOW);
}

/* Unlinks *link (an entry) from its chain and frees it. */
static void
entry_drop(struct anvil *t, struct anvil_entry **link)
{
	struct anvil_entry *e = *link;

	*link = e->next;
	free(e);
	t->size--;
}

/* Drops the idle entries of one bucket. */
static void
bucket_prune(struct anvil *t, size_t i)
{
	struct anvil_entry **link = &t->buckets[i];

	while (*link != NULL) {
		if (entry_idle(t, *link))
			entry_drop(t, link);
		else
			link = &(*link)->next;
	}
}

/* The amortised sweep: n buckets per call, round the table, so an idle
 * client whose bucket no lookup visits is still dropped within
 * nbuckets / n calls. */
static void
anvil_sweep(struct anvil *t, size_t n)
{
	while (n-- > 0) {
		bucket_prune(t, t->cursor);
		t->cursor = (t->cursor + 1) & (t->nbuckets - 1);
	}
}

/* Finds key in its bucket and drops the bucket's other idle entries on the
 * way (the lazy half of the expiry). Returns the link pointing at key's
 * entry, for the caller to read or unlink, or NULL. */
static struct anvil_entry **
bucket_find(struct anvil *t, const struct anvil_key *key, uint32_t h)
{
	struct anvil_entry **link = &t->buckets[h & (t->nbuckets - 1)], **found = NULL;
	struct anvil_entry *e;

	while ((e = *link) != NULL) {
		if (found == NULL && e->hash == h && memcmp(&e->key, key, sizeof(*key)) == 0) {
			found = link;
			link = &e->next;
		} else if (entry_idle(t, e)) {
			entry_drop(t, link);
		} else {
			link = &e->next;
		}
	}
	return found;
}

/* Doubles the bucket array when the entries outnumber the buckets, and
 * halves it when they fall under an eighth (four times below the point it
 * would grow again, so a size hovering near a boundary does not rehash on
 * every call). Entries keep their addresses. Without memory for a new
 * array the old one stays: longer chains, same counts. */
static void
anvil_resize(struct anvil *t)
{
	struct anvil_entry **nb, *e, *next;
	size_t n = t->nbuckets, i, mask;

	if (t->size > n && n < ANVIL_BUCKETS_MAX)
		n *= 2;
	else if (t->size < n / 8 && n > ANVIL_BUCKETS_MIN)
		n /= 2;
	else
		return;
	if ((nb = calloc(n, sizeof(*nb))) == NULL)
		return;
	mask = n - 1;
	for (i = 0; i < t->nbuckets; i++) {
		for (e = t->buckets[i]; e != NULL; e = next) {
			next = e->next;
			e->next = nb[e->hash & mask];
			nb[e->hash & mask] = e;
		}
	}
	free(t->buckets);
	t->buckets = nb;
	t->nbuckets = n;
	t->cursor &= mask;
}

/* A new, empty entry for key at the head of its bucket; NULL without
 * memory. The bucket array may be resized after it is linked. */
static struct anvil_entry *
entry_add(struct anvil *t, const struct anvil_key *key, uint32_t h)
{
	struct anvil_entry *e, **head;

	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->key = *key;
	e->hash = h;
	head = &t->buckets[h & (t->nbuckets - 1)];
	e->next = *head;
	*head = e;
	t->size++;
	anvil_resize(t);
	return e;
}

struct anvil *
anvil_new(void)
{
	struct anvil *t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if ((t->buckets = calloc(ANVIL_BUCKETS_MIN, sizeof(*t->buckets))) == NULL) {
		free(t);
		return NULL;
	}
	t->nbuckets = ANVIL_BUCKETS_MIN;
	/* Any first time is later than this, whatever the caller's origin. */
	t->now = -DBL_MAX;
	anvil_seed(t->seed);
	return t;
}

void
anvil_free(struct anvil *t)
{
	struct anvil_entry *e, *next;
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->nbuckets; i++) {
		for (e = t->buckets[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(t->buckets);
	free(t);
}

int
anvil_key(const struct sockaddr *sa, struct anvil_key *key)
{
	memset(key, 0, sizeof(*key));
	if (sa == NULL)
		return -1;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;

		key->b[0] = 4;
		memcpy(key->b + 1, &sin->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		const unsigned char *a = sin6->sin6_addr.s6_addr;

		/* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d;
		 * they are the same clients as on an IPv4 listener. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			key->b[0] = 4;
			memcpy(key->b + 1, a + 12, 4);
			return 0;
		}
		/* A site is given at least a /64 (RFC 6177) and SLAAC hosts
		 * pick their own low 64 bits (RFC 4862, RFC 8981), so one
		 * host can walk through 2^64 addresses: the /64 is the unit
		 * worth counting. */
		key->b[0] = 6;
		memcpy(key->b + 1, a, 8);
		return 0;
	}
	return -1;
}

/* Whether key is one anvil_key() could have made: a known family and zero
 * past its address. */
static int
key_valid(const struct anvil_key *key)
{
	size_t used, i;

	if (key->b[0] == 4)
		used = 1 + 4;
	else if (key->b[0] == 6)
		used = 1 + 8;
	else
		return 0;
	for (i = used; i < sizeof(key->b); i++)
		if (key->b[i] != 0)
			return 0;
	return 1;
}

const char *
anvil_key_str(const struct anvil_key *key, char *buf, size_t bufsz)
{
	char tmp[ANVIL_KEY_STR_MAX] = "?";
	unsigned char a6[16];

	if (bufsz == 0)
		return "";
	if (key_valid(key) && key->b[0] == 4) {
		if (inet_ntop(AF_INET, key->b + 1, tmp, sizeof(tmp)) == NULL)
			strcpy(tmp, "?");
	} else if (key_valid(key)) {
		memset(a6, 0, sizeof(a6));
		memcpy(a6, key->b + 1, 8);
		if (inet_ntop(AF_INET6, a6, tmp, sizeof(tmp) - 3) == NULL)
			strcpy(tmp, "?");
		else
			strcat(tmp, "/64");
	}
	snprintf(buf, bufsz, "%s", tmp);
	return buf;
}

enum anvil_verdict
anvil_connect(struct anvil *t, const struct anvil_key *key, double now, int max_conns, int max_rate)
{
	struct anvil_entry **link, *e;
	uint32_t h = key_hash(t, key);

	/* Time never goes back here, so an entry found idle stays idle and a
	 * window cannot reopen early; an infinite time would stop every
	 * window from ending (inf - inf is NaN), a NaN compares false. */
	if (now > t->now && isfinite(now))
		t->now = now;
	anvil_sweep(t, t->size >= ANVIL_ENTRIES_MAX ? ANVIL_SWEEP_FULL : ANVIL_SWEEP);
	anvil_resize(t);
	if ((link = bucket_find(t, key, h)) != NULL) {
		e = *link;
	} else if (t->size >= ANVIL_ENTRIES_MAX) {
		/* Full of entries still counting something. Evicting one
		 * would let a flood of new addresses wipe out the counts of
		 * a client being limited, and a refusal here would lock out
		 * every newcomer: so this client goes uncounted for its rate.
		 * Its open connection is still kept, in an entry over the
		 * cap that anvil_disconnect() drops with its last connection
		 * (bounded by the open connections, as anvil.h says). */
		if ((e = entry_add(t, key, h)) != NULL)
			e->open = 1;
		return ANVIL_OK;
	} else if ((e = entry_add(t, key, h)) == NULL) {
		return ANVIL_OK; /* fail open, as anvil.h says */
	}

	/* Refused attempts count too: a client that keeps hammering stays
	 * refused until it slows down. */
	if (max_rate > 0) {
		if (e->count == 0 || t->now - e->start >= ANVIL_WINDOW) {
			e->start = t->now;
			e->count = 0;
		}
		if (e->count < UINT_MAX)
			e->count++;
	}
	/* The count limit first, as Postfix's smtpd checks it; INT_MAX open
	 * connections cannot happen with file descriptors, but must not wrap. */
	if ((max_conns > 0 && e->open >= max_conns) || e->open == INT_MAX)
		return ANVIL_TOO_MANY;
	if (max_rate > 0 && e->count > (unsigned int)max_rate)
		return ANVIL_TOO_FAST;
	e->open++;
	return ANVIL_OK;
}

void
anvil_disconnect(struct anvil *t, const struct anvil_key *key)
{
	struct anvil_entry **link, *e;

	anvil_sweep(t, ANVIL_SWEEP);
	if ((link = bucket_find(t, key, key_hash(t, key))) != NULL) {
		e = *link;
		if (e->open > 0)
			e->open--;
		/* Over the cap, an entry goes with its last connection even
		 * if its window still runs: that keeps the entries without
		 * an open connection at ANVIL_ENTRIES_MAX at most. */
		if (entry_idle(t, e) || (e->open == 0 && t->size > ANVIL_ENTRIES_MAX))
			entry_drop(t, link);
	}
	anvil_resize(t);
}

int
anvil_open(const struct anvil *t, const struct anvil_key *key)
{
	const struct anvil_entry *e;
	uint32_t h = key_hash(t, key);

	for (e = t->buckets[h & (t->nbuckets - 1)]; e != NULL; e = e->next)
		if (e->hash == h && memcmp(&e->key, key, sizeof(*key)) == 0)
			return e->open;
	return 0;
}

size_t
anvil_size(const struct anvil *t)
{
	return t->size;
}
