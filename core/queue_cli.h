/* queue_cli.h - `luamta queue ...`: the operator's view of the spool (list,
 * show) and the few changes made by hand (flush, remove, hold, release). */
#ifndef LUAMTA_QUEUE_CLI_H
#define LUAMTA_QUEUE_CLI_H

/* Whether argv asks for the queue command: its first word that is not one
 * of the queue's own options (--spool DIR, --json) is "queue". */
int queue_cli_wanted(int argc, char **argv);

/* Runs it and returns the exit status: 0, 1 (the command failed: an
 * unknown or locked entry, an I/O error) or 2 (usage). */
int queue_cli_main(int argc, char **argv);

#endif
