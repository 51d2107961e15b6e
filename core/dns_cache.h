/* dns_cache.h - a bounded cache of DNS answers by (name, type), each kept
 * for its answer's ttl. When full, the entry that expires soonest makes
 * room (expired ones first, as they are the soonest). Pure: the caller
 * passes the time; no I/O. */
#ifndef LUAMTA_DNS_CACHE_H
#define LUAMTA_DNS_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "dns_msg.h"

struct dns_cache; /* opaque */

/* A cache of at most max entries (at least 1); seed varies the hash. NULL
 * when out of memory. */
struct dns_cache *dns_cache_new(size_t max, uint32_t seed);
/* NULL is a no-op. */
void dns_cache_free(struct dns_cache *);

/* A copy of the answer kept for (name, type) at time now, every TTL
 * lowered by the time it spent in the cache; the caller frees it. NULL
 * when there is none (or it expired, or out of memory). Names compare
 * without ASCII case and without a final dot. */
struct dns_answer *dns_cache_get(struct dns_cache *, const char *name, int type, double now);
/* Keeps a copy of ans for ans->ttl seconds from now (replacing an older
 * one); an answer with ttl 0 is not kept. Returns 0, or -1 when out of
 * memory or name is too long (nothing kept). */
int dns_cache_put(
    struct dns_cache *, const char *name, int type, const struct dns_answer *ans, double now);
/* The number of entries, expired ones included until they are dropped. */
size_t dns_cache_count(const struct dns_cache *);

#endif
