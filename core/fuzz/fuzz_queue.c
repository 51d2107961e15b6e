/* fuzz_queue.c - libFuzzer target for the text of ID.env (queue_file.c).
 * Any input either is refused with a reason, or parses into an entry whose
 * formatted text parses again into the same entry and formats to the same
 * bytes: what the parser accepts, the formatter can write back, and the
 * formatter's output is canonical. */

#include <string.h>

#include "fuzz.h"
#include "queue.h"

static int
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static void
check_same(const struct queue_entry *a, const struct queue_entry *b)
{
	FUZZ_CHECK(strcmp(a->id, b->id) == 0 && queue_id_valid(a->id));
	FUZZ_CHECK(str_eq(a->sender, b->sender) && a->sender != NULL);
	FUZZ_CHECK(a->created == b->created && a->size == b->size && a->held == b->held);
	FUZZ_CHECK(a->body_8bit == b->body_8bit && a->smtputf8 == b->smtputf8);
	FUZZ_CHECK(a->is_bounce == b->is_bounce);
	FUZZ_CHECK(a->dsn_ret == b->dsn_ret && str_eq(a->envid, b->envid));
	FUZZ_CHECK(a->delay_warned == b->delay_warned && a->delay_warned >= 0);
	FUZZ_CHECK(str_eq(a->route.host, b->route.host) && a->route.port == b->route.port);
	FUZZ_CHECK(str_eq(a->route.socket, b->route.socket) && a->route.lmtp == b->route.lmtp);
	FUZZ_CHECK(a->route.tls == b->route.tls);
	FUZZ_CHECK(str_eq(a->route.auth_user, b->route.auth_user));
	FUZZ_CHECK(str_eq(a->route.auth_pass, b->route.auth_pass));
	FUZZ_CHECK(a->nrcpts == b->nrcpts && a->nrcpts > 0);
	for (size_t i = 0; i < a->nrcpts; i++) {
		const struct queue_rcpt *x = &a->rcpts[i], *y = &b->rcpts[i];

		FUZZ_CHECK(str_eq(x->address, y->address) && x->address != NULL);
		FUZZ_CHECK(x->state == y->state && x->attempts == y->attempts);
		FUZZ_CHECK(x->next_attempt == y->next_attempt);
		FUZZ_CHECK(str_eq(x->last_reply, y->last_reply));
		FUZZ_CHECK(x->notify == y->notify && str_eq(x->orcpt, y->orcpt));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue_entry e, again;
	char err[256], *text, *text2;
	size_t len, len2;

	err[0] = '\0';
	if (queue_env_parse((const char *)data, size, &e, err, sizeof(err)) == -1) {
		FUZZ_CHECK(err[0] != '\0');
		FUZZ_CHECK(e.sender == NULL && e.rcpts == NULL && e.nrcpts == 0);
		return 0;
	}
	if ((text = queue_env_format(&e, &len)) == NULL) {
		queue_entry_clear(&e);
		return 0;
	}
	FUZZ_CHECK(queue_env_parse(text, len, &again, err, sizeof(err)) == 0);
	check_same(&e, &again);
	text2 = queue_env_format(&again, &len2);
	FUZZ_CHECK(text2 == NULL || (len2 == len && memcmp(text, text2, len) == 0));
	free(text2);
	free(text);
	queue_entry_clear(&again);
	queue_entry_clear(&e);
	return 0;
}
