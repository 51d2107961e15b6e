/* version.c - the versions `luamta --version` prints. The libraries are
 * asked at run time where they can say (libev, mbed TLS, c-ares, libcurl),
 * so a library upgraded under the binary shows; Lua and hiredis only
 * have their headers' numbers. */
#include "version.h"

#include <ares.h>
#include <curl/curl.h>
#include <ev.h>
#include <hiredis/hiredis.h>
#include <lua.h>
#include <mbedtls/version.h>

void
version_print(FILE *f)
{
	char tls[32];
	const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);

	mbedtls_version_get_string(tls);
	fprintf(f, "luamta %s\n", LUAMTA_VERSION);
	fprintf(f, "Lua %s\n", LUA_VERSION_MAJOR "." LUA_VERSION_MINOR "." LUA_VERSION_RELEASE);
	fprintf(f, "libev %d.%d\n", ev_version_major(), ev_version_minor());
	fprintf(f, "mbed TLS %s\n", tls);
	fprintf(f, "c-ares %s\n", ares_version(NULL));
	fprintf(f, "libcurl %s\n", curl != NULL ? curl->version : "?");
	fprintf(f, "hiredis %d.%d.%d\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
}
