/* script.c - the policy's Lua state. Owns the capped allocator, the module
 * path, loading the file and resolving its hooks; hook.c runs them. */
#include "script.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "hook_api.h"
#include "log.h"
#include "smtp_parse.h"

static const char *const hook_kind_names[HOOK__COUNT] = {
	"on_connect",
	"on_helo",
	"on_ehlo",
	"on_mail",
	"on_rcpt",
	"on_data",
	"on_message",
	"on_rset",
	"on_vrfy",
	"on_quit",
	"on_unknown",
	"on_disconnect",
	"on_auth",
	"on_starttls",
	"verbs",
	"on_deferred",
	"on_bounce",
	"on_delivered",
};

const char *
hook_kind_str(enum hook_kind k)
{
	return (unsigned)k < HOOK__COUNT ? hook_kind_names[k] : "?";
}

/* Counts every byte; past the cap it refuses growth while policy code runs,
 * but always honours frees and shrinks (HAProxy's hlua_alloc). Outside a
 * hook the cap is not enforced: C code pushing arguments must not meet a
 * memory error outside a protected call. */
static void *
script_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct script *sc = ud;
	void *p;

	if (ptr == NULL)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		sc->mem_used -= osize;
		return NULL;
	}
	if (nsize > osize && sc->mem_used + (nsize - osize) > sc->mem_max && hook_running())
		return NULL;
	if ((p = realloc(ptr, nsize)) == NULL)
		return NULL;
	sc->mem_used = sc->mem_used - osize + nsize;
	return p;
}

static int
script_panic(lua_State *L)
{
	const char *msg = lua_tostring(L, -1);

	fatalx("lua panic: %s", msg != NULL ? msg : "(no message)");
}

/* Every hook's coroutine carries a count hook that enforces its budget:
 * debug.sethook() would take it away, and with it every limit on a loop.
 * The registry holds the handles' metatables and every reference the
 * server keeps: debug.getregistry() would let a script break them. */
static int
script_no_debug(lua_State *L)
{
	return luaL_error(L, "%s is not available to policies (luamta relies on it)",
	    lua_tostring(L, lua_upvalueindex(1)));
}

/* xpcall's message handler runs where the error was raised. When that was
 * the budget's own error, raised from the count hook, Lua runs no hooks
 * there, and a handler that loops could never be stopped: the wrapper
 * hands a budget error up untouched and calls the script's handler only
 * for its own errors. */
static int
script_xpcall_msgh(lua_State *L)
{
	if (hook_exhausted())
		return 1;
	lua_settop(L, 1);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, 1, 1);
	return 1;
}

/* After the protected call (now, or after a yield inside it): true and
 * the results, or false and what the handler made of the error. The two
 * slots below the results hold the function and the first result. */
static int
script_xpcall_done(lua_State *L, int status, lua_KContext base)
{
	if (status != LUA_OK && status != LUA_YIELD) {
		lua_pushboolean(L, 0);
		lua_pushvalue(L, -2);
		return 2;
	}
	return lua_gettop(L) - (int)base;
}

static int
script_xpcall(lua_State *L)
{
	int n = lua_gettop(L), status;

	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushvalue(L, 2);
	lua_pushcclosure(L, script_xpcall_msgh, 1);
	lua_replace(L, 2);     /* [f msgh args...] */
	lua_pushboolean(L, 1); /* the first result when all goes well */
	lua_pushvalue(L, 1);   /* [f msgh args... true f] */
	lua_rotate(L, 3, 2);   /* [f msgh true f args...] */
	status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, script_xpcall_done);
	return script_xpcall_done(L, status, 2);
}

/* Replaces the few library functions a policy must not have. */
/* coroutine.resume and coroutine.close, refusing a hook's own thread: a
 * script that kept one (coroutine.running()) could otherwise resume or
 * close it while it waits in a call whose watcher is armed, or while it
 * serves another session's hook. */
static int
script_co_guard(lua_State *L)
{
	if (lua_type(L, 1) == LUA_TTHREAD && hook_is_run_thread(lua_tothread(L, 1)))
		return luaL_error(L, "%s: a hook's own thread cannot be resumed or closed",
		    lua_tostring(L, lua_upvalueindex(2)));
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
	return lua_gettop(L);
}

static void
script_guard_libs(lua_State *L)
{
	static const char *const co_guarded[] = { "resume", "close" };

	lua_getglobal(L, "coroutine");
	for (size_t i = 0; i < sizeof(co_guarded) / sizeof(co_guarded[0]); i++) {
		lua_getfield(L, -1, co_guarded[i]);
		lua_pushfstring(L, "coroutine.%s", co_guarded[i]);
		lua_pushcclosure(L, script_co_guard, 2);
		lua_setfield(L, -2, co_guarded[i]);
	}
	lua_pop(L, 1);
	static const char *const off[] = { "sethook", "getregistry" };

	lua_getglobal(L, "debug");
	for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
		lua_pushfstring(L, "debug.%s", off[i]);
		lua_pushcclosure(L, script_no_debug, 1);
		lua_setfield(L, -2, off[i]);
	}
	lua_pop(L, 1);
	lua_pushcfunction(L, script_xpcall);
	lua_setglobal(L, "xpcall");
}

#ifndef LUAMTA_LUA_DIR_REL
#define LUAMTA_LUA_DIR_REL "../share/luamta/lua"
#endif

/* The package.path entries of the modules we ship. An installed binary
 * finds them at LUAMTA_LUA_DIR_REL from its own directory (sbin/ to
 * share/luamta/lua), wherever the tree was installed or moved (cmake
 * --install --prefix, a package staged with DESTDIR), and then looks
 * nowhere else: not at the source tree it was built from, which may be
 * gone or hold other versions. A binary in the build tree has no such
 * directory beside it and takes the source tree's lua/, then the
 * configured prefix's. Worked out once: it cannot change while running. */
static const char *
script_lua_path(void)
{
	static char path[4 * PATH_MAX + 64];
	char exe[PATH_MAX], dir[PATH_MAX + sizeof(LUAMTA_LUA_DIR_REL) + 16], real[PATH_MAX];
	struct stat st;
	ssize_t n;
	char *slash;

	if (path[0] != '\0')
		return path;
	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0) {
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) != NULL) {
			*slash = '\0';
			snprintf(dir, sizeof(dir), "%s/%s", exe, LUAMTA_LUA_DIR_REL);
			if (realpath(dir, real) != NULL) {
				snprintf(dir, sizeof(dir), "%s/luamta", real);
				if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
					snprintf(path, sizeof(path), "%s/?.lua;%s/?/init.lua", real,
					    real);
					return path;
				}
			}
		}
	}
	snprintf(path, sizeof(path), "%s/?.lua;%s/?/init.lua;%s/?.lua;%s/?/init.lua",
	    LUAMTA_LUA_DIR_BUILD, LUAMTA_LUA_DIR_BUILD, LUAMTA_LUA_DIR_INSTALL,
	    LUAMTA_LUA_DIR_INSTALL);
	return path;
}

/* Puts our modules (script_lua_path()) in front of package.path, so
 * policies can require them. */
static void
script_set_path(lua_State *L)
{
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "path");
	lua_pushfstring(L, "%s;%s", script_lua_path(), lua_tostring(L, -1));
	lua_setfield(L, -3, "path");
	lua_pop(L, 2);
}

/* Replaces the verbs table at idx of co by a copy with upper-cased names,
 * after checking every entry is NAME = function. Verbs are matched after
 * the command is upper-cased, so "now" and "NOW" mean the same verb. */
static int
script_check_verbs(lua_State *co, int idx, const char *path, char *err, size_t errsz)
{
	char name[SMTP_VERB_MAX + 1];

	if (lua_type(co, idx) != LUA_TTABLE) {
		snprintf(err, errsz, "%s: verbs must be a table of functions", path);
		return -1;
	}
	lua_newtable(co);
	lua_pushnil(co);
	while (lua_next(co, idx) != 0) {
		size_t len = 0;
		const char *k =
		    lua_type(co, -2) == LUA_TSTRING ? lua_tolstring(co, -2, &len) : NULL;

		if (k == NULL || len == 0 || len > SMTP_VERB_MAX) {
			snprintf(err, errsz, "%s: verbs: names must be strings of 1-%d characters",
			    path, SMTP_VERB_MAX);
			return -1;
		}
		for (size_t i = 0; i <= len; i++) {
			unsigned char c = (unsigned char)k[i];
			if (i < len && !isalnum(c) && c != '-' && c != '_') {
				snprintf(err, errsz, "%s: verbs: bad verb name '%s'", path, k);
				return -1;
			}
			name[i] = (char)toupper(c);
		}
		if (lua_type(co, -1) != LUA_TFUNCTION) {
			snprintf(err, errsz, "%s: verbs.%s must be a function", path, k);
			return -1;
		}
		lua_setfield(co, -3, name); /* pops the value, keeps the key */
	}
	lua_replace(co, idx);
	return 0;
}

/* Checks the table the script returned and takes references to its hooks.
 * An unknown on_* key is an error: a typo ("on_rcpt_to") would otherwise
 * silently never run. */
static int
script_resolve(struct script *sc, lua_State *co, int idx, char *err, size_t errsz)
{
	lua_State *L = sc->L;
	const char *name = sc->path != NULL ? sc->path : "(policy)";

	if (lua_type(co, idx) != LUA_TTABLE) {
		snprintf(err, errsz, "%s: the script must return a table of hooks, got %s", name,
		    luaL_typename(co, idx));
		return -1;
	}
	lua_pushnil(co);
	while (lua_next(co, idx) != 0) {
		const char *k = lua_type(co, -2) == LUA_TSTRING ? lua_tostring(co, -2) : NULL;
		int kind = -1;

		for (int i = 0; k != NULL && i < HOOK__COUNT; i++)
			if (strcmp(k, hook_kind_names[i]) == 0)
				kind = i;
		if (kind == -1) {
			if (k != NULL && strncmp(k, "on_", 3) == 0) {
				snprintf(err, errsz, "%s: unknown hook '%s'", name, k);
				return -1;
			}
			lua_pop(co, 1); /* other keys are the script's business */
			continue;
		}
		if (kind == HOOK_VERB) {
			if (script_check_verbs(co, lua_gettop(co), name, err, errsz) == -1)
				return -1;
		} else if (lua_type(co, -1) != LUA_TFUNCTION) {
			snprintf(err, errsz, "%s: %s must be a function, got %s", name, k,
			    luaL_typename(co, -1));
			return -1;
		}
		lua_xmove(co, L, 1);
		sc->ref[kind] = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	return 0;
}

/* Copies the value at idx of from onto to's stack. Tables are copied
 * deeply; memo (a table on to's stack at memo_idx) maps each source table
 * to its copy, so shared and cyclic tables stay shared and cyclic. Returns
 * the number of values dropped (functions, userdata, coroutines, or tables
 * nested deeper than SCRIPT_SHARED_DEPTH). */
static int
script_copy_value(lua_State *from, int idx, lua_State *to, int memo_idx, int depth)
{
	int dropped = 0;

	idx = lua_absindex(from, idx);
	if (!lua_checkstack(from, 3) || !lua_checkstack(to, 4)) {
		lua_pushnil(to);
		return 1;
	}
	switch (lua_type(from, idx)) {
	case LUA_TBOOLEAN:
		lua_pushboolean(to, lua_toboolean(from, idx));
		return 0;
	case LUA_TNUMBER:
		if (lua_isinteger(from, idx))
			lua_pushinteger(to, lua_tointeger(from, idx));
		else
			lua_pushnumber(to, lua_tonumber(from, idx));
		return 0;
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(from, idx, &len);
		lua_pushlstring(to, s, len);
		return 0;
	}
	case LUA_TTABLE:
		break;
	default:
		lua_pushnil(to);
		return lua_isnil(from, idx) ? 0 : 1;
	}
	lua_pushlightuserdata(to, (void *)lua_topointer(from, idx));
	if (lua_rawget(to, memo_idx) == LUA_TTABLE)
		return 0;
	lua_pop(to, 1);
	if (depth >= SCRIPT_SHARED_DEPTH) {
		lua_pushnil(to);
		return 1;
	}
	lua_newtable(to);
	lua_pushlightuserdata(to, (void *)lua_topointer(from, idx));
	lua_pushvalue(to, -2);
	lua_rawset(to, memo_idx);
	lua_pushnil(from);
	while (lua_next(from, idx) != 0) {
		/* [.. key value] on from; [.. copy] on to */
		dropped += script_copy_value(from, -2, to, memo_idx, depth + 1);
		dropped += script_copy_value(from, -1, to, memo_idx, depth + 1);
		if (lua_isnil(to, -2) || lua_isnil(to, -1))
			lua_pop(to, 2);
		else
			lua_rawset(to, -3);
		lua_pop(from, 1);
	}
	return dropped;
}

/* Carries luamta.shared over from the generation in force (a reload), so a
 * greylisting table or counters survive a policy edit. */
static void
script_carry_shared(const struct script *prev, struct script *sc)
{
	lua_State *from = prev->L, *to = sc->L;
	int dropped, memo;

	/* Raw reads from the registry's copy of package.loaded: the script
	 * may have replaced "package" or put metatables anywhere, and no
	 * metamethod may run here, outside a protected call. */
	lua_pushliteral(from, LUA_LOADED_TABLE);
	lua_rawget(from, LUA_REGISTRYINDEX);
	lua_pushliteral(from, "luamta");
	if (lua_type(from, -2) == LUA_TTABLE)
		lua_rawget(from, -2);
	lua_pushliteral(from, "shared");
	if (lua_type(from, -2) == LUA_TTABLE)
		lua_rawget(from, -2);
	lua_getglobal(to, "luamta");
	lua_newtable(to);
	memo = lua_gettop(to);
	dropped = script_copy_value(from, -1, to, memo, 0);
	if (lua_istable(to, -1))
		lua_setfield(to, -3, "shared");
	else
		lua_pop(to, 1);
	lua_pop(to, 2);
	lua_pop(from, 3);
	if (dropped > 0)
		log_warn(NULL,
		    "script.shared dropped=%d reason=\"only strings, numbers, booleans "
		    "and tables survive a reload\"",
		    dropped);
}

/* Appends a copy of file to sc->files (kept NULL-terminated). */
static void
script_add_file(struct script *sc, size_t *n, const char *file)
{
	char **f;

	if ((f = realloc(sc->files, (*n + 2) * sizeof(char *))) == NULL)
		return;
	sc->files = f;
	if ((f[*n] = strdup(file)) != NULL)
		(*n)++;
	f[*n] = NULL;
}

/* [files] -> [files]: appends to the array files the path package.path
 * resolves for each loaded module. Runs under lua_pcall: the package table
 * and everything in it belong to the script, which may have replaced or
 * broken any of it ("package = nil" is legal Lua). */
static int
script_collect_cf(lua_State *L)
{
	lua_Integer n = (lua_Integer)lua_rawlen(L, 1);

	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE); /* [files loaded] */
	lua_getfield(L, 2, "package");
	if (!lua_istable(L, 3))
		return 0;
	lua_getfield(L, 3, "searchpath");
	lua_getfield(L, 3, "path"); /* [files loaded package searchpath path] */
	if (!lua_isfunction(L, 4) || lua_type(L, 5) != LUA_TSTRING)
		return 0;
	lua_pushnil(L);
	while (lua_next(L, 2) != 0) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			continue;
		lua_pushvalue(L, 4);
		lua_pushvalue(L, -2);
		lua_pushvalue(L, 5);
		lua_call(L, 2, 1);
		if (lua_type(L, -1) == LUA_TSTRING)
			lua_rawseti(L, 1, ++n);
		else
			lua_pop(L, 1);
	}
	return 0;
}

/* The policy file and every Lua module it required that package.path
 * resolves to a file: what --watch watches. package.searchpath may be the
 * script's own function, so the listing runs under the load budget. */
static void
script_collect_files(struct script *sc, struct ev_loop *loop)
{
	lua_State *L = sc->L, *co;
	struct hook_run *run;
	size_t n = 0;

	if (sc->path != NULL)
		script_add_file(sc, &n, sc->path);
	lua_newtable(L); /* [files] */
	run = hook_run_new(L, loop, HOOK_MODE_RAW, &sc->budget, "load", NULL, NULL, NULL);
	if (run != NULL) {
		co = hook_run_thread(run);
		lua_pushcfunction(co, script_collect_cf);
		lua_pushvalue(L, -1);
		lua_xmove(L, co, 1);
		if (hook_run_start(run, 1) != HOOK_DONE)
			log_warn(NULL,
			    "script.watch error=\"cannot list the modules the policy loaded: %s\"",
			    hook_run_error(run));
		hook_run_free(run);
	}
	for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
		lua_rawgeti(L, -1, i);
		if (lua_type(L, -1) == LUA_TSTRING)
			script_add_file(sc, &n, lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

/* Runs the policy file on co (leaving its table on top), or pushes an empty
 * policy when there is none (--capture without --script). */
static int
script_run_file(struct script *sc, struct hook_run *run, char *err, size_t errsz)
{
	lua_State *co = hook_run_thread(run);

	if (sc->path == NULL) {
		lua_newtable(co);
		return 0;
	}
	if (luaL_loadfilex(co, sc->path, "t") != LUA_OK) {
		snprintf(err, errsz, "%s", lua_tostring(co, -1));
		return -1;
	}
	if (hook_run_start(run, 0) != HOOK_DONE) {
		snprintf(err, errsz, "%s", hook_run_error(run));
		return -1;
	}
	if (hook_run_nresults(run) < 1) {
		snprintf(err, errsz, "%s: the script must return a table of hooks", sc->path);
		return -1;
	}
	lua_settop(co, lua_gettop(co) - hook_run_nresults(run) + 1);
	return 0;
}

/* --capture: the policy becomes require("luamta.capture").wrap(policy, dir),
 * run under the budget like the file itself. Replaces the table on top of
 * co by the wrapped one. */
static int
script_wrap_capture(struct script *sc, struct ev_loop *loop, lua_State *co, const char *dir,
    char *err, size_t errsz)
{
	static const char wrap[] = "local policy, dir = ...\n"
				   "return require('luamta.capture').wrap(policy, dir)\n";
	struct hook_run *run;
	lua_State *wco;
	int rc = -1;

	if ((run = hook_run_new(
		 sc->L, loop, HOOK_MODE_RAW, &sc->budget, "capture", NULL, NULL, NULL)) == NULL) {
		snprintf(err, errsz, "out of memory");
		return -1;
	}
	wco = hook_run_thread(run);
	if (luaL_loadbufferx(wco, wrap, sizeof(wrap) - 1, "=capture", "t") != LUA_OK) {
		snprintf(err, errsz, "%s", lua_tostring(wco, -1));
		goto out;
	}
	lua_xmove(co, wco, 1);
	lua_pushstring(wco, dir);
	if (hook_run_start(run, 2) != HOOK_DONE) {
		snprintf(err, errsz, "--capture: %s", hook_run_error(run));
		goto out;
	}
	if (hook_run_nresults(run) < 1 || !lua_istable(wco, -1)) {
		snprintf(err, errsz, "--capture: luamta.capture.wrap did not return a table");
		goto out;
	}
	lua_settop(wco, lua_gettop(wco) - hook_run_nresults(run) + 1);
	lua_xmove(wco, co, 1);
	rc = 0;
out:
	hook_run_free(run);
	return rc;
}

struct script *
script_load(const struct script_opts *o, struct ev_loop *loop, const struct script *prev, char *err,
    size_t errsz)
{
	struct script *sc;
	struct hook_run *run = NULL;
	lua_State *co;

	if ((sc = calloc(1, sizeof(*sc))) == NULL ||
	    (o->path != NULL && (sc->path = strdup(o->path)) == NULL)) {
		snprintf(err, errsz, "out of memory");
		free(sc);
		return NULL;
	}
	sc->refcount = 1;
	sc->generation = prev != NULL ? prev->generation + 1 : 1;
	sc->mem_max = o->mem_max;
	sc->budget = o->budget;
	for (int i = 0; i < HOOK__COUNT; i++)
		sc->ref[i] = LUA_NOREF;
	if ((sc->L = lua_newstate(script_alloc, sc)) == NULL) {
		snprintf(err, errsz, "cannot create a Lua state");
		goto fail;
	}
	hook_pool_init(sc->L);
	lua_atpanic(sc->L, script_panic);
	luaL_openlibs(sc->L);
	script_guard_libs(sc->L);
	script_set_path(sc->L);
	hook_api_open(sc->L, o->hostname);
	if (prev != NULL)
		script_carry_shared(prev, sc);

	/* The top level runs under the same budget as a hook, so a script
	 * that loops while loading fails instead of hanging the start. */
	if ((run = hook_run_new(
		 sc->L, loop, HOOK_MODE_RAW, &sc->budget, "load", NULL, NULL, NULL)) == NULL) {
		snprintf(err, errsz, "out of memory");
		goto fail;
	}
	co = hook_run_thread(run);
	if (script_run_file(sc, run, err, errsz) == -1)
		goto fail;
	if (o->capture_dir != NULL &&
	    script_wrap_capture(sc, loop, co, o->capture_dir, err, errsz) == -1)
		goto fail;
	if (script_resolve(sc, co, lua_gettop(co), err, errsz) == -1)
		goto fail;
	hook_run_free(run);
	script_collect_files(sc, loop);
	return sc;
fail:
	hook_run_free(run);
	script_unref(sc);
	return NULL;
}

void
script_ref(struct script *sc)
{
	sc->refcount++;
}

void
script_unref(struct script *sc)
{
	if (sc == NULL || --sc->refcount > 0)
		return;
	if (sc->L != NULL) {
		hook_pool_free(sc->L);
		lua_close(sc->L);
	}
	log_debug(NULL, "script.free generation=%u", sc->generation);
	for (char **f = sc->files; f != NULL && *f != NULL; f++)
		free(*f);
	free(sc->files);
	free(sc->path);
	free(sc);
}

int
script_push_hook(struct script *sc, lua_State *co, enum hook_kind kind, const char *verb)
{
	if (!script_has(sc, kind))
		return -1;
	lua_rawgeti(co, LUA_REGISTRYINDEX, sc->ref[kind]);
	if (kind != HOOK_VERB)
		return 0;
	lua_getfield(co, -1, verb);
	lua_remove(co, -2);
	if (lua_type(co, -1) != LUA_TFUNCTION) {
		lua_pop(co, 1);
		return -1;
	}
	return 0;
}

int
script_has_verb(struct script *sc, const char *verb)
{
	if (!script_has(sc, HOOK_VERB) || !lua_checkstack(sc->L, 2) ||
	    script_push_hook(sc, sc->L, HOOK_VERB, verb) == -1)
		return 0;
	lua_pop(sc->L, 1);
	return 1;
}
