/* test_anvil.c - tables and scenarios for the per-client connection counts
 * and rates: which addresses make one client, the count and rate limits
 * step by step, expiry, the bound on entries and what happens past it, and
 * a long random run checked against a plain array. */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "anvil.h"
#include "test.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* The key of a textual IPv4 or IPv6 address, through a real sockaddr as a
 * listener would hand it over. */
static struct anvil_key
key_of(const char *addr)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct anvil_key k;
	int ret = -1;

	memset(&ss, 0, sizeof(ss));
	memset(&k, 0, sizeof(k));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(25);
		ret = anvil_key((struct sockaddr *)&ss, &k);
	} else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(25);
		ret = anvil_key((struct sockaddr *)&ss, &k);
	}
	CHECK_MSG(ret == 0, "no key for \"%s\"", addr);
	return k;
}

/* The n-th of many distinct IPv4 clients (10.0.0.0/8). */
static struct anvil_key
key_n(uint32_t n)
{
	struct sockaddr_in sin;
	struct anvil_key k;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(0x0a000000u + n);
	CHECK(anvil_key((struct sockaddr *)&sin, &k) == 0);
	return k;
}

/* splitmix64: a fixed sequence, so a failure replays the same way. */
static uint64_t
prng(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void
test_verdict_str(void)
{
	CHECK_STR(anvil_verdict_str(ANVIL_OK), "ok");
	CHECK_STR(anvil_verdict_str(ANVIL_TOO_MANY), "max_per_ip");
	CHECK_STR(anvil_verdict_str(ANVIL_TOO_FAST), "max_conn_rate");
	CHECK_STR(anvil_verdict_str((enum anvil_verdict)42), "?");
}

struct key_case {
	const char *addr;
	int group;       /* rows with the same group are the same client */
	const char *str; /* anvil_key_str() */
};

static const struct key_case key_cases[] = {
	{ "192.0.2.1", 1, "192.0.2.1" },
	{ "::ffff:192.0.2.1", 1, "192.0.2.1" },
	{ "192.0.2.2", 2, "192.0.2.2" },
	{ "0.0.0.0", 3, "0.0.0.0" },
	{ "255.255.255.255", 4, "255.255.255.255" },
	{ "::ffff:255.255.255.255", 4, "255.255.255.255" },
	/* One /64, whatever the host part. */
	{ "2001:db8:1:2::1", 5, "2001:db8:1:2::/64" },
	{ "2001:db8:1:2:ffff:ffff:ffff:ffff", 5, "2001:db8:1:2::/64" },
	{ "2001:db8:1:2:a:b:c:d", 5, "2001:db8:1:2::/64" },
	/* Neighbouring /64s are other clients. */
	{ "2001:db8:1:3::1", 6, "2001:db8:1:3::/64" },
	{ "2001:db8:1:1::1", 7, "2001:db8:1:1::/64" },
	{ "2001:db8::1", 8, "2001:db8::/64" },
	{ "ffff:ffff:ffff:ffff::", 9, "ffff:ffff:ffff:ffff::/64" },
	/* Only ::ffff:0:0/96 is IPv4: ::1, the old IPv4-compatible form and
	 * RFC 2765's ::ffff:0:a.b.c.d are all in ::/64. */
	{ "::1", 10, "::/64" },
	{ "::192.0.2.1", 10, "::/64" },
	{ "::ffff:0:192.0.2.1", 10, "::/64" },
	/* An IPv4 address whose bytes begin an IPv6 prefix is still IPv4. */
	{ "32.1.13.184", 11, "32.1.13.184" },
	{ "2001:db8::", 8, "2001:db8::/64" },
};

static void
test_keys(void)
{
	struct anvil_key k[NELEM(key_cases)], z;
	char buf[ANVIL_KEY_STR_MAX];
	size_t i, j, used;

	for (i = 0; i < NELEM(key_cases); i++) {
		k[i] = key_of(key_cases[i].addr);
		CHECK_MSG(strcmp(anvil_key_str(&k[i], buf, sizeof(buf)), key_cases[i].str) == 0,
		    "key row %zu \"%s\": \"%s\"", i, key_cases[i].addr, buf);
		/* The family byte, and zeros past the address. */
		CHECK_MSG(k[i].b[0] == 4 || k[i].b[0] == 6, "key row %zu: b[0] %d", i, k[i].b[0]);
		used = k[i].b[0] == 4 ? 5 : 9;
		for (j = used; j < sizeof(k[i].b); j++)
			CHECK_MSG(k[i].b[j] == 0, "key row %zu: b[%zu] %d", i, j, k[i].b[j]);
	}
	for (i = 0; i < NELEM(key_cases); i++)
		for (j = 0; j < NELEM(key_cases); j++)
			CHECK_MSG((memcmp(&k[i], &k[j], sizeof(k[i])) == 0) ==
				(key_cases[i].group == key_cases[j].group),
			    "rows %zu \"%s\" and %zu \"%s\"", i, key_cases[i].addr, j,
			    key_cases[j].addr);

	/* What is not IPv4 or IPv6 has no key, and the key is zeroed. */
	{
		struct sockaddr_un sun;
		struct sockaddr_storage ss;

		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		strcpy(sun.sun_path, "/run/luamta.sock");
		memset(&z, 0xa5, sizeof(z));
		CHECK(anvil_key((struct sockaddr *)&sun, &z) == -1);
		CHECK(z.b[0] == 0 && z.b[16] == 0);
		memset(&ss, 0, sizeof(ss));
		ss.ss_family = AF_UNSPEC;
		CHECK(anvil_key((struct sockaddr *)&ss, &z) == -1);
		CHECK(anvil_key(NULL, &z) == -1);
	}

	/* Formatting: a key anvil_key() did not make, short buffers. */
	memset(&z, 0, sizeof(z));
	CHECK_STR(anvil_key_str(&z, buf, sizeof(buf)), "?");
	z = key_of("192.0.2.1");
	z.b[9] = 1;
	CHECK_STR(anvil_key_str(&z, buf, sizeof(buf)), "?");
	z = key_of("192.0.2.1");
	CHECK_STR(anvil_key_str(&z, buf, 4), "192");
	CHECK(anvil_key_str(&z, buf, 4) == buf);
	CHECK_STR(anvil_key_str(&z, buf, 0), "");
	z = key_of("2001:db8:1:2::1");
	CHECK_STR(anvil_key_str(&z, buf, 8), "2001:db");
}

/* One step of a scenario: connect ('c') or disconnect ('d') key, then the
 * verdict (connects only), open connections and entries expected. */
struct step {
	char op;
	const char *addr;
	double now;
	int max_conns, max_rate;
	enum anvil_verdict want;
	int open;
	size_t size;
};

struct scenario {
	const char *name;
	const struct step *steps;
	size_t n;
};

#define A  "192.0.2.1"
#define B  "2001:db8:1:2::1"
#define B2 "2001:db8:1:2::99" /* B's /64 */
#define C  "2001:db8:1:3::1"  /* the next /64 */
#define D  "198.51.100.7"

static const struct step count_limit[] = {
	{ 'c', A, 0, 2, 0, ANVIL_OK, 1, 1 },
	{ 'c', A, 1, 2, 0, ANVIL_OK, 2, 1 },
	{ 'c', A, 2, 2, 0, ANVIL_TOO_MANY, 2, 1 },
	{ 'c', A, 3, 2, 0, ANVIL_TOO_MANY, 2, 1 },
	{ 'd', A, 0, 0, 0, ANVIL_OK, 1, 1 },
	{ 'c', A, 4, 2, 0, ANVIL_OK, 2, 1 },
	/* Another client has its own count; the same /64 shares one. */
	{ 'c', B, 5, 2, 0, ANVIL_OK, 1, 2 },
	{ 'c', B2, 5, 2, 0, ANVIL_OK, 2, 2 },
	{ 'c', B, 5, 2, 0, ANVIL_TOO_MANY, 2, 2 },
	{ 'c', C, 5, 2, 0, ANVIL_OK, 1, 3 },
	/* A limit read anew on every call (a reload may change it). */
	{ 'c', A, 6, 3, 0, ANVIL_OK, 3, 3 },
	{ 'c', A, 6, 1, 0, ANVIL_TOO_MANY, 3, 3 },
};

static const struct step no_limits[] = {
	{ 'c', A, 0, 0, 0, ANVIL_OK, 1, 1 },
	{ 'c', A, 0, 0, 0, ANVIL_OK, 2, 1 },
	{ 'c', A, 0, 0, 0, ANVIL_OK, 3, 1 },
	{ 'c', A, 0, 0, 0, ANVIL_OK, 4, 1 },
	{ 'c', A, 0, -1, -1, ANVIL_OK, 5, 1 },
	/* With max_rate 0 no rate was kept: this is the first attempt. */
	{ 'c', A, 1, 0, 1, ANVIL_OK, 6, 1 },
	{ 'c', A, 2, 0, 1, ANVIL_TOO_FAST, 6, 1 },
	/* Entries with connections open stay, however long. */
	{ 'c', B, 1e6, 0, 0, ANVIL_OK, 1, 2 },
	{ 'c', B, 2e6, 0, 0, ANVIL_OK, 2, 2 },
};

static const struct step rate_limit[] = {
	/* The window opens at 10 and runs to 70. */
	{ 'c', A, 10, 0, 3, ANVIL_OK, 1, 1 },
	{ 'd', A, 0, 0, 0, ANVIL_OK, 0, 1 },
	{ 'c', A, 11, 0, 3, ANVIL_OK, 1, 1 },
	{ 'c', A, 12, 0, 3, ANVIL_OK, 2, 1 },
	{ 'c', A, 13, 0, 3, ANVIL_TOO_FAST, 2, 1 },
	{ 'c', A, 40, 0, 3, ANVIL_TOO_FAST, 2, 1 },
	{ 'c', A, 69.9, 0, 3, ANVIL_TOO_FAST, 2, 1 },
	/* Other clients are not slowed down by A. */
	{ 'c', B, 69.9, 0, 3, ANVIL_OK, 1, 2 },
	/* A new window at 70 (start + 60): three more. */
	{ 'c', A, 70, 0, 3, ANVIL_OK, 3, 2 },
	{ 'c', A, 71, 0, 3, ANVIL_OK, 4, 2 },
	{ 'c', A, 129.5, 0, 3, ANVIL_OK, 5, 2 },
	{ 'c', A, 129.9, 0, 3, ANVIL_TOO_FAST, 5, 2 },
	/* Quiet from 130 to 200: the next window opens at 200, not 190. */
	{ 'c', A, 200, 0, 1, ANVIL_OK, 6, 2 },
	{ 'c', A, 259.9, 0, 1, ANVIL_TOO_FAST, 6, 2 },
	{ 'c', A, 260, 0, 1, ANVIL_OK, 7, 2 },
	/* Time never goes back: 10 counts as 260. */
	{ 'c', A, 10, 0, 1, ANVIL_TOO_FAST, 7, 2 },
	{ 'c', A, 320, 0, 1, ANVIL_OK, 8, 2 },
	/* A window opened at a time from the past opens at the latest. */
	{ 'c', D, 100, 0, 1, ANVIL_OK, 1, 3 },
	{ 'c', D, 161, 0, 1, ANVIL_TOO_FAST, 1, 3 },
	{ 'c', D, 380, 0, 1, ANVIL_OK, 2, 3 },
};

/* Attempts refused for the count limit still count toward the rate. */
static const struct step refused_count[] = {
	{ 'c', A, 0, 1, 3, ANVIL_OK, 1, 1 },
	{ 'c', A, 1, 1, 3, ANVIL_TOO_MANY, 1, 1 },
	{ 'c', A, 2, 1, 3, ANVIL_TOO_MANY, 1, 1 },
	{ 'd', A, 0, 0, 0, ANVIL_OK, 0, 1 },
	{ 'c', A, 3, 1, 3, ANVIL_TOO_FAST, 0, 1 },
	/* Both limits reached: the count is reported. */
	{ 'c', A, 61, 1, 3, ANVIL_OK, 1, 1 },
	{ 'c', A, 62, 1, 3, ANVIL_TOO_MANY, 1, 1 },
	{ 'c', A, 63, 1, 3, ANVIL_TOO_MANY, 1, 1 },
	{ 'c', A, 64, 1, 3, ANVIL_TOO_MANY, 1, 1 },
	{ 'd', A, 0, 0, 0, ANVIL_OK, 0, 1 },
	{ 'c', A, 65, 1, 3, ANVIL_TOO_FAST, 0, 1 },
};

static const struct step underflow[] = {
	{ 'd', A, 0, 0, 0, ANVIL_OK, 0, 0 },
	{ 'c', A, 0, 1, 0, ANVIL_OK, 1, 1 },
	{ 'd', A, 0, 0, 0, ANVIL_OK, 0, 0 },
	{ 'd', A, 0, 0, 0, ANVIL_OK, 0, 0 },
	{ 'd', A, 0, 0, 0, ANVIL_OK, 0, 0 },
	/* Had it gone below zero, both would be let in. */
	{ 'c', A, 1, 1, 0, ANVIL_OK, 1, 1 },
	{ 'c', A, 1, 1, 0, ANVIL_TOO_MANY, 1, 1 },
	/* A key kept for its rate, at zero open. */
	{ 'c', B, 1, 0, 5, ANVIL_OK, 1, 2 },
	{ 'd', B, 0, 0, 0, ANVIL_OK, 0, 2 },
	{ 'd', B, 0, 0, 0, ANVIL_OK, 0, 2 },
	{ 'c', B, 2, 1, 5, ANVIL_OK, 1, 2 },
	{ 'c', B, 2, 1, 5, ANVIL_TOO_MANY, 1, 2 },
};

static const struct scenario scenarios[] = {
	{ "count_limit", count_limit, NELEM(count_limit) },
	{ "no_limits", no_limits, NELEM(no_limits) },
	{ "rate_limit", rate_limit, NELEM(rate_limit) },
	{ "refused_count", refused_count, NELEM(refused_count) },
	{ "underflow", underflow, NELEM(underflow) },
};

static void
test_scenarios(void)
{
	size_t i, j;

	for (i = 0; i < NELEM(scenarios); i++) {
		const struct scenario *sc = &scenarios[i];
		struct anvil *t = anvil_new();

		CHECK(t != NULL);
		if (t == NULL)
			return;
		for (j = 0; j < sc->n; j++) {
			const struct step *s = &sc->steps[j];
			struct anvil_key k = key_of(s->addr);
			enum anvil_verdict v;

			if (s->op == 'c') {
				v = anvil_connect(t, &k, s->now, s->max_conns, s->max_rate);
				CHECK_MSG(v == s->want, "%s step %zu: %s, want %s", sc->name, j,
				    anvil_verdict_str(v), anvil_verdict_str(s->want));
			} else {
				anvil_disconnect(t, &k);
			}
			CHECK_MSG(anvil_open(t, &k) == s->open, "%s step %zu: open %d, want %d",
			    sc->name, j, anvil_open(t, &k), s->open);
			CHECK_MSG(anvil_size(t) == s->size, "%s step %zu: size %zu, want %zu",
			    sc->name, j, anvil_size(t), s->size);
		}
		anvil_free(t);
	}
	anvil_free(NULL);
}

/* Idle entries go once their window is over, driven by calls for other
 * clients; entries with a window running or a connection open stay. */
static void
test_expiry(void)
{
	struct anvil *t = anvil_new();
	struct anvil_key drv = key_of("198.51.100.1"), held = key_of("198.51.100.2"), k;
	size_t i, rounds;

	CHECK(t != NULL);
	if (t == NULL)
		return;
	for (i = 0; i < 50; i++) {
		k = key_n((uint32_t)i);
		CHECK(anvil_connect(t, &k, 0, 0, 10) == ANVIL_OK);
	}
	CHECK(anvil_connect(t, &held, 0, 0, 10) == ANVIL_OK);
	for (i = 0; i < 50; i++) {
		k = key_n((uint32_t)i);
		anvil_disconnect(t, &k);
	}
	CHECK(anvil_size(t) == 51);

	/* The driver keeps no rate (max_rate 0), so it leaves no entry of
	 * its own once disconnected. Before the windows end, nothing goes. */
	for (rounds = 0; rounds < 200; rounds++) {
		CHECK(anvil_connect(t, &drv, 59.9, 0, 0) == ANVIL_OK);
		anvil_disconnect(t, &drv);
	}
	CHECK_MSG(anvil_size(t) == 51, "size %zu before the windows end", anvil_size(t));

	for (rounds = 0; rounds < 200 && anvil_size(t) > 1; rounds++) {
		CHECK(anvil_connect(t, &drv, 60, 0, 0) == ANVIL_OK);
		anvil_disconnect(t, &drv);
	}
	CHECK_MSG(anvil_size(t) == 1, "size %zu after %zu rounds", anvil_size(t), rounds);
	CHECK(anvil_open(t, &held) == 1);

	anvil_disconnect(t, &held);
	CHECK(anvil_size(t) == 0);
	CHECK(anvil_open(t, &held) == 0);
	anvil_free(t);
}

/* 100,000 clients, one attempt each, none left open. */
static void
test_bounded(void)
{
	struct anvil *t = anvil_new();
	struct anvil_key k, x = key_of("203.0.113.9"), drv = key_of("203.0.113.10");
	size_t i, max_idle = 0, max_open = 0, late = 0;

	CHECK(t != NULL);
	if (t == NULL)
		return;
	/* 50 seconds in all: every window is still running at the end, so
	 * nothing can expire and only the cap holds the size. */
	for (i = 0; i < 100000; i++) {
		k = key_n((uint32_t)i);
		CHECK_MSG(anvil_connect(t, &k, (double)i * 0.0005, 0, 1) == ANVIL_OK, "key %zu", i);
		if (anvil_size(t) > max_open)
			max_open = anvil_size(t);
		anvil_disconnect(t, &k);
		if (anvil_size(t) > max_idle)
			max_idle = anvil_size(t);
	}
	CHECK_MSG(max_idle == ANVIL_ENTRIES_MAX, "max size %zu", max_idle);
	CHECK_MSG(max_open == ANVIL_ENTRIES_MAX + 1, "max size %zu with one open", max_open);

	/* Full: a new client is let in without a rate, again and again;
	 * with a connection open it has an entry, and a window opens only
	 * at its second attempt. */
	for (i = 0; i < 5; i++) {
		CHECK(anvil_connect(t, &x, 50, 0, 1) == ANVIL_OK);
		CHECK(anvil_connect(t, &x, 50, 0, 1) == ANVIL_OK);
		CHECK(anvil_open(t, &x) == 2);
		CHECK(anvil_size(t) == ANVIL_ENTRIES_MAX + 1);
		anvil_disconnect(t, &x);
		anvil_disconnect(t, &x);
		CHECK(anvil_open(t, &x) == 0);
	}
	CHECK(anvil_size(t) <= ANVIL_ENTRIES_MAX);

	/* Once the windows are over, the next client is counted again. */
	CHECK(anvil_connect(t, &x, 111, 0, 1) == ANVIL_OK);
	/* A full table sweeps 64 buckets per call, which hold 64 entries on
	 * average at one entry per bucket: fewer than 21 dropped would be
	 * odds of about 1e-10 (and 4 buckets would drop about 4). */
	CHECK_MSG(anvil_size(t) < ANVIL_ENTRIES_MAX - 20, "size %zu after one call", anvil_size(t));
	anvil_disconnect(t, &x);
	CHECK(anvil_connect(t, &x, 112, 0, 1) == ANVIL_TOO_FAST);

	/* And the sweep empties the table (x's window ends at 171). */
	for (i = 0; i < 40000 && anvil_size(t) > 0; i++) {
		CHECK_MSG(anvil_connect(t, &drv, 200, 0, 0) == ANVIL_OK, "round %zu", i);
		anvil_disconnect(t, &drv);
	}
	CHECK_MSG(anvil_size(t) == 0, "size %zu after %zu rounds", anvil_size(t), i);

	/* A steady stream of new clients, ten a second: about 600 windows
	 * run at once, and the size follows them, not the 100,000 seen. */
	for (i = 0; i < 100000; i++) {
		k = key_n((uint32_t)(200000 + i));
		CHECK_MSG(
		    anvil_connect(t, &k, 1000 + (double)i * 0.1, 0, 1) == ANVIL_OK, "key %zu", i);
		anvil_disconnect(t, &k);
		if (i >= 10000 && anvil_size(t) > late)
			late = anvil_size(t);
	}
	CHECK_MSG(late >= 600 && late <= 1000, "size up to %zu in a steady stream", late);
	anvil_free(t);
}

/* A table full of clients with connections open still counts the open
 * connections of new clients, over the cap, and gives the room back. */
static void
test_full_open(void)
{
	struct anvil *t = anvil_new();
	struct anvil_key k;
	uint32_t i;

	CHECK(t != NULL);
	if (t == NULL)
		return;
	for (i = 0; i < ANVIL_ENTRIES_MAX; i++) {
		k = key_n(i);
		CHECK_MSG(anvil_connect(t, &k, 0, 0, 0) == ANVIL_OK, "key %u", i);
	}
	CHECK(anvil_size(t) == ANVIL_ENTRIES_MAX);

	/* Long after: nothing can go, every entry has a connection open. */
	for (i = 0; i < 100; i++) {
		k = key_n(ANVIL_ENTRIES_MAX + i);
		CHECK(anvil_connect(t, &k, 1000, 1, 1) == ANVIL_OK);
		CHECK(anvil_open(t, &k) == 1);
		/* The count is kept: the second is too many. */
		CHECK(anvil_connect(t, &k, 1000, 1, 1) == ANVIL_TOO_MANY);
		CHECK(anvil_open(t, &k) == 1);
	}
	CHECK_MSG(anvil_size(t) == ANVIL_ENTRIES_MAX + 100, "size %zu", anvil_size(t));
	/* An old client's count is still there too. */
	k = key_n(7);
	CHECK(anvil_open(t, &k) == 1);
	CHECK(anvil_connect(t, &k, 1000, 1, 0) == ANVIL_TOO_MANY);

	/* Over the cap, an entry goes with its last connection. */
	for (i = 0; i < 100; i++) {
		k = key_n(ANVIL_ENTRIES_MAX + i);
		anvil_disconnect(t, &k);
		CHECK(anvil_open(t, &k) == 0);
	}
	CHECK_MSG(anvil_size(t) == ANVIL_ENTRIES_MAX, "size %zu", anvil_size(t));

	for (i = 0; i < ANVIL_ENTRIES_MAX; i++) {
		k = key_n(i);
		anvil_disconnect(t, &k);
	}
	CHECK_MSG(anvil_size(t) == 0, "size %zu", anvil_size(t));
	anvil_free(t);
}

/* Many addresses of one /64 are one client: its count adds up in a single
 * entry, and the next /64 is a stranger. */
static void
test_one_prefix(void)
{
	struct anvil *t = anvil_new();
	struct sockaddr_in6 sin6;
	struct anvil_key k, first, other = key_of("2001:db8:aa:bc::1");
	uint64_t st = 1;
	int i, j, bad = 0;

	CHECK(t != NULL);
	if (t == NULL)
		return;
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8:aa:bb::", &sin6.sin6_addr);
	for (i = 0; i < 1001; i++) {
		uint64_t host = prng(&st);

		for (j = 0; j < 8; j++)
			sin6.sin6_addr.s6_addr[8 + j] = (unsigned char)(host >> (8 * j));
		CHECK(anvil_key((struct sockaddr *)&sin6, &k) == 0);
		if (i == 0)
			first = k;
		if (anvil_connect(t, &k, i, 1000, 0) != (i < 1000 ? ANVIL_OK : ANVIL_TOO_MANY))
			bad++;
	}
	CHECK_MSG(bad == 0, "%d wrong verdicts", bad);
	CHECK(anvil_size(t) == 1);
	CHECK(anvil_open(t, &first) == 1000);
	CHECK(anvil_connect(t, &other, 2000, 1000, 0) == ANVIL_OK);
	CHECK(anvil_size(t) == 2);
	for (i = 0; i < 1000; i++)
		anvil_disconnect(t, &k);
	CHECK(anvil_open(t, &first) == 0);
	CHECK(anvil_open(t, &other) == 1);
	anvil_free(t);
}

/* A long random run over a few hundred clients, against plain arrays that
 * follow anvil.h's rules: verdicts and open counts must agree throughout. */
#define RKEYS  300
#define RSTEPS 300000

static void
test_random(void)
{
	struct anvil *t = anvil_new();
	static struct anvil_key keys[RKEYS];
	static int open[RKEYS];
	static unsigned int count[RKEYS];
	static double start[RKEYS];
	static const int conns[] = { 0, 1, 3, 5 }, rates[] = { 0, 2, 8, 30 };
	uint64_t st = 42;
	double now = 0;
	size_t i, bad = 0, nok = 0, nmany = 0, nfast = 0;
	char a[INET6_ADDRSTRLEN];

	CHECK(t != NULL);
	if (t == NULL)
		return;
	memset(open, 0, sizeof(open));
	memset(count, 0, sizeof(count));
	for (i = 0; i < RKEYS; i++) {
		uint64_t r = prng(&st);

		if (i % 2 == 0)
			snprintf(a, sizeof(a), "10.%u.%u.%u", (unsigned)(i >> 8) & 255,
			    (unsigned)i & 255, (unsigned)(r & 255));
		else
			snprintf(a, sizeof(a), "2001:db8:%x:%x:%x::%x", (unsigned)i,
			    (unsigned)(r >> 8) & 0xffff, (unsigned)(r >> 24) & 0xffff,
			    (unsigned)(r >> 40) & 0xffff);
		keys[i] = key_of(a);
	}
	for (i = 0; i < RSTEPS; i++) {
		uint64_t r = prng(&st);
		size_t n = (size_t)(r % RKEYS);
		int mc = conns[(r >> 16) & 3], mr = rates[(r >> 18) & 3];
		enum anvil_verdict want, got;

		uint64_t r2 = prng(&st);

		/* About 50 visits per client per window, and now and then a
		 * quiet spell that ends every window. */
		now += (double)(r2 % 1000) / 200000.0;
		if ((r2 >> 16) % 1000 == 0)
			now += ANVIL_WINDOW + 1;
		if ((r2 >> 32) % 2 == 0) {
			if (mr > 0) {
				if (count[n] == 0 || now - start[n] >= ANVIL_WINDOW) {
					start[n] = now;
					count[n] = 0;
				}
				count[n]++;
			}
			if (mc > 0 && open[n] >= mc)
				want = ANVIL_TOO_MANY;
			else if (mr > 0 && count[n] > (unsigned int)mr)
				want = ANVIL_TOO_FAST;
			else
				want = ANVIL_OK;
			if (want == ANVIL_OK)
				open[n]++;
			got = anvil_connect(t, &keys[n], now, mc, mr);
			nok += got == ANVIL_OK;
			nmany += got == ANVIL_TOO_MANY;
			nfast += got == ANVIL_TOO_FAST;
			if (got != want && bad++ == 0)
				CHECK_MSG(0, "step %zu key %zu: %s, want %s", i, n,
				    anvil_verdict_str(got), anvil_verdict_str(want));
		} else {
			if (open[n] > 0)
				open[n]--;
			anvil_disconnect(t, &keys[n]);
		}
		if (anvil_open(t, &keys[n]) != open[n] && bad++ == 0)
			CHECK_MSG(0, "step %zu key %zu: open %d, want %d", i, n,
			    anvil_open(t, &keys[n]), open[n]);
		if (anvil_size(t) > RKEYS && bad++ == 0)
			CHECK_MSG(0, "step %zu: size %zu", i, anvil_size(t));
	}
	CHECK_MSG(bad == 0, "%zu mismatches", bad);
	/* The run exercised all three answers. */
	CHECK_MSG(nok > 1000 && nmany > 1000 && nfast > 1000, "ok %zu, too many %zu, too fast %zu",
	    nok, nmany, nfast);
	anvil_free(t);
}

int
main(void)
{
	test_verdict_str();
	test_keys();
	test_scenarios();
	test_expiry();
	test_bounded();
	test_full_open();
	test_one_prefix();
	test_random();
	return test_done("test_anvil");
}
