/* every.h - the policy's periodic tasks (luamta.every): the functions a
 * policy registered while it loaded, run on timers of one serving process
 * as budgeted hook runs that may wait (a greylist sweep in Redis). A set of
 * tasks belongs to one policy generation: a reload stops it and starts the
 * new generation's. Knows nothing of SMTP. */
#ifndef LUAMTA_EVERY_H
#define LUAMTA_EVERY_H

#include <ev.h>
#include <lua.h>

struct script;
struct every;

/* luamta.every(seconds, fn): records fn in L's registry. Only while the
 * policy loads: raises otherwise, and on bad arguments. */
int every_register(lua_State *L);

/* Arms the tasks sc registered (none: returns NULL). Takes a reference on
 * sc for as long as the set lives. The timers do not keep the loop alive. */
struct every *every_start(struct script *sc, struct ev_loop *);
/* Stops the timers, cancels a run that is waiting and drops the
 * reference. NULL is a no-op. */
void every_stop(struct every *);

#endif
