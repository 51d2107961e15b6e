/* fuzz_hostile.c - libFuzzer target for a whole SMTP session under a hostile
 * policy (core/fuzz/hostile.lua): metatables on whatever crosses the C/Lua
 * boundary, a tampered package, debug and string metatable, waits where Lua
 * cannot yield, odd error objects, long replies, loops and memory hogs.
 *
 * The harness is fuzz_session.c's, compiled here with another fixture
 * rather than copied: the same input layout, the same configuration and the
 * same checks (well-formed replies, nothing after 221 or 421, the session
 * gone after the half-close, nothing leaked). Its entry point is renamed so
 * that this file can add one step after each input: the policy is loaded
 * again, as a reload (SIGHUP, --watch) would, and replaces the generation
 * the input ran on. hostile.lua tampers with state that outlives a session
 * (package, the string metatable, _G, the handles' metatables); without a
 * fresh generation every input would start where the one before left off,
 * and a reproducer libFuzzer saves would not fail on its own. The reload
 * runs in the same input, so what it exercises (luamta.shared carried over
 * from what the hooks left in it, the load-time tampering, --watch's
 * module listing) is attributed to the input that caused it. */

#include "fuzz.h"

#ifndef LUAMTA_FUZZ_FIXTURE
#define LUAMTA_FUZZ_FIXTURE "core/fuzz/hostile.lua"
#endif

int fuzz_session_input(const uint8_t *data, size_t size);

#define LLVMFuzzerTestOneInput fuzz_session_input
#include "fuzz_session.c"
#undef LLVMFuzzerTestOneInput

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct script_opts so;
	struct script *sc;
	char err[2048];

	fuzz_session_input(data, size);
	/* No session holds the old generation now: replacing it closes its
	 * Lua state, which runs the finalizers the policy left behind. */
	FUZZ_CHECK(fz_srv.nsessions == 0);
	worker_script_opts(&fz_cfg, &so);
	if ((sc = script_load(&so, fz_loop, fz_srv.script, err, sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_hostile: reload: %s\n", err);
		abort();
	}
	smtp_server_set_script(&fz_srv, sc);
	return 0;
}
