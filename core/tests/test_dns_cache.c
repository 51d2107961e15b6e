/* test_dns_cache.c - the answer cache: keys without case or final dot,
 * TTLs lowered by the time spent, expiry, answers that are not kept, the
 * bound (the soonest to expire goes first), and a long random run checked
 * against a plain array. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns_cache.h"
#include "test.h"

/* An answer with one A record whose address names n, for ttl seconds. */
static struct dns_answer *
answer(int n, uint32_t ttl)
{
	struct dns_answer *a = dns_answer_new(DNS_OK);
	char ip[32];

	snprintf(ip, sizeof(ip), "10.0.%d.%d", (n >> 8) & 0xff, n & 0xff);
	a->rr = calloc(1, sizeof(*a->rr));
	a->nrr = 1;
	a->rr[0].type = DNS_T_A;
	a->rr[0].ttl = ttl;
	a->rr[0].data = strdup(ip);
	a->rr[0].len = strlen(ip);
	a->ttl = ttl;
	return a;
}

static int
holds(struct dns_cache *c, const char *name, int type, double now, int n)
{
	struct dns_answer *a = dns_cache_get(c, name, type, now);
	char ip[32];
	int ok;

	if (a == NULL)
		return 0;
	snprintf(ip, sizeof(ip), "10.0.%d.%d", (n >> 8) & 0xff, n & 0xff);
	ok = a->nrr == 1 && strcmp(a->rr[0].data, ip) == 0;
	dns_answer_free(a);
	return ok;
}

static void
test_basics(void)
{
	struct dns_cache *c = dns_cache_new(16, 42);
	struct dns_answer *a = answer(1, 300), *got, *neg;

	CHECK(dns_cache_put(c, "Mail.Example.", DNS_T_A, a, 1000) == 0);
	CHECK(dns_cache_count(c) == 1);
	CHECK(holds(c, "mail.example", DNS_T_A, 1000, 1));
	CHECK(holds(c, "MAIL.EXAMPLE.", DNS_T_A, 1000, 1));
	CHECK(!holds(c, "mail.example", DNS_T_AAAA, 1000, 1));
	CHECK(!holds(c, "mail.example.org", DNS_T_A, 1000, 1));

	/* 100 s later: the TTLs say 200. */
	got = dns_cache_get(c, "mail.example", DNS_T_A, 1100.5);
	CHECK(got != NULL && got->ttl == 200 && got->rr[0].ttl == 200);
	dns_answer_free(got);
	/* Gone at its expiry, and dropped. */
	CHECK(!holds(c, "mail.example", DNS_T_A, 1300, 1));
	CHECK(dns_cache_count(c) == 0);

	/* A TTL of 0 is not kept. */
	a->ttl = 0;
	CHECK(dns_cache_put(c, "zero.example", DNS_T_A, a, 1000) == 0);
	CHECK(dns_cache_count(c) == 0);
	dns_answer_free(a);

	/* A negative answer is kept like any other, with no records. */
	neg = dns_answer_new(DNS_NXDOMAIN);
	neg->ttl = 30;
	CHECK(dns_cache_put(c, "no.example", DNS_T_A, neg, 1000) == 0);
	got = dns_cache_get(c, "no.example", DNS_T_A, 1010);
	CHECK(got != NULL && got->err == DNS_NXDOMAIN && got->nrr == 0 && got->ttl == 20);
	dns_answer_free(got);
	dns_answer_free(neg);

	/* A newer answer replaces the older one. */
	a = answer(2, 60);
	CHECK(dns_cache_put(c, "no.example", DNS_T_A, a, 1001) == 0);
	CHECK(holds(c, "no.example", DNS_T_A, 1002, 2));
	CHECK(dns_cache_count(c) == 1);
	dns_answer_free(a);
	dns_cache_free(c);
	dns_cache_free(NULL);
}

static void
test_bound(void)
{
	struct dns_cache *c = dns_cache_new(4, 7);
	char name[32];

	/* Four entries expiring at 1000 + 100, 50, 200, 150. */
	static const uint32_t ttls[] = { 100, 50, 200, 150 };
	for (int i = 0; i < 4; i++) {
		struct dns_answer *a = answer(i, ttls[i]);
		snprintf(name, sizeof(name), "n%d.example", i);
		CHECK(dns_cache_put(c, name, DNS_T_A, a, 1000) == 0);
		dns_answer_free(a);
	}
	CHECK(dns_cache_count(c) == 4);
	/* A fifth pushes out n1, the soonest to expire. */
	{
		struct dns_answer *a = answer(4, 10);
		CHECK(dns_cache_put(c, "n4.example", DNS_T_A, a, 1000) == 0);
		dns_answer_free(a);
	}
	CHECK(dns_cache_count(c) == 4);
	CHECK(!holds(c, "n1.example", DNS_T_A, 1000, 1));
	CHECK(holds(c, "n0.example", DNS_T_A, 1000, 0));
	CHECK(holds(c, "n4.example", DNS_T_A, 1000, 4));
	/* At 1120, n4 and n0 have expired: a new entry takes their room and
	 * both go, so the count drops. */
	{
		struct dns_answer *a = answer(5, 100);
		CHECK(dns_cache_put(c, "n5.example", DNS_T_A, a, 1120) == 0);
		dns_answer_free(a);
	}
	CHECK(dns_cache_count(c) == 3);
	CHECK(holds(c, "n2.example", DNS_T_A, 1120, 2));
	CHECK(holds(c, "n3.example", DNS_T_A, 1120, 3));
	CHECK(holds(c, "n5.example", DNS_T_A, 1120, 5));
	dns_cache_free(c);

	/* A cache of one. */
	c = dns_cache_new(0, 1);
	for (int i = 0; i < 3; i++) {
		struct dns_answer *a = answer(i, 100);
		snprintf(name, sizeof(name), "one%d.example", i);
		CHECK(dns_cache_put(c, name, DNS_T_A, a, 1000) == 0);
		dns_answer_free(a);
	}
	CHECK(dns_cache_count(c) == 1);
	CHECK(holds(c, "one2.example", DNS_T_A, 1000, 2));
	dns_cache_free(c);
}

/* A random mix of puts and gets against a model: an array of
 * (name, expiry, value) where eviction takes the soonest expiry. */
#define MODEL_MAX 64
#define NAMES     200

static void
test_random(void)
{
	struct {
		int used;
		double expires;
		int value;
	} model[NAMES];
	struct dns_cache *c = dns_cache_new(MODEL_MAX, 99);
	double now = 0;
	unsigned seed = 12345;
	int mismatches = 0;

	memset(model, 0, sizeof(model));
	for (int step = 0; step < 100000; step++) {
		int k, op, count = 0;
		char name[32];

		seed = seed * 1103515245u + 12345u;
		k = (int)((seed >> 8) % NAMES);
		op = (int)((seed >> 20) % 3);
		now += 0.0414213562373095; /* no two expiries tie */
		snprintf(name, sizeof(name), "k%d.example", k);
		if (op == 0) {
			uint32_t ttl = 1 + (seed >> 4) % 97;
			struct dns_answer *a = answer(step & 0xffff, ttl);

			CHECK(dns_cache_put(c, name, DNS_T_A, a, now) == 0);
			dns_answer_free(a);
			/* The model: drop the old entry, then expired ones
			 * and, while full, the soonest. */
			model[k].used = 0;
			for (;;) {
				int soon = -1;
				count = 0;
				for (int i = 0; i < NAMES; i++)
					if (model[i].used) {
						count++;
						if (soon == -1 ||
						    model[i].expires < model[soon].expires)
							soon = i;
					}
				if (soon == -1 || (count < MODEL_MAX && model[soon].expires > now))
					break;
				model[soon].used = 0;
			}
			model[k].used = 1;
			model[k].expires = now + ttl;
			model[k].value = step & 0xffff;
		} else {
			int want = model[k].used && now < model[k].expires;
			int got = holds(c, name, DNS_T_A, now, model[k].value);

			if (model[k].used && now >= model[k].expires)
				model[k].used = 0;
			if (want != got)
				mismatches++;
		}
	}
	CHECK_MSG(mismatches == 0, "%d mismatches", mismatches);
	dns_cache_free(c);
}

int
main(void)
{
	test_basics();
	test_bound();
	test_random();
	return test_done("test_dns_cache");
}
