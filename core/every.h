/* every.h - the policy's periodic tasks (luamta.every): the functions a
 * policy registered while it loaded, run on timers of one serving process
 * as budgeted hook runs that may wait (a greylist sweep in Redis). A set of
 * tasks belongs to one policy generation: a reload stops it and starts the
 * new generation's. Knows nothing of SMTP. */
#ifndef LUAMTA_EVERY_H
#define LUAMTA_EVERY_H

#include <ev.h>
#include <lua.h>

#include "hook.h"

struct every;

/* luamta.every(seconds, fn): records fn in L's registry. Only while the
 * policy loads: raises otherwise, and on bad arguments. */
int every_register(lua_State *L);

/* Arms the tasks registered in L (none, or L NULL: returns NULL), to run
 * under budget. L must outlive the set: stop it before letting the
 * generation go. The timers do not keep the loop alive. */
struct every *every_start(lua_State *L, const struct hook_budget *budget, struct ev_loop *);
/* Stops the timers and cancels a run that is waiting. NULL is a no-op. */
void every_stop(struct every *);

#endif
