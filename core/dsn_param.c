/* dsn_param.c - RFC 3461's parameters (see dsn_param.h). */
#include "dsn_param.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "xtext.h"

int
dsn_param_ret(const char *v)
{
	if (v == NULL)
		return -1;
	if (strcasecmp(v, "FULL") == 0)
		return DSN_RET_FULL;
	if (strcasecmp(v, "HDRS") == 0)
		return DSN_RET_HDRS;
	return -1;
}

const char *
dsn_param_ret_str(int ret)
{
	return ret == DSN_RET_FULL ? "FULL" : ret == DSN_RET_HDRS ? "HDRS" : NULL;
}

static const struct {
	const char *word;
	unsigned bit;
} notify_words[] = {
	{ "NEVER", DSN_NOTIFY_NEVER },
	{ "SUCCESS", DSN_NOTIFY_SUCCESS },
	{ "FAILURE", DSN_NOTIFY_FAILURE },
	{ "DELAY", DSN_NOTIFY_DELAY },
};

int
dsn_param_notify(const char *v, unsigned *out)
{
	unsigned bits = 0;

	if (v == NULL || *v == '\0')
		return -1;
	for (const char *p = v;;) {
		size_t len = strcspn(p, ",");
		unsigned bit = 0;

		for (size_t i = 0; i < sizeof(notify_words) / sizeof(notify_words[0]); i++)
			if (len == strlen(notify_words[i].word) &&
			    strncasecmp(p, notify_words[i].word, len) == 0)
				bit = notify_words[i].bit;
		if (bit == 0 || (bits & bit))
			return -1;
		bits |= bit;
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	/* RFC 3461 4.1: NEVER stands alone. */
	if ((bits & DSN_NOTIFY_NEVER) && bits != DSN_NOTIFY_NEVER)
		return -1;
	*out = bits;
	return 0;
}

void
dsn_param_notify_str(unsigned notify, char *out, size_t outsz)
{
	size_t o = 0;

	if (outsz == 0)
		return;
	out[0] = '\0';
	for (size_t i = 0; i < sizeof(notify_words) / sizeof(notify_words[0]); i++)
		if (notify & notify_words[i].bit) {
			int n = snprintf(
			    out + o, outsz - o, "%s%s", o > 0 ? "," : "", notify_words[i].word);
			if (n < 0 || (size_t)n >= outsz - o)
				return;
			o += (size_t)n;
		}
}

/* Whether the decoded bytes are printable ASCII (a space only when
 * space_ok). */
static int
printable(const char *s, int space_ok)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s > 126 || (unsigned char)*s < (space_ok ? 32 : 33))
			return 0;
	return 1;
}

int
dsn_param_envid(const char *v, char *out, size_t outsz)
{
	size_t n;

	if (v == NULL || (n = strlen(v)) == 0 || n > DSN_ENVID_MAX || outsz <= DSN_ENVID_MAX)
		return -1;
	if (xtext_decode(v, n, out, outsz) < 1 || !printable(out, 0))
		return -1;
	return 0;
}

static int
is_type_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '-';
}

int
dsn_param_orcpt(const char *v, char *out, size_t outsz)
{
	const char *semi;
	size_t n, tn;

	if (v == NULL || (n = strlen(v)) > DSN_ORCPT_MAX || outsz <= DSN_ORCPT_MAX ||
	    (semi = strchr(v, ';')) == NULL || semi == v)
		return -1;
	tn = (size_t)(semi - v);
	for (size_t i = 0; i < tn; i++)
		if (!is_type_char(v[i]))
			return -1;
	memcpy(out, v, tn + 1);
	if (xtext_decode(semi + 1, n - tn - 1, out + tn + 1, outsz - tn - 1) < 1 ||
	    !printable(out + tn + 1, 1))
		return -1;
	return 0;
}

int
dsn_param_orcpt_encode(const char *orcpt, char *out, size_t outsz)
{
	const char *semi = strchr(orcpt, ';');
	size_t tn;

	if (semi == NULL || (tn = (size_t)(semi - orcpt)) + 1 >= outsz)
		return -1;
	memcpy(out, orcpt, tn + 1);
	return xtext_encode(semi + 1, strlen(semi + 1), out + tn + 1, outsz - tn - 1) < 0 ? -1 : 0;
}

int
dsn_param_take(
    struct dsn_params *p, const char *key, const char *value, int is_mail, const char **why)
{
	static const char *const keys[] = { "RET", "ENVID", "NOTIFY", "ORCPT" };
	int k, r = -1;

	for (k = 0; k < 4; k++)
		if (strcasecmp(key, keys[k]) == 0)
			break;
	if (k == 4 || (k < 2) != (is_mail != 0))
		return 0;
	if (p->seen & (1u << k)) {
		*why = k == 0 ? "RET given twice" :
		    k == 1    ? "ENVID given twice" :
		    k == 2    ? "NOTIFY given twice" :
				"ORCPT given twice";
		return -1;
	}
	p->seen |= 1u << k;
	switch (k) {
	case 0: {
		int ret = dsn_param_ret(value);

		p->ret = ret > 0 ? ret : DSN_RET_UNSET;
		r = ret > 0 ? 0 : -1;
		*why = "RET must be FULL or HDRS";
		break;
	}
	case 1:
		r = dsn_param_envid(value, p->envid, sizeof(p->envid));
		*why = "bad ENVID (xtext of at most 100 characters)";
		break;
	case 2:
		r = dsn_param_notify(value, &p->notify);
		*why = "NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY";
		break;
	default:
		r = dsn_param_orcpt(value, p->orcpt, sizeof(p->orcpt));
		*why = "bad ORCPT (addr-type;xtext of at most 500 characters)";
		break;
	}
	if (r == -1)
		return -1;
	return 1;
}
