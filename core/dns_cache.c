/* dns_cache.c - entries in a chained hash table for lookups and in a
 * binary min-heap by expiry time for eviction, so both stay O(log n) with
 * thousands of entries. */
#include "dns_cache.h"

#include <stdlib.h>
#include <string.h>

struct dns_cache_entry {
	struct dns_cache_entry *next; /* hash chain */
	char *name;                   /* owned: lower case, no final dot */
	int type;
	uint32_t hash;
	double stored, expires;
	size_t heap;            /* index in cache->heap */
	struct dns_answer *ans; /* owned */
};

struct dns_cache {
	struct dns_cache_entry **buckets;
	size_t mask; /* buckets - 1, a power of two minus one */
	struct dns_cache_entry **heap;
	size_t n, max;
	uint32_t seed;
};

struct dns_cache *
dns_cache_new(size_t max, uint32_t seed)
{
	struct dns_cache *c;
	size_t nb = 16;

	if (max == 0)
		max = 1;
	while (nb < max)
		nb <<= 1;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->buckets = calloc(nb, sizeof(*c->buckets));
	c->heap = calloc(max, sizeof(*c->heap));
	if (c->buckets == NULL || c->heap == NULL) {
		dns_cache_free(c);
		return NULL;
	}
	c->mask = nb - 1;
	c->max = max;
	c->seed = seed;
	return c;
}

static void
entry_free(struct dns_cache_entry *e)
{
	dns_answer_free(e->ans);
	free(e->name);
	free(e);
}

void
dns_cache_free(struct dns_cache *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++)
		entry_free(c->heap[i]);
	free(c->heap);
	free(c->buckets);
	free(c);
}

size_t
dns_cache_count(const struct dns_cache *c)
{
	return c->n;
}

/* Copies name in lower case without its final dot into out (DNS_NAME_TEXT_MAX). */
static int
key_name(const char *name, char *out)
{
	size_t len = strlen(name);

	if (len > 1 && name[len - 1] == '.')
		len--;
	if (len >= DNS_NAME_TEXT_MAX)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char ch = name[i];
		out[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 'a' - 'A') : ch;
	}
	out[len] = '\0';
	return 0;
}

/* FNV-1a, seeded. */
static uint32_t
key_hash(const struct dns_cache *c, const char *name, int type)
{
	uint32_t h = 2166136261u ^ c->seed;

	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	h = (h ^ (uint32_t)type) * 16777619u;
	return h;
}

/* The heap ---------------------------------------------------------- */

static void
heap_set(struct dns_cache *c, size_t i, struct dns_cache_entry *e)
{
	c->heap[i] = e;
	e->heap = i;
}

static void
heap_up(struct dns_cache *c, size_t i)
{
	struct dns_cache_entry *e = c->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (c->heap[parent]->expires <= e->expires)
			break;
		heap_set(c, i, c->heap[parent]);
		i = parent;
	}
	heap_set(c, i, e);
}

static void
heap_down(struct dns_cache *c, size_t i)
{
	struct dns_cache_entry *e = c->heap[i];

	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= c->n)
			break;
		if (child + 1 < c->n && c->heap[child + 1]->expires < c->heap[child]->expires)
			child++;
		if (e->expires <= c->heap[child]->expires)
			break;
		heap_set(c, i, c->heap[child]);
		i = child;
	}
	heap_set(c, i, e);
}

/* Takes e out of the table and the heap, and frees it. */
static void
entry_remove(struct dns_cache *c, struct dns_cache_entry *e)
{
	struct dns_cache_entry **pp = &c->buckets[e->hash & c->mask];
	size_t i = e->heap;

	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	c->n--;
	if (i < c->n) {
		struct dns_cache_entry *moved = c->heap[c->n];

		heap_set(c, i, moved);
		heap_up(c, i);
		heap_down(c, moved->heap);
	}
	entry_free(e);
}

static struct dns_cache_entry *
entry_find(struct dns_cache *c, const char *key, int type, uint32_t hash)
{
	for (struct dns_cache_entry *e = c->buckets[hash & c->mask]; e != NULL; e = e->next)
		if (e->hash == hash && e->type == type && strcmp(e->name, key) == 0)
			return e;
	return NULL;
}

struct dns_answer *
dns_cache_get(struct dns_cache *c, const char *name, int type, double now)
{
	char key[DNS_NAME_TEXT_MAX];
	struct dns_cache_entry *e;
	struct dns_answer *a;
	uint32_t spent;

	if (key_name(name, key) == -1)
		return NULL;
	if ((e = entry_find(c, key, type, key_hash(c, key, type))) == NULL)
		return NULL;
	if (now >= e->expires) {
		entry_remove(c, e);
		return NULL;
	}
	if ((a = dns_answer_dup(e->ans)) == NULL)
		return NULL;
	spent = now > e->stored ? (uint32_t)(now - e->stored) : 0;
	a->ttl = a->ttl > spent ? a->ttl - spent : 0;
	for (size_t i = 0; i < a->nrr; i++)
		a->rr[i].ttl = a->rr[i].ttl > spent ? a->rr[i].ttl - spent : 0;
	return a;
}

int
dns_cache_put(
    struct dns_cache *c, const char *name, int type, const struct dns_answer *ans, double now)
{
	char key[DNS_NAME_TEXT_MAX];
	struct dns_cache_entry *e, *old;
	uint32_t hash;

	if (ans->ttl == 0)
		return 0;
	if (key_name(name, key) == -1)
		return -1;
	hash = key_hash(c, key, type);
	if ((old = entry_find(c, key, type, hash)) != NULL)
		entry_remove(c, old);
	/* The heap's top expires first: an expired entry if there is one,
	 * else the one that would have left soonest anyway. */
	while (c->n > 0 && (c->n >= c->max || c->heap[0]->expires <= now))
		entry_remove(c, c->heap[0]);
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return -1;
	if ((e->name = strdup(key)) == NULL || (e->ans = dns_answer_dup(ans)) == NULL) {
		entry_free(e);
		return -1;
	}
	e->type = type;
	e->hash = hash;
	e->stored = now;
	e->expires = now + ans->ttl;
	e->next = c->buckets[hash & c->mask];
	c->buckets[hash & c->mask] = e;
	heap_set(c, c->n++, e);
	heap_up(c, e->heap);
	return 0;
}
