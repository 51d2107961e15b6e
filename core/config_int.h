/* config_int.h - what config.c and config_net.c share, and nothing else
 * sees. */
#ifndef LUAMTA_CONFIG_INT_H
#define LUAMTA_CONFIG_INT_H

#include "config.h"

/* A list of networks (--limit-exempt, --xclient-trusted, --proxy-trusted):
 * comma-separated "ADDR[/PREFIX]" with no host bits past the prefix, or
 * "none" (empties the list); appended to nets[*n]. 0, or -1 after printing
 * what is wrong with it for the option opt. */
int config_parse_nets(const char *opt, struct config_net *nets, int *n, const char *arg);

#endif
