/* version.h - `luamta --version`: ours and the libraries' in use. */
#ifndef LUAMTA_VERSION_H
#define LUAMTA_VERSION_H

#include <stdio.h>

/* One line each: luamta, then Lua, libev, mbed TLS, c-ares, libcurl and
 * hiredis, as the running process has them (the loaded library's own
 * answer where it gives one, else the headers it was built with). */
void version_print(FILE *);

#endif
