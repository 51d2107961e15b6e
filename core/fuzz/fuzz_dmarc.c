/* fuzz_dmarc.c - libFuzzer target for what DMARC reads from strangers:
 * DMARC records (dmarc_record_parse), From values (dmarc_from_domain),
 * the header walk (msghdr) and authserv-ids (authres_servid). The whole
 * input goes to each. A record that parses has its values in range; a
 * From domain found is a usable lower-case host name with an
 * organizational domain it is aligned with; header fields found lie
 * inside the input, in order, and unfold into no more bytes than their
 * value; an authserv-id, built into a value of ours, reads back the same. */

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "authres.h"
#include "dmarc.h"
#include "fuzz.h"
#include "msghdr.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct dmarc_record rec;
	struct msghdr_field f;
	char d[DMARC_DOMAIN_MAX], org[DMARC_DOMAIN_MAX], id[256], back[256], *v;
	size_t pos = 0, last = 0;
	int n;

	if (dmarc_record_parse(p, size, &rec) == DMARC_REC_OK) {
		FUZZ_CHECK(rec.p >= DMARC_P_NONE && rec.p <= DMARC_P_REJECT);
		FUZZ_CHECK(rec.sp <= DMARC_P_REJECT);
		FUZZ_CHECK(rec.pct >= 0 && rec.pct <= 100);
		FUZZ_CHECK(strlen(rec.fo) > 0 && strlen(rec.fo) < sizeof(rec.fo));
	}

	if (dmarc_from_domain(p, size, d) == DMARC_FROM_OK) {
		FUZZ_CHECK(dmarc_domain_ok(d));
		for (const char *c = d; *c != '\0'; c++)
			FUZZ_CHECK(!isupper((unsigned char)*c));
		dmarc_org_domain(d, org);
		FUZZ_CHECK(strlen(org) > 0 && strlen(org) <= strlen(d));
		FUZZ_CHECK(strcmp(d + strlen(d) - strlen(org), org) == 0);
		FUZZ_CHECK(dmarc_aligned(d, org, 0) && dmarc_aligned(d, d, 1));
	}

	while (msghdr_next(p, size, &pos, &f)) {
		FUZZ_CHECK(f.off >= last && f.len > 0 && f.off + f.len <= size);
		FUZZ_CHECK(f.name == p + f.off && f.nlen > 0);
		FUZZ_CHECK(f.value + f.vlen <= p + f.off + f.len);
		FUZZ_CHECK(msghdr_unfold(&f, back, sizeof(back)) <= f.vlen);
		FUZZ_CHECK(pos == f.off + f.len);
		last = pos;
	}

	if ((n = authres_servid(p, size, id, sizeof(id))) > 0) {
		struct authres ar;
		FUZZ_CHECK((size_t)n == strlen(id));
		if (authres_value_ok(id, (size_t)n) && authres_begin(&ar, id, (size_t)n) == 0) {
			FUZZ_CHECK(authres_servid(ar.buf, ar.len, back, sizeof(back)) == n);
			FUZZ_CHECK(strcmp(back, id) == 0);
		}
	}

	/* The input as a DKIM domain next to a From domain: no crash. */
	if ((v = malloc(size + 1)) != NULL) {
		memcpy(v, data, size);
		v[size] = '\0';
		(void)dmarc_aligned("example.com", v, 0);
		free(v);
	}
	return 0;
}
